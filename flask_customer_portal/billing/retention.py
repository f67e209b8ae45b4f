"""Whether the merchant's retention offer can be made, what a retention
discount takes off a renewal, and taking an offer instead of cancelling.
The offers themselves are in :mod:`flask_customer_portal.offers`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .. import signals
from ..errors import SubscriptionNotFound
from ..money import Money
from ..offers import CancellationReason, DiscountOffer, PauseOffer, PlanOffer, RetentionOffer
from ..state import PortalState
from ..storage import AuditEvent, Customer, Subscription, SubscriptionStatus
from .lifecycle import rules_for
from .notify import announce
from .pausing import can_pause, may_pause, pause_subscription
from .plan_change import plan_changes_supported
from .proration import discount_amount

__all__ = [
    "AcceptedOffer",
    "accept_offer",
    "discount_amount",
    "discounted_price",
    "offer_for",
    "retention_offer_for",
]

logger = logging.getLogger("flask_customer_portal")


def discounted_price(subscription: Subscription, percent: int) -> Money:
    """What one renewal costs with a retention discount of ``percent``."""
    price = subscription.price
    return Money(price.amount - discount_amount(price.amount, percent), price.currency)


def offer_for(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    reason: CancellationReason,
    *,
    now: datetime,
) -> RetentionOffer | None:
    """The merchant's offer for this cancellation, if the customer's rules
    and the store allow it: a pause only where pausing is allowed, a plan
    only where plan changes are and the rules allow that plan."""
    rules = rules_for(customer, subscription)
    pausable = may_pause(state, rules) and can_pause(subscription, now)

    def may_change_plan(plan_id: str) -> bool:
        return plan_changes_supported(state) and rules.allows_plan(plan_id)

    return retention_offer_for(
        state, customer, subscription, reason, may_pause=pausable, may_change_plan=may_change_plan
    )


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


@dataclass(frozen=True, slots=True)
class AcceptedOffer:
    """An offer taken instead of cancelling: the subscription as it is now."""

    offer: PauseOffer | DiscountOffer
    subscription: Subscription


def accept_offer(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    reason: CancellationReason,
    *,
    now: datetime,
) -> AcceptedOffer | None:
    """Apply the offer the merchant makes *now* for ``reason`` (never the one
    a page showed earlier): a pause or a discount on the next renewals.
    ``None`` when there is no such offer any more (a plan offer is taken on
    the plan-change page). Tells the merchant (audit log,
    ``retention_offer_accepted``) once the change is saved.

    Raises :class:`SubscriptionNotFound` and
    :class:`~flask_customer_portal.storage.StateConflict`."""
    offer = offer_for(state, customer, subscription, reason, now=now)
    reason_details = {"reason": reason.code}
    if isinstance(offer, PauseOffer):
        applied = pause_subscription(
            state,
            customer,
            subscription.id,
            months=offer.months,
            now=now,
            details={"retention_offer": "pause", **reason_details},
        )
    elif isinstance(offer, DiscountOffer):
        discounted = state.storage.set_retention_discount(
            customer.id,
            subscription.id,
            percent=offer.percent,
            renewals=offer.renewals,
            event=AuditEvent(
                customer_id=customer.id,
                action="retention_offer.accepted",
                occurred_at=now,
                subject_id=subscription.id,
                details={
                    "offer": "discount",
                    "percent": str(offer.percent),
                    "renewals": str(offer.renewals),
                    **reason_details,
                },
            ),
        )
        if discounted is None:
            raise SubscriptionNotFound(subscription.id)
        applied = discounted
    else:
        return None
    announce(
        state,
        signals.retention_offer_accepted,
        customer,
        subscription=applied,
        offer=offer,
        reason=reason,
    )
    return AcceptedOffer(offer=offer, subscription=applied)
