"""A Stripe invoice's charge attempts, kept in the invoice's own metadata
(one key per attempt, ``portal_attempt_<n>``): Stripe is where the
invoice lives, so the attempt log lives with it, read and written under
the portal's lock (a subscription's or an invoice's)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ...billing.collect import idempotency_key
from ...storage import ChargeAttempt, ChargeAttemptStatus
from ._convert import from_timestamp

__all__ = ["ATTEMPT_KEY", "attempt_metadata", "attempts_in"]

#: The metadata key of an attempt, before its number.
ATTEMPT_KEY = "portal_attempt_"


def _attempt_to_metadata(attempt: ChargeAttempt) -> str:
    return json.dumps(
        {
            "s": str(attempt.status),
            "a": attempt.amount,
            "c": int(attempt.created_at.timestamp()),
            "pm": attempt.payment_method_id,
            "d": attempt.decline_reason,
            "r": attempt.provider_reference,
            "t": int(attempt.resolved_at.timestamp()) if attempt.resolved_at else None,
        },
        separators=(",", ":"),
    )


def _attempt_from_metadata(
    invoice: Mapping[str, Any], customer_id: str, number: int, value: str
) -> ChargeAttempt:
    data = json.loads(value)
    invoice_id = str(invoice["id"])
    return ChargeAttempt(
        invoice_id=invoice_id,
        attempt=number,
        idempotency_key=idempotency_key(invoice_id, number),
        customer_id=customer_id,
        amount=int(data["a"]),
        currency=str(invoice.get("currency") or "usd").upper(),
        status=ChargeAttemptStatus(data["s"]),
        created_at=from_timestamp(data["c"]) or datetime.now(timezone.utc),
        payment_method_id=data.get("pm"),
        decline_reason=data.get("d"),
        provider_reference=data.get("r"),
        resolved_at=from_timestamp(data.get("t")),
    )


def attempts_in(data: Mapping[str, Any], customer_id: str) -> Sequence[ChargeAttempt]:
    """The attempts kept in the Stripe invoice ``data``'s metadata, in order."""
    metadata = data.get("metadata") or {}
    found = []
    for key, value in metadata.items():
        if key.startswith(ATTEMPT_KEY) and key[len(ATTEMPT_KEY) :].isdigit():
            found.append(_attempt_from_metadata(data, customer_id, int(key[len(ATTEMPT_KEY) :]), value))
    return sorted(found, key=lambda a: a.attempt)


def attempt_metadata(attempt: ChargeAttempt) -> dict[str, str]:
    """The metadata that records ``attempt`` on its invoice."""
    return {f"{ATTEMPT_KEY}{attempt.attempt}": _attempt_to_metadata(attempt)}
