"""Billing rules: billing periods (and, as they grow, the rules that move money)."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

__all__ = ["add_interval", "add_months"]


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
