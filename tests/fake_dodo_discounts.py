"""Dodo's discount codes as the fake Dodo server keeps and checks them
(see :mod:`fake_dodo`): records shaped like ``POST /discounts`` makes them,
and the checks Dodo makes when a plan change carries codes."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["asked_codes", "discount_off", "new_discount", "refusal"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def new_discount(
    code: str,
    *,
    business_id: str,
    now: datetime,
    amount: int,
    type: str = "percentage",
    restricted_to: tuple[str, ...] = (),
    expires_at: datetime | None = None,
    starts_at: datetime | None = None,
    usage_limit: int | None = None,
    times_used: int = 0,
    subscription_cycles: int | None = None,
    customer_eligibility: str = "any",
) -> dict[str, Any]:
    """A discount as ``POST /discounts`` makes it: the code upper case, a
    ``percentage`` ``amount`` in basis points (1000 is 10 %), a ``flat`` one
    in cents."""
    return {
        "amount": amount,
        "business_id": business_id,
        "code": code.upper(),
        "created_at": _iso(now - timedelta(days=30)),
        "customer_eligibility": customer_eligibility,
        "discount_id": "dsc_" + secrets.token_hex(8),
        "metadata": {},
        "preserve_on_plan_change": False,
        "restricted_to": list(restricted_to),
        "times_used": times_used,
        "type": type,
        "expires_at": _iso(expires_at) if expires_at else None,
        "starts_at": _iso(starts_at) if starts_at else None,
        "usage_limit": usage_limit,
        "subscription_cycles": subscription_cycles,
    }


def refusal(discount: dict[str, Any], now: datetime, product_id: str | None = None) -> str | None:
    """Why Dodo would not apply ``discount`` now (to ``product_id``), or ``None``."""
    if discount["expires_at"] and _parse(discount["expires_at"]) <= now:
        return "DISCOUNT_EXPIRED"
    if discount["starts_at"] and _parse(discount["starts_at"]) > now:
        return "DISCOUNT_NOT_STARTED"
    if discount["usage_limit"] is not None and discount["times_used"] >= discount["usage_limit"]:
        return "DISCOUNT_USAGE_LIMIT_REACHED"
    if product_id is not None and discount["restricted_to"] and product_id not in discount["restricted_to"]:
        return "DISCOUNT_NOT_APPLICABLE"
    return None


def asked_codes(body: dict[str, Any]) -> list[str] | str:
    """The codes a change-plan body carries (``discount_codes``, or the
    deprecated ``discount_code``), or what is wrong with the request."""
    if body.get("discount_code") and body.get("discount_codes") is not None:
        return "discount_code and discount_codes"
    codes = body.get("discount_codes") or ([body["discount_code"]] if body.get("discount_code") else [])
    if len(codes) > 20:
        return "at most 20 discount codes"
    return [str(code).upper() for code in codes]


def discount_off(discount: dict[str, Any], charge: int) -> int:
    """What ``discount`` takes off ``charge`` (minor units)."""
    if discount["type"] == "percentage":
        return round(charge * discount["amount"] / 10000)
    return min(discount["amount"], charge)
