"""The payment-method form: one of the customer's saved methods, or a new card.

A new card comes either as raw details (``card_number``, ``exp_month``,
``exp_year``, ``cvc``; the test provider in test mode only) or as a token
made by the payment provider's own card element (``payment_token``).

The card number and the security code are never shown back: their inputs
always render empty, so a page sent back with an error cannot leak them
(into the HTML, a proxy's cache or a screenshot). The expiry month and year
are shown back, as long as they look like a month and a year.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wtforms import Field, HiddenField, StringField

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..payments import CardDetails, luhn_valid
from ..storage import PaymentMethod
from .common import PortalForm

__all__ = [
    "NEW_CARD",
    "NewCard",
    "NewToken",
    "PaymentChoice",
    "PaymentMethodForm",
    "SavedMethod",
    "card_expired",
    "clean_card_number",
]

#: The ``payment_method`` value that asks for a new card.
NEW_CARD = "new"
#: Provider tokens longer than this are not tokens.
TOKEN_MAX_LENGTH = 255
#: How far ahead an expiry year may be; cards are issued for a few years.
_MAX_YEARS_AHEAD = 50

_SEPARATORS = re.compile(r"[\s-]+")
_CARD_NUMBER = re.compile(r"[0-9]{12,19}")
_MONTH = re.compile(r"[0-9]{1,2}")
_YEAR = re.compile(r"[0-9]{2}|[0-9]{4}")
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class SavedMethod:
    """Pay with a method the customer saved before."""

    method: PaymentMethod


@dataclass(frozen=True, slots=True)
class NewCard:
    """Raw card details for :meth:`~flask_customer_portal.payments.PaymentProvider.attach_card`."""

    card: CardDetails


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token from the provider's card element, for ``attach_token``."""

    token: str = ""

    def __repr__(self) -> str:
        return "NewToken(token=...)"


PaymentChoice = SavedMethod | NewCard | NewToken


def clean_card_number(value: str) -> str:
    """``value`` without the spaces and dashes people type between groups."""
    return _SEPARATORS.sub("", value)


def card_expired(exp_month: int, exp_year: int, now: datetime) -> bool:
    """A card is good until the end of its expiry month."""
    return (exp_year, exp_month) < (now.year, now.month)


class _NeverShownField(StringField):
    """An input that always renders empty (card number, security code)."""

    def _value(self) -> str:
        return ""


class _ShortShownField(StringField):
    """Shows back what was typed if it is short (a month or a year), so a
    card number typed into the wrong box is never shown back either."""

    def _value(self) -> str:
        text = "" if self.data is None else str(self.data)
        if len(text) > 4:
            return ""
        return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs"))


