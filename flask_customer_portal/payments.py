"""The payment-provider protocol and the built-in test provider.

A provider does two things for the portal: it turns what the customer typed
(or, with a real provider, the token its client-side card element produced)
into a stored payment method, and it charges a stored method to pay one
invoice. Charges carry the invoice's id and an idempotency key; a provider
must return the first outcome again when it sees the same key twice, which
is what makes retries safe.

Results are values, not exceptions: a decline is an ordinary outcome the
customer must see, and a timeout means "we do not know" — the caller
reconciles with :meth:`PaymentProvider.find_charge` before trying again.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

from .money import Money

__all__ = [
    "TEST_CARDS",
    "AttachResult",
    "BillsSubscriptions",
    "CardDetails",
    "CardElementProvider",
    "ChargeDeclined",
    "ChargeFailed",
    "ChargeRequiresAction",
    "ChargeResult",
    "ChargeSucceeded",
    "ChargeUnknown",
    "ContentSecurityPolicyProvider",
    "DeclineReason",
    "MethodAttached",
    "MethodDeclined",
    "NewMethodPageProvider",
    "PaymentProvider",
    "SubscriptionBiller",
    "TestPaymentProvider",
    "luhn_valid",
]


class DeclineReason(str, enum.Enum):
    GENERIC = "generic_decline"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CardDetails:
    """Raw card input. Only the test provider accepts it, only in test mode.

    ``repr`` never shows the number or the CVC, so an accidental log line
    cannot leak them.
    """

    number: str = field(repr=False)
    exp_month: int
    exp_year: int
    cvc: str = field(repr=False)

    @property
    def last4(self) -> str:
        return self.number[-4:]


@dataclass(frozen=True, slots=True)
class MethodAttached:
    """A payment method the provider now holds for the customer."""

    provider_token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class MethodDeclined:
    """The provider refused to save the method (its verification failed)."""

    reason: DeclineReason


AttachResult = MethodAttached | MethodDeclined


@dataclass(frozen=True, slots=True)
class ChargeSucceeded:
    charge_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class ChargeDeclined:
    reason: DeclineReason
    charge_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChargeRequiresAction:
    """The bank wants the customer to confirm (3-D Secure)."""

    charge_id: str
    redirect_url: str


@dataclass(frozen=True, slots=True)
class ChargeFailed:
    """The provider answered with an error; no money moved."""

    message: str
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class ChargeUnknown:
    """No answer in time: the charge may or may not have happened."""

    idempotency_key: str


ChargeResult = ChargeSucceeded | ChargeDeclined | ChargeRequiresAction | ChargeFailed | ChargeUnknown


@runtime_checkable
class CardElementProvider(Protocol):
    """A provider whose own client-side card element takes new cards
    (Stripe): the template that renders it, inside the payment-method
    form, posting a token instead of card details."""

    card_element_template: str


@runtime_checkable
class NewMethodPageProvider(Protocol):
    """A provider that takes new payment methods on a page of its own
    (Dodo Payments) instead of a card element."""

    def new_method_page(self, *, subscription_id: str, return_url: str) -> str:
        """The address of that page for ``subscription_id``; it sends the
        customer back to ``return_url``."""


@runtime_checkable
class ContentSecurityPolicyProvider(Protocol):
    """A provider whose card element needs sources added to the portal's
    ``Content-Security-Policy``, e.g. ``{"script-src": ("https://js.stripe.com",)}``."""

    content_security_policy: dict[str, tuple[str, ...]]


@runtime_checkable
class BillsSubscriptions(Protocol):
    """A provider that says whether it renews subscriptions itself (and so
    owns their plans): the portal then changes no plan and charges no
    renewal of them."""

    bills_subscriptions: bool


@runtime_checkable
class SubscriptionBiller(BillsSubscriptions, Protocol):
    """A payment provider that bills subscriptions itself (Dodo Payments).

    The portal does not charge such a provider's subscriptions: to
    reactivate one it hands the customer's chosen method to
    :meth:`pay_arrears`, and the provider charges what is owed and makes
    the subscription ``active`` again on its side. An answer that leaves
    the charge open is settled with :meth:`find_arrears_charge` before the
    provider is asked to charge again.
    """

    bills_subscriptions: bool

    def pay_arrears(self, *, subscription_id: str, provider_token: str, idempotency_key: str) -> ChargeResult:
        """Give the subscription this saved method so the provider charges
        the arrears with it, sending ``idempotency_key`` as the provider's
        idempotency key; the outcome of that charge, as far as known (no
        answer is :class:`~flask_customer_portal.payments.ChargeUnknown`,
        never a retry)."""

    def find_arrears_charge(
        self, *, subscription_id: str, reference: str | None, since: datetime
    ) -> ChargeResult | None:
        """What came of an earlier :meth:`pay_arrears` whose outcome was
        open: the charge ``reference`` names if there is one, else the
        newest charge of the subscription made at or after ``since``.
        ``None`` only if the provider has no such charge (nothing was
        charged); raises if the provider cannot be read."""


@runtime_checkable
class PaymentProvider(Protocol):
    """What the portal needs from a payment company."""

    #: ``True`` when the provider uses its company's test environment (test
    #: keys, a sandbox: no real money moves), ``False`` for live credentials.
    #: ``init_app`` refuses a provider whose credentials do not match
    #: ``CUSTOMER_PORTAL_MODE``. A provider may also name the setting that
    #: decided it in a ``mode_setting`` string (``"STRIPE_SECRET_KEY"``), which
    #: the :class:`~flask_customer_portal.ConfigurationError` then names.
    is_test: bool
    #: ``True`` if :meth:`attach_card` may be used (raw card form). Real
    #: providers take tokens from their own client-side elements instead.
    accepts_raw_cards: bool

    def attach_card(self, customer_id: str, card: CardDetails) -> AttachResult:
        """Verify and store a card for the customer (test providers only)."""

    def attach_token(self, customer_id: str, token: str) -> AttachResult:
        """Store a method made by the provider's client-side element."""

    def charge(
        self,
        *,
        customer_id: str,
        provider_token: str,
        amount: Money,
        idempotency_key: str,
        invoice_id: str,
        description: str,
    ) -> ChargeResult:
        """Charge a stored method to pay the invoice ``invoice_id`` (the
        :class:`~flask_customer_portal.storage.Invoice`'s ``id``: the
        provider's own invoice id when the provider issues the invoices, as
        Stripe does). The same ``idempotency_key`` returns the first outcome
        again and never charges twice."""

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The outcome of an earlier charge with this key, or ``None`` if the
        provider never saw it (used to reconcile a :class:`ChargeUnknown`)."""


def luhn_valid(number: str) -> bool:
    """``True`` if ``number`` (digits only) passes the Luhn checksum."""
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


class _Behaviour(str, enum.Enum):
    SUCCEED = "ok"
    DECLINE = "generic"
    INSUFFICIENT = "funds"


#: The industry's test card numbers and what the test provider does with them.
TEST_CARDS: dict[str, _Behaviour] = {
    "4242424242424242": _Behaviour.SUCCEED,
    "4000000000000002": _Behaviour.DECLINE,
    "4000000000009995": _Behaviour.INSUFFICIENT,
}

_DECLINES = {
    _Behaviour.DECLINE: DeclineReason.GENERIC,
    _Behaviour.INSUFFICIENT: DeclineReason.INSUFFICIENT_FUNDS,
}


def _brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "card"


class TestPaymentProvider:
    """A payment provider that moves no money, for test mode and tests.

    Cards from :data:`TEST_CARDS` behave as their number says; any other
    Luhn-valid number succeeds. Attaching a card runs a verification, as
    real providers do, so a declining card is refused when it is added.
    :meth:`token_for` makes a stored method that verifies but declines every
    charge (the demo's "card that stopped working").

    Tokens encode the card's behaviour, so several processes (gunicorn
    workers) agree on outcomes without shared state. Charges are kept in
    memory per provider instance: :attr:`charges` lists every charge that
    moved (test) money, which is what tests assert on.
    """

    __test__ = False  # not a pytest test class
    is_test = True
    accepts_raw_cards = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[str, ChargeResult] = {}
        self.charges: list[tuple[str, Money]] = []
        """``(idempotency_key, amount)`` of every successful charge."""
        self.calls: list[str] = []
        """Names of the methods called, in order (for asserting flows)."""
        self._lost: list[bool] = []

    @staticmethod
    def token_for(number: str, *, charges_decline: DeclineReason | None = None) -> str:
        """A provider token for a test card, without a verification.

        With ``charges_decline`` the token attaches but every charge on it is
        declined for that reason.
        """
        if charges_decline is DeclineReason.INSUFFICIENT_FUNDS:
            behaviour = _Behaviour.INSUFFICIENT
        elif charges_decline is not None:
            behaviour = _Behaviour.DECLINE
        else:
            behaviour = TEST_CARDS.get(number, _Behaviour.SUCCEED)
        return f"pm_test_{behaviour.value}_{number[-4:]}_{secrets.token_hex(6)}"

    def lose_answers(self, count: int = 1, *, charged: bool = True) -> None:
        """Unknown outcomes: the next ``count`` charges answer
        :class:`ChargeUnknown`, as when the provider's answer is lost to a
        timeout. With ``charged`` (the default) each charge is made all the
        same — the money is taken and :meth:`find_charge` finds it; without,
        the provider never saw it (:meth:`find_charge` returns ``None``)."""
        with self._lock:
            self._lost.extend([charged] * count)

    def attach_card(self, customer_id: str, card: CardDetails) -> AttachResult:
        self.calls.append("attach_card")
        behaviour = TEST_CARDS.get(card.number, _Behaviour.SUCCEED)
        if not luhn_valid(card.number):
            return MethodDeclined(DeclineReason.GENERIC)
        now = datetime.now(timezone.utc)
        if (card.exp_year, card.exp_month) < (now.year, now.month):
            return MethodDeclined(DeclineReason.EXPIRED_CARD)
        if not (card.cvc.isdigit() and len(card.cvc) in (3, 4)):
            return MethodDeclined(DeclineReason.INCORRECT_CVC)
        if behaviour in _DECLINES:
            return MethodDeclined(_DECLINES[behaviour])
        return MethodAttached(
            provider_token=self.token_for(card.number),
            brand=_brand(card.number),
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    def attach_token(self, customer_id: str, token: str) -> AttachResult:
        self.calls.append("attach_token")
        if not token.startswith("pm_test_"):
            return MethodDeclined(DeclineReason.GENERIC)
        last4 = token.split("_")[3] if token.count("_") >= 4 else "4242"
        return MethodAttached(token, "visa", last4, 12, datetime.now(timezone.utc).year + 3)

    def charge(
        self,
        *,
        customer_id: str,
        provider_token: str,
        amount: Money,
        idempotency_key: str,
        invoice_id: str,
        description: str,
    ) -> ChargeResult:
        self.calls.append("charge")
        with self._lock:
            if idempotency_key in self._outcomes:
                return self._outcomes[idempotency_key]
            lost = self._lost.pop(0) if self._lost else None
            if lost is False:
                return ChargeUnknown(idempotency_key)  # it never reached the provider
            behaviour = _Behaviour.DECLINE
            parts = provider_token.split("_")
            if len(parts) >= 3 and parts[:2] == ["pm", "test"]:
                behaviour = _Behaviour(parts[2]) if parts[2] in _Behaviour._value2member_map_ else behaviour
            charge_id = "ch_test_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
            result: ChargeResult
            if behaviour in _DECLINES:
                result = ChargeDeclined(_DECLINES[behaviour], charge_id)
            else:
                result = ChargeSucceeded(charge_id, amount)
                self.charges.append((idempotency_key, amount))
            self._outcomes[idempotency_key] = result
            return ChargeUnknown(idempotency_key) if lost else result

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        self.calls.append("find_charge")
        with self._lock:
            return self._outcomes.get(idempotency_key)
