"""Where money moves: reactivating an ``on_hold`` subscription and renewing
subscriptions that are due, each invoice paid exactly once through
:mod:`flask_customer_portal.billing.collect`.

Every charge happens while the subscription is locked
(:meth:`~flask_customer_portal.storage.ChargeStore.lock_subscription`) and
carries an idempotency key derived from what is paid —
``invoice:<invoice id>:attempt:<n>`` — never from the request. Attempt
``n + 1`` is only made once attempt ``n``'s outcome is known: an attempt
whose outcome is unknown (the provider timed out) is reconciled with
:meth:`~flask_customer_portal.payments.PaymentProvider.find_charge` first.
So a double click, a browser retry, two tabs or two workers charge once,
and a crash between the charge and the commit is harmless: the work is
rolled back, the next try reuses the same key and the provider answers with
the first outcome instead of charging again.

The order of a reactivation is the one customers are promised: (1) a charge
for the arrears, (2) an invoice for it — the renewal invoice that is still
open, or a new one — (3) paid with the new method, (4) the subscription
``active`` again with its next period counted from the day it was paid.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime

from flask import current_app

from .. import signals
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..money import Money
from ..payments import (
    ChargeDeclined,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeResult,
    ChargeSucceeded,
    ChargeUnknown,
)
from ..state import PortalState
from ..storage import (
    ArrearsAttempt,
    AuditEvent,
    ChargeAttemptStatus,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    NumbersAtCommit,
    PaymentMethod,
    ProviderSubscriptionLock,
    StateConflict,
    Subscription,
    SubscriptionLock,
    SubscriptionStatus,
)
from . import arrears
from .arrears import SubscriptionBiller
from .claims import LockTaker, each_due
from .collect import (
    Collection,
    ProviderError,
    _event,
    _paid_from_credit,
    announce_mismatch,
    idempotency_key,
    pay_invoice,
)
from .notify import MailBatch, send_email, send_email_with_link, subscription_link
from .outcomes import PaymentOutcome
from .pausing import resume_due
from .periods import add_interval
from .proration import apply_credit, apply_scheduled_change, discount_amount
from .receipts import send_receipt
from .settlement import (
    SettledPlanChange,
    SettlementReport,
    announce,
    is_plan_change_invoice,
    settle_all_plan_changes,
    settle_locked,
)
from .trials import renews_when_due, status_after_payment

__all__ = [
    "AmountDue",
    "Collection",
    "ProviderError",
    "ReactivationResult",
    "RenewalOutcome",
    "RenewalResult",
    "SubscriptionBiller",
    "amount_due",
    "amount_due_now",
    "arrears_in_flight",
    "idempotency_key",
    "reactivate_subscription",
    "renew_due",
    "renew_subscription",
]

logger = logging.getLogger("flask_customer_portal")

#: ``hold_reason`` of a subscription whose renewal had no method to charge.
NO_PAYMENT_METHOD = "no_payment_method"


def _derived_invoice_id(kind: str, subscription: Subscription) -> str:
    """The same id for the same period's invoice on every try, so that a
    retry after a crash reuses the idempotency key instead of making a new
    one (and charging again)."""
    seed = f"{kind}|{subscription.id}|{subscription.current_period_end.isoformat()}"
    return "in_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


# -- reactivation -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReactivationResult:
    outcome: PaymentOutcome
    subscription: Subscription
    invoice: Invoice | None = None
    decline_reason: str | None = None
    redirect_url: str | None = None

    @property
    def active(self) -> bool:
        return self.outcome in (PaymentOutcome.PAID, PaymentOutcome.ALREADY_PAID)


_REACTIVATION_OF = {
    PaymentOutcome.DECLINED: PaymentOutcome.DECLINED,
    PaymentOutcome.REQUIRES_ACTION: PaymentOutcome.REQUIRES_ACTION,
    PaymentOutcome.FAILED: PaymentOutcome.FAILED,
    PaymentOutcome.PENDING: PaymentOutcome.PENDING,
    PaymentOutcome.AMOUNT_MISMATCH: PaymentOutcome.AMOUNT_MISMATCH,
}


def _period_invoice(kind: str, subscription: Subscription, now: datetime, start: datetime) -> Invoice:
    """An open invoice for one period of ``subscription`` from ``start``, at
    its price, with the id derived from ``kind`` and the subscription's
    current period (so a retry finds the same invoice)."""
    end = add_interval(start, subscription.interval, subscription.interval_count)
    description = f"{subscription.product_name} — {subscription.plan_name}"
    price = subscription.price.amount
    return Invoice(
        id=_derived_invoice_id(kind, subscription),
        number="",
        customer_id=subscription.customer_id,
        status=InvoiceStatus.OPEN,
        currency=subscription.price.currency,
        subtotal=price,
        tax=0,
        total=price,
        issued_at=now,
        description=description,
        subscription_id=subscription.id,
        lines=(
            InvoiceLine(
                f"{description} ({start.date().isoformat()} to {end.date().isoformat()})", 1, price, price
            ),
        ),
    )


def _with_retention_discount(invoice: Invoice, subscription: Subscription) -> Invoice:
    """``invoice`` with the subscription's retention discount as a negative
    line, while it has renewals to go (see
    :class:`~flask_customer_portal.billing.retention.DiscountOffer`)."""
    if subscription.discount_renewals <= 0 or subscription.discount_percent <= 0:
        return invoice
    off = discount_amount(invoice.subtotal, subscription.discount_percent)
    if off <= 0:
        return invoice
    line = InvoiceLine(f"Discount ({subscription.discount_percent}% off)", 1, -off, -off)
    return replace(
        invoice,
        subtotal=invoice.subtotal - off,
        total=invoice.total - off,
        lines=(*invoice.lines, line),
    )


@dataclass(frozen=True, slots=True)
class AmountDue:
    """What paying an ``on_hold`` subscription's arrears charges: its open
    invoices, oldest first, or — when it has none — the arrears invoice a
    reactivation issues, with the retention discount and account credit
    taken off as on every renewal invoice. Made by :func:`amount_due`, the
    one place that works it out for the payment page and for the charge."""

    invoices: tuple[Invoice, ...]
    new_invoice: Invoice | None = None
    """The invoice that would be issued (``number`` still empty)."""
    credit_left: int = 0
    """The subscription's account credit once ``new_invoice`` is issued."""

    @property
    def payable(self) -> tuple[Invoice, ...]:
        """Every invoice the charge pays, in order."""
        return self.invoices or ((self.new_invoice,) if self.new_invoice is not None else ())

    @property
    def total(self) -> Money | None:
        """The sum of :attr:`payable`; ``None`` if they are in several
        currencies (each is charged on its own)."""
        payable = self.payable
        if not payable or len({i.currency for i in payable}) > 1:
            return None
        total = Money(0, payable[0].currency)
        for invoice in payable:
            total += invoice.total_money
        return total


