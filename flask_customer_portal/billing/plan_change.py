"""Plan changes: which plans a subscription may move to, and moving it now
with the proration charged exactly once.

The charge takes the same path as a reactivation
(:mod:`flask_customer_portal.billing.renewal`): the subscription is locked, the
proration invoice's id is derived from the subscription and the change's
own id (made once, when the customer saw the preview), and it is paid with
the idempotency key ``invoice:<id>:attempt:<n>``. A double submit of the
same confirmation finds its invoice settled and answers with what came of
it — done if it was paid, declined if it was declined — and charges nothing
more; a retry after a crash reuses the key and the provider answers with
the first outcome. The plan is switched in the same transaction as the payment is
recorded: both are saved, or neither.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from .. import signals
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..money import Money
from ..rules import CustomerRules
from ..state import PortalState
from ..storage import (
    AuditEvent,
    ChargeAttemptStatus,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    KeepsPlanChanges,
    Plan,
    PlanChange,
    PromotionCode,
    StateConflict,
    Subscription,
    SubscriptionLock,
    SubscriptionStatus,
)
from . import notify
from .collect import Collection, _event, announce_mismatch, pay_invoice
from .notify import MailBatch, send_email, subscription_link
from .outcomes import PaymentOutcome
from .promotions import (
    apply_to_proration,
    grant_later_periods,
    has_code_line,
    promotion_lines,
    redeem_locked,
    release_locked,
)
from .proration import Proration, is_upgrade, prorate
from .receipts import send_receipt
from .renewal import NO_PAYMENT_METHOD
from .settlement import (
    INVOICE_PREFIX,
    SettledPlanChange,
    SettlementOutcome,
    announce,
    is_plan_change_invoice,
    settle_locked,
)

__all__ = [
    "PlanChangeResult",
    "Quote",
    "change_id_is_valid",
    "change_plan_now",
    "offered_plans",
    "plan_change_blocked",
    "plan_changes_supported",
    "proration_invoice_id",
    "provider_bills_subscriptions",
    "schedule_plan_change",
    "timing_for",
    "withdraw_scheduled_change",
]

_CHANGE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

NOW = "now"
PERIOD_END = "period_end"


def change_id_is_valid(value: str) -> bool:
    return bool(_CHANGE_ID_RE.match(value))


def offered_plans(state: PortalState, subscription: Subscription, rules: CustomerRules) -> Sequence[Plan]:
    """The plans this customer may pick for ``subscription``: the product's
    active plans in its currency that the rules allow (the current plan
    included, so a seat plan can change its quantity)."""
    if subscription.plan_id is None or not rules.may_change_plan:
        return ()
    return tuple(
        p
        for p in state.storage.list_plans(subscription.product_name)
        if p.price.currency == subscription.price.currency and rules.allows_plan(p.id)
    )


def plan_change_blocked(subscription: Subscription, now: datetime) -> str | None:
    """Why the subscription cannot change plan now (a code), or ``None``."""
    if subscription.status is not SubscriptionStatus.ACTIVE:
        return str(subscription.status)  # on_hold, cancelled, paused
    if subscription.cancel_at_period_end:
        return "ending"
    if subscription.current_period_end <= now:
        return "renewing"
    if subscription.plan_id is None:
        return "no_plan"
    return None


def provider_bills_subscriptions(state: PortalState) -> bool:
    """Whether the payment provider bills subscriptions itself (its
    ``bills_subscriptions``, as Dodo Payments'): it renews them and makes
    no charges for the portal, so it also owns their plans."""
    return state.provider_capabilities.bills_subscriptions


def plan_changes_supported(state: PortalState) -> bool:
    """Whether the portal can change the plans of the subscriptions it
    serves: the store that holds them has a plan catalogue and the money
    path (:attr:`~flask_customer_portal.capabilities.Capabilities.plan_change`),
    and the payment provider charges for the portal rather than billing
    subscriptions itself. The plan page is offered only when this is true;
    the customer's rules apply on top (see :doc:`/plans`)."""
    return not provider_bills_subscriptions(state) and state.capabilities.plan_change


def timing_for(state: PortalState, subscription: Subscription, plan: Plan, quantity: int) -> str:
    """``"now"`` or ``"period_end"``: when the merchant lets this change happen."""
    if is_upgrade(subscription, plan, quantity):
        return state.config.plan_change_upgrades
    return state.config.plan_change_downgrades


def proration_invoice_id(subscription: Subscription, change_id: str) -> str:
    """The id of the proration invoice of one confirmed change."""
    seed = f"plan_change|{subscription.id}|{change_id}"
    return INVOICE_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:24]


