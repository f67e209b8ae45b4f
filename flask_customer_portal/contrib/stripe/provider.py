"""Stripe's :class:`~flask_customer_portal.payments.PaymentProvider`: cards
made by Stripe Elements, payments of open Stripe invoices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import stripe

from ...errors import ConfigurationError
from ...money import Money
from ...payments import (
    AttachResult,
    CardDetails,
    ChargeDeclined,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeResult,
    ChargeSucceeded,
    ChargeUnknown,
    DeclineReason,
    MethodAttached,
    MethodDeclined,
)
from ..composite import CustomerIdMap, SameCustomerIds
from ._convert import as_dict, object_id

#: Where Stripe.js comes from; the payment-method page may load it only with this provider.
STRIPE_JS = "https://js.stripe.com"

_DECLINES = {
    "insufficient_funds": DeclineReason.INSUFFICIENT_FUNDS,
    "expired_card": DeclineReason.EXPIRED_CARD,
    "incorrect_cvc": DeclineReason.INCORRECT_CVC,
    "invalid_cvc": DeclineReason.INCORRECT_CVC,
}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _stripe_key_is_test(key: str, kinds: tuple[str, ...]) -> bool | None:
    """``True`` for a test key of one of ``kinds`` (``"sk"``, ``"rk"``,
    ``"pk"``), ``False`` for a live one, ``None`` for anything else."""
    for kind in kinds:
        if key.startswith(f"{kind}_test_"):
            return True
        if key.startswith(f"{kind}_live_"):
            return False
    return None


def _client_api_key(client: stripe.StripeClient) -> str | None:
    """The secret (or restricted) key the client was made with, if the SDK
    shows it."""
    key = getattr(getattr(client, "_requestor", None), "api_key", None)
    return key if isinstance(key, str) and key else None


def _stripe_keys_are_test(secret_key: str | None, publishable_key: str) -> bool:
    """Whether the keys are Stripe test keys; refuses keys of no known mode
    and a live key next to a test one (errors never quote a key)."""
    publishable = _stripe_key_is_test(publishable_key, ("pk",))
    if publishable is None:
        raise ConfigurationError(
            "STRIPE_PUBLISHABLE_KEY", "must be a Stripe publishable key (pk_test_… or pk_live_…)"
        )
    if secret_key is None:
        return publishable
    secret = _stripe_key_is_test(secret_key, ("sk", "rk"))
    if secret is None:
        raise ConfigurationError(
            "STRIPE_SECRET_KEY", "must be a Stripe secret or restricted key (sk_… or rk_…, test or live)"
        )
    if secret != publishable:
        raise ConfigurationError(
            "STRIPE_SECRET_KEY",
            f"is a {'test' if secret else 'live'} key but STRIPE_PUBLISHABLE_KEY is a "
            f"{'test' if publishable else 'live'} key: both must come from the same Stripe mode",
        )
    return secret


def _decline(error: stripe.StripeError) -> DeclineReason:
    code = getattr(error, "code", None)
    decline_code = (getattr(error, "error", None) and getattr(error.error, "decline_code", None)) or None
    return _DECLINES.get(str(decline_code or code or ""), DeclineReason.GENERIC)


def _invoice_of_key(idempotency_key: str) -> str | None:
    """The Stripe invoice that an idempotency key of the portal's
    (``invoice:<in_…>:attempt:<n>``) pays: a charge is looked up by its
    key alone."""
    parts = idempotency_key.split(":")
    if len(parts) != 4 or parts[0] != "invoice" or parts[2] != "attempt" or not parts[3].isdigit():
        return None
    if not parts[1].startswith("in_"):
        return None
    return parts[1]


class StripePaymentProvider:
    """The portal's :class:`~flask_customer_portal.payments.PaymentProvider`
    on Stripe.

    Cards are never sent to this server: Stripe Elements on the
    payment-method page (``static/portal-stripe.js``) makes a PaymentMethod
    in the browser and posts only its id, which :meth:`attach_token`
    attaches to the customer. :meth:`charge` pays an open Stripe invoice —
    the only kind of charge the portal makes — with the portal's
    idempotency key.

    :param publishable_key: Stripe's publishable key for Elements. It and the
        client's secret (or restricted) key must both be test keys or both
        live keys, else :class:`~flask_customer_portal.ConfigurationError`
        (naming ``STRIPE_SECRET_KEY`` or ``STRIPE_PUBLISHABLE_KEY``); their
        mode must match ``CUSTOMER_PORTAL_MODE`` (checked by ``init_app``).
    :param customer_ids: portal → Stripe customer ids (as given to the
        composite store).
    """

    accepts_raw_cards = False
    #: The template the payment-method page includes for a new card.
    card_element_template = "customer_portal/_stripe_card_element.html"

    def __init__(
        self,
        client: stripe.StripeClient,
        *,
        publishable_key: str,
        customer_ids: CustomerIdMap | None = None,
        js_url: str = STRIPE_JS + "/v3/",
    ) -> None:
        self.client = client
        self.publishable_key = publishable_key
        self.customer_ids: CustomerIdMap = customer_ids or SameCustomerIds()
        #: Test mode moves no real money: Stripe's test keys start ``sk_test_``,
        #: ``rk_test_`` and ``pk_test_``, its live keys ``…_live_``. Both keys
        #: must be of one mode; ``init_app`` then checks it against the portal's.
        self.is_test = _stripe_keys_are_test(_client_api_key(client), publishable_key)
        #: The setting :func:`~flask_customer_portal.production.check_provider_mode` names.
        self.mode_setting = "STRIPE_SECRET_KEY" if _client_api_key(client) else "STRIPE_PUBLISHABLE_KEY"
        #: Where the page loads Stripe.js from (localstripe serves its own).
        self.js_url = js_url
        origin = _origin(js_url)
        api = "https://api.stripe.com" if origin == STRIPE_JS else origin
        #: What the portal's Content-Security-Policy must allow for Stripe.js and
        #: its frames (card fields, 3-D Secure); only pages of a portal that uses
        #: this provider allow them.
        self.content_security_policy: dict[str, tuple[str, ...]] = {
            "script-src": (origin,),
            "frame-src": (origin, "https://hooks.stripe.com"),
            "connect-src": (api,),
        }

    def __repr__(self) -> str:
        return f"StripePaymentProvider(is_test={self.is_test})"

    def attach_card(self, customer_id: str, card: CardDetails) -> AttachResult:
        """Refused: card details go to Stripe Elements, never to this server."""
        raise TypeError("StripePaymentProvider does not take card details; use Stripe Elements")

    def attach_token(self, customer_id: str, token: str) -> AttachResult:
        """Attach the PaymentMethod ``token`` (``pm_…``) that Stripe Elements
        made to the customer. A subscription is charged to it once the
        customer chose it for that subscription (its
        ``default_payment_method``); the customer's own default is left alone."""
        stripe_customer = self.customer_ids.to_provider(customer_id)
        if stripe_customer is None or not token.startswith("pm_"):
            return MethodDeclined(DeclineReason.GENERIC)
        try:
            method = as_dict(
                self.client.v1.payment_methods.attach(token, params={"customer": stripe_customer})
            )
        except stripe.CardError as exc:
            return MethodDeclined(_decline(exc))
        except stripe.InvalidRequestError:
            return MethodDeclined(DeclineReason.GENERIC)
        card = method.get("card") or {}
        return MethodAttached(
            provider_token=str(method["id"]),
            brand=str(card.get("brand") or "card"),
            last4=str(card.get("last4") or ""),
            exp_month=int(card.get("exp_month") or 0),
            exp_year=int(card.get("exp_year") or 0),
        )

    def _outcome(self, invoice: Mapping[str, Any]) -> ChargeResult | None:
        status = invoice.get("status")
        currency = str(invoice.get("currency") or "usd").upper()
        if status == "paid":
            reference = (
                object_id(invoice.get("charge"))
                or object_id(invoice.get("payment_intent"))
                or str(invoice["id"])
            )
            return ChargeSucceeded(reference, Money(int(invoice.get("amount_paid") or 0), currency))
        intent = self._payment_intent(invoice)
        if status == "open" and intent is not None and intent.get("status") == "requires_action":
            return ChargeRequiresAction(str(intent["id"]), self._redirect_url(invoice, intent))
        return None

    def _payment_intent(self, invoice: Mapping[str, Any]) -> dict[str, Any] | None:
        value = invoice.get("payment_intent")
        if value is None:
            for payment in (invoice.get("payments") or {}).get("data") or []:
                value = (payment.get("payment") or {}).get("payment_intent") or value
        if value is None:
            return None
        if isinstance(value, Mapping):
            return dict(value)
        return as_dict(self.client.v1.payment_intents.retrieve(str(value)))

    @staticmethod
    def _redirect_url(invoice: Mapping[str, Any], intent: Mapping[str, Any]) -> str:
        next_action = intent.get("next_action") or {}
        redirect = (next_action.get("redirect_to_url") or {}).get("url")
        # Without a redirect of its own, Stripe's hosted invoice page runs 3-D Secure.
        return str(redirect or invoice.get("hosted_invoice_url") or "")

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
        """Pay the open Stripe invoice ``invoice_id`` (``in_…``) with the
        PaymentMethod ``provider_token``, sending Stripe ``idempotency_key``.
        Any other charge is refused: with Stripe, the portal only ever pays
        Stripe's own invoices."""
        stripe_customer = self.customer_ids.to_provider(customer_id)
        if not invoice_id.startswith("in_") or stripe_customer is None:
            return ChargeFailed("Stripe charges are payments of open Stripe invoices", retryable=False)
        try:
            invoice = as_dict(self.client.v1.invoices.retrieve(invoice_id))
        except stripe.InvalidRequestError:
            return ChargeFailed("no such Stripe invoice", retryable=False)
        if object_id(invoice.get("customer")) != stripe_customer:
            return ChargeFailed("the Stripe invoice is not this customer's", retryable=False)
        if (
            int(invoice.get("amount_due") or 0) != amount.amount
            or str(invoice.get("currency")).upper() != amount.currency
        ):
            return ChargeFailed("the amount differs from the Stripe invoice's amount due", retryable=False)
        if invoice.get("status") == "paid":
            return self._outcome(invoice) or ChargeFailed("paid", retryable=False)
        try:
            paid = as_dict(
                self.client.v1.invoices.pay(
                    invoice_id,
                    params={"payment_method": provider_token, "off_session": True},
                    options={"idempotency_key": idempotency_key},
                )
            )
        except stripe.CardError as exc:
            code = getattr(exc, "code", None)
            if code in ("invoice_payment_intent_requires_action", "authentication_required"):
                return self._requires_action(invoice_id) or ChargeDeclined(DeclineReason.GENERIC)
            return ChargeDeclined(_decline(exc), getattr(getattr(exc, "error", None), "charge", None))
        except (stripe.APIConnectionError, stripe.RateLimitError):
            return ChargeUnknown(idempotency_key)
        except stripe.APIError:
            return ChargeUnknown(idempotency_key)
        except stripe.InvalidRequestError as exc:
            return ChargeFailed(
                f"Stripe refused the payment ({getattr(exc, 'code', None) or 'invalid_request'})",
                retryable=False,
            )
        outcome = self._outcome(paid)
        if outcome is not None:
            return outcome
        return self._requires_action(invoice_id) or ChargeDeclined(DeclineReason.GENERIC)

    def _requires_action(self, invoice_id: str) -> ChargeRequiresAction | None:
        invoice = as_dict(self.client.v1.invoices.retrieve(invoice_id))
        outcome = self._outcome(invoice)
        return outcome if isinstance(outcome, ChargeRequiresAction) else None

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """What Stripe says of the invoice the key pays: paid, or waiting for
        3-D Secure; ``None`` while it is open otherwise (paying it again is
        safe: Stripe never pays an invoice twice)."""
        invoice_id = _invoice_of_key(idempotency_key)
        if invoice_id is None:
            return None
        try:
            invoice = as_dict(self.client.v1.invoices.retrieve(invoice_id))
        except stripe.InvalidRequestError:
            return None
        return self._outcome(invoice)
