"""Money: integer minor units plus an ISO 4217 currency, never floats.

Every rule about how many minor digits a currency has lives here, so that a
payment provider adapter, the PDF renderer and the templates agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from babel import Locale
from babel.numbers import format_currency, get_currency_precision

__all__ = ["Money", "display_digits", "format_money", "minor_unit_exponent"]

_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")

#: Currencies whose minor unit exists in ISO 4217 (and at the payment
#: providers) but is never shown to people: prices are whole amounts.
_NO_DISPLAY_DECIMALS = frozenset({"IDR", "HUF", "TWD", "UGX", "ISK", "CLP"})


def minor_unit_exponent(currency: str) -> int:
    """Number of minor digits of ``currency`` as stored (ISO 4217 / CLDR).

    ``USD`` → 2 (cents), ``JPY`` → 0, ``IDR`` → 2 (sen, as Stripe and ISO
    count it, though nobody displays them).
    """
    return int(get_currency_precision(currency))


def display_digits(currency: str) -> int:
    """Number of fraction digits shown to a customer for ``currency``."""
    if currency in _NO_DISPLAY_DECIMALS:
        return 0
    return minor_unit_exponent(currency)


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
    if display_digits(money.currency) == minor_unit_exponent(money.currency):
        return str(format_currency(money.decimal, money.currency, locale=loc))
    # Drop the fraction from the locale's own pattern ("¤#,##0.00" → "¤#,##0",
    # "#,##0.00 ¤" → "#,##0 ¤") so the symbol keeps its local position.
    pattern = loc.currency_formats["standard"].pattern.split(";")[0]
    whole = re.sub(r"\.[0#]+", "", pattern)
    return str(
        format_currency(money.decimal, money.currency, locale=loc, format=whole, currency_digits=False)
    )