def amount_due(subscription: Subscription, open_invoices: Sequence[Invoice], now: datetime) -> AmountDue:
    """What a reactivation of ``subscription`` at ``now`` charges, given
    every one of its open invoices (a lock's
    :meth:`~flask_customer_portal.storage.SubscriptionLock.open_invoices`).
    Plan-change invoices are not arrears: they are settled on their own
    (:mod:`flask_customer_portal.billing.settlement`)."""
    invoices = tuple(i for i in open_invoices if not is_plan_change_invoice(i))
    if invoices:
        return AmountDue(invoices, credit_left=subscription.credit)
    draft, credit_left = apply_credit(
        _with_retention_discount(_period_invoice("arrears", subscription, now, start=now), subscription),
        subscription.credit,
        "Account credit",
    )
    return AmountDue((), draft, credit_left)


#: How many invoices one read of the billing history takes when the open
#: invoices of a subscription are looked for without its lock.
_INVOICES_SCANNED = 100


def amount_due_now(state: PortalState, customer: Customer, subscription: Subscription) -> AmountDue:
    """What paying the arrears charges right now: worked out by
    :func:`amount_due` from every open
    invoice of the subscription, read under its lock — exactly as the
    charge does. A provider that bills subscriptions itself has no lock
    here: its open invoices are read from the whole billing history."""
    now = utcnow()
    with state.storage.lock_subscription(customer.id, subscription.id) as lock:
        if lock is not None:
            return amount_due(lock.subscription, lock.open_invoices(), now)
    found: list[Invoice] = []
    after: Invoice | None = None
    while batch := state.storage.list_invoices_after(customer.id, after, limit=_INVOICES_SCANNED):
        found.extend(
            i for i in batch if i.subscription_id == subscription.id and i.status is InvoiceStatus.OPEN
        )
        after = batch[-1]
    return amount_due(subscription, sorted(found, key=lambda i: (i.issued_at, i.id)), now)


