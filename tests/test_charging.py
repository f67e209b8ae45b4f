"""Money moves once: reactivation of ``on_hold`` subscriptions and renewals.

The provider's recorded calls and the database are the witnesses: one
charge per invoice, however many times, from however many threads, the
same reactivation is submitted; no half-written state when the provider
raises; an unknown outcome reconciled before anything new is tried.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from flask import Flask
from portal_fixtures import make_portal_app, portal_store

from flask_customer_portal import signals
from flask_customer_portal.billing.outcomes import PaymentOutcome
from flask_customer_portal.billing.renewal import (
    ProviderError,
    RenewalOutcome,
    idempotency_key,
    reactivate_subscription,
    renew_due,
    renew_subscription,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.errors import SubscriptionNotFound
from flask_customer_portal.money import Money
from flask_customer_portal.payments import (
    ChargeResult,
    ChargeUnknown,
    DeclineReason,
    TestPaymentProvider,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    ChargeAttemptStatus,
    InvoiceStatus,
    PaymentMethod,
    StateConflict,
    SubscriptionStatus,
)
from flask_customer_portal.testing import MemoryMailer

BUDI = "cus_demo_budi"
BUDI_SUB = "sub_demo_budi_sync"
BUDI_OPEN_INVOICE = "inv_demo_budi_sync_03"
AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"


def _good_card(
    store: SQLAlchemyStorage, customer_id: str = BUDI, method_id: str = "pm_good"
) -> PaymentMethod:
    return store.add_payment_method(
        PaymentMethod(
            id=method_id,
            customer_id=customer_id,
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=datetime.now(timezone.utc).year + 3,
            provider_token=TestPaymentProvider.token_for("4242424242424242"),
        )
    )


def _declining_card(
    store: SQLAlchemyStorage, reason: DeclineReason, method_id: str = "pm_bad"
) -> PaymentMethod:
    return store.add_payment_method(
        PaymentMethod(
            id=method_id,
            customer_id=BUDI,
            brand="visa",
            last4="9995",
            exp_month=12,
            exp_year=datetime.now(timezone.utc).year + 3,
            provider_token=TestPaymentProvider.token_for("4000000000009995", charges_decline=reason),
        )
    )


def _invoice_ids(store: SQLAlchemyStorage, customer_id: str) -> list[str]:
    return [i.id for i in store.list_invoices(customer_id, page=1, per_page=1000).items]


@pytest.fixture
def recorded(app: Flask) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every money signal the app sends, in order."""
    seen: list[tuple[str, dict[str, Any]]] = []
    names = [
        "invoice_paid",
        "reactivation_succeeded",
        "reactivation_failed",
        "payment_method_changed",
        "subscription_renewed",
        "subscription_put_on_hold",
    ]
    receivers = []
    for name in names:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            seen.append((_name, kwargs))

        getattr(signals, name).connect(receiver, app)
        receivers.append((name, receiver))
    yield seen
    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver, app)


# -- reactivation ------------------------------------------------------------------------


