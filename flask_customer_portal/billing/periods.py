"""Billing rules: billing periods, which invoices may still change (and,
as they grow, the rules that move money)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from ..storage import Invoice, InvoiceStatus

__all__ = [
    "BILLING_DETAILS_STATUSES",
    "add_interval",
    "add_months",
    "invoice_takes_billing_details",
]

#: The only invoices that can still be given billing details: issued but
#: not finalised. A paid invoice is a final document (the customer may have
#: downloaded it, booked it, claimed its VAT); a void or refunded one is
#: closed. They keep the billing details they were issued with, or none.
#: The store applies this in the same conditional update that adds the
#: details, so it holds against every race.
BILLING_DETAILS_STATUSES = frozenset({InvoiceStatus.OPEN})


def invoice_takes_billing_details(invoice: Invoice) -> bool:
    """Whether the customer's current billing details can be added to
    ``invoice``: it has none, and it is still open. Never for a paid, void
    or refunded invoice, whatever the details say."""
    return invoice.billing_details is None and invoice.status in BILLING_DETAILS_STATUSES


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus whole calendar months, clamped to the month's end:
    31 January + 1 month is 28 (or 29) February, never 3 March."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_interval(moment: datetime, interval: str, count: int = 1) -> datetime:
    """``moment`` plus ``count`` billing intervals (day, week, month, year)."""
    if interval == "day":
        return moment + timedelta(days=count)
    if interval == "week":
        return moment + timedelta(weeks=count)
    if interval == "month":
        return add_months(moment, count)
    if interval == "year":
        return add_months(moment, 12 * count)
    raise ValueError(f"unknown billing interval {interval!r}")
