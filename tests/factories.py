"""Records for the tests, one builder per kind: plain defaults at
:data:`T0` that a test changes by keyword (``subscription("sub_a",
status=SubscriptionStatus.ON_HOLD)``), as :func:`dataclasses.replace` does.

They build records only; the tests add them to a store themselves.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from flask_customer_portal.money import Money
from flask_customer_portal.storage import (
    Customer,
    Invoice,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyStatus,
    LinkPurpose,
    LinkRecord,
    PaymentMethod,
    PortalSessionRecord,
    Subscription,
    SubscriptionStatus,
)

__all__ = [
    "BIG",
    "JAKARTA",
    "T0",
    "UTC",
    "card",
    "customer",
    "invoice",
    "license_key",
    "link",
    "portal_session",
    "subscription",
    "vat_invoice",
]

UTC = timezone.utc
JAKARTA = timezone(timedelta(hours=7))
T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
BIG = 2**40 + 7  # far beyond a 32-bit integer


def customer(customer_id: str = "cus_a", email: str | None = None, **kw: Any) -> Customer:
    return dataclasses.replace(
        Customer(
            id=customer_id,
            email=email or f"{customer_id}@example.com",
            name=f"Name of {customer_id}",
            created_at=T0,
        ),
        **kw,
    )


def card(pm_id: str, customer_id: str = "cus_a", **kw: Any) -> PaymentMethod:
    return dataclasses.replace(
        PaymentMethod(
            id=pm_id,
            customer_id=customer_id,
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2030,
            provider_token=f"tok_{pm_id}",
            created_at=T0,
        ),
        **kw,
    )


def subscription(sub_id: str, customer_id: str = "cus_a", **kw: Any) -> Subscription:
    return dataclasses.replace(
        Subscription(
            id=sub_id,
            customer_id=customer_id,
            product_name="Pro",
            plan_name="Monthly",
            price=Money(1999, "USD"),
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.ACTIVE,
            current_period_start=T0,
            current_period_end=T0 + timedelta(days=31),
            created_at=T0,
        ),
        **kw,
    )


def invoice(inv_id: str, customer_id: str = "cus_a", **kw: Any) -> Invoice:
    return dataclasses.replace(
        Invoice(
            id=inv_id,
            number=f"INV-{customer_id}-{inv_id}",
            customer_id=customer_id,
            status=InvoiceStatus.PAID,
            currency="USD",
            subtotal=1999,
            tax=0,
            total=1999,
            issued_at=T0,
            description="Pro plan",
        ),
        **kw,
    )


def license_key(key_id: str, customer_id: str = "cus_a", **kw: Any) -> LicenseKey:
    return dataclasses.replace(
        LicenseKey(
            id=key_id,
            customer_id=customer_id,
            key=f"KEY-{key_id}",
            product_name="Desktop app",
            status=LicenseKeyStatus.ACTIVE,
            activations=1,
            activation_limit=3,
            created_at=T0,
        ),
        **kw,
    )


def link(token_hash: str = "h" * 64, customer_id: str = "cus_a", **kw: Any) -> LinkRecord:
    return dataclasses.replace(
        LinkRecord(
            token_hash=token_hash,
            purpose=LinkPurpose.SESSION_LINK,
            customer_id=customer_id,
            created_at=T0,
            expires_at=T0 + timedelta(hours=24),
        ),
        **kw,
    )


def portal_session(session_id: str, customer_id: str = "cus_a") -> PortalSessionRecord:
    return PortalSessionRecord(
        id=session_id,
        customer_id=customer_id,
        auth_version=1,
        created_at=T0,
        last_seen_at=T0,
        user_agent="Mozilla/5.0 (test)",
    )


def vat_invoice(inv_id: str, customer_id: str = "cus_a", **kw: Any) -> Invoice:
    """An invoice in euros with 19 % VAT (10.00 + 1.90), numbered after its id."""
    return invoice(
        inv_id,
        customer_id,
        **{"number": f"INV-{inv_id}", "currency": "EUR", "subtotal": 1000, "tax": 190, "total": 1190, **kw},
    )
