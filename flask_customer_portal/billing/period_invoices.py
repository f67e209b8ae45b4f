"""The invoice for one period of a subscription, as a renewal, a
reactivation and the preview of the next charge draft it: its id, the
same on every try of the same period, its line, and the retention
discount."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime

from ..storage import Invoice, InvoiceLine, InvoiceStatus, Subscription
from .periods import add_interval
from .proration import discount_amount

__all__ = ["derived_invoice_id", "period_invoice", "with_retention_discount"]


def derived_invoice_id(kind: str, subscription: Subscription) -> str:
    """The same id for the same period's invoice on every try, so that a
    retry after a crash reuses the idempotency key instead of making a new
    one (and charging again)."""
    seed = f"{kind}|{subscription.id}|{subscription.current_period_end.isoformat()}"
    return "in_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def period_invoice(kind: str, subscription: Subscription, now: datetime, start: datetime) -> Invoice:
    """An open invoice for one period of ``subscription`` from ``start``, at
    its price, with the id derived from ``kind`` and the subscription's
    current period (so a retry finds the same invoice)."""
    end = add_interval(start, subscription.interval, subscription.interval_count)
    description = f"{subscription.product_name} — {subscription.plan_name}"
    price = subscription.price.amount
    return Invoice(
        id=derived_invoice_id(kind, subscription),
        number="",
        customer_id=subscription.customer_id,
        status=InvoiceStatus.OPEN,
        currency=subscription.price.currency,
        subtotal=price,
        tax=0,
        total=price,
        issued_at=now,
        description=description,
        subscription_id=subscription.id,
        lines=(
            InvoiceLine(
                f"{description} ({start.date().isoformat()} to {end.date().isoformat()})", 1, price, price
            ),
        ),
    )


def with_retention_discount(invoice: Invoice, subscription: Subscription) -> Invoice:
    """``invoice`` with the subscription's retention discount as a negative
    line, while it has renewals to go (see
    :class:`~flask_customer_portal.billing.retention.DiscountOffer`)."""
    if subscription.discount_renewals <= 0 or subscription.discount_percent <= 0:
        return invoice
    off = discount_amount(invoice.subtotal, subscription.discount_percent)
    if off <= 0:
        return invoice
    line = InvoiceLine(f"Discount ({subscription.discount_percent}% off)", 1, -off, -off)
    return replace(
        invoice,
        subtotal=invoice.subtotal - off,
        total=invoice.total - off,
        lines=(*invoice.lines, line),
    )