def test_reactivation_pays_the_open_renewal_invoice_then_activates(
    app: Flask, payments: TestPaymentProvider, mailer: MemoryMailer, recorded: list[Any]
) -> None:
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        budi = store.get_customer(BUDI)
        assert budi is not None
        card = _good_card(store)
        invoices_before = _invoice_ids(store, BUDI)
        open_invoice = store.get_invoice(BUDI, BUDI_OPEN_INVOICE)
        assert open_invoice is not None and open_invoice.status is InvoiceStatus.OPEN
        payments.calls.clear()
        now = datetime.now(timezone.utc).replace(microsecond=0)

        result = reactivate_subscription(state, budi, BUDI_SUB, card, now=now)

        assert result.outcome is PaymentOutcome.PAID
        # (1)+(2): the still-open renewal invoice is the arrears invoice: no second one.
        assert _invoice_ids(store, BUDI) == invoices_before
        # (3): paid once, with the new card, under the invoice-derived key.
        assert payments.calls == ["charge"]
        assert payments.charges == [(idempotency_key(BUDI_OPEN_INVOICE, 1), open_invoice.total_money)]
        paid = store.get_invoice(BUDI, BUDI_OPEN_INVOICE)
        assert paid is not None
        assert paid.status is InvoiceStatus.PAID
        assert paid.paid_at == now
        assert paid.payment_method is not None and paid.payment_method.id == card.id
        assert paid.payment_reference and paid.payment_reference.startswith("ch_test_")
        # (4): active, the next period counted from the payment, the new card on it.
        subscription = store.get_subscription(BUDI, BUDI_SUB)
        assert subscription is not None
        assert subscription.status is SubscriptionStatus.ACTIVE
        assert subscription.current_period_start == now
        assert subscription.current_period_end.date() > now.date()
        assert subscription.hold_reason is None
        assert subscription.payment_method is not None and subscription.payment_method.id == card.id

        actions = [e.action for e in store.list_events(BUDI)]
        assert actions[-3:] == ["charge.succeeded", "invoice.paid", "subscription.reactivated"]
        charge_event = next(e for e in store.list_events(BUDI) if e.action == "charge.succeeded")
        assert charge_event.provider_reference == paid.payment_reference
        assert charge_event.details["idempotency_key"] == idempotency_key(BUDI_OPEN_INVOICE, 1)

    assert [name for name, _ in recorded] == [
        "invoice_paid",
        "payment_method_changed",
        "reactivation_succeeded",
    ]
    # The confirmation and the receipt of the invoice it paid (with its PDF).
    assert [m.to for m in mailer.outbox] == ["budi@example.com", "budi@example.com"]
    [message] = [m for m in mailer.outbox if not m.attachments]
    assert "aktif kembali" in message.subject  # Budi reads Indonesian
    assert "Rp" in message.text
    assert paid.number in message.text


def test_a_declined_card_keeps_the_subscription_on_hold_and_the_invoice_open(
    app: Flask, payments: TestPaymentProvider, mailer: MemoryMailer, recorded: list[Any]
) -> None:
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        budi = store.get_customer(BUDI)
        assert budi is not None
        poor = _declining_card(store, DeclineReason.INSUFFICIENT_FUNDS)

        result = reactivate_subscription(state, budi, BUDI_SUB, poor)

        assert result.outcome is PaymentOutcome.DECLINED
        assert result.decline_reason == "insufficient_funds"
        subscription = store.get_subscription(BUDI, BUDI_SUB)
        assert subscription is not None
        assert subscription.status is SubscriptionStatus.ON_HOLD
        assert subscription.hold_reason == "insufficient_funds"
        # The old method stays: only a successful payment changes it.
        assert subscription.payment_method is not None
        assert subscription.payment_method.id == "pm_demo_budi_card"
        invoice = store.get_invoice(BUDI, BUDI_OPEN_INVOICE)
        assert invoice is not None and invoice.status is InvoiceStatus.OPEN
        assert payments.charges == []

        # The retry, with another card, pays the same invoice as attempt 2.
        good = _good_card(store)
        retry = reactivate_subscription(state, budi, BUDI_SUB, good)

        assert retry.outcome is PaymentOutcome.PAID
        assert retry.invoice is not None and retry.invoice.id == BUDI_OPEN_INVOICE
        assert payments.charges == [(idempotency_key(BUDI_OPEN_INVOICE, 2), invoice.total_money)]
        assert [i.status for i in store.list_invoices(BUDI, page=1, per_page=10).items].count(
            InvoiceStatus.OPEN
        ) == 0

    assert [name for name, _ in recorded] == [
        "reactivation_failed",
        "invoice_paid",
        "payment_method_changed",
        "reactivation_succeeded",
    ]
    assert recorded[0][1]["reason"] == "insufficient_funds"
    assert len(mailer.outbox) == 2  # only the success is mailed: its confirmation and receipt


