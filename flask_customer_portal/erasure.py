"""Erasing a customer's personal data (GDPR art. 17, "right to erasure").

:meth:`CustomerPortal.erase_customer <flask_customer_portal.CustomerPortal.erase_customer>`
and ``flask portal erase-customer`` call :func:`erase_customer`. What is
removed, what is kept for the invoices, and why, is in ``docs/privacy.rst``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from flask import current_app

from . import signals
from .errors import CustomerNotFound, PortalError
from .storage import (
    ERASED_EMAIL_DOMAIN,
    AuditEvent,
    ErasureReport,
    StateConflict,
    Subscription,
)

if TYPE_CHECKING:
    from .state import PortalState

__all__ = ["ErasureRefused", "erase_customer", "erased_email"]


class ErasureRefused(PortalError):
    """The customer still has subscriptions that are not cancelled (active,
    on hold, paused, or set to end at period end). Cancel them, or erase
    with ``force=True`` (``--force``), which cancels them now."""

    def __init__(self, customer_id: str, subscriptions: tuple[Subscription, ...]) -> None:
        self.customer_id = customer_id
        self.subscriptions = subscriptions
        listed = ", ".join(f"{s.id} ({s.status})" for s in subscriptions)
        super().__init__(
            f"customer {customer_id!r} has subscriptions that are not cancelled: {listed}; "
            "cancel them first, or erase with force=True (flask portal erase-customer --force), "
            "which cancels them now"
        )


def erased_email() -> str:
    """A fresh placeholder address that nothing is ever delivered to."""
    return f"erased-{secrets.token_hex(8)}@{ERASED_EMAIL_DOMAIN}"


def erase_customer(
    state: PortalState,
    customer_id: str,
    *,
    force: bool = False,
    actor: str = "merchant",
    details: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> ErasureReport:
    """Erase ``customer_id``'s personal data; see
    :meth:`~flask_customer_portal.CustomerPortal.erase_customer`."""
    now = now or datetime.now(timezone.utc)
    storage = state.storage
    customer = storage.get_customer(customer_id)
    if customer is None:
        raise CustomerNotFound(customer_id)
    if not state.capabilities.erase:
        raise TypeError(f"{type(storage).__name__} cannot erase customers (it has no erase_customer)")
    current = tuple(s for s in storage.list_subscriptions(customer_id) if s.is_current)
    if current and not force:
        raise ErasureRefused(customer_id, current)
    cancelled: list[Subscription] = []
    for subscription in current:
        # At the store that holds it (a payment company's too): nothing is
        # renewed or charged for an erased customer.
        try:
            ended = storage.cancel_subscription(
                customer_id,
                subscription.id,
                at_period_end=False,
                now=now,
                event=AuditEvent(
                    customer_id=customer_id,
                    action="subscription.cancelled",
                    occurred_at=now,
                    subject_id=subscription.id,
                    actor=actor,
                    details={"at_period_end": "false", "reason": "erasure"},
                ),
            )
        except StateConflict:  # cancelled in the meantime
            continue
        if ended is not None:
            cancelled.append(ended)
    report = storage.erase_customer(
        customer_id,
        email=erased_email(),
        now=now,
        event=AuditEvent(
            customer_id=customer_id,
            action="customer.erased",
            occurred_at=now,
            actor=actor,
            details={
                **dict(details or {}),
                "forced": "true" if force else "false",
                "subscriptions_cancelled": str(len(cancelled)),
            },
        ),
    )
    if report is None:  # deleted in the meantime
        raise CustomerNotFound(customer_id)
    signals.customer_erased.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        report=report,
        cancelled=tuple(cancelled),
    )
    return report
