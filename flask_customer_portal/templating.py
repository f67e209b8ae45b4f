"""What every portal template (page or email) gets in its context."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask_babel import get_locale

from .formatting import format_date, format_datetime
from .i18n import gettext, ngettext
from .money import Money, format_money

if TYPE_CHECKING:
    from .extension import PortalState
    from .storage import Customer

__all__ = ["template_context"]


def template_context(state: PortalState, customer: Customer | None) -> dict[str, Any]:
    """Helpers bound to the current locale and the customer's time zone.

    Templates call ``_()`` for text, ``money(amount, currency)`` or
    ``money(Money)`` for amounts and ``date(dt)`` / ``datetime(dt)`` for
    times, so a theme never formats numbers or dates by hand.
    """
    tz = (customer.timezone if customer is not None else None) or state.config.default_timezone

    def locale() -> str:
        return str(get_locale() or state.config.default_locale)

    def money(amount: Money | int, currency: str | None = None) -> str:
        value = amount if isinstance(amount, Money) else Money(amount, currency or "USD")
        return format_money(value, locale())

    def date(value: datetime | None) -> str:
        return "" if value is None else format_date(value, locale(), tz)

    def date_time(value: datetime | None) -> str:
        return "" if value is None else format_datetime(value, locale(), tz)

    return {
        "_": gettext,
        "gettext": gettext,
        "ngettext": ngettext,
        "money": money,
        "date": date,
        "datetime": date_time,
        "portal": state.config,
        "portal_locale": locale,
    }