def reactivate_subscription(
    state: PortalState,
    customer: Customer,
    subscription_id: str,
    payment_method: PaymentMethod,
    *,
    now: datetime | None = None,
    actor: str = "customer",
    expected: Money | None = None,
) -> ReactivationResult:
    """Pay an ``on_hold`` subscription's arrears with ``payment_method`` and
    make it ``active``; see the module's description for the guarantees.
    What is charged is :func:`amount_due`; with ``expected`` (the amount the
    customer was shown) nothing is charged unless it is exactly that
    (:attr:`PaymentOutcome.AMOUNT_CHANGED`). Unconfirmed plan-change
    payments of the subscription are settled first.

    Raises :class:`SubscriptionNotFound` for another customer's
    subscription, :class:`~flask_customer_portal.storage.StateConflict` for
    a cancelled one, and :class:`ProviderError` when the provider raised,
    with nothing written (the subscription stays ``on_hold``, the invoice
    ``open``). Anything else (the database went away after the charge) is
    not a provider problem and is not reported as one.
    """
    if payment_method.customer_id != customer.id:
        raise SubscriptionNotFound(subscription_id)
    now = now or utcnow()
    if isinstance(state.payments, SubscriptionBiller) and state.payments.bills_subscriptions:
        return _reactivate_at_provider(
            state, state.payments, customer, subscription_id, payment_method, now, actor
        )
    mail = MailBatch(state)
    with state.storage.lock_subscription(customer.id, subscription_id) as lock:
        if lock is None:
            raise SubscriptionNotFound(subscription_id)
        mail.write_through(lock)
        settled = settle_locked(state, lock, now, actor, mail=mail)
        result, paid, collection = _reactivate_locked(state, lock, payment_method, now, actor, expected)
        for invoice in paid:
            send_receipt(state, customer, invoice, batch=mail)
        if result.outcome is PaymentOutcome.PAID:
            # In the lock's transaction: the confirmation exists exactly
            # when the payment that it confirms was recorded.
            send_email(
                state,
                "subscription_reactivated",
                customer,
                batch=mail,
                subscription=result.subscription,
                invoice=result.invoice,
                payment_method=payment_method,
            )
    # Committed: deliver the email, tell the merchant's code.
    mail.committed()
    announce(state, customer, settled)
    if result.outcome in (PaymentOutcome.ALREADY_PAID, PaymentOutcome.AMOUNT_CHANGED):
        return result  # nothing was tried
    if collection is not None:
        announce_mismatch(customer, collection)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for invoice in paid:
        signals.invoice_paid.send(
            app, customer=customer, invoice=invoice, provider_reference=invoice.payment_reference
        )
    if result.outcome is PaymentOutcome.PAID:
        signals.payment_method_changed.send(
            app, customer=customer, subscription=result.subscription, payment_method=payment_method
        )
        signals.reactivation_succeeded.send(
            app, customer=customer, subscription=result.subscription, invoice=result.invoice
        )
    else:
        signals.reactivation_failed.send(
            app,
            customer=customer,
            subscription=result.subscription,
            invoice=result.invoice,
            reason=result.decline_reason or str(result.outcome),
        )
    return result


def _reactivate_locked(
    state: PortalState,
    lock: SubscriptionLock,
    payment_method: PaymentMethod,
    now: datetime,
    actor: str,
    expected: Money | None,
) -> tuple[ReactivationResult, list[Invoice], Collection | None]:
    """The reactivation under the lock: the result, the invoices paid, and
    the collection that did not pay (for its mismatch, if any)."""
    subscription = lock.subscription
    if subscription.status is SubscriptionStatus.ACTIVE:
        return ReactivationResult(PaymentOutcome.ALREADY_PAID, subscription), [], None
    if subscription.status is not SubscriptionStatus.ON_HOLD:
        raise StateConflict(f"subscription {subscription.id!r} is {subscription.status}")
    # (1) the arrears and (2) their invoice: the open renewal invoice(s), or a new one.
    due = amount_due(subscription, lock.open_invoices(), now)
    if expected is not None and due.total != expected:
        return ReactivationResult(PaymentOutcome.AMOUNT_CHANGED, subscription), [], None
    invoices = list(due.invoices)
    if due.new_invoice is not None:
        invoice = lock.issue_invoice(due.new_invoice)
        # The arrears invoice pays a period as a renewal does: it takes the
        # retention discount and the credit it shows.
        if subscription.discount_renewals > 0:
            subscription = lock.use_retention_discount()
        if due.credit_left != subscription.credit:
            subscription = lock.set_credit(due.credit_left)
        lock.record_event(_event(invoice, "invoice.issued", now, actor, subject_id=invoice.id))
        invoices = [invoice]
    # (3) pay them with the new method, oldest first.
    paid: list[Invoice] = []
    for invoice in invoices:
        if invoice.total == 0:
            collection = _paid_from_credit(lock, invoice, now, actor)
        else:
            collection = pay_invoice(state, lock, invoice, payment_method, now, actor)
        if not collection.paid:
            if collection.status is PaymentOutcome.DECLINED:
                subscription = lock.update_subscription(hold_reason=collection.decline_reason)
            lock.record_event(
                _event(
                    invoice,
                    "subscription.reactivation_failed",
                    now,
                    actor,
                    subject_id=subscription.id,
                    reason=collection.decline_reason or str(collection.status),
                )
            )
            result = ReactivationResult(
                _REACTIVATION_OF[collection.status],
                subscription,
                collection.invoice,
                decline_reason=collection.decline_reason,
                redirect_url=collection.redirect_url,
            )
            return result, paid, collection
        paid.append(collection.invoice)
    # (4) active again, the next period counted from today.
    subscription = lock.update_subscription(
        status=SubscriptionStatus.ACTIVE,
        current_period_start=now,
        current_period_end=add_interval(now, subscription.interval, subscription.interval_count),
        payment_method_id=payment_method.id,
        clear_hold_reason=True,
    )
    lock.record_event(
        _event(
            paid[-1],
            "subscription.reactivated",
            now,
            actor,
            subject_id=subscription.id,
            payment_method_id=payment_method.id,
        )
    )
    return ReactivationResult(PaymentOutcome.PAID, subscription, paid[-1]), paid, None