def proration_lines(
    subscription: Subscription, plan: Plan, quantity: int, p: Proration
) -> tuple[InvoiceLine, ...]:
    """The invoice lines of a plan change (they add up to ``p.due_now``)."""
    old = f"{subscription.product_name} — {subscription.plan_name}"
    new = f"{plan.product_name} — {plan.name}"
    if plan.per_seat:
        new += f" ({quantity} seats)"
    until = p.period_end.date().isoformat()
    lines = [InvoiceLine(f"Unused time on {old} (to {until})", 1, -p.unused, -p.unused)]
    if p.resets_period:
        since = p.period_start.date().isoformat()
        lines.append(InvoiceLine(f"{new} ({since} to {until})", 1, p.new_charge, p.new_charge))
    else:
        lines.append(InvoiceLine(f"Remaining time on {new} (to {until})", 1, p.new_charge, p.new_charge))
    if p.credit_used:
        lines.append(InvoiceLine("Account credit", 1, -p.credit_used, -p.credit_used))
    return tuple(line for line in lines if line.amount != 0)


@dataclass(frozen=True, slots=True)
class Quote:
    """What the customer was shown and confirmed, from the signed quote of
    the preview: the amount due now and the plan's price (per period, and
    per seat for a per-seat plan) with its interval. A change whose figures
    differ at the confirmation is not charged
    (:attr:`PaymentOutcome.AMOUNT_CHANGED`)."""

    due_now: Money
    unit_price: Money
    interval: str
    interval_count: int

    @classmethod
    def of(cls, plan: Plan, proration: Proration) -> Quote:
        return cls(proration.due_now_money, plan.price, plan.interval, plan.interval_count)


@dataclass(frozen=True, slots=True)
class PlanChangeResult:
    outcome: PaymentOutcome
    subscription: Subscription
    previous: Subscription
    invoice: Invoice | None = None
    decline_reason: str | None = None


_OUTCOME_OF = {
    PaymentOutcome.DECLINED: PaymentOutcome.DECLINED,
    PaymentOutcome.REQUIRES_ACTION: PaymentOutcome.REQUIRES_ACTION,
    PaymentOutcome.FAILED: PaymentOutcome.FAILED,
    PaymentOutcome.PENDING: PaymentOutcome.PENDING,
    PaymentOutcome.AMOUNT_MISMATCH: PaymentOutcome.AMOUNT_MISMATCH,
}


def _settled_before(
    lock: SubscriptionLock,
    invoice: Invoice,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    *,
    credited: bool = False,
) -> PlanChangeResult:
    """The answer to a confirmation whose proration invoice was settled by
    an earlier submit of it: done only if it was paid and the subscription
    is on the plan it asked for; declined (with the recorded reason) or
    failed if the invoice was voided. A paid change that was changed again
    since, or a refunded one, is a conflict: it is not to be made twice."""
    if invoice.status is InvoiceStatus.PAID and (subscription.plan_id, subscription.quantity) == (
        plan.id,
        quantity,
    ):
        return PlanChangeResult(PaymentOutcome.ALREADY_PAID, subscription, subscription, invoice)
    if invoice.status is not InvoiceStatus.VOID:
        raise StateConflict("credited" if credited else "superseded")
    attempts = lock.attempts(invoice.id)
    last = attempts[-1] if attempts else None
    if last is not None and last.status is ChargeAttemptStatus.DECLINED:
        return PlanChangeResult(
            PaymentOutcome.DECLINED,
            subscription,
            subscription,
            invoice,
            decline_reason=last.decline_reason,
        )
    if last is None and subscription.payment_method is None:
        return PlanChangeResult(
            PaymentOutcome.DECLINED, subscription, subscription, invoice, decline_reason=NO_PAYMENT_METHOD
        )
    return PlanChangeResult(PaymentOutcome.FAILED, subscription, subscription, invoice)