def test_budis_saved_card_declines_generically(app: Flask, payments: TestPaymentProvider) -> None:
    with app.app_context():
        store = portal_store(app)
        budi = store.get_customer(BUDI)
        card = store.get_payment_method(BUDI, "pm_demo_budi_card")
        assert budi is not None and card is not None
        result = reactivate_subscription(get_state(app), budi, BUDI_SUB, card)
    assert result.outcome is PaymentOutcome.DECLINED
    assert result.decline_reason == str(DeclineReason.GENERIC)
    assert payments.charges == []


def test_reactivating_an_active_subscription_charges_nothing(
    app: Flask, payments: TestPaymentProvider
) -> None:
    with app.app_context():
        store = portal_store(app)
        ava = store.get_customer(AVA)
        assert ava is not None
        card = store.list_payment_methods(AVA)[0]
        result = reactivate_subscription(get_state(app), ava, AVA_SUB, card)
    assert result.outcome is PaymentOutcome.ALREADY_PAID
    assert result.active
    assert payments.calls == []


def test_a_cancelled_subscription_cannot_be_reactivated(app: Flask, payments: TestPaymentProvider) -> None:
    with app.app_context():
        store = portal_store(app)
        ava = store.get_customer(AVA)
        assert ava is not None
        card = store.list_payment_methods(AVA)[0]
        with pytest.raises(StateConflict):
            reactivate_subscription(get_state(app), ava, "sub_demo_ava_desktop", card)
    assert payments.calls == []


def test_another_customers_subscription_or_card_is_not_found(
    app: Flask, payments: TestPaymentProvider
) -> None:
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        ava = store.get_customer(AVA)
        budi = store.get_customer(BUDI)
        assert ava is not None and budi is not None
        avas_card = store.list_payment_methods(AVA)[0]
        with pytest.raises(SubscriptionNotFound):
            reactivate_subscription(state, ava, BUDI_SUB, avas_card)
        with pytest.raises(SubscriptionNotFound):
            reactivate_subscription(state, budi, BUDI_SUB, avas_card)
        subscription = store.get_subscription(BUDI, BUDI_SUB)
        assert subscription is not None and subscription.status is SubscriptionStatus.ON_HOLD
    assert payments.calls == []


def test_without_an_open_invoice_an_arrears_invoice_is_issued_first(
    app: Flask, payments: TestPaymentProvider
) -> None:
    """Seed order when no renewal invoice is open: a charge for the
    arrears, an invoice for it, paid, then active."""
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        ava = store.get_customer(AVA)
        assert ava is not None
        card = store.list_payment_methods(AVA)[0]
        # Put Ava's subscription on hold without an open invoice.
        with store.lock_subscription(AVA, AVA_SUB) as lock:
            assert lock is not None
            lock.update_subscription(status=SubscriptionStatus.ON_HOLD, hold_reason="generic_decline")
        before = set(_invoice_ids(store, AVA))

        result = reactivate_subscription(state, ava, AVA_SUB, card)

        assert result.outcome is PaymentOutcome.PAID
        new = set(_invoice_ids(store, AVA)) - before
        assert len(new) == 1
        invoice = store.get_invoice(AVA, new.pop())
        assert invoice is not None
        assert invoice.status is InvoiceStatus.PAID
        assert invoice.number.startswith("INV-")
        assert invoice.total_money == Money(1900, "USD")
        assert invoice.subscription_id == AVA_SUB
        assert payments.charges == [(idempotency_key(invoice.id, 1), Money(1900, "USD"))]
        actions = [e.action for e in store.list_events(AVA)]
        assert actions[-4:] == [
            "invoice.issued",
            "charge.succeeded",
            "invoice.paid",
            "subscription.reactivated",
        ]


class TimesOutAfterCharging(TestPaymentProvider):
    """Charges, then loses the answer (a network timeout) the first time."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts = 1

    def charge(self, **kwargs: Any) -> ChargeResult:
        result = super().charge(**kwargs)
        if self.timeouts:
            self.timeouts -= 1
            return ChargeUnknown(kwargs["idempotency_key"])
        return result


class TimesOutBeforeCharging(TestPaymentProvider):
    """The request never reaches the provider the first time."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts = 1

    def charge(self, **kwargs: Any) -> ChargeResult:
        if self.timeouts:
            self.timeouts -= 1
            self.calls.append("charge")
            return ChargeUnknown(kwargs["idempotency_key"])
        return super().charge(**kwargs)