def _reactivate_at_provider(
    state: PortalState,
    provider: SubscriptionBiller,
    customer: Customer,
    subscription_id: str,
    payment_method: PaymentMethod,
    now: datetime,
    actor: str,
) -> ReactivationResult:
    """:func:`reactivate_subscription` for a :class:`SubscriptionBiller`,
    with the local path's discipline: one submit at a time, at most one
    charge per attempt, keys from what is paid (see
    :mod:`flask_customer_portal.billing.arrears`).

    All of it runs under the store's
    :meth:`~flask_customer_portal.storage.ProviderLockStore.lock_provider_subscription`,
    which holds across processes. Under it the subscription is read again
    from the provider: ``active`` is :attr:`~PaymentOutcome.ALREADY_PAID`.
    An earlier attempt whose outcome is open is settled with
    :meth:`SubscriptionBiller.find_arrears_charge` first; while the provider
    still shows it open (or paid, the subscription not ``active`` yet) the
    answer is ``pending`` or the bank's confirmation page again, and the
    provider is not asked to charge. So is it while the subscription's
    newest charge of the last day is processing or paid, whoever made it.
    Only otherwise is a new attempt recorded and
    :meth:`SubscriptionBiller.pay_arrears` called with its key.

    The outcome is what the subscription says afterwards, read back from
    the provider: ``active`` is :attr:`~PaymentOutcome.PAID`
    (whatever the charge's answer); otherwise a decline, a confirmation page
    (``requires_action``), a refusal (``failed``) or, when the charge is
    still processing or went unanswered, ``pending`` — the provider's
    webhook reports how it ends. The provider emails the customer about the
    payment itself, so the portal sends no email here.
    """
    with _provider_lock(state, customer, subscription_id) as lock:
        result = _arrears_under_lock(
            state, provider, lock, customer, subscription_id, payment_method, now, actor
        )
        if result.outcome is PaymentOutcome.ALREADY_PAID:
            return result
        lock.record_event(
            AuditEvent(
                customer_id=customer.id,
                action=(
                    "subscription.reactivated"
                    if result.outcome is PaymentOutcome.PAID
                    else "subscription.reactivation_failed"
                ),
                occurred_at=now,
                subject_id=result.subscription.id,
                provider_reference=result.invoice.id if result.invoice is not None else None,
                actor=actor,
                details={"payment_method_id": payment_method.id, "outcome": str(result.outcome)},
            )
        )
    # Committed: now tell the merchant's code.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    subscription, invoice = result.subscription, result.invoice
    if result.outcome is PaymentOutcome.PAID:
        signals.payment_method_changed.send(
            app, customer=customer, subscription=subscription, payment_method=payment_method
        )
        signals.reactivation_succeeded.send(
            app, customer=customer, subscription=subscription, invoice=invoice
        )
    else:
        signals.reactivation_failed.send(
            app,
            customer=customer,
            subscription=subscription,
            invoice=invoice,
            reason=result.decline_reason or str(result.outcome),
        )
    return result


def arrears_in_flight(
    state: PortalState, customer: Customer, subscription_id: str, *, now: datetime | None = None
) -> ReactivationResult | None:
    """For a subscription the payment provider bills itself: the answer a
    reactivation would give without charging — ``pending`` while a payment
    of its arrears is in flight or paid but not applied yet, the bank's
    confirmation page again, or ``already_active`` — or ``None`` when a new
    payment may be made. Asked before the customer is sent to the
    provider's own page for a new method, where the provider would charge
    the arrears again. ``None`` for subscriptions the portal bills."""
    provider = state.payments
    if not (isinstance(provider, SubscriptionBiller) and provider.bills_subscriptions):
        return None
    now = now or utcnow()
    with _provider_lock(state, customer, subscription_id) as lock:
        _, _, waiting = _arrears_open(state, provider, lock, customer, subscription_id, now, "customer")
    return waiting


