"""Proration: what a plan change costs now, to the second, in whole minor units.

One rounding rule, in one place (:func:`share`): a part of a price is
``amount * seconds left / seconds in the period``, rounded half up to the
smallest unit the currency is shown in — a cent for USD, a whole rupiah for
IDR (whose sen exist at the payment providers but never on a price tag).
The moment of the change counts in whole seconds (10:00:00.9 is
10:00:00).

A change that keeps the billing cycle (same interval) credits the unused
time of the old plan and charges the remaining time of the new one; the
period end stays. A change to another interval (monthly to yearly) starts a
new period now: the new plan's full price, less the unused time of the old
one. What the customer is owed beyond what is due (a downgrade) is kept as
the subscription's ``credit`` and taken off the next renewal invoices.

Also here, because renewals need them without the portal's views: applying
a change scheduled for period end, and taking credit off a renewal invoice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from fractions import Fraction

from ..money import Money, display_digits, minor_unit_exponent
from ..storage import AuditEvent, Invoice, InvoiceLine, Plan, PlanStore, Subscription, SubscriptionLock
from .periods import add_interval

__all__ = [
    "Proration",
    "apply_credit",
    "apply_scheduled_change",
    "discount_amount",
    "is_upgrade",
    "prorate",
    "rounding_quantum",
    "share",
]

_SECOND = timedelta(seconds=1)

#: Periods of each interval in a year, to compare prices across intervals.
_PER_YEAR = {"day": 365, "week": 52, "month": 12, "year": 1}


def rounding_quantum(currency: str) -> int:
    """The smallest amount, in minor units, a prorated part is rounded to:
    1 for USD (a cent), 100 for IDR (a whole rupiah), 1 for JPY."""
    return int(10 ** max(0, minor_unit_exponent(currency) - display_digits(currency)))


def share(amount: int, part: int, whole: int, currency: str) -> int:
    """``amount * part / whole``, rounded half up to :func:`rounding_quantum`.

    The only rounding of the plan-change arithmetic. ``amount`` and ``part``
    are 0 or more, ``whole`` more than 0 and ``part <= whole``.
    """
    if amount < 0 or part < 0 or whole <= 0 or part > whole:
        raise ValueError(f"cannot take {part}/{whole} of {amount}")
    quantum = rounding_quantum(currency)
    numerator = amount * part
    denominator = whole * quantum
    return (2 * numerator + denominator) // (2 * denominator) * quantum


def yearly_amount(amount: Money, interval: str, interval_count: int) -> Fraction:
    """What ``amount`` every ``interval_count`` ``interval`` comes to in a year."""
    return Fraction(amount.amount * _PER_YEAR[interval], interval_count)


def is_upgrade(subscription: Subscription, plan: Plan, quantity: int) -> bool:
    """Whether moving to ``quantity`` of ``plan`` costs more per year than
    the subscription does now. Equal prices count as a downgrade."""
    return yearly_amount(plan.amount_for(quantity), plan.interval, plan.interval_count) > yearly_amount(
        subscription.price, subscription.interval, subscription.interval_count
    )


def keeps_cycle(subscription: Subscription, plan: Plan) -> bool:
    return (subscription.interval, subscription.interval_count) == (plan.interval, plan.interval_count)


@dataclass(frozen=True, slots=True)
class Proration:
    """What changing plan at ``now`` comes to (minor units of ``currency``)."""

    currency: str
    unused: int
    """Credit for the unused time of the old plan."""
    new_charge: int
    """The new plan's price for the time it covers from now."""
    credit_used: int
    """Of the subscription's existing credit, what pays for this change."""
    due_now: int
    credit_after: int
    """The subscription's credit after the change."""
    period_start: datetime
    period_end: datetime
    """The period the subscription is in after the change."""
    seconds_left: int
    seconds_total: int

    @property
    def resets_period(self) -> bool:
        return self.seconds_total == 0

    def money(self, amount: int) -> Money:
        return Money(amount, self.currency)

    @property
    def due_now_money(self) -> Money:
        return Money(self.due_now, self.currency)

    @property
    def unused_money(self) -> Money:
        return Money(self.unused, self.currency)

    @property
    def new_charge_money(self) -> Money:
        return Money(self.new_charge, self.currency)

    @property
    def credit_used_money(self) -> Money:
        return Money(self.credit_used, self.currency)

    @property
    def credit_after_money(self) -> Money:
        return Money(self.credit_after, self.currency)


