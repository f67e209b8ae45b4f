"""Stripe as the portal's billing back end (``pip install flask-customer-portal[stripe]``).

:class:`StripeBillingStore` reads a customer's subscriptions, invoices and
cards from Stripe and makes the portal's billing changes there;
:class:`StripePaymentProvider` attaches cards made by Stripe Elements and
pays open Stripe invoices. Customers, sign-in, sessions, the audit log and
licence keys stay in the local store: mount both with
:class:`~flask_customer_portal.contrib.composite.CompositeStorage`::

    client = stripe.StripeClient(os.environ["STRIPE_SECRET_KEY"])
    CustomerPortal(
        app,
        storage=CompositeStorage(SQLAlchemyStorage(db), billing=StripeBillingStore(client)),
        payments=StripePaymentProvider(client, publishable_key=os.environ["STRIPE_PUBLISHABLE_KEY"]),
    )
    app.register_blueprint(stripe_webhook_blueprint(os.environ["STRIPE_WEBHOOK_SECRET"]))

Nothing is mirrored: every page reads Stripe, so what the customer sees is
what Stripe has (webhooks only add to the audit log and tell the merchant's
code, see :func:`stripe_webhook_blueprint`). Every id the portal shows is
Stripe's own (``sub_…``, ``in_…``, ``pm_…``); customer ids are Stripe's
``cus_…`` ids (map them with the composite's ``customer_ids``).

The money path
    The portal pays an ``on_hold`` subscription's arrears through
    :func:`~flask_customer_portal.charging.reactivate_subscription`, which
    works on a :class:`~flask_customer_portal.storage.SubscriptionLock`.
    Here that lock is :class:`StripeSubscriptionLock`: its open invoices are
    the subscription's open Stripe invoices, and a charge is
    ``Invoice.pay(invoice, payment_method=…)`` with the portal's
    idempotency key ``invoice:<in_…>:attempt:<n>`` — Stripe answers a
    repeated key with the first outcome and never pays an invoice twice.
    The store's own lock is held inside one process only (Stripe has no
    locks); inside a :class:`~flask_customer_portal.contrib.composite.CompositeStorage`
    over the SQLAlchemy store the composite first takes the database's lock
    on the subscription, which holds across workers and servers. Were two
    ever to pay the same invoice at once, both would send the same key for
    the same attempt, and Stripe's idempotency makes that one payment. The
    attempt log lives in the invoice's metadata (``portal_attempt_<n>``),
    audit events in the local store. Stripe renews subscriptions itself:
    :meth:`StripeBillingStore.subscriptions_due` is always empty, and a
    period's dates are Stripe's (the lock ignores new period dates).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import stripe
from flask import Blueprint, abort, current_app, request

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
from ...storage import (
    AuditEvent,
    ChargeAttempt,
    ChargeAttemptStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Page,
    PaymentMethod,
    PaymentMethodInUse,
    StateConflict,
    Subscription,
    SubscriptionStatus,
)
from .._webhooks import LEASE, WebhookEvents, repeat_answer
from ..composite import CustomerIdMap, SameCustomerIds

__all__ = [
    "MAX_INVOICES",
    "STRIPE_JS",
    "WEBHOOK_EVENTS",
    "StripeBillingStore",
    "StripePaymentProvider",
    "StripeSubscriptionLock",
    "invoice_status",
    "stripe_webhook_blueprint",
    "subscription_status",
]

#: Where Stripe.js comes from; the payment-method page may load it only with this provider.
STRIPE_JS = "https://js.stripe.com"
#: The most invoices read for one customer's invoice list.
MAX_INVOICES = 1000
#: Webhook events :func:`stripe_webhook_blueprint` acts on (``invoice.*`` and ``customer.subscription.*``).
WEBHOOK_EVENTS = ("invoice.", "customer.subscription.")

_ATTEMPT_KEY = "portal_attempt_"
_HOLD_REASON_KEY = "portal_hold_reason"

_SUBSCRIPTION_STATUS = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.ON_HOLD,
    "unpaid": SubscriptionStatus.ON_HOLD,
    "incomplete": SubscriptionStatus.ON_HOLD,
    "canceled": SubscriptionStatus.CANCELLED,
    "incomplete_expired": SubscriptionStatus.CANCELLED,
    "paused": getattr(SubscriptionStatus, "PAUSED", SubscriptionStatus.ON_HOLD),
}

_INVOICE_STATUS = {
    "open": InvoiceStatus.OPEN,
    "paid": InvoiceStatus.PAID,
    "void": InvoiceStatus.VOID,
    "uncollectible": InvoiceStatus.VOID,
}

_DECLINES = {
    "insufficient_funds": DeclineReason.INSUFFICIENT_FUNDS,
    "expired_card": DeclineReason.EXPIRED_CARD,
    "incorrect_cvc": DeclineReason.INCORRECT_CVC,
    "invalid_cvc": DeclineReason.INCORRECT_CVC,
}


def subscription_status(stripe_status: str) -> SubscriptionStatus:
    """The portal's status of a Stripe subscription status: ``past_due``,
    ``unpaid`` and ``incomplete`` wait for a payment (``on_hold``)."""
    try:
        return _SUBSCRIPTION_STATUS[stripe_status]
    except KeyError:
        raise ValueError(f"unknown Stripe subscription status {stripe_status!r}") from None


def invoice_status(stripe_invoice: Mapping[str, Any]) -> InvoiceStatus | None:
    """The portal's status of a Stripe invoice; ``None`` for drafts (never
    shown). A paid invoice refunded in full is ``refunded``."""
    status = stripe_invoice.get("status")
    if status == "draft" or status is None:
        return None
    mapped = _INVOICE_STATUS.get(str(status))
    if mapped is None:
        raise ValueError(f"unknown Stripe invoice status {status!r}")
    charge = stripe_invoice.get("charge")
    if mapped is InvoiceStatus.PAID and isinstance(charge, Mapping) and charge.get("refunded"):
        return InvoiceStatus.REFUNDED
    return mapped


def _dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        converted: dict[str, Any] = value.to_dict()
        return converted
    return dict(value)


def _time(value: Any) -> datetime | None:
    return None if value in (None, 0, "") else datetime.fromtimestamp(int(value), tz=timezone.utc)


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


def _id(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


def _invoice_subscription_id(data: Mapping[str, Any]) -> str | None:
    parent = data.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return _id(details.get("subscription")) or _id(data.get("subscription"))


def _decline(error: stripe.StripeError) -> DeclineReason:
    code = getattr(error, "code", None)
    decline_code = (getattr(error, "error", None) and getattr(error.error, "decline_code", None)) or None
    return _DECLINES.get(str(decline_code or code or ""), DeclineReason.GENERIC)


class StripeBillingStore:
    """The portal's :class:`~flask_customer_portal.storage.BillingStore`
    and :class:`~flask_customer_portal.storage.ChargeStore` on Stripe.

    :param client: a :class:`stripe.StripeClient` (its ``base_addresses``
        and HTTP client decide where requests go).
    """

    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._products: dict[str, str] = {}

    def __repr__(self) -> str:
        return "StripeBillingStore()"

    # -- mapping -------------------------------------------------------------------

    def _product_name(self, product: Any) -> str:
        if isinstance(product, Mapping):
            return str(product.get("name") or product.get("id") or "")
        product_id = str(product or "")
        if not product_id:
            return ""
        if product_id not in self._products:
            self._products[product_id] = str(self.client.v1.products.retrieve(product_id).name or product_id)
        return self._products[product_id]

    def _payment_method(self, data: Mapping[str, Any], customer_id: str) -> PaymentMethod | None:
        card = data.get("card") or {}
        if data.get("type") != "card" or not card:
            return None
        return PaymentMethod(
            id=str(data["id"]),
            customer_id=customer_id,
            brand=str(card.get("brand") or "card"),
            last4=str(card.get("last4") or ""),
            exp_month=int(card.get("exp_month") or 0),
            exp_year=int(card.get("exp_year") or 0),
            provider_token=str(data["id"]),
            created_at=_time(data.get("created")),
        )

    def _method_by_id(
        self, customer_id: str, value: Any, known: Mapping[str, PaymentMethod] | None = None
    ) -> PaymentMethod | None:
        if isinstance(value, Mapping):
            return self._payment_method(value, customer_id)
        if not value:
            return None
        if known is not None and str(value) in known:
            return known[str(value)]
        return self.get_payment_method(customer_id, str(value))

    def _default_method(
        self, customer_id: str, known: Mapping[str, PaymentMethod] | None = None
    ) -> PaymentMethod | None:
        """The customer's default for invoices: what Stripe charges a
        subscription that has no ``default_payment_method`` of its own."""
        try:
            customer = _dict(self.client.v1.customers.retrieve(customer_id))
        except stripe.InvalidRequestError:
            return None
        settings = customer.get("invoice_settings") or {}
        return self._method_by_id(customer_id, settings.get("default_payment_method"), known)

    def _subscription(
        self,
        data: Mapping[str, Any],
        customer_id: str,
        default_method: Callable[[], PaymentMethod | None] | None = None,
        known: Mapping[str, PaymentMethod] | None = None,
    ) -> Subscription:
        items = (data.get("items") or {}).get("data") or []
        item: Mapping[str, Any] = items[0] if items else {}
        price = item.get("price") or item.get("plan") or data.get("plan") or {}
        recurring = price.get("recurring") or {}
        unit_amount = price.get("unit_amount", price.get("amount")) or 0
        quantity = int(item.get("quantity") or data.get("quantity") or 1)
        product_name = self._product_name(price.get("product"))
        period_start = item.get("current_period_start") or data.get("current_period_start")
        period_end = item.get("current_period_end") or data.get("current_period_end")
        metadata = data.get("metadata") or {}
        method = data.get("default_payment_method")
        status = subscription_status(str(data["status"]))
        if method:
            payment_method = self._method_by_id(customer_id, method, known)
        elif status is not SubscriptionStatus.CANCELLED:
            payment_method = (default_method or (lambda: self._default_method(customer_id)))()
        else:
            payment_method = None
        ended = _time(data.get("ended_at"))
        return Subscription(
            id=str(data["id"]),
            customer_id=customer_id,
            product_name=product_name,
            plan_name=str(price.get("nickname") or product_name),
            price=Money(int(unit_amount) * quantity, str(price.get("currency") or "usd").upper()),
            interval=str(recurring.get("interval") or price.get("interval") or "month"),
            interval_count=int(recurring.get("interval_count") or price.get("interval_count") or 1),
            status=status,
            current_period_start=_time(period_start)
            or _time(data.get("created"))
            or datetime.now(timezone.utc),
            current_period_end=_time(period_end) or _time(data.get("created")) or datetime.now(timezone.utc),
            cancel_at_period_end=bool(data.get("cancel_at_period_end")),
            cancelled_at=_time(data.get("canceled_at")),
            ended_at=ended,
            payment_method=payment_method,
            hold_reason=(metadata.get(_HOLD_REASON_KEY) or None)
            if status is SubscriptionStatus.ON_HOLD
            else None,
            created_at=_time(data.get("created")),
        )

    def _invoice(self, data: Mapping[str, Any], customer_id: str, *, lines: bool) -> Invoice | None:
        status = invoice_status(data)
        if status is None:
            return None
        total = int(data.get("total") or 0)
        raw_subtotal = data.get("subtotal")
        subtotal = total if raw_subtotal is None else int(raw_subtotal)
        tax = total - subtotal
        all_lines = (data.get("lines") or {}).get("data") or []
        line_items = all_lines if lines else []
        transitions = data.get("status_transitions") or {}
        subscription_id = _invoice_subscription_id(data)
        description = str(data.get("description") or "")
        if not description and all_lines:
            description = str(all_lines[0].get("description") or "")
        payment_method = None
        charge = data.get("charge")
        if isinstance(charge, Mapping) and charge.get("payment_method"):
            payment_method = self._method_by_id(customer_id, charge["payment_method"])
        return Invoice(
            id=str(data["id"]),
            number=str(data.get("number") or data["id"]),
            customer_id=customer_id,
            status=status,
            currency=str(data.get("currency") or "usd").upper(),
            subtotal=subtotal,
            tax=tax,
            total=total,
            issued_at=_time(data.get("created") or data.get("date")) or datetime.now(timezone.utc),
            description=description or str(data.get("number") or data["id"]),
            subscription_id=subscription_id,
            paid_at=_time(transitions.get("paid_at")) if status is not InvoiceStatus.OPEN else None,
            payment_reference=(_id(charge) or _id(data.get("payment_intent")))
            if status is not InvoiceStatus.OPEN
            else None,
            payment_method=payment_method if lines else None,
            lines=tuple(
                InvoiceLine(
                    description=str(line.get("description") or ""),
                    quantity=int(line.get("quantity") or 1),
                    unit_amount=int(line.get("amount") or 0) // max(int(line.get("quantity") or 1), 1),
                    amount=int(line.get("amount") or 0),
                )
                for line in line_items
            ),
        )

    def _retrieve_subscription(self, customer_id: str, subscription_id: str) -> dict[str, Any] | None:
        if not subscription_id.startswith("sub_"):
            return None
        try:
            data = _dict(self.client.v1.subscriptions.retrieve(subscription_id))
        except stripe.InvalidRequestError:
            return None
        return data if _id(data.get("customer")) == customer_id else None

    def _retrieve_invoice(self, customer_id: str, invoice_id: str) -> dict[str, Any] | None:
        if not invoice_id.startswith("in_"):
            return None
        try:
            data = _dict(self.client.v1.invoices.retrieve(invoice_id))
        except stripe.InvalidRequestError:
            return None
        return data if _id(data.get("customer")) == customer_id else None

    # -- BillingStore: reads --------------------------------------------------------

    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        found = self.client.v1.subscriptions.list(
            params={"customer": customer_id, "status": "all", "limit": 100}
        )
        raw = [_dict(s) for s in found.auto_paging_iter()]
        # One request for the cards and one for the customer's default,
        # whatever the number of subscriptions.
        known = {m.id: m for m in self.list_payment_methods(customer_id)} if raw else {}
        defaults: list[PaymentMethod | None] = []

        def default_method() -> PaymentMethod | None:
            if not defaults:
                defaults.append(self._default_method(customer_id, known))
            return defaults[0]

        subscriptions = [self._subscription(data, customer_id, default_method, known) for data in raw]
        current = [s for s in subscriptions if s.is_current]
        past = [s for s in subscriptions if not s.is_current]
        newest_first = lambda s: (s.created_at or s.current_period_start, s.id)  # noqa: E731
        return sorted(current, key=newest_first, reverse=True) + sorted(past, key=newest_first, reverse=True)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        data = self._retrieve_subscription(customer_id, subscription_id)
        return None if data is None else self._subscription(data, customer_id)

    def _all_invoices(self, customer_id: str, *, lines: bool) -> list[Invoice]:
        """The customer's invoices (up to :data:`MAX_INVOICES`), newest first, then by id."""
        found = self.client.v1.invoices.list(params={"customer": customer_id, "limit": 100})
        invoices: list[Invoice] = []
        for data in found.auto_paging_iter():
            invoice = self._invoice(_dict(data), customer_id, lines=lines)
            if invoice is not None:
                invoices.append(invoice)
            if len(invoices) >= MAX_INVOICES:
                break
        invoices.sort(key=lambda i: (i.issued_at, i.id), reverse=True)
        return invoices

    def list_invoices_after(
        self, customer_id: str, after: Invoice | None, *, limit: int, with_lines: bool = False
    ) -> Sequence[Invoice]:
        invoices = self._all_invoices(customer_id, lines=with_lines)
        if after is not None:
            invoices = [i for i in invoices if (i.issued_at, i.id) < (after.issued_at, after.id)]
        return invoices[:limit]

    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page start at 1")
        invoices = self._all_invoices(customer_id, lines=False)
        start = (page - 1) * per_page
        return Page(
            items=invoices[start : start + per_page], page=page, per_page=per_page, total=len(invoices)
        )

    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        data = self._retrieve_invoice(customer_id, invoice_id)
        return None if data is None else self._invoice(data, customer_id, lines=True)

    def invoice_pdf_url(self, customer_id: str, invoice_id: str) -> str | None:
        """Stripe's PDF of the customer's invoice (``invoice_pdf``), or
        ``None``; the portal's PDF link redirects there."""
        data = self._retrieve_invoice(customer_id, invoice_id)
        if data is None or invoice_status(data) is None:
            return None
        url = data.get("invoice_pdf")
        return str(url) if url else None

    def list_payment_methods(self, customer_id: str) -> Sequence[PaymentMethod]:
        found = self.client.v1.payment_methods.list(
            params={"customer": customer_id, "type": "card", "limit": 100}
        )
        methods = [self._payment_method(_dict(m), customer_id) for m in found.auto_paging_iter()]
        present = [m for m in methods if m is not None]
        return sorted(
            present,
            key=lambda m: (m.created_at or datetime.min.replace(tzinfo=timezone.utc), m.id),
            reverse=True,
        )

    def get_payment_method(self, customer_id: str, payment_method_id: str) -> PaymentMethod | None:
        if not payment_method_id.startswith("pm_"):
            return None
        try:
            data = _dict(self.client.v1.payment_methods.retrieve(payment_method_id))
        except stripe.InvalidRequestError:
            return None
        if _id(data.get("customer")) != customer_id:
            return None
        return self._payment_method(data, customer_id)

    # -- BillingStore: writes --------------------------------------------------------

    def add_payment_method(
        self, payment_method: PaymentMethod, *, event: AuditEvent | None = None
    ) -> PaymentMethod:
        """The method :meth:`StripePaymentProvider.attach_token` attached,
        as Stripe has it (its id is Stripe's ``pm_…``)."""
        saved = self.get_payment_method(payment_method.customer_id, payment_method.provider_token)
        if saved is None:
            raise StateConflict("the payment method is not attached to this customer at Stripe")
        return saved

    def remove_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> bool:
        if self.get_payment_method(customer_id, payment_method_id) is None:
            return False
        for subscription in self.list_subscriptions(customer_id):
            if (
                subscription.is_current
                and subscription.payment_method
                and subscription.payment_method.id == payment_method_id
            ):
                raise PaymentMethodInUse(payment_method_id)
        self.client.v1.payment_methods.detach(payment_method_id)
        return True

    def set_subscription_payment_method(
        self,
        customer_id: str,
        subscription_id: str,
        payment_method_id: str,
        *,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        if self._retrieve_subscription(customer_id, subscription_id) is None:
            return None
        if self.get_payment_method(customer_id, payment_method_id) is None:
            return None
        updated = self.client.v1.subscriptions.update(
            subscription_id, params={"default_payment_method": payment_method_id}
        )
        return self._subscription(_dict(updated), customer_id)

    def cancel_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        at_period_end: bool,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        data = self._retrieve_subscription(customer_id, subscription_id)
        if data is None:
            return None
        current = self._subscription(data, customer_id)
        if current.status is SubscriptionStatus.CANCELLED:
            raise StateConflict(f"subscription {subscription_id!r} is already cancelled")
        if at_period_end and current.status is not SubscriptionStatus.ON_HOLD:
            if current.cancel_at_period_end:
                raise StateConflict(f"subscription {subscription_id!r} is already set to end")
            updated = self.client.v1.subscriptions.update(
                subscription_id, params={"cancel_at_period_end": True}
            )
        else:
            updated = self.client.v1.subscriptions.cancel(subscription_id)
        return self._subscription(_dict(updated), customer_id)

    def undo_cancellation(
        self, customer_id: str, subscription_id: str, *, now: datetime, event: AuditEvent | None = None
    ) -> Subscription | None:
        data = self._retrieve_subscription(customer_id, subscription_id)
        if data is None:
            return None
        current = self._subscription(data, customer_id)
        if not current.cancel_at_period_end or current.status is SubscriptionStatus.CANCELLED:
            raise StateConflict(f"subscription {subscription_id!r} is not set to end")
        if current.current_period_end <= now:
            raise StateConflict(f"subscription {subscription_id!r} has ended")
        updated = self.client.v1.subscriptions.update(subscription_id, params={"cancel_at_period_end": False})
        return self._subscription(_dict(updated), customer_id)

    # -- ChargeStore -----------------------------------------------------------------

    def lock_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[StripeSubscriptionLock | None]:
        return self._lock(customer_id, subscription_id)

    @contextmanager
    def _lock(self, customer_id: str, subscription_id: str) -> Iterator[StripeSubscriptionLock | None]:
        with self._locks_guard:
            guard = self._locks.setdefault(subscription_id, threading.Lock())
        with guard:
            data = self._retrieve_subscription(customer_id, subscription_id)
            yield (
                None
                if data is None
                else StripeSubscriptionLock(self, customer_id, self._subscription(data, customer_id))
            )

    def subscriptions_due(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        """Always empty: Stripe renews subscriptions and retries failed
        renewals itself."""
        return []


def _attempt_to_metadata(attempt: ChargeAttempt) -> str:
    return json.dumps(
        {
            "s": str(attempt.status),
            "a": attempt.amount,
            "c": int(attempt.created_at.timestamp()),
            "pm": attempt.payment_method_id,
            "d": attempt.decline_reason,
            "r": attempt.provider_reference,
            "t": int(attempt.resolved_at.timestamp()) if attempt.resolved_at else None,
        },
        separators=(",", ":"),
    )


def _attempt_from_metadata(
    invoice: Mapping[str, Any], customer_id: str, number: int, value: str
) -> ChargeAttempt:
    from ...charging import idempotency_key

    data = json.loads(value)
    invoice_id = str(invoice["id"])
    return ChargeAttempt(
        invoice_id=invoice_id,
        attempt=number,
        idempotency_key=idempotency_key(invoice_id, number),
        customer_id=customer_id,
        amount=int(data["a"]),
        currency=str(invoice.get("currency") or "usd").upper(),
        status=ChargeAttemptStatus(data["s"]),
        created_at=_time(data["c"]) or datetime.now(timezone.utc),
        payment_method_id=data.get("pm"),
        decline_reason=data.get("d"),
        provider_reference=data.get("r"),
        resolved_at=_time(data.get("t")),
    )


class StripeSubscriptionLock:
    """A Stripe subscription held for the money path; see the module's
    description for what "held" means with Stripe."""

    def __init__(self, store: StripeBillingStore, customer_id: str, subscription: Subscription) -> None:
        self._store = store
        self._customer_id = customer_id
        self._subscription = subscription

    @property
    def subscription(self) -> Subscription:
        return self._subscription

    def _invoice_data(self, invoice_id: str) -> dict[str, Any] | None:
        data = self._store._retrieve_invoice(self._customer_id, invoice_id)
        if data is None or _invoice_subscription_id(data) != self._subscription.id:
            return None
        return data

    def open_invoices(self) -> Sequence[Invoice]:
        found = self._store.client.v1.invoices.list(
            params={
                "customer": self._customer_id,
                "subscription": self._subscription.id,
                "limit": 100,
            }
        )
        invoices = []
        for item in found.auto_paging_iter():
            data = _dict(item)
            if data.get("status") != "open":
                continue
            invoice = self._store._invoice(data, self._customer_id, lines=True)
            if invoice is not None:
                invoices.append(invoice)
        return sorted(invoices, key=lambda i: (i.issued_at, i.id))

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        data = self._invoice_data(invoice_id)
        return None if data is None else self._store._invoice(data, self._customer_id, lines=True)

    def issue_invoice(self, invoice: Invoice) -> Invoice:
        """Refused: Stripe issues a subscription's invoices itself, and an
        ``on_hold`` Stripe subscription always has its open renewal invoice."""
        raise StateConflict(f"Stripe has no open invoice for subscription {self._subscription.id!r} to pay")

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        data = self._invoice_data(invoice_id)
        if data is None:
            return []
        metadata = data.get("metadata") or {}
        found = []
        for key, value in metadata.items():
            if key.startswith(_ATTEMPT_KEY) and key[len(_ATTEMPT_KEY) :].isdigit():
                found.append(
                    _attempt_from_metadata(data, self._customer_id, int(key[len(_ATTEMPT_KEY) :]), value)
                )
        return sorted(found, key=lambda a: a.attempt)

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        if self._invoice_data(attempt.invoice_id) is None:
            raise StateConflict(f"invoice {attempt.invoice_id!r} is not this subscription's")
        self._store.client.v1.invoices.update(
            attempt.invoice_id,
            params={"metadata": {f"{_ATTEMPT_KEY}{attempt.attempt}": _attempt_to_metadata(attempt)}},
        )

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        """The invoice as Stripe has it now, which must be ``paid`` (Stripe
        marked it when the payment went through)."""
        invoice = self.get_invoice(invoice_id)
        if invoice is None or invoice.status is not InvoiceStatus.PAID:
            raise StateConflict(f"Stripe does not show invoice {invoice_id!r} as paid")
        return invoice

    def update_subscription(
        self,
        *,
        status: SubscriptionStatus | None = None,
        current_period_start: datetime | None = None,
        current_period_end: datetime | None = None,
        payment_method_id: str | None = None,
        hold_reason: str | None = None,
        clear_hold_reason: bool = False,
        ended_at: datetime | None = None,
        **_ignored: Any,
    ) -> Subscription:
        """Sets the subscription's ``default_payment_method`` and the hold
        reason (in its metadata); status and period come from Stripe, which
        moved them when the invoice was paid."""
        params: dict[str, Any] = {}
        if payment_method_id is not None:
            params["default_payment_method"] = payment_method_id
        if clear_hold_reason:
            params["metadata"] = {_HOLD_REASON_KEY: ""}
        elif hold_reason is not None:
            params["metadata"] = {_HOLD_REASON_KEY: hold_reason}
        client = self._store.client
        if params:
            data = _dict(client.v1.subscriptions.update(self._subscription.id, params=params))  # type: ignore[arg-type]
        else:
            data = _dict(client.v1.subscriptions.retrieve(self._subscription.id))
        self._subscription = self._store._subscription(data, self._customer_id)
        return self._subscription

    def record_event(self, event: AuditEvent) -> None:
        """Refused: the audit log is local; mount the store in a
        :class:`~flask_customer_portal.contrib.composite.CompositeStorage`."""
        raise TypeError("StripeBillingStore keeps no audit log: use it inside a CompositeStorage")


# -- payments ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _InvoiceKey:
    invoice_id: str
    attempt: int


def _parse_key(idempotency_key: str) -> _InvoiceKey | None:
    parts = idempotency_key.split(":")
    if len(parts) != 4 or parts[0] != "invoice" or parts[2] != "attempt" or not parts[3].isdigit():
        return None
    if not parts[1].startswith("in_"):
        return None
    return _InvoiceKey(parts[1], int(parts[3]))


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
            method = _dict(self.client.v1.payment_methods.attach(token, params={"customer": stripe_customer}))
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
            reference = _id(invoice.get("charge")) or _id(invoice.get("payment_intent")) or str(invoice["id"])
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
        return _dict(self.client.v1.payment_intents.retrieve(str(value)))

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
        description: str,
    ) -> ChargeResult:
        """Pay the open Stripe invoice named in ``idempotency_key``
        (``invoice:<in_…>:attempt:<n>``) with the PaymentMethod
        ``provider_token``. Any other charge is refused: with Stripe, the
        portal only ever pays Stripe's own invoices."""
        key = _parse_key(idempotency_key)
        stripe_customer = self.customer_ids.to_provider(customer_id)
        if key is None or stripe_customer is None:
            return ChargeFailed("Stripe charges are payments of open Stripe invoices", retryable=False)
        try:
            invoice = _dict(self.client.v1.invoices.retrieve(key.invoice_id))
        except stripe.InvalidRequestError:
            return ChargeFailed("no such Stripe invoice", retryable=False)
        if _id(invoice.get("customer")) != stripe_customer:
            return ChargeFailed("the Stripe invoice is not this customer's", retryable=False)
        if (
            int(invoice.get("amount_due") or 0) != amount.amount
            or str(invoice.get("currency")).upper() != amount.currency
        ):
            return ChargeFailed("the amount differs from the Stripe invoice's amount due", retryable=False)
        if invoice.get("status") == "paid":
            return self._outcome(invoice) or ChargeFailed("paid", retryable=False)
        try:
            paid = _dict(
                self.client.v1.invoices.pay(
                    key.invoice_id,
                    params={"payment_method": provider_token, "off_session": True},
                    options={"idempotency_key": idempotency_key},
                )
            )
        except stripe.CardError as exc:
            code = getattr(exc, "code", None)
            if code in ("invoice_payment_intent_requires_action", "authentication_required"):
                return self._requires_action(key.invoice_id) or ChargeDeclined(DeclineReason.GENERIC)
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
        return self._requires_action(key.invoice_id) or ChargeDeclined(DeclineReason.GENERIC)

    def _requires_action(self, invoice_id: str) -> ChargeRequiresAction | None:
        invoice = _dict(self.client.v1.invoices.retrieve(invoice_id))
        outcome = self._outcome(invoice)
        return outcome if isinstance(outcome, ChargeRequiresAction) else None

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """What Stripe says of the invoice the key pays: paid, or waiting for
        3-D Secure; ``None`` while it is open otherwise (paying it again is
        safe: Stripe never pays an invoice twice)."""
        key = _parse_key(idempotency_key)
        if key is None:
            return None
        try:
            invoice = _dict(self.client.v1.invoices.retrieve(key.invoice_id))
        except stripe.InvalidRequestError:
            return None
        return self._outcome(invoice)


# -- webhooks --------------------------------------------------------------------------


def stripe_webhook_blueprint(
    secret: str,
    *,
    url: str = "/stripe/webhook",
    customer_ids: CustomerIdMap | None = None,
    on_event: Callable[[stripe.Event], None] | None = None,
    name: str = "customer_portal_stripe",
    lease: timedelta = LEASE,
) -> Blueprint:
    """A blueprint with one route, ``POST <url>``, for Stripe's webhooks.

    The signature (``Stripe-Signature``) is checked with
    :func:`stripe.Webhook.construct_event` and ``secret`` (``whsec_…``); a
    payload that fails is answered 400 and ignored. For ``invoice.*`` and
    ``customer.subscription.*`` events of a portal customer, an audit
    event ``stripe.<type>`` is appended to the portal's log (the portal reads
    Stripe on every page, so there is no copy to bring up to date), then
    ``on_event(event)`` is called — e.g. to clear a cache of the merchant's.
    Other events are acknowledged and ignored.

    Stripe retries an event until it gets a 2xx and may deliver it more
    than once: an event whose ``evt_…`` id was handled already is answered
    204 and does nothing else; one that another delivery is handling right
    now is answered 409, so that Stripe delivers it again later. With a
    store that has
    :meth:`~flask_customer_portal.storage.AccessStore.claim_webhook_event`
    every worker and restart agrees on that, and a claim left unfinished
    for ``lease`` (5 minutes unless given; its worker died) is taken over
    by the next delivery;
    otherwise each process remembers the ids it handled. If handling
    raises, the answer is an error and Stripe's next delivery of the event
    is handled.
    """
    ids = customer_ids or SameCustomerIds()
    blueprint = Blueprint(name, __name__)
    events = WebhookEvents("stripe", lease=lease)

    @blueprint.post(url)
    def stripe_webhook() -> tuple[str, int]:
        from ...extension import EXTENSION_KEY, get_state

        payload = request.get_data()
        signature = request.headers.get("Stripe-Signature", "")
        try:
            event = stripe.Webhook.construct_event(payload, signature, secret)
        except (ValueError, stripe.SignatureVerificationError):
            current_app.logger.warning("Refused a Stripe webhook with a bad signature")
            abort(400)
        if not str(event.type).startswith(WEBHOOK_EVENTS):
            return "", 204
        # An app may mount the blueprint without the portal (events without
        # a portal customer need none): repeats are then remembered here.
        storage = get_state().storage if EXTENSION_KEY in current_app.extensions else None
        with events.handling(storage, str(event.id)) as claim:
            answer = repeat_answer(claim)
            if answer is not None:
                return answer
            data = _dict(event.data.object)
            stripe_customer = _id(data.get("customer"))
            customer_id = ids.to_portal(stripe_customer) if stripe_customer else None
            if customer_id is not None and get_state().storage.get_customer(customer_id) is not None:
                get_state().storage.record_event(
                    AuditEvent(
                        customer_id=customer_id,
                        action=f"stripe.{event.type}",
                        occurred_at=_time(event.created) or datetime.now(timezone.utc),
                        subject_id=_id(data.get("id")),
                        provider_reference=str(event.id),
                        actor="system",
                    )
                )
            if on_event is not None:
                on_event(event)
        return "", 204

    return blueprint