def change_plan_now(
    state: PortalState,
    customer: Customer,
    subscription_id: str,
    plan: Plan,
    quantity: int,
    *,
    change_id: str,
    priced_at: datetime | None = None,
    now: datetime | None = None,
    actor: str = "customer",
    quote: Quote | None = None,
    promotion: PromotionCode | None = None,
) -> PlanChangeResult:
    """Move the subscription to ``quantity`` of ``plan`` now, charging the
    proration (if anything is due) to its payment method first.

    The proration is worked out at ``priced_at`` (the second the customer
    was shown it, at most a few minutes ago; default ``now``) with the
    plan's price as it is now, read under the lock; with ``quote`` (what the
    customer was shown) a new charge is only made for exactly that amount
    and price, else the answer is :attr:`PaymentOutcome.AMOUNT_CHANGED`
    and nothing is written. ``promotion`` (checked by
    :func:`~flask_customer_portal.billing.promotions.check_code`) is taken
    off the charge and used in its transaction; a code used meanwhile is a
    conflict (``promotion_used``). Unconfirmed payments of earlier changes are
    settled first (:mod:`flask_customer_portal.billing.settlement`).

    Raises :class:`~flask_customer_portal.billing.renewal.SubscriptionNotFound`,
    :class:`~flask_customer_portal.storage.StateConflict` when the
    subscription cannot change plan (on hold, cancelled, set to end, a
    previous change's payment is unconfirmed, or the back end cannot change
    plans: see :func:`plan_changes_supported`), and
    :class:`~flask_customer_portal.billing.renewal.ProviderError` with nothing
    written when the provider raised.
    """
    if not change_id_is_valid(change_id):
        raise ValueError("not a plan change id")
    if not plan_changes_supported(state):
        raise StateConflict("unsupported")
    now = now or utcnow()
    mail = MailBatch(state)
    with state.storage.lock_subscription(customer.id, subscription_id) as lock:
        if lock is None:
            raise SubscriptionNotFound(subscription_id)
        mail.write_through(lock)
        settled = settle_locked(state, lock, now, actor, mail=mail)
        done = _change_locked(
            state, lock, plan, quantity, change_id, settled, priced_at, now, actor, quote, promotion
        )
        if done.fresh and done.result is not None:
            # The customer's email in the change's own transaction.
            _email_change(state, customer, done.result, mail)
            if done.result.invoice is not None:
                send_receipt(state, customer, done.result.invoice, batch=mail)
    mail.committed()
    # Committed (what was settled too, even if this change is refused): now tell.
    announce(state, customer, settled)
    if done.collection is not None:
        announce_mismatch(customer, done.collection)
    if done.result is None:
        raise StateConflict(done.conflict or "conflict")
    if done.fresh:
        _announce_change(state, customer, done.result)
    return done.result


_UNFINISHED = (SettlementOutcome.PENDING, SettlementOutcome.FLAGGED)


@dataclass(frozen=True, slots=True)
class _Done:
    """What :func:`_change_locked` came to: a result, or the code of a
    conflict to raise once the lock's work (settled payments) is committed."""

    result: PlanChangeResult | None = None
    conflict: str | None = None
    collection: Collection | None = None
    fresh: bool = False
    """The plan changed in this very call: signals and email are due."""