def _provider_lock(
    state: PortalState, customer: Customer, subscription_id: str
) -> AbstractContextManager[ProviderSubscriptionLock]:
    if not state.capabilities.provider_lock:
        logger.error(
            "The portal's store has no lock_provider_subscription: reactivation of subscription %s "
            "at a provider that bills subscriptions itself was refused",
            subscription_id,
        )
        raise StateConflict(f"subscription {subscription_id!r} cannot be locked by this store")
    return state.storage.lock_provider_subscription(customer.id, subscription_id)


def _arrears_open(
    state: PortalState,
    provider: SubscriptionBiller,
    lock: ProviderSubscriptionLock,
    customer: Customer,
    subscription_id: str,
    now: datetime,
    actor: str,
) -> tuple[Subscription, ArrearsAttempt | None, ReactivationResult | None]:
    """Under the lock: the subscription, its last arrears attempt (settled
    with the provider if its outcome was open), and the answer to give
    without charging, if a charge must not be made now."""
    storage = state.storage
    subscription = storage.get_subscription(customer.id, subscription_id)
    if subscription is None:
        raise SubscriptionNotFound(subscription_id)
    attempts = lock.attempts()
    last = attempts[-1] if attempts else None
    found: ChargeResult | None = None
    if last is not None and last.status in arrears.OPEN:
        try:
            found = provider.find_arrears_charge(
                subscription_id=subscription.id, reference=last.provider_reference, since=last.created_at
            )
        except Exception as exc:
            raise ProviderError(type(exc).__name__) from exc
        last = arrears.settled(last, found, now)
        lock.save_attempt(last)
        lock.record_event(arrears.attempt_event(last, "charge.reconciled", now, actor))
    if subscription.status is SubscriptionStatus.ACTIVE:
        return subscription, last, ReactivationResult(PaymentOutcome.ALREADY_PAID, subscription)
    if subscription.status is not SubscriptionStatus.ON_HOLD:
        raise StateConflict(f"subscription {subscription_id!r} is {subscription.status}")
    pending = ReactivationResult(PaymentOutcome.PENDING, subscription)
    if last is not None:
        if last.status is ChargeAttemptStatus.UNKNOWN:
            return subscription, last, pending
        if last.status is ChargeAttemptStatus.REQUIRES_ACTION and isinstance(found, ChargeRequiresAction):
            return (
                subscription,
                last,
                ReactivationResult(
                    PaymentOutcome.REQUIRES_ACTION, subscription, redirect_url=found.redirect_url
                ),
            )
        if last.status is ChargeAttemptStatus.SUCCEEDED and last.idempotency_key == arrears.arrears_key(
            subscription, last.attempt
        ):
            # These arrears are paid; the provider has not made the subscription active yet.
            return subscription, last, pending
    # A charge in flight, or just paid, that no open attempt accounts for (a
    # try rolled back after its call, the provider's own page or retry) is
    # waited for, never doubled.
    try:
        latest = provider.find_arrears_charge(
            subscription_id=subscription.id, reference=None, since=now - arrears.IN_FLIGHT
        )
    except Exception as exc:
        raise ProviderError(type(exc).__name__) from exc
    if isinstance(latest, ChargeUnknown | ChargeSucceeded):
        logger.warning(
            "Subscription %s has a charge at the provider that is %s; not charged again",
            subscription.id,
            "processing" if isinstance(latest, ChargeUnknown) else "paid",
        )
        return subscription, last, pending
    return subscription, last, None


