"""Dodo's discount codes at a plan change, for :class:`~.store.DodoBilling`
(:class:`~flask_customer_portal.capabilities.TakesProviderPlanChangeCodes`).

A code is looked up with ``GET /discounts/code/{code}`` (Dodo keeps codes
upper case) and sent with the plan change and its preview
(``discount_codes`` of ``POST /subscriptions/{id}/change-plan[/preview]``),
so Dodo discounts the change's charge and the renewals after it for the
code's ``subscription_cycles``. Dodo enforces the code's restrictions
(``restricted_to`` products, ``expires_at``, ``usage_limit``, who may
redeem it) and counts its use; a refusal is a
:class:`ProviderPromotionCodeRefused`, which the portal answers as it
answers an unknown code. The id of a Dodo code, for the portal, is the
code itself: that is what the change-plan API takes.

Dodo adds a discount to a subscription only with a plan change, so this
store does not take codes on a subscription
(:class:`~flask_customer_portal.capabilities.TakesProviderPromotionCodes`).
Its ``discount_codes`` replace the subscription's discounts: one that has a
discount already is refused (``has_discount``), as on the other back ends.

Dodo's preview names no discount: what the code takes off is the preview's
total without it less its total with it, both asked for at the same moment.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ...capabilities import (
    ProviderPlanChangeDeclined,
    ProviderPlanPreview,
    ProviderPromotionCode,
    ProviderPromotionCodeRefused,
)
from ...clock import utcnow
from ...money import Money
from ...records import PromotionCode, PromotionDuration
from ...storage import StateConflict
from ._convert import optional_utc, plan_preview_of

if TYPE_CHECKING:
    from dodopayments import DodoPayments

__all__ = ["DodoDiscountCodes", "discount_record", "refusal_code"]

logger = logging.getLogger("flask_customer_portal")

R = TypeVar("R")

#: What Dodo accepts as a code (3 to 16 characters); anything else is not
#: looked up.
_CODE_RE = re.compile(r"^[A-Z0-9_-]{3,16}$")
#: Dodo's percentages are in basis points (1500 is 15 %).
_BASIS_POINTS = 100


def discount_record(discount: Any, now: datetime) -> PromotionCode | None:
    """A Dodo discount as the portal's record, for what the customer is
    shown; ``None`` if it is not one the portal can show."""
    cycles = discount.subscription_cycles
    if cycles is None:
        duration, periods = PromotionDuration.FOREVER, 1
    elif cycles <= 1:
        duration, periods = PromotionDuration.ONCE, 1
    else:
        duration, periods = PromotionDuration.REPEATING, int(cycles)
    starts = optional_utc(discount.starts_at)
    limit = discount.usage_limit or None
    terms: dict[str, Any] = {
        "duration": duration,
        "duration_periods": periods,
        "expires_at": optional_utc(discount.expires_at),
        "plan_ids": frozenset(discount.restricted_to or ()),
        "max_redemptions": limit,
        "active": (starts is None or starts <= now) and (limit is None or discount.times_used < limit),
    }
    try:
        if discount.type == "percentage":
            # Fractions of a percent (5.4 %) are shown whole; Dodo computes
            # the discount itself.
            percent = min(max(round(int(discount.amount) / _BASIS_POINTS), 1), 100)
            return PromotionCode(str(discount.code), percent_off=percent, **terms)
        if discount.type == "flat" and int(discount.amount) > 0:
            return PromotionCode(
                str(discount.code), amount_off=Money(int(discount.amount), _flat_currency(discount)), **terms
            )
    except (TypeError, ValueError):
        logger.warning("A Dodo discount could not be read")
    return None


def _flat_currency(discount: Any) -> str:
    """A flat discount's currency: its default currency option's, else USD
    (the only currency Dodo takes for a flat amount without options)."""
    options: Sequence[Any] = discount.currency_options or ()
    for option in options:
        if option.is_default:
            return str(option.currency).upper()
    return "USD"


def refusal_code(exc: BaseException) -> str:
    """The error code Dodo answered a refused request with, upper case ("" if none)."""
    body = getattr(exc.__cause__, "body", None)
    code = body.get("code") if isinstance(body, dict) else None
    return str(code or "").upper()


class DodoDiscountCodes:
    """The store's methods of
    :class:`~flask_customer_portal.capabilities.TakesProviderPlanChangeCodes`."""

    client: DodoPayments

    if TYPE_CHECKING:

        def _call(self, what: str, func: Callable[[], R]) -> R: ...

        def _or_none(self, what: str, func: Callable[[], R]) -> R | None: ...

        def _held(self, customer_id: str, subscription_id: str) -> AbstractContextManager[object]: ...

        def _raw_subscriptions(self, customer_id: str) -> list[Any]: ...

        def _change_plan(
            self,
            subscription_id: str,
            plan_id: str,
            quantity: int,
            idempotency_key: str,
            discount_codes: Sequence[str] = (),
        ) -> None: ...

        def preview_provider_plan_change(
            self, customer_id: str, subscription_id: str, *, plan_id: str, quantity: int, at: datetime
        ) -> ProviderPlanPreview | None: ...

    def find_provider_promotion_code(self, customer_id: str, code: str) -> ProviderPromotionCode | None:
        """``GET /discounts/code/{code}``: the code, any case, if Dodo has it
        and it is redeemable now by a customer who has bought before."""
        typed = code.strip().upper()
        if not _CODE_RE.match(typed):
            return None
        try:
            found = self._or_none(
                "discounts.retrieve_by_code", lambda: self.client.discounts.retrieve_by_code(typed)
            )
        except StateConflict:
            # Dodo refused to validate it: not a code this customer may use.
            return None
        if found is None or str(found.code).upper() != typed:
            return None
        # A customer changing plans has bought before.
        if found.customer_eligibility == "first_time":
            return None
        record = discount_record(found, utcnow())
        return None if record is None else ProviderPromotionCode(typed, record)

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
        """Dodo's preview of the change with the code, and what it took off."""
        raw = next(
            (s for s in self._raw_subscriptions(customer_id) if s.subscription_id == subscription_id), None
        )
        if raw is None:
            return None
        if raw.discounts or raw.discount_id:
            raise ProviderPromotionCodeRefused("the subscription has a discount", has_discount=True)
        plain = self.preview_provider_plan_change(
            customer_id, subscription_id, plan_id=plan_id, quantity=quantity, at=at
        )
        if plain is None:
            return None
        try:
            answer = self._or_none(
                "subscriptions.preview_change_plan",
                lambda: self.client.subscriptions.preview_change_plan(
                    subscription_id,
                    product_id=plan_id,
                    quantity=quantity,
                    proration_billing_mode="prorated_immediately",
                    discount_codes=[promotion_code_id],
                ),
            )
        except StateConflict as exc:
            raise self._refused(exc, subscription_id) from exc
        if answer is None:
            # The subscription was there a moment ago: what is missing is the code.
            raise ProviderPromotionCodeRefused(f"Dodo Payments does not know the code on {subscription_id!r}")
        coded = plan_preview_of(answer.immediate_charge, plan_id)
        off = max(plain.due_now.amount - coded.due_now.amount, 0)
        # The credit and the new plan's price as without the code: what the
        # code took off is shown on its own line.
        return replace(
            coded,
            unused=plain.unused,
            new_charge=plain.new_charge,
            from_plan_id=plain.from_plan_id,
            from_quantity=plain.from_quantity,
            discount=Money(off, coded.due_now.currency),
        )

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
        """The change with the code in one call, charging the saved method
        now; Dodo applies both or neither (``prevent_change``). Taken under
        the portal's lock of the subscription, as
        :meth:`~.store.DodoBilling.make_provider_plan_change` is."""
        with self._held(customer_id, subscription_id):
            preview = self.preview_provider_plan_change_with_code(
                customer_id,
                subscription_id,
                plan_id=plan_id,
                quantity=quantity,
                at=at,
                promotion_code_id=promotion_code_id,
            )
            if preview is None:
                return None
            try:
                self._change_plan(
                    subscription_id, plan_id, quantity, idempotency_key, discount_codes=[promotion_code_id]
                )
            except ProviderPlanChangeDeclined:
                raise
            except StateConflict as exc:
                raise self._refused(exc, subscription_id) from exc
        return preview

    @staticmethod
    def _refused(exc: StateConflict, subscription_id: str) -> ProviderPromotionCodeRefused:
        """Dodo's refusal of a request that carried a code — logged without
        the code, answered as one."""
        logger.info(
            "Dodo Payments refused a discount code on %s: %s",
            subscription_id,
            refusal_code(exc) or "invalid",
        )
        return ProviderPromotionCodeRefused(f"Dodo Payments refused the discount code on {subscription_id!r}")
