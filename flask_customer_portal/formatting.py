"""Dates, times, payment methods and decline reasons as a customer reads them.

Shared by the HTML pages, the emails and the PDF renderer so that all three
show the same date for the same moment and the same words for the same card
or refusal. Datetimes are stored as aware UTC and shown in the customer's
time zone: a naive datetime is refused rather than guessed at, because
guessing wrong moves a payment to another day. Everything but
:func:`decline_text` (which translates in the current locale) is a pure
function with no Flask dependency.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date as _babel_format_date
from babel.dates import format_datetime as _babel_format_datetime
from babel.dates import format_interval as _babel_format_interval
from babel.dates import format_time as _babel_format_time

from .i18n import lazy_gettext as _l
from .storage import PaymentMethod

__all__ = [
    "decline_text",
    "format_card",
    "format_date",
    "format_date_interval",
    "format_datetime",
    "format_datetime_zoned",
    "format_payment_method",
    "localize_dates",
    "machine_datetime",
    "resolve_timezone",
    "to_timezone",
]

#: How card brands are written, keyed by the provider's lower-case id.
_CARD_BRANDS = {
    "amex": "American Express",
    "american_express": "American Express",
    "diners": "Diners Club",
    "diners_club": "Diners Club",
    "discover": "Discover",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def resolve_timezone(tz: str | None) -> tzinfo:
    """The time zone named ``tz`` (IANA, e.g. ``"Asia/Jakarta"``); ``None`` is UTC.

    An unknown or malformed name raises :class:`ValueError`: showing a date in
    the wrong zone without saying so is worse than failing loudly.
    """
    if tz is None:
        return timezone.utc
    try:
        return _zone(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {tz!r}") from exc


def to_timezone(dt: datetime, tz: str | None) -> datetime:
    """``dt`` (aware) as wall-clock time in ``tz`` (``None`` is UTC)."""
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        raise ValueError(
            f"naive datetime {dt.isoformat()!r}: pass an aware datetime "
            "(the portal stores UTC, e.g. datetime.now(timezone.utc))"
        )
    return dt.astimezone(resolve_timezone(tz))


def format_date(dt: datetime, locale: Locale | str, tz: str | None, *, format: str = "long") -> str:
    """The calendar date of ``dt`` in ``tz``, written for ``locale``.

    >>> from datetime import datetime, timezone
    >>> format_date(datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc), "id", "Asia/Jakarta")
    '6 Maret 2026'

    ``format`` is a Babel date format name (``short``, ``medium``, ``long``,
    ``full``) or a CLDR pattern.
    """
    return str(_babel_format_date(to_timezone(dt, tz).date(), format=format, locale=locale))


def format_datetime(dt: datetime, locale: Locale | str, tz: str | None, *, format: str = "medium") -> str:
    """Date and time of ``dt`` in ``tz``, written for ``locale``.

    >>> from datetime import datetime, timezone
    >>> format_datetime(datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc), "en", "UTC")
    'Mar 5, 2026, 11:30:00\\u202fPM'
    """
    local = to_timezone(dt, tz)
    return str(_babel_format_datetime(local, format=format, tzinfo=local.tzinfo, locale=locale))


def machine_datetime(dt: datetime) -> str:
    """``dt`` as a ``<time datetime>`` value: UTC to the second, with ``Z``.

    HTML allows at most three digits of a second's fraction, and a page
    never needs more than the second, so microseconds are dropped rather
    than rounded (a time never moves into the next second).

    >>> from datetime import datetime, timezone, timedelta
    >>> machine_datetime(datetime(2026, 3, 5, 23, 30, 7, 999999, tzinfo=timezone(timedelta(hours=7))))
    '2026-03-05T16:30:07Z'
    """
    return to_timezone(dt, "UTC").replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_datetime_zoned(dt: datetime, locale: Locale | str, tz: str | None) -> str:
    """Date, time to the minute and time zone of ``dt`` in ``tz``, for ``locale``.

    A time without its zone is ambiguous for a customer who travels or
    whose merchant is abroad, so every time the portal shows says which
    clock it is on:

    >>> from datetime import datetime, timezone
    >>> format_datetime_zoned(datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc), "en", "UTC")
    'Mar 5, 2026, 11:30\u202fPM UTC'
    >>> format_datetime_zoned(datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc), "id", "Asia/Jakarta")
    '6 Mar 2026 06.30 WIB'
    """
    local = to_timezone(dt, tz)
    babel_locale = Locale.parse(locale) if isinstance(locale, str) else locale
    time_pattern = babel_locale.time_formats["short"].pattern + " z"
    time_text = str(_babel_format_time(local, time_pattern, tzinfo=local.tzinfo, locale=babel_locale))
    date_text = str(_babel_format_date(local.date(), format="medium", locale=babel_locale))
    joined = str(babel_locale.datetime_formats["medium"]).replace("'", "")
    return joined.replace("{0}", time_text).replace("{1}", date_text)


def format_date_interval(
    start: datetime | date, end: datetime | date, locale: Locale | str, tz: str | None = None
) -> str:
    """A span of calendar days as the customer's language writes it:
    "1 Dec 2026, en dash, 1 Jan 2027" in British English, "1 Des 2026",
    a closed-up en dash and "1 Jan 2027" in Indonesian; never an English
    "to" between ISO dates. Datetimes are taken in ``tz``.

    >>> from datetime import date
    >>> format_date_interval(date(2026, 12, 1), date(2027, 1, 1), "id")
    '1 Des 2026\u20131 Jan 2027'
    """
    first = to_timezone(start, tz).date() if isinstance(start, datetime) else start
    last = to_timezone(end, tz).date() if isinstance(end, datetime) else end
    return str(_babel_format_interval(first, last, "yMMMd", locale=locale))


#: An ISO date span (``2026-12-01 to 2027-01-01``) or a lone ISO date in a
#: stored line description: invoice lines are written once, in the
#: merchant's words, and read later in the customer's language.
_ISO_SPAN = re.compile(r"(\d{4}-\d{2}-\d{2}) to (\d{4}-\d{2}-\d{2})|(\d{4}-\d{2}-\d{2})")


def localize_dates(text: str, locale: Locale | str) -> str:
    """``text`` with its ISO dates and ``<date> to <date>`` spans written for
    ``locale``; anything that is not a real date is left as it is.

    >>> localize_dates("Acme Sync Pro (2026-12-01 to 2027-01-01)", "en")
    'Acme Sync Pro (Dec 1, 2026\\u2009\\u2013\\u2009Jan 1, 2027)'
    """

    def replace(match: re.Match[str]) -> str:
        try:
            if match.group(3) is not None:
                day = date.fromisoformat(match.group(3))
                return str(_babel_format_date(day, format="medium", locale=locale))
            start, end = date.fromisoformat(match.group(1)), date.fromisoformat(match.group(2))
        except ValueError:
            return match.group(0)
        return format_date_interval(start, end, locale)

    return _ISO_SPAN.sub(replace, text)


def format_payment_method(method: PaymentMethod) -> str:
    """``Visa •••• 4242``: the brand and last four digits, never more."""
    return format_card(method.brand, method.last4)


def format_card(brand: str, last4: str) -> str:
    """``Visa •••• 4242`` from a card brand as the provider names it and
    the card's last four digits."""
    brand = brand.strip()
    name = _CARD_BRANDS.get(brand.lower()) or brand.replace("_", " ").title() or "Card"
    return f"{name} \u2022\u2022\u2022\u2022 {last4}"


#: The words for each decline code, translated when shown.
_DECLINE_TEXTS = {
    "generic_decline": _l("The bank declined the payment."),
    "insufficient_funds": _l("The card has insufficient funds."),
    "expired_card": _l("The card has expired."),
    "incorrect_cvc": _l("The security code (CVC) was wrong."),
    "no_payment_method": _l("There was no payment method to charge."),
    "requires_action": _l("The bank asked for a confirmation that was not completed."),
}


def decline_text(reason: str | None, *, keep_unknown: bool = False) -> str:
    """Why a payment was refused, in the customer's language, from its
    decline code (a :class:`~flask_customer_portal.payments.DeclineReason`,
    ``no_payment_method`` or ``requires_action``). Any other reason reads as
    the bank's plain refusal, unless ``keep_unknown``: a subscription's
    ``hold_reason`` may be a sentence its back end wrote for the customer,
    shown as it is."""
    code = "" if reason is None else str(reason)
    text = _DECLINE_TEXTS.get(code)
    if text is None:
        return code if keep_unknown and code else str(_DECLINE_TEXTS["generic_decline"])
    return str(text)