class RaisesOnCharge(TestPaymentProvider):
    def charge(self, **kwargs: Any) -> ChargeResult:
        self.calls.append("charge")
        raise ConnectionError("provider unreachable")


def _app_with(tmp_path: Path, provider: TestPaymentProvider) -> Flask:
    return make_portal_app(f"sqlite:///{tmp_path / 'money.db'}", mailer=MemoryMailer(), payments=provider)


def test_a_charge_whose_answer_was_lost_is_reconciled_not_repeated(tmp_path: Path) -> None:
    provider = TimesOutAfterCharging()
    app = _app_with(tmp_path, provider)
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        budi = store.get_customer(BUDI)
        assert budi is not None
        card = _good_card(store)

        first = reactivate_subscription(state, budi, BUDI_SUB, card)
        assert first.outcome is PaymentOutcome.PENDING
        subscription = store.get_subscription(BUDI, BUDI_SUB)
        assert subscription is not None and subscription.status is SubscriptionStatus.ON_HOLD
        with store.lock_subscription(BUDI, BUDI_SUB) as lock:
            assert lock is not None
            attempts = lock.attempts(BUDI_OPEN_INVOICE)
        assert [a.status for a in attempts] == [ChargeAttemptStatus.UNKNOWN]

        # Even with another card, the unknown attempt is settled first.
        other = _good_card(store, method_id="pm_other")
        second = reactivate_subscription(state, budi, BUDI_SUB, other)

        assert second.outcome is PaymentOutcome.PAID
        assert provider.calls == ["charge", "find_charge"]
        assert len(provider.charges) == 1  # money moved once
        invoice = store.get_invoice(BUDI, BUDI_OPEN_INVOICE)
        assert invoice is not None and invoice.status is InvoiceStatus.PAID
        assert invoice.payment_method is not None and invoice.payment_method.id == card.id
        assert "charge.reconciled" in [e.action for e in store.list_events(BUDI)]
    get_state(app).shutdown()


def test_a_charge_the_provider_never_saw_is_tried_again_as_the_next_attempt(tmp_path: Path) -> None:
    provider = TimesOutBeforeCharging()
    app = _app_with(tmp_path, provider)
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        budi = store.get_customer(BUDI)
        assert budi is not None
        card = _good_card(store)
        assert reactivate_subscription(state, budi, BUDI_SUB, card).outcome is PaymentOutcome.PENDING
        result = reactivate_subscription(state, budi, BUDI_SUB, card)
        assert result.outcome is PaymentOutcome.PAID
        assert provider.calls == ["charge", "find_charge", "charge"]
        assert [key for key, _ in provider.charges] == [idempotency_key(BUDI_OPEN_INVOICE, 2)]
        with store.lock_subscription(BUDI, BUDI_SUB) as lock:
            assert lock is not None
            statuses = [a.status for a in lock.attempts(BUDI_OPEN_INVOICE)]
        assert statuses == [ChargeAttemptStatus.FAILED, ChargeAttemptStatus.SUCCEEDED]
    get_state(app).shutdown()


def test_a_provider_that_raises_leaves_nothing_half_written(tmp_path: Path) -> None:
    provider = RaisesOnCharge()
    app = _app_with(tmp_path, provider)
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        budi = store.get_customer(BUDI)
        assert budi is not None
        card = _good_card(store)
        events_before = len(store.list_events(BUDI))
        invoices_before = _invoice_ids(store, BUDI)

        with pytest.raises(ProviderError) as raised:
            reactivate_subscription(state, budi, BUDI_SUB, card)
        assert isinstance(raised.value.__cause__, ConnectionError)

        subscription = store.get_subscription(BUDI, BUDI_SUB)
        assert subscription is not None and subscription.status is SubscriptionStatus.ON_HOLD
        invoice = store.get_invoice(BUDI, BUDI_OPEN_INVOICE)
        assert invoice is not None and invoice.status is InvoiceStatus.OPEN
        assert _invoice_ids(store, BUDI) == invoices_before
        assert len(store.list_events(BUDI)) == events_before
        with store.lock_subscription(BUDI, BUDI_SUB) as lock:
            assert lock is not None
            assert lock.attempts(BUDI_OPEN_INVOICE) == ()
        # The next request works, and reuses attempt 1's key.
        get_state(app).payments = TestPaymentProvider()
        result = reactivate_subscription(get_state(app), budi, BUDI_SUB, card)
        assert result.outcome is PaymentOutcome.PAID
        assert get_state(app).payments.charges == [  # type: ignore[attr-defined]
            (idempotency_key(BUDI_OPEN_INVOICE, 1), invoice.total_money)
        ]
    get_state(app).shutdown()