def _change_locked(
    state: PortalState,
    lock: SubscriptionLock,
    plan: Plan,
    quantity: int,
    change_id: str,
    settled: list[SettledPlanChange],
    priced_at: datetime | None,
    now: datetime,
    actor: str,
    quote: Quote | None,
    promotion: PromotionCode | None = None,
) -> _Done:
    previous = subscription = lock.subscription
    invoice_id = proration_invoice_id(subscription, change_id)
    own = next((item for item in settled if item.invoice.id == invoice_id), None)
    if own is not None and own.outcome is SettlementOutcome.CHANGED:
        # This confirmation's payment was taken after all: the change is made.
        return _Done(PlanChangeResult(PaymentOutcome.PAID, subscription, own.previous, own.invoice))
    if own is not None and own.collection is not None and own.outcome in _UNFINISHED:
        # Still unknown, or another amount taken: nothing new is tried.
        outcome = _OUTCOME_OF[own.collection.status]
        return _Done(PlanChangeResult(outcome, subscription, previous, own.invoice))
    invoice = lock.get_invoice(invoice_id)
    if invoice is not None and invoice.status is not InvoiceStatus.OPEN:
        # The same confirmation again (a double click, the back button):
        # answer with what came of the first one, never with more.
        credited = own is not None and own.outcome is SettlementOutcome.CREDITED
        try:
            return _Done(_settled_before(lock, invoice, subscription, plan, quantity, credited=credited))
        except StateConflict as exc:
            return _Done(conflict=str(exc))
    blocked = plan_change_blocked(subscription, now)
    if blocked is not None:
        return _Done(conflict=blocked)
    if invoice is None and (subscription.plan_id, subscription.quantity) == (plan.id, quantity):
        return _Done(PlanChangeResult(PaymentOutcome.ALREADY_PAID, subscription, previous))
    if any(is_plan_change_invoice(i) and i.id != invoice_id for i in lock.open_invoices()):
        return _Done(conflict="pending_change")
    # The plan's price as it is now (read under the lock), not as the page had it.
    plan = state.storage.get_plan(plan.id) or plan
    priced_at = min(priced_at or now, now)
    proration, off = apply_to_proration(prorate(subscription, plan, quantity, priced_at), promotion)
    if invoice is None and quote is not None and quote != Quote.of(plan, proration):
        return _Done(PlanChangeResult(PaymentOutcome.AMOUNT_CHANGED, subscription, previous))
    used = None
    if invoice is None and promotion is not None and off > 0:
        # Used in this transaction, before the charge: a second tab finds it used.
        charged = invoice_id if proration.due_now > 0 else None
        if not redeem_locked(lock, promotion, invoice_id=charged, now=now):
            return _Done(conflict="promotion_used")
        used = promotion
    if invoice is None and proration.due_now > 0:
        lines = proration_lines(subscription, plan, quantity, proration)
        if used is not None:
            lines = promotion_lines(lines, used, off)
        invoice = lock.issue_invoice(
            Invoice(
                id=invoice_id,
                number="",
                customer_id=subscription.customer_id,
                status=InvoiceStatus.OPEN,
                currency=proration.currency,
                subtotal=proration.due_now,
                tax=0,
                total=proration.due_now,
                issued_at=now,
                description=f"{plan.product_name} — {plan.name} (plan change)",
                subscription_id=subscription.id,
                lines=lines,
            )
        )
        _record_change(lock, invoice, subscription, plan, quantity, proration, priced_at, now)
        lock.record_event(_event(invoice, "invoice.issued", now, actor, subject_id=invoice.id))
    if invoice is not None:
        method = subscription.payment_method
        if method is None:
            collection = Collection(PaymentOutcome.DECLINED, invoice, decline_reason=NO_PAYMENT_METHOD)
        else:
            collection = pay_invoice(state, lock, invoice, method, now, actor)
        if not collection.paid:
            if collection.status in (PaymentOutcome.DECLINED, PaymentOutcome.FAILED):
                lock.void_invoice(invoice.id)
                if promotion is not None and has_code_line(invoice, promotion):
                    release_locked(lock, promotion)
            reason = collection.decline_reason or str(collection.status)
            lock.record_event(
                _event(
                    invoice,
                    "subscription.plan_change_failed",
                    now,
                    actor,
                    subject_id=subscription.id,
                    to_plan_id=plan.id,
                    reason=reason,
                )
            )
            result = PlanChangeResult(
                _OUTCOME_OF[collection.status],
                subscription,
                previous,
                collection.invoice,
                decline_reason=collection.decline_reason,
            )
            return _Done(result, collection=collection)
        invoice = collection.invoice
    subscription = lock.change_plan(
        plan,
        quantity,
        credit=proration.credit_after,
        current_period_start=proration.period_start,
        current_period_end=proration.period_end,
    )
    if promotion is not None and (
        used is not None or (invoice is not None and has_code_line(invoice, promotion))
    ):
        grant_later_periods(lock, promotion)
        subscription = lock.subscription
    lock.record_event(
        AuditEvent(
            customer_id=subscription.customer_id,
            action="subscription.plan_changed",
            occurred_at=now,
            subject_id=subscription.id,
            actor=actor,
            details={
                "from_plan_id": previous.plan_id or "",
                "to_plan_id": plan.id,
                "quantity": str(quantity),
                "when": NOW,
                "amount_due": str(proration.due_now),
                "credit_after": str(proration.credit_after),
                "currency": proration.currency,
            },
        )
    )
    return _Done(PlanChangeResult(PaymentOutcome.PAID, subscription, previous, invoice), fresh=True)


