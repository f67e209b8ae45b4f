"""Stripe's own promotion codes, for :class:`~.store.StripeBillingStore`
(:class:`~flask_customer_portal.capabilities.TakesProviderPromotionCodes`).

A code is looked up with ``GET /v1/promotion_codes?code=…&active=true``
(its coupon expanded, for the terms the portal shows) and applied as the
subscription's discount (``discounts=[{"promotion_code": …}]``): on the
plan-change update itself, so the proration invoice and the renewals after
it are discounted by Stripe, or alone, from the subscription page. Stripe
enforces the code's restrictions (``max_redemptions``, ``expires_at``, the
customer it is for, ``first_time_transaction``, a minimum amount) and
counts its use; a refusal is a :class:`ProviderPromotionCodeRefused`,
which the portal answers as it answers an unknown code.

A subscription has one discount at a time here as on the local store: one
that has a discount at Stripe already is refused (``has_discount``), since
Stripe's ``discounts`` would replace it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import stripe

from ...capabilities import ProviderPlanPreview, ProviderPromotionCode, ProviderPromotionCodeRefused
from ...money import Money
from ...records import PromotionCode, PromotionDuration
from ...storage import Subscription
from ._convert import as_dict, from_timestamp, object_id
from ._discounts import subscription_expansions

__all__ = ["StripePromotionCodes", "discount_of", "promotion_code_record"]

logger = logging.getLogger("flask_customer_portal")

#: What Stripe accepts in a code; anything else is not looked up.
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

_DURATIONS = {
    "once": PromotionDuration.ONCE,
    "repeating": PromotionDuration.REPEATING,
    "forever": PromotionDuration.FOREVER,
}


def _coupon(data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The code's coupon, expanded: ``promotion.coupon`` in the current API
    version, ``coupon`` in earlier ones."""
    promotion = data.get("promotion")
    coupon = promotion.get("coupon") if isinstance(promotion, Mapping) else data.get("coupon")
    return coupon if isinstance(coupon, Mapping) else None


def promotion_code_record(data: Mapping[str, Any]) -> PromotionCode | None:
    """A Stripe promotion code (coupon expanded) as the portal's record, for
    what the customer is shown; ``None`` if it is not one the portal can
    show (no valid coupon)."""
    coupon = _coupon(data)
    if coupon is None or coupon.get("valid") is False:
        return None
    expires = [
        t for t in (from_timestamp(data.get("expires_at")), from_timestamp(coupon.get("redeem_by"))) if t
    ]
    terms: dict[str, Any] = {
        "duration": _DURATIONS.get(str(coupon.get("duration")), PromotionDuration.ONCE),
        "duration_periods": max(int(coupon.get("duration_in_months") or 1), 1),
        "expires_at": min(expires) if expires else None,
        "max_redemptions": data.get("max_redemptions") or None,
    }
    percent = coupon.get("percent_off")
    try:
        if percent:
            # Stripe allows fractions (12.5% off); the portal shows whole
            # percents, and Stripe computes the discount itself.
            return PromotionCode(
                str(data["code"]), percent_off=min(max(round(float(percent)), 1), 100), **terms
            )
        if coupon.get("amount_off") and coupon.get("currency"):
            amount = Money(int(coupon["amount_off"]), str(coupon["currency"]).upper())
            return PromotionCode(str(data["code"]), amount_off=amount, **terms)
    except (KeyError, TypeError, ValueError):
        logger.warning("A Stripe promotion code could not be read")
    return None


def discount_of(invoice: Mapping[str, Any], currency: str) -> Money:
    """What an invoice's discounts took off (``total_discount_amounts``)."""
    amounts = invoice.get("total_discount_amounts") or []
    return Money(sum(int(a.get("amount") or 0) for a in amounts), currency)


def _has_discount(subscription: Mapping[str, Any]) -> bool:
    return bool(subscription.get("discounts") or subscription.get("discount"))


def refused(exc: stripe.InvalidRequestError, what: str) -> ProviderPromotionCodeRefused:
    """Stripe's refusal of a request that carried a code: its restrictions
    (or an unknown id) — logged without the code, answered as one."""
    logger.info("Stripe refused a promotion code on %s: %s", what, getattr(exc, "code", None) or "invalid")
    return ProviderPromotionCodeRefused(f"Stripe refused the promotion code on {what}")


