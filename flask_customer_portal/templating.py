"""What every portal template (page or email) gets in its context."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from babel import Locale
from flask_babel import get_locale

from .formatting import (
    decline_text,
    format_date,
    format_date_interval,
    format_datetime_zoned,
    format_payment_method,
    localize_dates,
    machine_datetime,
)
from .i18n import domain, language_tag, text_direction
from .money import Money, format_money
from .urls import external_url

if TYPE_CHECKING:
    from .state import PortalState
    from .storage import Customer

__all__ = ["template_context"]


def template_context(state: PortalState, customer: Customer | None) -> dict[str, Any]:
    """Helpers bound to the current locale and the customer's time zone.

    Templates call ``_()`` for text, ``money(amount, currency)`` or
    ``money(Money)`` for amounts, ``date(dt)`` / ``datetime(dt)`` (with its
    time zone) / ``date_range(start, end)`` for
    times, ``datetime_attr(dt)`` for a ``<time datetime>`` value,
    ``card_text(method)`` for a card, ``decline_text(code)`` for a
    refused payment and ``external_url(page, **values)`` for an absolute
    link (emails), so a theme never formats numbers, dates or links by hand.
    """
    tz = (customer.timezone if customer is not None else None) or state.config.default_timezone
    # Made inside the page's (or email's) forced locale, so the catalogue and
    # the Babel locale are looked up once per render, not once per string.
    babel_locale = get_locale() or Locale.parse(state.config.default_locale)
    translations = domain.get_translations()

    def locale() -> str:
        return language_tag(str(babel_locale))

    def gettext(string: str, **variables: Any) -> str:
        text = str(translations.ugettext(string))
        return text % variables if variables else text

    def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
        variables.setdefault("num", num)
        return str(translations.ungettext(singular, plural, num)) % variables

    def money(amount: Money | int, currency: str | None = None) -> str:
        value = amount if isinstance(amount, Money) else Money(amount, currency or "USD")
        return format_money(value, babel_locale)

    def date(value: datetime | None) -> str:
        return "" if value is None else format_date(value, babel_locale, tz)

    def date_time(value: datetime | None) -> str:
        return "" if value is None else format_datetime_zoned(value, babel_locale, tz)

    def date_range(start: datetime, end: datetime) -> str:
        return format_date_interval(start, end, babel_locale, tz)

    def dates_in(text: str) -> str:
        return localize_dates(text, babel_locale)

    def link(page: str, /, **values: Any) -> str:
        return external_url(state, page, **values)

    return {
        "_": gettext,
        "gettext": gettext,
        "ngettext": ngettext,
        "money": money,
        "date": date,
        "datetime": date_time,
        "datetime_attr": machine_datetime,
        "date_range": date_range,
        "dates_in": dates_in,
        "portal": state.config,
        "portal_locale": locale,
        # Emails too: an Arabic email reads right to left in every mail client.
        "portal_text_direction": text_direction(babel_locale),
        "card_text": format_payment_method,
        "decline_text": decline_text,
        "external_url": link,
    }
