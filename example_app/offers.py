"""The demo shop's retention offers: what a customer who is about to cancel
is offered instead, by the reason they give (see the portal's
``docs/subscriptions.rst``). Every kind of offer shows in the demo."""

from __future__ import annotations

from flask_customer_portal import (
    CancellationReason,
    Customer,
    DiscountOffer,
    PauseOffer,
    PlanOffer,
    RetentionOffer,
    Subscription,
)

__all__ = ["CHEAPER_PLAN", "retention_offer"]

#: The plan offered to a customer who does not use their plan enough.
CHEAPER_PLAN = {
    "plan_sync_pro_monthly": "plan_sync_basic_monthly",
    "plan_sync_business_monthly": "plan_sync_pro_monthly",
    "plan_sync_pro_idr_monthly": "plan_sync_basic_idr_monthly",
}


def retention_offer(
    customer: Customer, subscription: Subscription, reason: CancellationReason
) -> RetentionOffer | None:
    """30 % off three renewals if it costs too much, a two-month pause for
    a break, a cheaper plan if it is not used enough; nothing otherwise."""
    if reason.code == "too_expensive":
        return DiscountOffer(percent=30, renewals=3)
    if reason.code == "temporary":
        return PauseOffer(months=2)
    if reason.code == "not_using" and subscription.plan_id in CHEAPER_PLAN:
        return PlanOffer(plan_id=CHEAPER_PLAN[subscription.plan_id])
    return None
