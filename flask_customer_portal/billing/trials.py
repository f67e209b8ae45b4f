"""Free trials: what a ``trialing`` subscription shows, and what its end does.

A trialing subscription's trial ends at ``current_period_end``. Nothing is
charged before; it may be cancelled at any time during the trial, and then
nothing is ever charged. When the trial ends, ``flask portal renew-due``
takes it like a renewal: the first period is invoiced from the trial's end
and charged; paid, the subscription is ``active``; declined, ``on_hold``
(as any failed renewal). :func:`renews_when_due` and
:func:`status_after_payment` are the two rules the renewal asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..money import Money
from ..records import RENEWING_STATUSES
from ..storage import Subscription, SubscriptionStatus
from .proration import discount_amount

__all__ = [
    "TrialSummary",
    "charge_at_trial_end",
    "is_trialing",
    "renews_when_due",
    "status_after_payment",
    "trial_summary",
]


def is_trialing(subscription: Subscription) -> bool:
    return subscription.status is SubscriptionStatus.TRIALING


def renews_when_due(subscription: Subscription, now: datetime) -> bool:
    """Whether ``renew-due`` renews ``subscription`` at ``now``: an active
    or trialing subscription whose period (or trial) has ended."""
    return subscription.status in RENEWING_STATUSES and subscription.current_period_end <= now


def status_after_payment(subscription: Subscription) -> SubscriptionStatus | None:
    """The status a paid renewal moves ``subscription`` to: ``active`` for
    a trial whose first period is paid; ``None`` keeps the status."""
    if is_trialing(subscription):
        return SubscriptionStatus.ACTIVE
    return None


def charge_at_trial_end(subscription: Subscription) -> Money:
    """What the first period will cost when the trial ends, computed as the
    renewal invoice will be: the price, less a retention discount still to
    be used, less account credit."""
    price = subscription.price
    amount = price.amount
    if subscription.discount_renewals > 0 and subscription.discount_percent > 0:
        amount -= discount_amount(amount, subscription.discount_percent)
    amount -= min(max(subscription.credit, 0), amount)
    return Money(amount, price.currency)


@dataclass(frozen=True, slots=True)
class TrialSummary:
    """What the customer is told about a trial."""

    ends_at: datetime
    """When the trial ends and the first period is charged."""
    charge: Money
    """What will be charged then (nothing if it is set to end)."""
    ends_subscription: bool
    """Cancelled during the trial: it ends with the trial, and nothing is charged."""


def trial_summary(subscription: Subscription) -> TrialSummary | None:
    """The trial's end and its first charge; ``None`` when not trialing."""
    if not is_trialing(subscription):
        return None
    ending = subscription.cancel_at_period_end
    charge = Money(0, subscription.price.currency) if ending else charge_at_trial_end(subscription)
    return TrialSummary(subscription.current_period_end, charge, ending)
