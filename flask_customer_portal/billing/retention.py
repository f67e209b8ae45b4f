"""Whether the merchant's retention offer can be made, and what a
retention discount takes off a renewal. The offers themselves are in
:mod:`flask_customer_portal.offers`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..offers import CancellationReason, DiscountOffer, PauseOffer, PlanOffer, RetentionOffer
from ..state import PortalState
from ..storage import Customer, Subscription, SubscriptionStatus

__all__ = ["discount_amount", "retention_offer_for"]

logger = logging.getLogger("flask_customer_portal")


def discount_amount(amount: int, percent: int) -> int:
    """``percent`` of ``amount`` minor units, rounded half up to a whole
    minor unit (never more than ``amount``)."""
    return min(amount, (amount * percent + 50) // 100)


def retention_offer_for(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    reason: CancellationReason,
    *,
    may_pause: bool,
    may_change_plan: Callable[[str], bool],
) -> RetentionOffer | None:
    """The merchant's offer for this cancellation, if it can be shown.

    A function that raises or returns something else is logged and makes
    no offer: a customer can always cancel.
    """
    function = state.hooks.retention_offer
    if function is None:
        return None
    try:
        offer = function(customer, subscription, reason)
    except Exception:
        logger.exception("The retention offer function failed for subscription %s", subscription.id)
        return None
    if offer is None:
        return None
    if not isinstance(offer, PauseOffer | PlanOffer | DiscountOffer):
        logger.error(
            "The retention offer function returned %s; expected a PauseOffer, PlanOffer, "
            "DiscountOffer or None",
            type(offer).__name__,
        )
        return None
    if isinstance(offer, PauseOffer):
        pausable = subscription.status is SubscriptionStatus.ACTIVE and not subscription.cancel_at_period_end
        if not (may_pause and pausable and offer.months <= state.config.max_pause_months):
            return None
        if not state.capabilities.pause:
            return None
    elif isinstance(offer, PlanOffer):
        if not may_change_plan(offer.plan_id):
            return None
    elif subscription.discount_renewals > 0 or not state.capabilities.retention_discount:
        return None
    return offer