def _arrears_under_lock(
    state: PortalState,
    provider: SubscriptionBiller,
    lock: ProviderSubscriptionLock,
    customer: Customer,
    subscription_id: str,
    payment_method: PaymentMethod,
    now: datetime,
    actor: str,
) -> ReactivationResult:
    storage = state.storage
    subscription, last, waiting = _arrears_open(state, provider, lock, customer, subscription_id, now, actor)
    if waiting is not None:
        return waiting
    number = 1 if last is None else last.attempt + 1
    attempt = ArrearsAttempt(
        customer_id=customer.id,
        subscription_id=subscription.id,
        attempt=number,
        idempotency_key=arrears.arrears_key(subscription, number),
        status=ChargeAttemptStatus.UNKNOWN,
        created_at=now,
        payment_method_id=payment_method.id,
    )
    lock.save_attempt(attempt)
    try:
        answer = provider.pay_arrears(
            subscription_id=subscription.id,
            provider_token=payment_method.provider_token,
            idempotency_key=attempt.idempotency_key,
        )
    except Exception as exc:
        raise ProviderError(type(exc).__name__) from exc
    attempt = arrears.settled(attempt, answer, now)
    lock.save_attempt(attempt)
    lock.record_event(arrears.attempt_event(attempt, f"charge.{attempt.status}", now, actor))
    invoice = None
    try:
        subscription = storage.get_subscription(customer.id, subscription_id) or subscription
        if isinstance(answer, ChargeSucceeded | ChargeDeclined) and answer.charge_id:
            invoice = storage.get_invoice(customer.id, answer.charge_id)
    except Exception:
        # The attempt and its outcome are kept all the same: the subscription
        # as it was read before is on hold, so the answer is not "reactivated".
        logger.exception("Subscription %s could not be read back from the provider", subscription.id)
    if subscription.status is SubscriptionStatus.ACTIVE:
        return ReactivationResult(PaymentOutcome.PAID, subscription, invoice)
    if isinstance(answer, ChargeDeclined):
        reason = str(answer.reason)
        return ReactivationResult(PaymentOutcome.DECLINED, subscription, invoice, decline_reason=reason)
    if isinstance(answer, ChargeRequiresAction):
        return ReactivationResult(
            PaymentOutcome.REQUIRES_ACTION, subscription, redirect_url=answer.redirect_url
        )
    if isinstance(answer, ChargeFailed):
        return ReactivationResult(PaymentOutcome.FAILED, subscription)
    return ReactivationResult(PaymentOutcome.PENDING, subscription, invoice)


# -- renewals -------------------------------------------------------------------------


class RenewalOutcome(str, enum.Enum):
    RENEWED = "renewed"
    ON_HOLD = "on_hold"
    ENDED = "ended"
    #: The charge's outcome is unknown or the provider failed: tried again next run.
    RETRY = "retry"
    SKIPPED = "skipped"
    #: A paused subscription became ``active`` again at its ``resumes_at``.
    RESUMED = "resumed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class RenewalResult:
    outcome: RenewalOutcome
    subscription: Subscription
    invoice: Invoice | None = None
    reason: str | None = None


def renew_subscription(
    state: PortalState, customer_id: str, subscription_id: str, *, now: datetime | None = None
) -> RenewalResult:
    """Renew one subscription if it is due: finish a cancellation set for
    the period's end, or charge the next period. A declined renewal puts the
    subscription ``on_hold`` with its invoice ``open`` and emails the
    customer a link to fix the payment method. ``on_hold`` and cancelled
    subscriptions are skipped: they never renew by themselves."""
    now = now or utcnow()
    result = _renew(state, lambda: state.storage.lock_subscription(customer_id, subscription_id), now)
    if result is None:
        raise SubscriptionNotFound(subscription_id)
    return result


@dataclass(slots=True)
class _Step:
    """What one transaction of a renewal did."""

    subscription: Subscription
    result: RenewalResult | None
    """``None``: the renewal invoice was issued, to be paid in the next transaction."""
    settled: list[SettledPlanChange]
    plan_change: tuple[Subscription, Subscription] | None = None
    collection: Collection | None = None