# -- exactly once under concurrency ------------------------------------------------------------


def _concurrent_reactivations(app: Flask, workers: int) -> list[PaymentOutcome]:
    with app.app_context():
        store = portal_store(app)
        _good_card(store)
    barrier = threading.Barrier(workers, timeout=30)
    outcomes: list[PaymentOutcome] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def submit() -> None:
        try:
            with app.app_context():
                state = get_state(app)
                budi = state.storage.get_customer(BUDI)
                card = state.storage.get_payment_method(BUDI, "pm_good")
                assert budi is not None and card is not None
                # Back to the pool while waiting: the submits share a few
                # connections, as the threads of a worker do.
                portal_store(app).close_db_session()
                barrier.wait()
                outcome = reactivate_subscription(state, budi, BUDI_SUB, card).outcome
        except BaseException as exc:  # collected and re-raised in the test thread
            barrier.abort()
            with guard:
                errors.append(exc)
            return
        with guard:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        # The first real failure, not the broken barrier it caused in the others.
        errors.sort(key=lambda exc: isinstance(exc, threading.BrokenBarrierError))
        raise errors[0]
    return outcomes


def _assert_paid_once(app: Flask, payments: TestPaymentProvider) -> None:
    assert len(payments.charges) == 1
    with app.app_context():
        store = portal_store(app)
        statuses = [i.status for i in store.list_invoices(BUDI, page=1, per_page=100).items]
        assert statuses.count(InvoiceStatus.PAID) == 3  # two old ones and the arrears
        assert statuses.count(InvoiceStatus.OPEN) == 0
        assert [e.action for e in store.list_events(BUDI)].count("invoice.paid") == 1


@pytest.fixture
def pg_app(postgres_url: str, payments: TestPaymentProvider) -> Iterator[Flask]:
    app = make_portal_app(
        postgres_url,
        mailer=MemoryMailer(),
        payments=payments,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10, "max_overflow": 0, "pool_timeout": 120},
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        portal_store(app).drop_all()
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.mark.postgres
def test_fifty_simultaneous_reactivations_charge_once_on_postgresql(
    pg_app: Flask, payments: TestPaymentProvider
) -> None:
    outcomes = _concurrent_reactivations(pg_app, 50)
    assert len(outcomes) == 50
    assert outcomes.count(PaymentOutcome.PAID) == 1
    assert outcomes.count(PaymentOutcome.ALREADY_PAID) == 49
    _assert_paid_once(pg_app, payments)


def test_simultaneous_reactivations_charge_once_on_sqlite(app: Flask, payments: TestPaymentProvider) -> None:
    outcomes = _concurrent_reactivations(app, 8)
    assert sorted(outcomes) == sorted([PaymentOutcome.PAID] + [PaymentOutcome.ALREADY_PAID] * 7)
    _assert_paid_once(app, payments)


# -- renewals ----------------------------------------------------------------------------------


def _period_end(app: Flask, customer_id: str, subscription_id: str) -> datetime:
    with app.app_context():
        subscription = portal_store(app).get_subscription(customer_id, subscription_id)
        assert subscription is not None
        return subscription.current_period_end


