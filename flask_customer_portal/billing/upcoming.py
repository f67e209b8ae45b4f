"""The next renewal invoice of a subscription, as the customer will see it.

Built by the same steps as the renewal itself (the period's price, the
retention discount while it has renewals to go, then account credit), so
the preview on the subscription page is the invoice that renewal issues.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..money import Money
from ..storage import Subscription, SubscriptionStatus
from .period_invoices import period_invoice, with_retention_discount
from .proration import apply_credit, discount_amount

__all__ = ["UpcomingRenewal", "retention_discount", "upcoming_renewal"]


@dataclass(frozen=True, slots=True)
class UpcomingRenewal:
    """What the next renewal charges, and why."""

    due_at: datetime
    price: Money
    """The period at the subscription's price."""
    discount: Money
    """The retention discount taken off (zero without one)."""
    credit_used: Money
    """Account credit taken off after the discount."""
    total: Money
    """What the renewal charges to the payment method."""


def upcoming_renewal(subscription: Subscription, now: datetime) -> UpcomingRenewal | None:
    """The next renewal of an ``active`` subscription that renews; ``None``
    when it does not (paused, on hold, set to end, ended) or when a plan
    change is scheduled for the period's end (the page explains that
    change instead of guessing the new plan's invoice)."""
    if (
        subscription.status is not SubscriptionStatus.ACTIVE
        or subscription.cancel_at_period_end
        or subscription.scheduled_plan_id is not None
        or subscription.current_period_end <= now
    ):
        return None
    start = subscription.current_period_end
    plain = period_invoice("renewal", subscription, now, start=start)
    discounted = with_retention_discount(plain, subscription)
    draft, _left = apply_credit(discounted, subscription.credit, "Account credit")
    currency = subscription.price.currency
    return UpcomingRenewal(
        due_at=start,
        price=Money(plain.subtotal, currency),
        discount=Money(plain.subtotal - discounted.subtotal, currency),
        credit_used=Money(discounted.subtotal - draft.subtotal, currency),
        total=Money(draft.total, currency),
    )


def retention_discount(subscription: Subscription) -> tuple[int, int] | None:
    """``(percent, renewals)`` of an accepted retention discount still to
    be used, or ``None``."""
    if subscription.discount_percent <= 0 or subscription.discount_renewals <= 0:
        return None
    if discount_amount(subscription.price.amount, subscription.discount_percent) <= 0:
        return None
    return subscription.discount_percent, subscription.discount_renewals
