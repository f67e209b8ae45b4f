"""Emails written in the transaction of the change they tell of: cancelling,
keeping, pausing and resuming (the store call's ``mail``), and the money
path of the composite store (its lock's ``enqueue_mail``). A change rolled
back leaves no email; a change committed leaves exactly one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import close_app, make_portal_app, portal_store, stored_subscription
from sqlalchemy.exc import IntegrityError
from test_composite_storage import T0, adapter, composite, seeded  # noqa: F401 - fixtures

from flask_customer_portal.billing import lifecycle, pausing
from flask_customer_portal.billing.notify import subscription_link
from flask_customer_portal.clock import utcnow
from flask_customer_portal.contrib.composite import CompositeStorage
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage, _subscriptions
from flask_customer_portal.emails import render_message
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    AuditEvent,
    MailQueue,
    MailStatus,
    OutboxMail,
    StateConflict,
    Subscription,
    SubscriptionStatus,
)
from flask_customer_portal.testing import MemoryMailer

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"


@pytest.fixture
def mail_app(tmp_path: Path) -> Iterator[Flask]:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'changes.db'}", mailer=MemoryMailer(), CUSTOMER_PORTAL_MAIL_IN_PROCESS=False
    )
    yield app
    close_app(app)


def _rows(app: Flask) -> list[OutboxMail]:
    with app.app_context():
        return list(portal_store(app).list_mail(status=MailStatus.PENDING))


def _actions(app: Flask) -> list[str]:
    with app.app_context():
        return [event.action for event in portal_store(app).list_events(AVA)]


def _then_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store writes the change and its email, then raises before commit."""
    real = _subscriptions.add_mail

    def add_then_fail(session: Any, mails: Sequence[OutboxMail]) -> None:
        real(session, mails)
        session.flush()  # the row really is in the transaction
        raise RuntimeError("after the email")

    monkeypatch.setattr(_subscriptions, "add_mail", add_then_fail)


def _check_once(
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    change: Callable[[], Subscription],
    context: Callable[[Subscription], dict[str, Any]],
) -> Subscription:
    """``change`` rolled back leaves no email, no event and the subscription
    as it was; committed, it leaves exactly one email, the one rendered
    from the store's answer."""
    before = stored_subscription(app, AVA, AVA_SUB)
    actions = _actions(app)
    with monkeypatch.context() as patched:
        _then_fail(patched)
        with app.test_request_context(), pytest.raises(RuntimeError, match="after the email"):
            change()
    assert _rows(app) == []
    assert _actions(app) == actions
    assert stored_subscription(app, AVA, AVA_SUB) == before
    with app.test_request_context():
        after = change()
        customer = get_state(app).storage.get_customer(AVA)
        assert customer is not None
        expected = render_message(
            get_state(app), kind, to=customer.email, customer=customer, **context(after)
        )
    [row] = _rows(app)
    assert (row.kind, row.customer_id, row.to) == (kind, AVA, customer.email)
    # Rendered before the change, it says what an email rendered from the
    # store's answer says.
    assert (row.subject, row.text, row.html) == (expected.subject, expected.text, expected.html)
    assert len(_actions(app)) == len(actions) + 1
    with app.app_context():  # sent, so the next change starts with none pending
        store = portal_store(app)
        [claimed] = store.claim_mail(utcnow(), owner="test", lease=timedelta(minutes=1), mail_ids=[row.id])
        assert store.release_mail(claimed.id, owner="test", now=utcnow(), status=MailStatus.SENT)
    return after