def prorate(subscription: Subscription, plan: Plan, quantity: int, now: datetime) -> Proration:
    """The cost of moving ``subscription`` to ``quantity`` of ``plan`` at ``now``."""
    currency = subscription.price.currency
    if plan.price.currency != currency:
        raise ValueError(f"plan {plan.id!r} is in {plan.price.currency}, the subscription in {currency}")
    start, end = subscription.current_period_start, subscription.current_period_end
    total = (end - start) // _SECOND
    if total <= 0:
        raise ValueError("the subscription's period is empty")
    now = now.replace(microsecond=0)
    left = min(max((end - now) // _SECOND, 0), total)
    unused = share(subscription.price.amount, left, total, currency)
    new_amount = plan.amount_for(quantity).amount
    if keeps_cycle(subscription, plan):
        new_charge = share(new_amount, left, total, currency)
        period_start, period_end, seconds_total = start, end, total
    else:
        new_charge = new_amount
        period_start, period_end = now, add_interval(now, plan.interval, plan.interval_count)
        seconds_total = 0
    net = new_charge - unused
    credit = subscription.credit
    if net <= 0:
        credit_used, due_now, credit_after = 0, 0, credit - net
    else:
        credit_used = min(credit, net)
        due_now, credit_after = net - credit_used, credit - credit_used
    return Proration(
        currency=currency,
        unused=unused,
        new_charge=new_charge,
        credit_used=credit_used,
        due_now=due_now,
        credit_after=credit_after,
        period_start=period_start,
        period_end=period_end,
        seconds_left=left,
        seconds_total=seconds_total,
    )


def apply_credit(invoice: Invoice, credit: int, description: str) -> tuple[Invoice, int]:
    """Take up to ``credit`` off an unissued ``invoice`` as a negative line.
    Returns the invoice and the credit left over."""
    used = min(credit, invoice.subtotal)
    if used <= 0:
        return invoice, credit
    lines = (*invoice.lines, InvoiceLine(description, 1, -used, -used))
    subtotal = invoice.subtotal - used
    return replace(invoice, lines=lines, subtotal=subtotal, total=subtotal + invoice.tax), credit - used


def apply_scheduled_change(
    plans: PlanStore, lock: SubscriptionLock, now: datetime, actor: str = "system"
) -> Plan | None:
    """At renewal: move the locked subscription to the plan scheduled for
    the end of its period. Returns the plan it moved to, or ``None``. A
    scheduled plan that no longer fits (withdrawn, another product or
    currency, a quantity out of bounds) is dropped and the subscription
    renews on its plan; both are in the audit log."""
    subscription = lock.subscription
    if subscription.scheduled_plan_id is None:
        return None
    plan = plans.get_plan(subscription.scheduled_plan_id)
    quantity = subscription.scheduled_quantity or 1
    fits = (
        plan is not None
        and plan.active
        and plan.product_name == subscription.product_name
        and plan.price.currency == subscription.price.currency
        and (not plan.per_seat or plan.min_quantity <= quantity <= plan.max_quantity)
    )
    details = {"from_plan_id": subscription.plan_id or "", "to_plan_id": subscription.scheduled_plan_id}
    if plan is None or not fits:
        lock.clear_scheduled_change()
        lock.record_event(
            AuditEvent(
                customer_id=subscription.customer_id,
                action="subscription.plan_change_dropped",
                occurred_at=now,
                subject_id=subscription.id,
                actor=actor,
                details=details,
            )
        )
        return None
    quantity = quantity if plan.per_seat else 1
    lock.change_plan(plan, quantity, credit=subscription.credit)
    lock.record_event(
        AuditEvent(
            customer_id=subscription.customer_id,
            action="subscription.plan_changed",
            occurred_at=now,
            subject_id=subscription.id,
            actor=actor,
            details={**details, "quantity": str(quantity), "when": "period_end"},
        )
    )
    return plan


def discount_amount(amount: int, percent: int) -> int:
    """``percent`` of ``amount`` minor units, rounded half up to a whole
    minor unit (never more than ``amount``)."""
    return min(amount, (amount * percent + 50) // 100)