def _renew(
    state: PortalState, take_lock: LockTaker, now: datetime, *, issue_apart: bool = False
) -> RenewalResult | None:
    """Renew under the locks ``take_lock`` takes, then tell the merchant's
    code and the customer; ``None`` if it gave no lock. With
    ``issue_apart``, a new invoice is issued (and committed) in a
    transaction of its own and paid in a second one: the invoice-number
    counter, which every renewal's invoice takes, is then never held across
    a charge, and runners on several hosts do not wait on one another."""
    mail = MailBatch(state)
    with take_lock() as lock:
        if lock is None:
            return None
        mail.write_through(lock)
        step = _renew_locked(state, lock, now, issue_apart=issue_apart, mail=mail)
        if step.plan_change is not None:
            # In the lock's transaction: the email exists exactly when the
            # scheduled change was made.
            _email_scheduled_change(state, *step.plan_change, mail)
    mail.committed()
    settled, plan_change = step.settled, step.plan_change
    if step.result is None:
        with take_lock() as lock:
            if lock is None:  # renewed meanwhile by another runner
                step = _Step(step.subscription, RenewalResult(RenewalOutcome.SKIPPED, step.subscription), [])
            else:
                mail.write_through(lock)
                step = _renew_locked(state, lock, now, issue_apart=False, mail=mail)
        mail.committed()
        settled = settled + step.settled
    result = step.result
    if result is None:  # pragma: no cover - only the first step issues
        raise StateConflict(f"subscription {step.subscription.id!r} has no renewal invoice")
    if result.outcome is RenewalOutcome.SKIPPED and not settled:
        return result
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if _nothing_to_tell(app, result, step, settled, plan_change):
        # The customer is read only for someone to tell: a plain renewal
        # that no one listens for costs no read.
        return result
    customer = state.storage.get_customer(step.subscription.customer_id)
    if customer is None:  # pragma: no cover - the subscription's customer exists (foreign key)
        return result
    announce(state, customer, settled)
    if step.collection is not None:
        announce_mismatch(customer, step.collection)
    if plan_change is not None:
        previous, changed = plan_change
        signals.plan_changed.send(
            app, customer=customer, subscription=changed, previous=previous, invoice=None, when="period_end"
        )
    if result.outcome is RenewalOutcome.RENEWED and result.invoice is not None:
        signals.invoice_paid.send(
            app,
            customer=customer,
            invoice=result.invoice,
            provider_reference=result.invoice.payment_reference,
        )
        signals.subscription_renewed.send(
            app, customer=customer, subscription=result.subscription, invoice=result.invoice
        )
    elif result.outcome is RenewalOutcome.ON_HOLD:
        signals.subscription_put_on_hold.send(
            app,
            customer=customer,
            subscription=result.subscription,
            invoice=result.invoice,
            reason=result.reason,
        )
        send_email_with_link(
            state,
            "payment_failed",
            customer,
            subscription=result.subscription,
            invoice=result.invoice,
            reason=result.reason,
        )
    return result


def _nothing_to_tell(
    app: object,
    result: RenewalResult,
    step: _Step,
    settled: list[SettledPlanChange],
    plan_change: tuple[Subscription, Subscription] | None,
) -> bool:
    """Whether a renewal leaves nothing to announce: renewed, with no
    settlement, no plan change and no mismatch, and no receiver for the
    signals a renewal sends."""
    return (
        result.outcome is RenewalOutcome.RENEWED
        and not settled
        and plan_change is None
        and (step.collection is None or step.collection.status is not PaymentOutcome.AMOUNT_MISMATCH)
        and not signals.invoice_paid.has_receivers_for(app)
        and not signals.subscription_renewed.has_receivers_for(app)
    )


def _email_scheduled_change(
    state: PortalState, previous: Subscription, changed: Subscription, mail: MailBatch
) -> None:
    customer = state.storage.get_customer(changed.customer_id)
    if customer is None:  # pragma: no cover - the subscription's customer exists (foreign key)
        return
    send_email(
        state,
        "plan_changed",
        customer,
        batch=mail,
        subscription=changed,
        previous=previous,
        invoice=None,
        scheduled=True,
        link=subscription_link(state, changed),
    )