def test_renew_due_renews_active_subscriptions_and_skips_on_hold(
    app: Flask, payments: TestPaymentProvider, recorded: list[Any]
) -> None:
    end = _period_end(app, AVA, AVA_SUB)
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        assert renew_due(state, now=end - timedelta(seconds=1)).results == []

        report = renew_due(state, now=end + timedelta(minutes=5))

        assert [(r.subscription.id, r.outcome) for r in report.results] == [(AVA_SUB, RenewalOutcome.RENEWED)]
        renewed = store.get_subscription(AVA, AVA_SUB)
        assert renewed is not None
        assert renewed.current_period_start == end
        assert renewed.current_period_end > end
        invoice = report.results[0].invoice
        assert invoice is not None and invoice.status is InvoiceStatus.PAID
        assert payments.charges == [(idempotency_key(invoice.id, 1), Money(1900, "USD"))]
        # Budi's on_hold subscription was due long ago and was not touched.
        budi = store.get_subscription(BUDI, BUDI_SUB)
        assert budi is not None and budi.status is SubscriptionStatus.ON_HOLD
        # A second run in the same minute does nothing.
        assert renew_due(state, now=end + timedelta(minutes=5)).results == []
    assert payments.charges == [(idempotency_key(invoice.id, 1), Money(1900, "USD"))]
    assert [name for name, _ in recorded] == ["invoice_paid", "subscription_renewed"]


def test_a_declined_renewal_puts_the_subscription_on_hold_and_emails_a_link(
    app: Flask, payments: TestPaymentProvider, mailer: MemoryMailer
) -> None:
    end = _period_end(app, AVA, AVA_SUB)
    with app.app_context():
        store = portal_store(app)
        poor = store.add_payment_method(
            PaymentMethod(
                id="pm_ava_poor",
                customer_id=AVA,
                brand="visa",
                last4="9995",
                exp_month=1,
                exp_year=end.year + 2,
                provider_token=TestPaymentProvider.token_for(
                    "4000000000009995", charges_decline=DeclineReason.INSUFFICIENT_FUNDS
                ),
            )
        )
        store.set_subscription_payment_method(AVA, AVA_SUB, poor.id)

        result = renew_subscription(get_state(app), AVA, AVA_SUB, now=end + timedelta(minutes=1))

        assert result.outcome is RenewalOutcome.ON_HOLD
        subscription = store.get_subscription(AVA, AVA_SUB)
        assert subscription is not None
        assert subscription.status is SubscriptionStatus.ON_HOLD
        assert subscription.hold_reason == "insufficient_funds"
        assert subscription.current_period_end == end  # not advanced
        assert result.invoice is not None
        invoice = store.get_invoice(AVA, result.invoice.id)
        assert invoice is not None and invoice.status is InvoiceStatus.OPEN
        # on_hold never renews by itself, however late it gets.
        later = renew_due(get_state(app), now=end + timedelta(days=90)).results
        assert [r for r in later if r.subscription.customer_id != "cus_demo_dewi"] == []
        dewis = {i.id for i in store.list_invoices("cus_demo_dewi", page=1, per_page=100).items}
    assert [c for c in payments.charges if c[0].split(":")[1] not in dewis] == []
    # (Dewi's renewals in the demo data send her receipts meanwhile.)
    to_ava = [m for m in mailer.outbox if m.to == "ava@example.com"]
    assert len(to_ava) == 1
    message = to_ava[0]
    assert "on hold" in message.subject
    assert "insufficient funds" in message.text
    assert "http://shop.test/portal/session/" in message.text


def test_a_cancellation_at_period_end_is_finished_by_renew_due(
    app: Flask, payments: TestPaymentProvider
) -> None:
    end = _period_end(app, AVA, AVA_SUB)
    with app.app_context():
        store = portal_store(app)
        store.cancel_subscription(AVA, AVA_SUB, at_period_end=True, now=end - timedelta(days=1))
        report = renew_due(get_state(app), now=end + timedelta(seconds=1))
        assert [r.outcome for r in report.results] == [RenewalOutcome.ENDED]
        subscription = store.get_subscription(AVA, AVA_SUB)
        assert subscription is not None
        assert subscription.status is SubscriptionStatus.CANCELLED
        assert subscription.ended_at == end
    assert payments.calls == []


