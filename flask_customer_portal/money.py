"""Money: integer minor units plus an ISO 4217 currency, never floats.

Every rule about how many minor digits a currency has lives here, so that a
payment provider adapter, the PDF renderer and the templates agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from babel import Locale
from babel.numbers import format_currency, get_currency_precision
from iso4217 import Currency

__all__ = ["Money", "display_digits", "format_money", "minor_unit_exponent"]

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")

#: Currencies whose minor unit exists in ISO 4217 (and at the payment
#: providers) but is never shown to people: prices are whole amounts.
_NO_DISPLAY_DECIMALS = frozenset({"IDR", "HUF", "TWD", "UGX", "ISK", "CLP"})


#: Minor digits of a code ISO 4217 does not list, or lists without any
#: (funds, precious metals): the standard's usual two.
_DEFAULT_EXPONENT = 2


@lru_cache(maxsize=512)
def minor_unit_exponent(currency: str) -> int:
    """Number of minor digits of ``currency`` as stored: its ISO 4217 minor
    unit, as the payment providers count it.

    ``USD`` → 2 (cents), ``JPY`` → 0, ``KWD`` → 3, ``IDR`` → 2 (sen, as
    Stripe and ISO count it, though nobody displays them). It comes from the
    ISO 4217 table (the ``iso4217`` package), never from CLDR, whose digits
    are how many people write and change with Babel releases (Babel 2.19 says
    0 for IDR and HUF): an amount stored in minor units must keep its
    meaning whatever Babel is installed.
    """
    try:
        exponent = Currency(currency).exponent
    except ValueError:
        return _DEFAULT_EXPONENT
    return _DEFAULT_EXPONENT if exponent is None else int(exponent)


@lru_cache(maxsize=512)
def display_digits(currency: str) -> int:
    """Number of fraction digits shown to a customer for ``currency``: none
    for the currencies in which prices are whole amounts (IDR, HUF, …),
    otherwise what CLDR uses, never more than the stored minor digits."""
    if currency in _NO_DISPLAY_DECIMALS:
        return 0
    return min(minor_unit_exponent(currency), int(get_currency_precision(currency)))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units (``amount=1999, currency="USD"`` is $19.99)."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("Money.amount must be an int in minor units")
        if not _CURRENCY_RE.match(self.currency):
            raise ValueError(f"not an ISO 4217 currency code: {self.currency!r}")

    @property
    def decimal(self) -> Decimal:
        """The amount in major units as an exact :class:`~decimal.Decimal`."""
        return Decimal(self.amount).scaleb(-minor_unit_exponent(self.currency))

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)


def format_money(money: Money, locale: Locale | str) -> str:
    """Format ``money`` for people reading ``locale``.

    >>> format_money(Money(1999, "USD"), "en")
    '$19.99'
    >>> format_money(Money(15000000, "IDR"), "id")
    'Rp150.000'
    """
    loc = locale if isinstance(locale, Locale) else Locale.parse(locale)
    return _formatted(money, loc)


@lru_cache(maxsize=4096)
def _formatted(money: Money, loc: Locale) -> str:
    """:func:`format_money`, remembered: a billing history repeats the same
    few amounts, and Babel takes some 10 µs to format one."""
    digits = display_digits(money.currency)
    if digits == get_currency_precision(money.currency):
        return str(format_currency(money.decimal, money.currency, locale=loc))
    # Give the locale's own pattern that many fraction digits ("¤#,##0.00"
    # → "¤#,##0", "#,##0.00 ¤" → "#,##0 ¤") so the symbol keeps its local
    # position.
    pattern = loc.currency_formats["standard"].pattern.split(";")[0]
    fraction = "." + "0" * digits if digits else ""
    shown = re.sub(r"\.[0#]+", fraction, pattern)
    return str(
        format_currency(money.decimal, money.currency, locale=loc, format=shown, currency_digits=False)
    )
