"""The signed quote a plan-change preview carries.

It names the change (the subscription, the plan, the quantity and the
second it was priced at), a random id (the change's, which makes the
proration invoice's id, so a double submit or a retry charges once), and
what the customer was shown: the amount due now and the plan's price and
interval. The confirmation charges exactly that or nothing, for
:data:`QUOTE_MAX_AGE` seconds, or for as long as its payment is still
being confirmed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..money import Money
from ..state import PortalState
from ..storage import Customer, InvoiceStatus, Plan, PromotionCode, Subscription
from .plan_change import Quote, proration_invoice_id
from .promotions import apply_to_proration
from .proration import Proration, prorate

__all__ = ["QUOTE_MAX_AGE", "QuotedChange", "make_quote", "read_quote"]

#: How long a preview's figures hold, in seconds.
QUOTE_MAX_AGE = 30 * 60

_QUOTE_SALT = "customer-portal-plan-quote"


def _serializer(secret_key: str | bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=_QUOTE_SALT)


def make_quote(
    secret_key: str | bytes,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    priced_at: datetime,
    promotion: PromotionCode | None = None,
    *,
    proration: Proration | None = None,
) -> str:
    """The signed quote of a preview priced at ``priced_at``, with the
    promotion code the customer entered, if any. ``proration`` is the
    payment company's own preview, when it changes the plan itself."""
    if proration is None:
        proration, _off = apply_to_proration(prorate(subscription, plan, quantity, priced_at), promotion)
    return _serializer(secret_key).dumps(
        {
            "pc": None if promotion is None else promotion.key,
            "s": subscription.id,
            "p": plan.id,
            "q": quantity,
            "t": int(priced_at.timestamp()),
            "n": secrets.token_urlsafe(18),
            "a": proration.due_now,
            "c": proration.currency,
            "u": plan.price.amount,
            "i": plan.interval,
            "k": plan.interval_count,
        }
    )


@dataclass(frozen=True, slots=True)
class QuotedChange:
    """What a valid quote says: when it was priced, the change's id and
    the figures it showed."""

    priced_at: datetime
    change_id: str
    shown: Quote
    promotion_code: str | None = None
    """The promotion code the preview applied."""


def _quoted(data: dict[str, Any]) -> Quote | None:
    """The figures a quote showed, or ``None`` if it has none (a quote made
    before they were recorded is priced again)."""
    amount, currency, unit, interval, count = (data.get(k) for k in ("a", "c", "u", "i", "k"))
    if not (
        isinstance(amount, int)
        and isinstance(unit, int)
        and isinstance(count, int)
        and isinstance(currency, str)
        and isinstance(interval, str)
    ):
        return None
    try:
        return Quote(Money(amount, currency), Money(unit, currency), interval, count)
    except ValueError:
        return None


def read_quote(
    state: PortalState,
    customer: Customer,
    secret_key: str | bytes,
    token: str,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    *,
    now: datetime,
) -> QuotedChange | None:
    """A valid quote for this very change: fresh, or older but with its
    payment still being confirmed (pressing confirm again must settle it,
    however late). ``None`` for anything else."""
    try:
        data, signed_at = _serializer(secret_key).loads(token, return_timestamp=True)
    except BadSignature:
        return None
    if not isinstance(data, dict) or (data.get("s"), data.get("p"), data.get("q")) != (
        subscription.id,
        plan.id,
        quantity,
    ):
        return None
    shown = _quoted(data)
    if shown is None:
        return None
    change_id = str(data["n"])
    if (now - signed_at).total_seconds() > QUOTE_MAX_AGE:
        pending = state.storage.get_invoice(customer.id, proration_invoice_id(subscription, change_id))
        if pending is None or pending.status is not InvoiceStatus.OPEN:
            return None
    code = data.get("pc")
    return QuotedChange(
        datetime.fromtimestamp(int(data["t"]), tz=timezone.utc),
        change_id,
        shown,
        code if isinstance(code, str) else None,
    )