class StripePromotionCodes:
    """The store's methods of
    :class:`~flask_customer_portal.capabilities.TakesProviderPromotionCodes`."""

    client: stripe.StripeClient

    if TYPE_CHECKING:

        def _retrieve_subscription(self, customer_id: str, subscription_id: str) -> dict[str, Any] | None: ...

        def _subscription(self, data: Mapping[str, Any], customer_id: str) -> Subscription: ...

        def forget_customer(self, customer_id: str) -> None: ...

        def _preview_change(
            self,
            customer_id: str,
            subscription_id: str,
            plan_id: str,
            quantity: int,
            at: datetime,
            promotion_code_id: str | None = None,
        ) -> ProviderPlanPreview | None: ...

        def _make_change(
            self,
            customer_id: str,
            subscription_id: str,
            plan_id: str,
            quantity: int,
            at: datetime,
            idempotency_key: str,
            promotion_code_id: str | None = None,
        ) -> ProviderPlanPreview | None: ...

    def find_provider_promotion_code(self, customer_id: str, code: str) -> ProviderPromotionCode | None:
        """``GET /v1/promotion_codes?code=…&active=true``: the code, any case,
        if it is active, has a valid coupon and is for everyone or this
        customer."""
        typed = code.strip()
        if not _CODE_RE.match(typed):
            return None
        try:
            found = self.client.v1.promotion_codes.list(
                params={"code": typed, "active": True, "limit": 10, "expand": ["data.promotion.coupon"]}
            )
        except stripe.InvalidRequestError as exc:
            # An account (or a Stripe stand-in such as localstripe) without
            # promotion codes: nothing is found.
            logger.warning("Stripe could not list promotion codes: %s", getattr(exc, "http_status", None))
            return None
        for item in found.data:
            data = as_dict(item)
            if str(data.get("code") or "").upper() != typed.upper() or not data.get("active"):
                continue
            owner = object_id(data.get("customer"))
            if owner is not None and owner != customer_id:
                continue
            record = promotion_code_record(data)
            if record is not None and data.get("id"):
                return ProviderPromotionCode(str(data["id"]), record)
        return None

    def preview_provider_plan_change_with_code(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str,
        quantity: int,
        at: datetime,
        promotion_code_id: str,
    ) -> ProviderPlanPreview | None:
        """Stripe's preview of the change with the code as the
        subscription's discount."""
        self._refuse_a_second_discount(customer_id, subscription_id)
        try:
            return self._preview_change(
                customer_id, subscription_id, plan_id, quantity, at, promotion_code_id
            )
        except stripe.InvalidRequestError as exc:
            raise refused(exc, subscription_id) from exc

    def make_provider_plan_change_with_code(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str,
        quantity: int,
        at: datetime,
        idempotency_key: str,
        promotion_code_id: str,
    ) -> ProviderPlanPreview | None:
        """The change and the code in one update: Stripe applies both or
        neither."""
        self._refuse_a_second_discount(customer_id, subscription_id)
        try:
            return self._make_change(
                customer_id, subscription_id, plan_id, quantity, at, idempotency_key, promotion_code_id
            )
        except stripe.InvalidRequestError as exc:
            raise refused(exc, subscription_id) from exc

    def apply_provider_promotion_code(
        self, customer_id: str, subscription_id: str, *, promotion_code_id: str, idempotency_key: str
    ) -> Subscription | None:
        """``POST /v1/subscriptions/{id}`` with the code as its discount."""
        data = self._retrieve_subscription(customer_id, subscription_id)
        if data is None:
            return None
        if _has_discount(data):
            raise ProviderPromotionCodeRefused("the subscription has a discount", has_discount=True)
        try:
            updated = self.client.v1.subscriptions.update(
                subscription_id,
                params={
                    "discounts": [{"promotion_code": promotion_code_id}],
                    "expand": subscription_expansions(self.client),
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            raise refused(exc, subscription_id) from exc
        finally:
            self.forget_customer(customer_id)
        return self._subscription(as_dict(updated), customer_id)

    def _refuse_a_second_discount(self, customer_id: str, subscription_id: str) -> None:
        data = self._retrieve_subscription(customer_id, subscription_id)
        if data is not None and _has_discount(data):
            raise ProviderPromotionCodeRefused("the subscription has a discount", has_discount=True)
