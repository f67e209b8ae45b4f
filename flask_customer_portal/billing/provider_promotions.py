"""The payment company's own promotion codes (Stripe's, Dodo's), where its
billing store takes them: at a plan change
(:class:`~flask_customer_portal.capabilities.TakesProviderPlanChangeCodes`,
Stripe and Dodo) and on a subscription
(:class:`~flask_customer_portal.capabilities.TakesProviderPromotionCodes`,
Stripe only: Dodo adds a discount to a subscription only with a plan change).

The company keeps the codes, checks its restrictions and counts their use;
the portal finds a code by what the customer typed, shows its terms, asks
the company for the preview with it, and applies it with the change (or on
the subscription) under its lock of the subscription, with an idempotency
key. What the customer is told is what the local codes tell: every attempt
counts against the rate limit, and an unknown code, one the company refuses
(used up, expired, for another customer, for first purchases only, below
its minimum amount) or one the company could not be asked about all get
the same answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from ..capabilities import (
    ProviderPlanPreview,
    ProviderPromotionCode,
    ProviderPromotionCodeRefused,
    TakesProviderPlanChangeCodes,
    TakesProviderPromotionCodes,
)
from ..errors import SubscriptionNotFound
from ..state import PortalState
from ..storage import AuditEvent, Customer, Plan, Subscription
from .promotions import CodeRefusal

__all__ = [
    "AppliedAtProvider",
    "ProviderCodeCheck",
    "apply_provider_code",
    "check_provider_code",
    "idempotency_key_for_code",
    "preview_discount",
    "provider_codes_supported",
    "provider_plan_change_codes_supported",
    "provider_store",
]

logger = logging.getLogger("flask_customer_portal")


def provider_plan_change_codes_supported(state: PortalState) -> bool:
    """Whether customers enter the payment company's codes at a plan change:
    its billing store takes them there and the local store can lock its
    subscriptions."""
    return (
        state.capabilities.provider_plan_change_codes
        and state.capabilities.provider_lock
        and isinstance(state.storage, TakesProviderPlanChangeCodes)
    )


def provider_codes_supported(state: PortalState) -> bool:
    """Whether customers enter the payment company's codes on a
    subscription too, outside a plan change."""
    return (
        provider_plan_change_codes_supported(state)
        and state.capabilities.provider_promotion_codes
        and isinstance(state.storage, TakesProviderPromotionCodes)
    )


def provider_store(state: PortalState) -> TakesProviderPlanChangeCodes:
    storage = state.storage
    if not isinstance(storage, TakesProviderPlanChangeCodes):
        raise TypeError("the store does not take the payment company's promotion codes")
    return storage


@dataclass(frozen=True, slots=True)
class ProviderCodeCheck:
    """A company's code this customer may enter, or why not."""

    found: ProviderPromotionCode | None = None
    refusal: CodeRefusal | None = None


def check_provider_code(
    state: PortalState, customer: Customer, plan: Plan | None, text: str, *, now: datetime, count: bool = True
) -> ProviderCodeCheck:
    """The company's code ``text``, if it is active and not expired, and an
    amount off is in ``plan``'s currency. Counts one attempt first
    (``count=False`` looks again, at a confirmation, for the code a signed
    preview applied). The company's other restrictions are checked when the
    code is previewed or applied."""
    if count and state.customer_limits.hit_promotion_code(customer.id) is not None:
        return ProviderCodeCheck(refusal=CodeRefusal.TOO_MANY_TRIES)
    try:
        found = provider_store(state).find_provider_promotion_code(customer.id, text)
    except Exception:
        # The company could not be asked: the same answer as an unknown code.
        logger.exception("Looking up a promotion code at the payment company failed")
        return ProviderCodeCheck(refusal=CodeRefusal.INVALID)
    if found is None or not found.code.active:
        return ProviderCodeCheck(refusal=CodeRefusal.INVALID)
    code = found.code
    if code.expires_at is not None and code.expires_at <= now:
        return ProviderCodeCheck(refusal=CodeRefusal.INVALID)
    if plan is not None and code.amount_off is not None and code.amount_off.currency != plan.price.currency:
        return ProviderCodeCheck(refusal=CodeRefusal.NOT_FOR_PLAN)
    return ProviderCodeCheck(found=found)


def preview_discount(preview: ProviderPlanPreview) -> int:
    """What the company's preview took off for the code (minor units)."""
    return 0 if preview.discount is None else max(preview.discount.amount, 0)


def idempotency_key_for_code(subscription_id: str, code: ProviderPromotionCode) -> str:
    """The key every call applying ``code`` on its own to a subscription carries."""
    return f"promotion_code:{subscription_id}:{code.id}"


@dataclass(frozen=True, slots=True)
class AppliedAtProvider:
    """The subscription with the company's code as its discount, or why not."""

    subscription: Subscription
    refusal: CodeRefusal | None = None


def apply_provider_code(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    found: ProviderPromotionCode,
    *,
    now: datetime,
) -> AppliedAtProvider:
    """Apply the company's code ``found`` to the subscription's next
    invoices. The caller holds the portal's lock of the subscription and
    has read it again under it. Raises :class:`SubscriptionNotFound`."""
    storage = state.storage
    if not isinstance(storage, TakesProviderPromotionCodes):
        raise TypeError("the store does not take the payment company's codes on a subscription")
    store = storage
    try:
        applied = store.apply_provider_promotion_code(
            customer.id,
            subscription.id,
            promotion_code_id=found.id,
            idempotency_key=idempotency_key_for_code(subscription.id, found),
        )
    except ProviderPromotionCodeRefused as exc:
        refusal = CodeRefusal.HAS_DISCOUNT if exc.has_discount else CodeRefusal.INVALID
        return AppliedAtProvider(subscription, refusal=refusal)
    if applied is None:
        raise SubscriptionNotFound(subscription.id)
    code = found.code
    storage.record_event(
        AuditEvent(
            customer_id=customer.id,
            action="subscription.promotion_code_applied",
            occurred_at=now,
            subject_id=subscription.id,
            details={
                "code": code.key,
                "percent": "" if code.percent_off is None else str(code.percent_off),
                "at_provider": "yes",
            },
        )
    )
    return AppliedAtProvider(applied)
