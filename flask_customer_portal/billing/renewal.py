"""Renewing subscriptions that are due, each invoice paid exactly once
through :mod:`flask_customer_portal.billing.collect`.

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

Reactivating an ``on_hold`` subscription follows the same rules; it is
:mod:`flask_customer_portal.billing.reactivation`, whose names are
importable from here too.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app

from .. import signals
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..state import PortalState
from ..storage import (
    AuditEvent,
    Invoice,
    NumbersAtCommit,
    StateConflict,
    Subscription,
    SubscriptionLock,
    SubscriptionStatus,
)
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
from .period_invoices import derived_invoice_id, period_invoice, with_retention_discount
from .periods import add_interval
from .proration import apply_credit, apply_scheduled_change
from .reactivation import (
    AmountDue,
    ReactivationResult,
    amount_due,
    amount_due_now,
    arrears_in_flight,
    reactivate_subscription,
)
from .receipts import send_receipt
from .settlement import (
    SettledPlanChange,
    SettlementReport,
    announce,
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
    invoice = lock.get_invoice(derived_invoice_id("renewal", subscription))
    if invoice is None:
        # A plan change set for the period's end takes over first.
        if apply_scheduled_change(state.storage, lock, now, actor) is not None:
            plan_change = (subscription, lock.subscription)
            subscription = lock.subscription
        draft, credit_left = apply_credit(
            with_retention_discount(
                period_invoice("renewal", subscription, now, start=subscription.current_period_end),
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
