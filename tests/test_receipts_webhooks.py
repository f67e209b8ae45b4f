"""Receipts of payments the payment company takes itself, learnt by its
webhook: written with the event's "handled" mark, so a redelivered or
concurrently delivered event gives one receipt; the PDF is made at send
time from the company's invoice, through the composite store's ids."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import stripe
from fake_dodo import FakeDodo, shared_fake_dodo
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from outbox_support import receipt_rows
from portal_fixtures import BASE_URL, SECRET, SMTPServer
from stripe_support import RecordedStripe, StripeScenario, make_stripe_portal_app, seed_stripe, stripe_client
from test_dodo import IDS, WEBHOOK_SECRET, Scenario, _sign, seed
from test_stripe import ScriptedStripe, _signed

from flask_customer_portal import CustomerPortal
from flask_customer_portal.billing.outcomes import PaymentOutcome
from flask_customer_portal.billing.renewal import reactivate_subscription
from flask_customer_portal.contrib._webhooks import WebhookEvents, finishes_with_mail
from flask_customer_portal.contrib.composite import CompositeStorage, MappingCustomerIds
from flask_customer_portal.contrib.dodo import (
    DodoBilling,
    DodoCompositeStorage,
    DodoPaymentProvider,
    dodo_webhook_view,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.outbox.sender import ATTACHMENT_HEADER
from flask_customer_portal.records import MailStatus, OutboxMail
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer, WebhookClaim
from flask_customer_portal.testing import MemoryMailer

AVA = "cus_demo_ava"


def _payment_event(fake: FakeDodo, payment_id: str, kind: str = "payment.succeeded") -> bytes:
    data = dict(fake.payments[payment_id], payload_type="Payment")
    return json.dumps(
        {"business_id": "bus_fake", "type": kind, "timestamp": "2026-11-25T10:00:00Z", "data": data}
    ).encode()


def _deliver(app: Flask, body: bytes, msg_id: str, url: str = "/webhooks/dodo") -> int:
    return app.test_client().post(url, data=body, headers=_sign(body, msg_id=msg_id)).status_code


# -- Dodo ---------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeDodo:
    return shared_fake_dodo()


@pytest.fixture
def scenario(fake: FakeDodo) -> Scenario:
    return seed(fake)


@pytest.fixture
def dodo_app(tmp_path: Path, fake: FakeDodo, scenario: Scenario) -> Iterator[Flask]:
    app = _dodo_shop(f"sqlite:///{tmp_path / 'portal.db'}", fake, fresh=True)
    yield app
    _close(app)


def test_a_dodo_payment_gets_one_receipt_however_often_it_is_delivered(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    # A second view with nothing in memory: another worker, or a restart.
    dodo_app.add_url_rule(
        "/webhooks/dodo-2", "dodo_webhook_2", view_func=dodo_webhook_view(WEBHOOK_SECRET), methods=["POST"]
    )
    payment = scenario.ava_paid[0]
    body = _payment_event(fake, payment)
    answers = [_deliver(dodo_app, body, "msg_pay", url) for url in ("/webhooks/dodo", "/webhooks/dodo-2")]
    answers.append(_deliver(dodo_app, body, "msg_pay"))
    assert answers == [204, 204, 204]
    get_state(dodo_app).wait_for_background_tasks()
    [row] = receipt_rows(dodo_app)
    assert (row.customer_id, row.to) == (AVA, "ava@example.com")
    assert row.headers[ATTACHMENT_HEADER] == f"invoice_pdf:{payment}"
    mailer = get_state(dodo_app).mailer
    assert isinstance(mailer, MemoryMailer)
    [sent] = [m for m in mailer.outbox if m.subject.startswith("Receipt for invoice")]
    [pdf] = sent.attachments
    assert pdf.content_type == "application/pdf" and pdf.data.startswith(b"%PDF-")


def test_dodos_renewal_event_gives_no_second_receipt(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    renewed = json.dumps(
        {
            "business_id": "bus_fake",
            "type": "subscription.renewed",
            "timestamp": "2026-11-25T10:00:00Z",
            "data": dict(fake.subscriptions[scenario.ava_sub], payload_type="Subscription"),
        }
    ).encode()
    assert _deliver(dodo_app, renewed, "msg_renewed") == 204
    assert receipt_rows(dodo_app) == []
    assert _deliver(dodo_app, _payment_event(fake, scenario.ava_paid[1]), "msg_paid") == 204
    assert len(receipt_rows(dodo_app)) == 1


def test_a_failed_payment_gets_no_receipt(dodo_app: Flask, fake: FakeDodo, scenario: Scenario) -> None:
    body = _payment_event(fake, scenario.budi_failed, kind="payment.failed")
    assert _deliver(dodo_app, body, "msg_failed") == 204
    assert receipt_rows(dodo_app) == []


def test_a_payment_of_a_customer_the_portal_does_not_know_gets_none_and_is_logged_plainly(
    dodo_app: Flask, fake: FakeDodo, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_customer("cus_dodo_zoe", "zoe@example.com", "Zoe Stranger")
    payment = fake.add_payment("cus_dodo_zoe", amount=1900, days_ago=1)
    with caplog.at_level(logging.INFO, logger="flask_customer_portal"):
        assert _deliver(dodo_app, _payment_event(fake, payment), "msg_stranger") == 204
    assert receipt_rows(dodo_app) == []
    [record] = [r for r in caplog.records if "no receipt" in r.getMessage()]
    assert payment in record.getMessage()
    for personal in ("zoe@example.com", "Zoe", "Stranger", "cus_dodo_zoe"):
        assert personal not in record.getMessage()


def test_no_receipt_when_the_merchant_keeps_the_companys_own(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    state = get_state(dodo_app)
    state.config = replace(state.config, provider_receipts=False)
    assert _deliver(dodo_app, _payment_event(fake, scenario.ava_paid[0]), "msg_off") == 204
    assert receipt_rows(dodo_app) == []


def test_the_flag_is_checked_like_the_others() -> None:
    from flask_customer_portal.config import DEFAULTS, load_config
    from flask_customer_portal.errors import ConfigurationError

    base = {**DEFAULTS, "SECRET_KEY": SECRET, "CUSTOMER_PORTAL_BASE_URL": BASE_URL}
    base["CUSTOMER_PORTAL_BUSINESS_ID"] = "biz_demo"
    assert load_config(base).provider_receipts is True
    assert load_config({**base, "CUSTOMER_PORTAL_PROVIDER_RECEIPTS": False}).provider_receipts is False
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_PROVIDER_RECEIPTS"):
        load_config({**base, "CUSTOMER_PORTAL_PROVIDER_RECEIPTS": "false"})


def _dodo_shop(db_url: str, fake: FakeDodo, *, fresh: bool, **config: Any) -> Flask:
    app = Flask("dodo_receipts_app")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=db_url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
        **config,
    )
    db = SQLAlchemy()
    db.init_app(app)
    local = SQLAlchemyStorage(db)
    billing = DodoBilling(fake.client())
    CustomerPortal(
        app,
        storage=DodoCompositeStorage(local, billing=billing, customer_ids=MappingCustomerIds.from_dict(IDS)),
        payments=DodoPaymentProvider(billing),
        mailer=None if "MAIL_SERVER" in config else MemoryMailer(),
    )
    app.add_url_rule("/webhooks/dodo", view_func=dodo_webhook_view(WEBHOOK_SECRET), methods=["POST"])
    if fresh:
        with app.app_context():
            local.drop_all()
            local.create_all()
            local.add_customer(Customer(id=AVA, email="ava@example.com", name="Ava Tan", locale="en"))
    return app


def _close(app: Flask) -> None:
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        app.extensions["sqlalchemy"].engine.dispose()


def test_two_workers_on_one_database_deliver_one_event_once(
    db_url: str, fake: FakeDodo, scenario: Scenario
) -> None:
    first = _dodo_shop(db_url, fake, fresh=True, CUSTOMER_PORTAL_MAIL_IN_PROCESS=False)
    second = _dodo_shop(db_url, fake, fresh=False, CUSTOMER_PORTAL_MAIL_IN_PROCESS=False)
    try:
        body = _payment_event(fake, scenario.ava_paid[0])
        rounds = 3
        statuses: list[int] = []
        for round_ in range(rounds):
            barrier = threading.Barrier(2)

            def deliver(
                app: Flask, msg_id: str = f"msg_race_{round_}", barrier: threading.Barrier = barrier
            ) -> None:
                barrier.wait(timeout=30)
                statuses.append(_deliver(app, body, msg_id))

            threads = [threading.Thread(target=deliver, args=(app,)) for app in (first, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
        assert len(statuses) == 2 * rounds and set(statuses) <= {204, 409}
        # One receipt per event (three event ids for the same payment).
        assert len(receipt_rows(first)) == rounds
    finally:
        _close(second)
        with first.app_context():
            get_state(first).storage.local.drop_all()  # type: ignore[attr-defined]
        _close(first)


@pytest.mark.slow
def test_a_redelivered_webhook_sends_one_email_with_the_pdf_over_smtp(
    tmp_path: Path, fake: FakeDodo, scenario: Scenario, smtp_server: SMTPServer
) -> None:
    app = _dodo_shop(f"sqlite:///{tmp_path / 'smtp.db'}", fake, fresh=True, **smtp_server.config())
    try:
        body = _payment_event(fake, scenario.ava_paid[0])
        assert [_deliver(app, body, "msg_smtp") for _ in range(3)] == [204, 204, 204]
        get_state(app).wait_for_background_tasks()
        deadline = time.monotonic() + 30
        while not smtp_server.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a second email, if there were one, would be in by now
        [message] = smtp_server.messages
        assert message["To"] == "ava@example.com"
        assert message["Subject"].startswith("Receipt for invoice")
        [pdf] = list(message.iter_attachments())
        assert pdf.get_content_type() == "application/pdf"
        assert pdf.get_content().startswith(b"%PDF-")
    finally:
        _close(app)


# -- a failure while finishing --------------------------------------------------------------


def test_a_receipt_not_written_with_the_mark_leaves_the_event_for_the_next_delivery(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = get_state(dodo_app).storage.local  # type: ignore[attr-defined]
    real = type(local).finish_webhook_event

    def fail_with_mail(self: Any, provider: str, event_id: str, now: datetime, *, mail: Any = ()) -> None:
        if mail:
            raise ConnectionError("database went away")
        real(self, provider, event_id, now)

    body = _payment_event(fake, scenario.ava_paid[0])
    with monkeypatch.context() as patched:
        patched.setattr(type(local), "finish_webhook_event", fail_with_mail)
        dodo_app.testing = False  # the error is answered 500, as in production
        assert _deliver(dodo_app, body, "msg_retry") == 500
    dodo_app.testing = True
    assert receipt_rows(dodo_app) == []
    assert _deliver(dodo_app, body, "msg_retry") == 204
    assert len(receipt_rows(dodo_app)) == 1
    assert _deliver(dodo_app, body, "msg_retry") == 204
    assert len(receipt_rows(dodo_app)) == 1


def test_without_a_store_that_takes_mail_the_rows_come_right_after() -> None:
    # Per-process memory (no claims in a store): the batch is written by
    # its own transaction once the event is finished.
    events = WebhookEvents("dodo")

    class Batch:
        def __init__(self) -> None:
            self.through: object = "unset"
            self.done = 0

        def write_through(self, lock: object) -> None:
            self.through = lock

        def committed(self) -> None:
            self.done += 1

    batch = Batch()
    with events.handling(None, "evt_1", mail=batch) as claim:  # type: ignore[arg-type]
        assert claim is WebhookClaim.CLAIMED
        assert batch.through is None and batch.done == 0
    assert batch.done == 1
    with events.handling(None, "evt_1", mail=batch) as claim:  # type: ignore[arg-type]
        assert claim is WebhookClaim.HANDLED
    assert batch.done == 1


# -- Stripe -------------------------------------------------------------------------------------


@pytest.fixture
def stripe_scenario(localstripe: stripe.StripeClient) -> StripeScenario:
    return seed_stripe(localstripe)


@pytest.fixture
def stripe_app(
    localstripe: stripe.StripeClient, stripe_scenario: StripeScenario, tmp_path: Path
) -> Iterator[Flask]:
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}", localstripe, {"ava": stripe_scenario.customer_id}
    )
    yield app
    _close(app)


def _stripe_event(event_id: str, event_type: str, invoice: dict[str, Any]) -> tuple[str, dict[str, str]]:
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": invoice},
        }
    )
    return payload, {"Stripe-Signature": _signed(payload)}


def _post(app: Flask, event: tuple[str, dict[str, str]]) -> int:
    payload, headers = event
    return app.test_client().post("/stripe/webhook", data=payload, headers=headers).status_code


def _invoice(client: stripe.StripeClient, invoice_id: str) -> dict[str, Any]:
    return client.v1.invoices.retrieve(invoice_id).to_dict()


def test_an_invoice_stripe_was_paid_for_gets_one_receipt(
    stripe_app: Flask, localstripe: stripe.StripeClient, stripe_scenario: StripeScenario
) -> None:
    invoice_id = stripe_scenario.paid_invoice_ids[0]
    data = _invoice(localstripe, invoice_id)
    # Stripe sends both for one payment: only ``invoice.paid`` gives a receipt.
    assert _post(stripe_app, _stripe_event("evt_succeeded", "invoice.payment_succeeded", data)) == 204
    assert receipt_rows(stripe_app) == []
    paid = _stripe_event("evt_paid", "invoice.paid", data)
    assert [_post(stripe_app, paid) for _ in range(3)] == [204, 204, 204]
    [row] = receipt_rows(stripe_app)
    assert (row.customer_id, row.headers[ATTACHMENT_HEADER]) == ("ava", f"invoice_pdf:{invoice_id}")
    get_state(stripe_app).wait_for_background_tasks()
    mailer = get_state(stripe_app).mailer
    assert isinstance(mailer, MemoryMailer)
    [sent] = [m for m in mailer.outbox if m.subject.startswith("Receipt for invoice")]
    [pdf] = sent.attachments
    assert pdf.data.startswith(b"%PDF-")


def _portal_attempt(status: str, started: float) -> dict[str, str]:
    return {"portal_attempt_1": json.dumps({"s": status, "a": 1999, "c": int(started)})}


def test_an_invoice_the_portal_paid_itself_gets_no_second_receipt(
    stripe_app: Flask, localstripe: stripe.StripeClient, stripe_scenario: StripeScenario
) -> None:
    invoice_id = stripe_scenario.paid_invoice_ids[0]
    # The portal's payment under way (its attempt recorded, no answer yet):
    # the event waits, and nothing is written.
    localstripe.v1.invoices.update(invoice_id, params={"metadata": _portal_attempt("unknown", time.time())})
    event = _stripe_event("evt_portal", "invoice.paid", _invoice(localstripe, invoice_id))
    assert _post(stripe_app, event) == 409
    assert receipt_rows(stripe_app) == []
    # The portal's payment went through (its receipt went with it): none here.
    localstripe.v1.invoices.update(invoice_id, params={"metadata": _portal_attempt("succeeded", time.time())})
    assert _post(stripe_app, event) == 204
    assert _post(stripe_app, event) == 204
    assert receipt_rows(stripe_app) == []


def test_an_invoice_the_portal_failed_to_pay_and_stripe_retried_gets_its_receipt(
    stripe_app: Flask, localstripe: stripe.StripeClient, stripe_scenario: StripeScenario
) -> None:
    invoice_id = stripe_scenario.paid_invoice_ids[0]
    localstripe.v1.invoices.update(
        invoice_id, params={"metadata": _portal_attempt("declined", time.time() - 3600)}
    )
    assert (
        _post(stripe_app, _stripe_event("evt_retry", "invoice.paid", _invoice(localstripe, invoice_id)))
        == 204
    )
    assert len(receipt_rows(stripe_app)) == 1


def test_an_invoice_of_a_customer_the_portal_does_not_know_gets_none(
    stripe_app: Flask, localstripe: stripe.StripeClient, stripe_scenario: StripeScenario
) -> None:
    # Budi is at Stripe but not in this portal.
    [invoice] = localstripe.v1.invoices.list(params={"customer": stripe_scenario.other_customer_id}).data
    event = _stripe_event("evt_stranger", "invoice.paid", invoice.to_dict())
    assert _post(stripe_app, event) == 204
    assert receipt_rows(stripe_app) == []


@pytest.fixture
def scripted_app(recorded_stripe: RecordedStripe, tmp_path: Path) -> Iterator[tuple[Flask, ScriptedStripe]]:
    scripted = ScriptedStripe(recorded_stripe)
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        stripe_client(recorded_stripe.url),
        {"ava": "cus_R"},
        mailer=MemoryMailer(),
    )
    yield app, scripted
    _close(app)


def test_a_reactivation_the_portal_paid_at_stripe_gets_its_receipt_once(
    scripted_app: tuple[Flask, ScriptedStripe],
) -> None:
    app, scripted = scripted_app
    with app.test_request_context():
        state = get_state(app)
        customer = state.storage.get_customer("ava")
        method = state.storage.get_payment_method("ava", "pm_new")
        assert customer is not None and method is not None
        result = reactivate_subscription(state, customer, "sub_R", method)
    assert result.outcome is PaymentOutcome.PAID
    [row] = receipt_rows(app)  # the portal's, written with its payment
    assert row.headers[ATTACHMENT_HEADER] == "invoice_pdf:in_R"
    # Stripe then says the invoice is paid: no second receipt.
    event = _stripe_event("evt_reactivated", "invoice.paid", dict(scripted.invoice))
    assert _post(app, event) == 204
    assert [r.id for r in receipt_rows(app)] == [row.id]


# -- the store: mail written with the mark, and only by the call that sets it ------------------


def _row(mail_id: str) -> OutboxMail:
    return OutboxMail(
        id=mail_id,
        kind="receipt",
        to="ava@example.com",
        subject="Receipt",
        text="t",
        html="<p>t</p>",
        created_at=datetime.now(timezone.utc),
    )


def _pending_ids(store: SQLAlchemyStorage) -> list[str]:
    return [row.id for row in store.list_mail(status=MailStatus.PENDING)]


def test_the_store_writes_the_mail_only_with_the_mark_it_sets(store: SQLAlchemyStorage) -> None:
    now = datetime.now(timezone.utc)
    assert store.claim_webhook_event("dodo", "evt_m", now, lease=timedelta(minutes=5)) is WebhookClaim.CLAIMED
    store.finish_webhook_event("dodo", "evt_m", now, mail=[_row("mail_first")])
    # A late finish (a delivery whose claim had been taken over) writes nothing.
    store.finish_webhook_event("dodo", "evt_m", now, mail=[_row("mail_second")])
    assert _pending_ids(store) == ["mail_first"]
    assert store.claim_webhook_event("dodo", "evt_m", now, lease=timedelta(minutes=5)) is WebhookClaim.HANDLED


def test_a_composite_over_a_local_store_without_mail_writes_it_right_after(
    sqlite_store: SQLAlchemyStorage,
) -> None:
    class OlderLocal:
        """A local store whose ``finish_webhook_event`` predates ``mail``."""

        def __init__(self, inner: SQLAlchemyStorage) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def finish_webhook_event(self, provider: str, event_id: str, now: datetime) -> None:
            self._inner.finish_webhook_event(provider, event_id, now)

    local = OlderLocal(sqlite_store)
    composite = CompositeStorage(local, billing=DodoBilling(shared_fake_dodo().client()))  # type: ignore[arg-type]
    assert finishes_with_mail(composite) and not finishes_with_mail(local)
    now = datetime.now(timezone.utc)
    composite.claim_webhook_event("dodo", "evt_o", now, lease=timedelta(minutes=5))
    composite.finish_webhook_event("dodo", "evt_o", now, mail=[_row("mail_after")])
    assert _pending_ids(sqlite_store) == ["mail_after"]
    assert (
        composite.claim_webhook_event("dodo", "evt_o", now, lease=timedelta(minutes=5))
        is WebhookClaim.HANDLED
    )