class PaymentMethodForm(PortalForm):
    """``payment_method`` (a saved method's id or ``new``) and, for a new
    card, either the raw card fields or ``payment_token``.

    ``methods`` are the customer's saved methods (the only ids accepted);
    ``raw_cards`` says whether raw card details may be used at all; ``now``
    is the moment expiry dates are checked against. After a successful
    :meth:`validate`, :attr:`choice` says what to pay with.
    """

    payment_method = StringField(_l("Payment method"))
    card_number = _NeverShownField(
        _l("Card number"),
        render_kw={
            "autocomplete": "cc-number",
            "inputmode": "numeric",
            "maxlength": 30,
            "spellcheck": "false",
        },
    )
    exp_month = _ShortShownField(
        _l("Expiry month"),
        render_kw={"autocomplete": "cc-exp-month", "inputmode": "numeric", "maxlength": 2},
    )
    exp_year = _ShortShownField(
        _l("Expiry year"),
        render_kw={"autocomplete": "cc-exp-year", "inputmode": "numeric", "maxlength": 4},
    )
    cvc = _NeverShownField(
        _l("Security code (CVC)"),
        render_kw={"autocomplete": "cc-csc", "inputmode": "numeric", "maxlength": 4},
    )
    payment_token = HiddenField()

    def __init__(
        self,
        *args: Any,
        methods: Sequence[PaymentMethod] = (),
        raw_cards: bool = False,
        now: datetime,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.methods = {m.id: m for m in methods}
        self.raw_cards = raw_cards
        self.now = now
        self._choice: PaymentChoice | None = None

    def validate(self, extra_validators: Any = None) -> bool:
        self._choice = None
        if not super().validate(extra_validators) and self.csrf_failed:
            return False
        choice = self._read_choice()
        if self.errors:
            return False
        self._choice = choice
        return True

    @property
    def choice(self) -> PaymentChoice:
        """What to pay with; only after a successful ``validate()``."""
        if self._choice is None:
            raise RuntimeError("the payment-method form has not been validated successfully")
        return self._choice

    def forget_card(self) -> None:
        """Drop the card details from the form (once they are at the provider)."""
        for field in (self.card_number, self.cvc, self.exp_month, self.exp_year, self.payment_token):
            field.data = ""
            field.raw_data = []

    # -- checks -------------------------------------------------------------------

    def _read_choice(self) -> PaymentChoice | None:
        value = (self.payment_method.data or "").strip()
        if not value:
            _fail(self.payment_method, _("Choose a card to pay with."))
            return None
        if value != NEW_CARD:
            method = self.methods.get(value)
            if method is None:
                _fail(self.payment_method, _("Choose one of your saved cards, or a new card."))
                return None
            if card_expired(method.exp_month, method.exp_year, self.now):
                _fail(self.payment_method, _("That card has expired. Choose another card."))
                return None
            return SavedMethod(method)
        token = (self.payment_token.data or "").strip()
        if token:
            if len(token) > TOKEN_MAX_LENGTH or not _TOKEN.fullmatch(token):
                _fail(self.payment_method, _("The card form sent something unexpected. Try again."))
                return None
            return NewToken(token)
        if not self.raw_cards:
            _fail(self.payment_method, _("Enter the new card in the card form first."))
            return None
        return self._read_card()

    def _read_card(self) -> NewCard | None:
        number = clean_card_number(self.card_number.data or "")
        if not number:
            _fail(self.card_number, _("Enter the card number."))
        elif not _CARD_NUMBER.fullmatch(number):
            _fail(self.card_number, _("Enter the card number as printed on the card: 12 to 19 digits."))
        elif not luhn_valid(number):
            _fail(self.card_number, _("Check the card number."))

        month = _int(self.exp_month.data, _MONTH)
        if month is None or not 1 <= month <= 12:
            _fail(self.exp_month, _("Enter the month the card expires, from 1 to 12."))
            month = None
        year = _int(self.exp_year.data, _YEAR)
        if year is not None and year < 100:
            year += 2000
        if year is None or year > self.now.year + _MAX_YEARS_AHEAD:
            _fail(self.exp_year, _("Enter the year the card expires, like %(year)d.", year=self.now.year + 3))
            year = None
        if month is not None and year is not None and card_expired(month, year, self.now):
            # Beside the part that is in the past.
            _fail(self.exp_year if year < self.now.year else self.exp_month, _("The card has expired."))

        cvc = (self.cvc.data or "").strip()
        if number[:2] in ("34", "37"):
            if not re.fullmatch(r"[0-9]{4}", cvc):
                _fail(self.cvc, _("Enter the 4-digit security code from the front of the card."))
        elif not re.fullmatch(r"[0-9]{3}", cvc):
            _fail(self.cvc, _("Enter the 3-digit security code from the back of the card."))

        if self.errors or month is None or year is None:
            return None
        return NewCard(CardDetails(number=number, exp_month=month, exp_year=year, cvc=cvc))


def _fail(field: Field, message: str) -> None:
    errors = list(field.errors)
    errors.append(message)
    field.errors = errors


def _int(value: object, pattern: re.Pattern[str]) -> int | None:
    text = "" if value is None else str(value).strip()
    return int(text) if pattern.fullmatch(text) else None