def _record_change(
    lock: SubscriptionLock,
    invoice: Invoice,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    proration: Proration,
    priced_at: datetime,
    now: datetime,
) -> None:
    """Keep what this change is with its invoice, so that a payment whose
    answer is lost can finish it later (on a store that can keep it)."""
    if not isinstance(lock, KeepsPlanChanges):
        return
    lock.record_plan_change(
        PlanChange(
            invoice_id=invoice.id,
            customer_id=subscription.customer_id,
            subscription_id=subscription.id,
            plan_id=plan.id,
            quantity=quantity,
            unit_price=plan.price.amount,
            period_start=proration.period_start,
            period_end=proration.period_end,
            credit_after=proration.credit_after,
            from_plan_id=subscription.plan_id,
            from_quantity=subscription.quantity,
            from_period_end=subscription.current_period_end,
            from_credit=subscription.credit,
            priced_at=priced_at,
            created_at=now,
        )
    )


def _announce_change(state: PortalState, customer: Customer, result: PlanChangeResult) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    invoice, subscription, previous = result.invoice, result.subscription, result.previous
    if invoice is not None:
        signals.invoice_paid.send(
            app, customer=customer, invoice=invoice, provider_reference=invoice.payment_reference
        )
    signals.plan_changed.send(
        app, customer=customer, subscription=subscription, previous=previous, invoice=invoice, when=NOW
    )


def _email_change(state: PortalState, customer: Customer, result: PlanChangeResult, mail: MailBatch) -> None:
    send_email(
        state,
        "plan_changed",
        customer,
        batch=mail,
        subscription=result.subscription,
        previous=result.previous,
        invoice=result.invoice,
        scheduled=False,
        link=subscription_link(state, result.subscription),
    )


def schedule_plan_change(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    *,
    now: datetime,
) -> Subscription:
    """Set ``plan`` (at ``quantity`` seats) to start at the end of the
    current period; nothing is charged now. Tells the merchant (audit log,
    ``plan_change_scheduled``). Raises :class:`SubscriptionNotFound` and
    :class:`~flask_customer_portal.storage.StateConflict`."""
    scheduled = state.storage.schedule_plan_change(
        customer.id,
        subscription.id,
        plan_id=plan.id,
        quantity=quantity,
        now=now,
        event=AuditEvent(
            customer_id=customer.id,
            action="subscription.plan_change_scheduled",
            occurred_at=now,
            subject_id=subscription.id,
            details={
                "from_plan_id": subscription.plan_id or "",
                "to_plan_id": plan.id,
                "quantity": str(quantity),
            },
        ),
    )
    if scheduled is None:
        raise SubscriptionNotFound(subscription.id)
    notify.announce(state, signals.plan_change_scheduled, customer, subscription=scheduled, plan=plan)
    return scheduled


def withdraw_scheduled_change(
    state: PortalState, customer: Customer, subscription: Subscription, *, now: datetime
) -> Subscription:
    """Withdraw the plan change set for the period's end. Tells the merchant
    (audit log, ``plan_change_schedule_cancelled``). Raises
    :class:`SubscriptionNotFound` and
    :class:`~flask_customer_portal.storage.StateConflict` (none is set)."""
    kept = state.storage.schedule_plan_change(
        customer.id,
        subscription.id,
        plan_id=None,
        quantity=None,
        now=now,
        event=AuditEvent(
            customer_id=customer.id,
            action="subscription.plan_change_schedule_cancelled",
            occurred_at=now,
            subject_id=subscription.id,
            details={"plan_id": subscription.scheduled_plan_id or ""},
        ),
    )
    if kept is None:
        raise SubscriptionNotFound(subscription.id)
    notify.announce(state, signals.plan_change_schedule_cancelled, customer, subscription=kept)
    return kept