def _renew_locked(
    state: PortalState, lock: SubscriptionLock, now: datetime, *, issue_apart: bool, mail: MailBatch
) -> _Step:
    """One transaction of a renewal, under ``lock``."""
    actor = "system"
    plan_change: tuple[Subscription, Subscription] | None = None
    # A plan change whose payment was left unconfirmed is settled first.
    settled = settle_locked(state, lock, now, actor, mail=mail)
    subscription = lock.subscription
    customer_id = subscription.customer_id
    if not renews_when_due(subscription, now):
        return _Step(subscription, RenewalResult(RenewalOutcome.SKIPPED, subscription), settled)
    if subscription.cancel_at_period_end:
        subscription = lock.update_subscription(
            status=SubscriptionStatus.CANCELLED, ended_at=subscription.current_period_end
        )
        lock.record_event(
            AuditEvent(
                customer_id=customer_id,
                action="subscription.ended",
                occurred_at=now,
                subject_id=subscription.id,
                actor=actor,
            )
        )
        return _Step(subscription, RenewalResult(RenewalOutcome.ENDED, subscription), settled)
    invoice = lock.get_invoice(_derived_invoice_id("renewal", subscription))
    if invoice is None:
        # A plan change set for the period's end takes over first.
        if apply_scheduled_change(state.storage, lock, now, actor) is not None:
            plan_change = (subscription, lock.subscription)
            subscription = lock.subscription
        draft, credit_left = apply_credit(
            _with_retention_discount(
                _period_invoice("renewal", subscription, now, start=subscription.current_period_end),
                subscription,
            ),
            subscription.credit,
            "Account credit",
        )
        if issue_apart and draft.total != 0 and isinstance(lock, NumbersAtCommit):
            # Paid in the next transaction: this one never needs its number.
            invoice = lock.issue_invoice_numbered_at_commit(draft)
        else:
            invoice = lock.issue_invoice(draft)
        if subscription.discount_renewals > 0:
            subscription = lock.use_retention_discount()
        if credit_left != subscription.credit:
            subscription = lock.set_credit(credit_left)
        lock.record_event(_event(invoice, "invoice.issued", now, actor, subject_id=invoice.id))
        if issue_apart and invoice.total != 0:
            return _Step(subscription, None, settled, plan_change)
    method = subscription.payment_method
    if invoice.total == 0:
        collection = _paid_from_credit(lock, invoice, now, actor)
    elif method is None:
        collection = Collection(PaymentOutcome.DECLINED, invoice, decline_reason=NO_PAYMENT_METHOD)
    else:
        collection = pay_invoice(state, lock, invoice, method, now, actor)
    if collection.paid:
        start = subscription.current_period_end
        subscription = lock.update_subscription(
            current_period_start=start,
            current_period_end=add_interval(start, subscription.interval, subscription.interval_count),
            status=status_after_payment(subscription),
        )
        lock.record_event(
            _event(collection.invoice, "subscription.renewed", now, actor, subject_id=subscription.id)
        )
        result = RenewalResult(RenewalOutcome.RENEWED, subscription, collection.invoice)
        payer = state.storage.get_customer(customer_id)
        if payer is not None:
            send_receipt(state, payer, collection.invoice, batch=mail)
    elif collection.status in (PaymentOutcome.DECLINED, PaymentOutcome.REQUIRES_ACTION):
        reason = collection.decline_reason or str(collection.status)
        subscription = lock.update_subscription(status=SubscriptionStatus.ON_HOLD, hold_reason=reason)
        lock.record_event(
            _event(
                collection.invoice,
                "subscription.put_on_hold",
                now,
                actor,
                subject_id=subscription.id,
                reason=reason,
            )
        )
        result = RenewalResult(RenewalOutcome.ON_HOLD, subscription, collection.invoice, reason)
    else:
        result = RenewalResult(RenewalOutcome.RETRY, subscription, collection.invoice, str(collection.status))
    return _Step(subscription, result, settled, plan_change, collection)


@dataclass(slots=True)
class RenewalReport:
    """What one run of :func:`renew_due` did, by outcome."""

    results: list[RenewalResult] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    """``(subscription id, error class name)`` of subscriptions that raised."""
    plan_changes: SettlementReport = field(default_factory=SettlementReport)
    """The unconfirmed plan-change payments settled first (see
    :mod:`flask_customer_portal.billing.settlement`); their errors are in
    :attr:`errors` too."""

    def count(self, outcome: RenewalOutcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)


def renew_due(state: PortalState, *, now: datetime | None = None, batch_size: int = 100) -> RenewalReport:
    """Renew every subscription that is due, once each per run. One that
    raises (the provider is down) is logged and left for the next run.
    Paused subscriptions whose ``resumes_at`` has come are resumed first
    (see :mod:`flask_customer_portal.billing.pausing`), so one that is due again
    renews in the same run; before that, every plan-change payment left
    unconfirmed is settled (see :mod:`flask_customer_portal.billing.settlement`),
    so that money taken always ends as a changed plan or as credit.

    Several runs at once (cron on several hosts) share the work where the
    store claims what it renews
    (:class:`~flask_customer_portal.storage.DueClaimStore`, the SQLAlchemy
    store): a subscription another run holds is left to it, never waited
    for nor renewed twice. Each subscription is renewed in transactions of
    its own, so a run that dies leaves every subscription either renewed or
    still due, with any charge it made found again by its idempotency key
    on the next run."""
    now = now or utcnow()
    report = RenewalReport()
    report.plan_changes = settle_all_plan_changes(state, now=now, batch_size=batch_size)
    report.errors.extend(report.plan_changes.errors)
    resumed = resume_due(state, now, batch_size=batch_size)
    report.results.extend(RenewalResult(RenewalOutcome.RESUMED, s) for s in resumed.resumed)
    report.errors.extend(resumed.errors)

    def renew(subscription: Subscription, take_lock: LockTaker, issue_apart: bool) -> Subscription | None:
        try:
            result = _renew(state, take_lock, now, issue_apart=issue_apart)
        except Exception as exc:
            logger.exception("Renewal of subscription %s failed", subscription.id)
            report.errors.append((subscription.id, type(exc.__cause__ or exc).__name__))
            return None
        if result is None:
            return None
        report.results.append(result)
        return result.subscription

    each_due(state, now, batch_size, renew)
    return report