def test_a_renewal_rerun_after_a_lost_answer_charges_once(tmp_path: Path) -> None:
    provider = TimesOutAfterCharging()
    app = _app_with(tmp_path, provider)
    end = _period_end(app, AVA, AVA_SUB)
    with app.app_context():
        state = get_state(app)
        first = renew_due(state, now=end + timedelta(minutes=1))
        assert [r.outcome for r in first.results] == [RenewalOutcome.RETRY]
        second = renew_due(state, now=end + timedelta(minutes=16))
        assert [r.outcome for r in second.results] == [RenewalOutcome.RENEWED]
        assert len(provider.charges) == 1
        invoices = portal_store(app).list_invoices(AVA, page=1, per_page=100).items
        assert sum(1 for i in invoices if i.subscription_id == AVA_SUB and i.issued_at > end) == 1
    get_state(app).shutdown()


def test_renew_due_command(app: Flask, payments: TestPaymentProvider) -> None:
    end = _period_end(app, AVA, AVA_SUB)
    with time_machine.travel(end + timedelta(hours=1), tick=False):
        result = app.test_cli_runner().invoke(args=["portal", "renew-due"])
    assert result.exit_code == 0, result.output
    assert "renewed: 1" in result.output
    assert "on_hold: 0" in result.output
    assert len(payments.charges) == 1


def test_renew_due_command_reports_errors_and_fails(tmp_path: Path) -> None:
    app = _app_with(tmp_path, RaisesOnCharge())
    end = _period_end(app, AVA, AVA_SUB)
    with time_machine.travel(end + timedelta(hours=1), tick=False):
        result = app.test_cli_runner().invoke(args=["portal", "renew-due"])
    assert result.exit_code == 1
    assert f"error: {AVA_SUB} (ConnectionError)" in result.output
    with app.app_context():
        subscription = portal_store(app).get_subscription(AVA, AVA_SUB)
        assert subscription is not None and subscription.status is SubscriptionStatus.ACTIVE
    get_state(app).shutdown()


def test_money_emails_go_out_over_real_smtp(tmp_path: Path, smtp_server: Any) -> None:
    payments = TestPaymentProvider()
    app = make_portal_app(f"sqlite:///{tmp_path / 'smtp.db'}", payments=payments, **smtp_server.config())
    end = _period_end(app, AVA, AVA_SUB)
    with app.app_context():
        store = portal_store(app)
        state = get_state(app)
        budi = store.get_customer(BUDI)
        assert budi is not None
        reactivate_subscription(state, budi, BUDI_SUB, _good_card(store))
        store.set_subscription_payment_method(AVA, AVA_SUB, _declining_card_for_ava(store).id)
        renew_subscription(state, AVA, AVA_SUB, now=end + timedelta(minutes=1))
    get_state(app).shutdown()
    # Budi's receipt (its PDF attached) is left out: tests/test_receipts.py reads it.
    by_recipient = {m["To"]: m for m in smtp_server.messages if not list(m.iter_attachments())}
    assert set(by_recipient) == {"budi@example.com", "ava@example.com"}
    budi_mail = by_recipient["budi@example.com"]
    assert "aktif kembali" in budi_mail["Subject"]
    assert "Rp" in budi_mail.get_body(preferencelist=("plain",)).get_content()
    ava_mail = by_recipient["ava@example.com"]
    assert "on hold" in ava_mail["Subject"]
    body = ava_mail.get_body(preferencelist=("plain",)).get_content()
    assert "http://shop.test/portal/session/" in body
    assert "insufficient funds" in body


def _declining_card_for_ava(store: SQLAlchemyStorage) -> PaymentMethod:
    return store.add_payment_method(
        PaymentMethod(
            id="pm_ava_declines",
            customer_id=AVA,
            brand="visa",
            last4="9995",
            exp_month=12,
            exp_year=datetime.now(timezone.utc).year + 3,
            provider_token=TestPaymentProvider.token_for(
                "4000000000009995", charges_decline=DeclineReason.INSUFFICIENT_FUNDS
            ),
        )
    )