def test_pause_resume_cancel_and_keep_write_their_email_with_the_change(
    mail_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = get_state(mail_app)
    with mail_app.app_context():
        customer = state.storage.get_customer(AVA)
    assert customer is not None

    def link(subscription: Subscription) -> str:
        return subscription_link(state, subscription)

    paused = _check_once(
        mail_app,
        monkeypatch,
        "subscription_paused",
        lambda: pausing.pause_subscription(state, customer, AVA_SUB, months=1, now=utcnow()),
        lambda s: {"subscription": s, "link": link(s)},
    )
    assert paused.status is SubscriptionStatus.PAUSED

    resumed = _check_once(
        mail_app,
        monkeypatch,
        "subscription_resumed",
        lambda: pausing.unpause(state, customer, stored_subscription(mail_app, AVA, AVA_SUB), now=utcnow()),
        lambda s: {"subscription": s, "link": link(s), "automatic": False},
    )
    assert resumed.status is SubscriptionStatus.ACTIVE

    def cancel() -> Subscription:
        current = stored_subscription(mail_app, AVA, AVA_SUB)
        result = lifecycle.cancel(state, customer, current, reason=None, now=utcnow())
        assert result.done
        return result.subscription

    cancelled = _check_once(
        mail_app,
        monkeypatch,
        "subscription_cancelled",
        cancel,
        lambda s: {"subscription": s, "at_period_end": True, "link": link(s)},
    )
    assert cancelled.cancel_at_period_end

    def keep() -> Subscription:
        result = lifecycle.undo_cancellation(state, customer, AVA_SUB, now=utcnow())
        assert result.done
        return result.subscription

    kept = _check_once(
        mail_app,
        monkeypatch,
        "cancellation_undone",
        keep,
        lambda s: {"subscription": s, "link": link(s)},
    )
    assert not kept.cancel_at_period_end


def test_a_refused_change_writes_no_email(mail_app: Flask) -> None:
    state = get_state(mail_app)
    with mail_app.test_request_context():
        customer = state.storage.get_customer(AVA)
        assert customer is not None
        result = lifecycle.undo_cancellation(state, customer, AVA_SUB, now=utcnow())  # nothing to undo
        assert not result.done
    assert _rows(mail_app) == []


# -- the composite store ---------------------------------------------------------------------


def _mail(mail_id: str, customer_id: str = "local_a") -> OutboxMail:
    return OutboxMail(
        id=mail_id,
        kind="subscription_cancelled",
        to=f"{customer_id}@example.com",
        subject="s",
        text="t",
        html="h",
        created_at=T0,
        customer_id=customer_id,
    )


def _event(action: str) -> AuditEvent:
    return AuditEvent(customer_id="local_a", action=action, occurred_at=T0)


def _pending(store: SQLAlchemyStorage) -> list[str]:
    return [mail.id for mail in store.list_mail(status=MailStatus.PENDING)]


def test_a_provider_change_writes_its_record_and_email_together(
    composite: CompositeStorage,  # noqa: F811
    seeded: SQLAlchemyStorage,  # noqa: F811
) -> None:
    cancelled = composite.cancel_subscription(
        "local_a",
        "sub_prov_a",
        at_period_end=True,
        now=T0,
        event=_event("subscription.cancelled"),
        mail=[_mail("mail_1")],
    )
    assert cancelled is not None and cancelled.cancel_at_period_end
    assert _pending(seeded) == ["mail_1"]
    assert [e.action for e in seeded.list_events("local_a")] == ["subscription.cancelled"]
    # Refused by the provider (already set to end): no record, no email.
    with pytest.raises(StateConflict):
        composite.cancel_subscription(
            "local_a", "sub_prov_a", at_period_end=True, now=T0, event=_event("again"), mail=[_mail("mail_2")]
        )
    # Not the customer's: no record, no email.
    assert (
        composite.undo_cancellation(
            "local_a", "sub_prov_b", now=T0, event=_event("other"), mail=[_mail("mail_3")]
        )
        is None
    )
    # The email cannot be written (its id is taken): neither is the record.
    with pytest.raises(IntegrityError):
        composite.undo_cancellation(
            "local_a", "sub_prov_a", now=T0, event=_event("subscription.kept"), mail=[_mail("mail_1")]
        )
    assert _pending(seeded) == ["mail_1"]
    assert [e.action for e in seeded.list_events("local_a")] == ["subscription.cancelled"]


def test_the_composite_lock_writes_its_emails_with_its_events(
    composite: CompositeStorage,  # noqa: F811
    seeded: SQLAlchemyStorage,  # noqa: F811
) -> None:
    def charge_then_fail() -> None:
        with composite.lock_subscription("local_a", "sub_prov_a") as lock:
            assert isinstance(lock, MailQueue)
            lock.record_event(_event("charge.succeeded"))
            lock.enqueue_mail(_mail("mail_1"))
            raise RuntimeError("provider went away")

    with pytest.raises(RuntimeError):
        charge_then_fail()
    assert _pending(seeded) == []
    assert seeded.list_events("local_a") == ()

    with composite.lock_subscription("local_a", "sub_prov_a") as lock:
        assert isinstance(lock, MailQueue)
        lock.record_event(_event("charge.succeeded"))
        lock.enqueue_mail(_mail("mail_1"))
        assert _pending(seeded) == []  # not before the block ends
    assert _pending(seeded) == ["mail_1"]
    assert [e.action for e in seeded.list_events("local_a")] == ["charge.succeeded"]

    # An email the local lock refuses (another customer's) undoes the
    # block's record too: they are one transaction.
    def mail_someone_else() -> None:
        with composite.lock_subscription("local_a", "sub_prov_a") as lock:
            assert isinstance(lock, MailQueue)
            lock.record_event(_event("charge.retried"))
            lock.enqueue_mail(_mail("mail_2", customer_id="local_b"))

    with pytest.raises(ValueError, match="its customer"):
        mail_someone_else()
    assert _pending(seeded) == ["mail_1"]
    assert [e.action for e in seeded.list_events("local_a")] == ["charge.succeeded"]


# -- renew-due -------------------------------------------------------------------------------


def test_a_scheduled_plan_change_writes_its_email_in_the_renewals_lock(
    mail_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time_machine

    from flask_customer_portal.billing import renewal

    state = get_state(mail_app)
    with mail_app.app_context():
        scheduled = state.storage.schedule_plan_change(
            AVA, AVA_SUB, plan_id="plan_sync_basic_monthly", quantity=None, now=utcnow()
        )
    assert scheduled is not None and scheduled.scheduled_plan_id == "plan_sync_basic_monthly"
    real = renewal._email_scheduled_change

    def email_then_fail(*args: Any) -> None:
        real(*args)
        raise RuntimeError("after the email")

    with time_machine.travel(scheduled.current_period_end + timedelta(hours=1)):
        with monkeypatch.context() as patched, mail_app.test_request_context():
            patched.setattr(renewal, "_email_scheduled_change", email_then_fail)
            with pytest.raises(RuntimeError, match="after the email"):
                renewal.renew_subscription(state, AVA, AVA_SUB)
        assert _rows(mail_app) == []
        assert stored_subscription(mail_app, AVA, AVA_SUB) == scheduled  # the change was rolled back
        with mail_app.test_request_context():
            result = renewal.renew_subscription(state, AVA, AVA_SUB)
    assert result.subscription.plan_id == "plan_sync_basic_monthly"
    [row] = [row for row in _rows(mail_app) if row.kind != "receipt"]
    assert (row.kind, row.customer_id) == ("plan_changed", AVA)
    assert "Basic" in row.subject


def test_a_settled_plan_change_writes_its_email_in_the_settlements_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal_fixtures import plan_confirm_form, plan_preview, sign_in

    from flask_customer_portal.billing import settlement
    from flask_customer_portal.payments import ChargeResult, ChargeUnknown, TestPaymentProvider

    class LosesTheFirstAnswer(TestPaymentProvider):
        lost = 1

        def charge(self, **kwargs: Any) -> ChargeResult:
            result = super().charge(**kwargs)
            if self.lost:
                self.lost -= 1
                return ChargeUnknown(kwargs["idempotency_key"])
            return result

    app = make_portal_app(
        f"sqlite:///{tmp_path / 'settle.db'}",
        mailer=MemoryMailer(),
        payments=LosesTheFirstAnswer(),
        CUSTOMER_PORTAL_MAIL_IN_PROCESS=False,
    )
    try:
        client = app.test_client()
        sign_in(app, client)
        preview = plan_preview(client, "plan_sync_business_monthly")
        assert client.post(preview.request.path, data=plan_confirm_form(preview.text)).status_code == 202
        assert _rows(app) == []
        state = get_state(app)
        real = settlement._email_change

        def email_then_fail(*args: Any) -> None:
            real(*args)
            raise RuntimeError("after the email")

        with app.test_request_context():
            customer = state.storage.get_customer(AVA)
            assert customer is not None
            before = stored_subscription(app, AVA, AVA_SUB)
            with monkeypatch.context() as patched:
                patched.setattr(settlement, "_email_change", email_then_fail)
                with pytest.raises(RuntimeError, match="after the email"):
                    settlement.settle_plan_changes(state, customer, before)
            assert _rows(app) == []
            assert stored_subscription(app, AVA, AVA_SUB) == before  # not switched: rolled back
            [settled] = settlement.settle_plan_changes(state, customer, before)
        assert settled.outcome is settlement.SettlementOutcome.CHANGED and settled.emailed
        row, receipt = sorted(_rows(app), key=lambda r: r.kind != "plan_changed")
        assert (row.kind, row.customer_id) == ("plan_changed", AVA)
        assert "Business" in row.subject
        assert (receipt.kind, receipt.customer_id) == ("receipt", AVA)
    finally:
        close_app(app)
