"""A plan change whose payment was left unconfirmed gets its receipt when a
later run finds the money taken: written with the settlement, once, even
when two runs settle at the same moment."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, portal_store, sign_in, stored_subscription
from portal_fixtures import plan_confirm_form as confirm_form
from portal_fixtures import plan_preview as preview
from test_plans import AVA, AVA_SUB, BUSINESS, PLAN_URL, PRO, TimesOutAfterCharging

from example_app.demo import load_demo_data
from flask_customer_portal.billing.settlement import (
    SettlementOutcome,
    SettlementReport,
    settle_all_plan_changes,
)
from flask_customer_portal.outbox.sender import ATTACHMENT_HEADER
from flask_customer_portal.records import MailStatus, OutboxMail
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import MemoryMailer


def receipt_rows(app: Flask) -> list[OutboxMail]:
    with app.app_context():
        rows = portal_store(app).list_mail(status=MailStatus.PENDING, limit=500)
    return [row for row in rows if row.kind == "receipt" and row.customer_id == AVA]


def _shop(db_url: str, provider: TimesOutAfterCharging, *, fresh: bool = True, **config: Any) -> Flask:
    """The demo shop; ``fresh``: on tables made anew (a PostgreSQL database
    is shared by the tests). Its mail rows stay pending, so that the test
    sees every one written."""
    app = make_portal_app(
        db_url,
        mailer=MemoryMailer(),
        payments=provider,
        demo_data=False,
        CUSTOMER_PORTAL_MAIL_IN_PROCESS=False,
        **config,
    )
    if fresh:
        with app.app_context():
            store = portal_store(app)
            store.drop_all()
            store.create_all()
            load_demo_data(store)
    return app


def _done(app: Flask) -> None:
    """Drop the tables (a PostgreSQL database is shared) and close."""
    with app.app_context():
        portal_store(app).drop_all()
    close_app(app)


def _unconfirmed_change(app: Flask) -> FlaskClient:
    """Ava confirms Business; the provider takes the money but the answer
    is lost: the change waits to be settled."""
    client = app.test_client()
    sign_in(app, client)
    answer = client.post(PLAN_URL, data=confirm_form(preview(client, BUSINESS).text))
    assert answer.status_code == 202
    assert stored_subscription(app, AVA, AVA_SUB).plan_id == PRO
    return client


def test_a_run_that_finds_the_payment_taken_writes_one_receipt_with_the_pdf(db_url: str) -> None:
    provider = TimesOutAfterCharging()
    app = _shop(db_url, provider)
    try:
        _unconfirmed_change(app)
        before = receipt_rows(app)
        with app.test_request_context():
            report = settle_all_plan_changes(get_state(app))
            again = settle_all_plan_changes(get_state(app))
        [settled] = report.settled
        assert settled.outcome is SettlementOutcome.CHANGED and settled.emailed
        assert again.settled == []
        new = [row for row in receipt_rows(app) if row not in before]
        [receipt] = new
        assert settled.invoice.id.startswith("in_pc_")
        assert receipt.headers[ATTACHMENT_HEADER] == f"invoice_pdf:{settled.invoice.id}"
        assert settled.invoice.number in receipt.subject
        assert len(provider.charges) == 1
    finally:
        _done(app)


def test_the_customers_next_visit_settles_it_with_one_receipt(db_url: str) -> None:
    provider = TimesOutAfterCharging()
    app = _shop(db_url, provider)
    try:
        client = _unconfirmed_change(app)
        before = receipt_rows(app)
        # The subscription page settles it; later visits find nothing to do.
        for _visit in range(2):
            assert client.get(f"/portal/subscriptions/{AVA_SUB}").status_code == 200
        assert stored_subscription(app, AVA, AVA_SUB).plan_id == BUSINESS
        assert len([row for row in receipt_rows(app) if row not in before]) == 1
        assert len(provider.charges) == 1
    finally:
        _done(app)


def test_a_payment_credited_after_the_subscription_moved_on_gets_its_receipt(db_url: str) -> None:
    provider = TimesOutAfterCharging()
    app = _shop(db_url, provider)
    try:
        _unconfirmed_change(app)
        before = receipt_rows(app)
        # The subscription moved on (its credit changed) before the run.
        with app.app_context(), portal_store(app).lock_subscription(AVA, AVA_SUB) as lock:
            assert lock is not None
            lock.set_credit(lock.subscription.credit + 1)
        with app.test_request_context():
            [settled] = settle_all_plan_changes(get_state(app)).settled
        assert settled.outcome is SettlementOutcome.CREDITED
        [receipt] = [row for row in receipt_rows(app) if row not in before]
        assert receipt.headers[ATTACHMENT_HEADER] == f"invoice_pdf:{settled.invoice.id}"
    finally:
        _done(app)


def test_no_receipt_when_receipts_are_off(db_url: str) -> None:
    app = _shop(db_url, TimesOutAfterCharging(), CUSTOMER_PORTAL_RECEIPTS=False)
    try:
        _unconfirmed_change(app)
        before = receipt_rows(app)
        with app.test_request_context():
            [settled] = settle_all_plan_changes(get_state(app)).settled
        assert settled.outcome is SettlementOutcome.CHANGED
        assert receipt_rows(app) == before
    finally:
        _done(app)


def test_two_runs_at_once_on_two_instances_write_one_receipt(db_url: str) -> None:
    # One provider for both instances: the money was taken once, at it.
    provider = TimesOutAfterCharging()
    first = _shop(db_url, provider)
    second = _shop(db_url, provider, fresh=False)
    try:
        _unconfirmed_change(first)
        before = receipt_rows(first)
        barrier = threading.Barrier(2)
        reports: list[SettlementReport] = []
        failures: list[BaseException] = []

        def run(app: Flask) -> None:
            try:
                with app.test_request_context():
                    barrier.wait(timeout=30)
                    reports.append(settle_all_plan_changes(get_state(app)))
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(app,)) for app in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == [] and len(reports) == 2
        assert [r.errors for r in reports] == [[], []]
        outcomes = sorted(str(s.outcome) for r in reports for s in r.settled)
        assert outcomes == ["changed"]
        assert len([row for row in receipt_rows(first) if row not in before]) == 1
        assert stored_subscription(first, AVA, AVA_SUB).plan_id == BUSINESS
        assert len(provider.charges) == 1
    finally:
        close_app(second)
        _done(first)
