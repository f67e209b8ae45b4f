"""A Stripe subscription's discount as the portal's record shows it.

A promotion code the customer applied from the portal, or a coupon the
merchant put on the subscription in Stripe, becomes the record's
``discount_percent`` and ``discount_renewals`` — the fields the local
store fills for a retention discount or a code — so the subscription page
names the discount and its "Next invoice" takes it off, as for a local
subscription.

Where the discount is depends on the client's API version, and it is read
from the subscription object itself, at no request of its own:

* before ``2025-03-31`` (Basil) a subscription has a ``discount`` with its
  coupon inline;
* since Basil only ``discounts``, a list of ids, expanded by the call that
  reads the subscription (``expand[]=discounts``, ``data.discounts`` in a
  list), each with its coupon inline;
* since ``2025-09-30`` (Clover) a discount's coupon is in
  ``source.coupon`` and no longer expanded by itself, so the expansion
  reaches it (``discounts.source.coupon``).

A coupon's ``duration`` maps to renewals: ``once`` is the next renewal,
``forever`` every one, ``repeating`` the renewals that fall before the
discount's ``end``. Only a percent off is shown: the record keeps a percent,
and an amount off (Stripe's ``amount_off``) is left to Stripe's invoice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import stripe

from ...billing.periods import add_interval
from ...billing.promotions import FOREVER_RENEWALS
from ._convert import from_timestamp
from ._refunds import _api_version

__all__ = [
    "COUPON_IN_SOURCE",
    "DISCOUNT_REMOVED",
    "subscription_discount",
    "subscription_expansions",
]

#: The API version that left a subscription only its ``discounts`` (ids).
DISCOUNT_REMOVED = "2025-03-31"
#: The API version that moved a discount's coupon to ``source.coupon``.
COUPON_IN_SOURCE = "2025-09-30"


def subscription_expansions(client: stripe.StripeClient, *, prefix: str = "") -> list[str]:
    """What a call for a subscription expands so that it carries its
    discounts' coupons, for the client's API version; a list call's
    ``prefix`` is ``"data."``."""
    version = _api_version(client)
    if version < DISCOUNT_REMOVED:
        return []
    if version < COUPON_IN_SOURCE:
        return [f"{prefix}discounts"]
    return [f"{prefix}discounts.source.coupon"]


def _coupons(data: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """``(discount, coupon)`` of each discount whose coupon is readable."""
    found: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    for discount in data.get("discounts") or ():
        if not isinstance(discount, Mapping):
            continue  # an id: the call did not expand it
        source = discount.get("source")
        coupon = discount.get("coupon") or (source.get("coupon") if isinstance(source, Mapping) else None)
        if isinstance(coupon, Mapping):
            found.append((discount, coupon))
    legacy = data.get("discount")
    if not found and isinstance(legacy, Mapping) and isinstance(legacy.get("coupon"), Mapping):
        found.append((legacy, legacy["coupon"]))
    return found


def _renewals(
    discount: Mapping[str, Any], coupon: Mapping[str, Any], period_end: datetime, interval: str, count: int
) -> int:
    """How many renewals, from the one at ``period_end``, the discount
    takes its percent off."""
    duration = coupon.get("duration")
    if duration == "forever":
        return FOREVER_RENEWALS
    end = from_timestamp(discount.get("end"))
    if duration != "repeating" or end is None:
        # ``once``: Stripe takes it off the next invoice, then removes it.
        return 1
    renewals, due = 0, period_end
    while due < end and renewals < FOREVER_RENEWALS:
        renewals += 1
        due = add_interval(due, interval, count)
    return renewals


def subscription_discount(
    data: Mapping[str, Any], *, period_end: datetime, interval: str, interval_count: int
) -> tuple[int, int]:
    """The record's ``(discount_percent, discount_renewals)`` of a Stripe
    subscription ``data``; ``(0, 0)`` without a percent discount still to
    be used. Stripe stacks several discounts; the record shows one, the
    first with a percent off."""
    for discount, coupon in _coupons(data):
        try:
            percent = float(coupon.get("percent_off") or 0)
            renewals = _renewals(discount, coupon, period_end, interval, max(interval_count, 1))
        except (TypeError, ValueError):
            continue
        if percent <= 0 or renewals <= 0:
            continue
        # Stripe allows fractions (12.5% off); the record keeps whole percents.
        return min(max(round(percent), 1), 100), renewals
    return 0, 0
