"""Dodo Payments as the portal's billing back end.

Subscriptions, payments (the portal's invoices), saved payment methods and
licence keys live at Dodo Payments; the portal reads them through the
official ``dodopayments`` SDK every time it shows them, so a page is never
older than Dodo's own records. Customers, sign-in links, sessions and the
audit log stay in the merchant's database::

    from flask_customer_portal.contrib.dodo import DodoBilling, DodoCompositeStorage, DodoPaymentProvider

    billing = DodoBilling.from_api_key(os.environ["DODO_PAYMENTS_API_KEY"], environment="live_mode")
    CustomerPortal(
        app,
        storage=DodoCompositeStorage(SQLAlchemyStorage(db), billing=billing),
        payments=DodoPaymentProvider(billing),
    )

Dodo bills its subscriptions itself: it renews them, retries failed
renewals and, when an ``on_hold`` subscription gets a payment method, charges
the arrears and makes it ``active`` again. The portal never charges a Dodo
subscription on its own: :class:`DodoPaymentProvider` refuses
:meth:`~DodoPaymentProvider.charge` and pays arrears through
``update_payment_method`` instead (:meth:`~DodoPaymentProvider.pay_arrears`).

Install with ``pip install "flask-customer-portal[dodo]"``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from dodopayments import (
    APIConnectionError,
    APIError,
    APIStatusError,
    DodoPayments,
)
from standardwebhooks import Webhook, WebhookVerificationError
from werkzeug.exceptions import ServiceUnavailable

from ...errors import PortalError
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
    MethodDeclined,
)
from ...storage import (
    AuditEvent,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyInstance,
    LicenseKeyStatus,
    Page,
    PaymentMethod,
    PaymentMethodInUse,
    StateConflict,
    Subscription,
    SubscriptionStatus,
)
from .._webhooks import LEASE, WebhookEvents, repeat_answer
from ..composite import CompositeStorage

__all__ = [
    "DodoBilling",
    "DodoCompositeStorage",
    "DodoPaymentProvider",
    "DodoPlanChange",
    "DodoRefused",
    "DodoUnavailable",
    "DodoWebhookEvent",
    "InvalidDodoWebhook",
    "verify_dodo_webhook",
]

logger = logging.getLogger("flask_customer_portal")

R = TypeVar("R")

#: Dodo's ``environment`` names and their API hosts.
ENVIRONMENTS: Mapping[str, str] = {
    "live_mode": "https://live.dodopayments.com",
    "test_mode": "https://test.dodopayments.com",
}


def _environment_of(client: DodoPayments) -> str:
    """The environment whose API host the client talks to; ``"test_mode"``
    for any other host."""
    host = str(client.base_url).rstrip("/")
    for name, url in ENVIRONMENTS.items():
        if host == url:
            return name
    return "test_mode"


#: Largest page Dodo serves.
_PAGE_SIZE = 100
#: A customer's history is read page by page up to this many pages.
_MAX_PAGES = 50
#: The header that carries the portal's idempotency key of a money request.
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: How far Dodo's clock may be behind the portal's when a payment made by a
#: call is looked for by the time of the call.
_CLOCK_ALLOWANCE = timedelta(minutes=5)


class DodoUnavailable(PortalError, ServiceUnavailable):
    """Dodo Payments did not answer in time, could not be reached, or
    answered with a server error (or a refusal of the API key). Shown to the
    customer as the portal's "try again in a moment" page (HTTP 503); the
    log names the request, never the key."""


class DodoRefused(StateConflict):
    """Dodo Payments refused a change (HTTP 4xx other than 404): the
    subscription is not in a state that allows it."""

    def __init__(self, what: str, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(f"Dodo Payments refused {what} (HTTP {status_code})")


class _Missing(Exception):
    """Dodo answered 404."""


# -- statuses ---------------------------------------------------------------------------

_PAUSED = SubscriptionStatus.__members__.get("PAUSED")

#: Dodo's subscription statuses as the portal's. ``past_due`` (a renewal
#: failed, Dodo is retrying) asks the same of the customer as ``on_hold``: a
#: working payment method. ``failed`` (the first payment never went
#: through), ``expired`` and ``cancelled`` have all ended.
SUBSCRIPTION_STATUSES: Mapping[str, SubscriptionStatus] = {
    "active": SubscriptionStatus.ACTIVE,
    "on_hold": SubscriptionStatus.ON_HOLD,
    "past_due": SubscriptionStatus.ON_HOLD,
    "paused": _PAUSED or SubscriptionStatus.ON_HOLD,
    "cancelled": SubscriptionStatus.CANCELLED,
    "expired": SubscriptionStatus.CANCELLED,
    "failed": SubscriptionStatus.CANCELLED,
}
#: ``pending`` subscriptions (checkout not finished) are not shown at all.
_HIDDEN_STATUSES = frozenset({"pending"})

_LICENSE_STATUSES: Mapping[str, LicenseKeyStatus] = {
    "active": LicenseKeyStatus.ACTIVE,
    "expired": LicenseKeyStatus.EXPIRED,
    "disabled": LicenseKeyStatus.REVOKED,
}

#: Payment statuses still waiting for money (shown as open invoices).
_WAITING = frozenset(
    {
        "processing",
        "requires_customer_action",
        "requires_merchant_action",
        "requires_payment_method",
        "requires_confirmation",
        "requires_capture",
        "partially_captured_and_capturable",
    }
)

#: Dodo's ``error_code`` of a failed payment as the portal's decline reasons.
_DECLINES: Mapping[str, DeclineReason] = {
    "INSUFFICIENT_FUNDS": DeclineReason.INSUFFICIENT_FUNDS,
    "EXPIRED_CARD": DeclineReason.EXPIRED_CARD,
    "INCORRECT_CVC": DeclineReason.INCORRECT_CVC,
    "INVALID_CVC": DeclineReason.INCORRECT_CVC,
}


def decline_reason(error_code: str | None) -> DeclineReason:
    """The portal's decline reason for a Dodo ``error_code`` (generic when unknown)."""
    return _DECLINES.get((error_code or "").upper(), DeclineReason.GENERIC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _optional_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


def _declared(raw: Any, name: str) -> Any:
    """A field of an SDK model if its type declares it (``Payment`` has
    ``tax``, the list's ``PaymentListResponse`` does not), else ``None``;
    undeclared extras are never read."""
    return getattr(raw, name, None) if name in type(raw).model_fields else None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _year(value: str | None) -> int:
    """A card's expiry year, which Dodo may give as ``"31"`` or ``"2031"``."""
    year = _int(value, 0)
    return 2000 + year if 0 < year < 100 else year


def _undeprecated(resource: Any, name: str) -> Callable[..., Any]:
    """``resource.name`` without the SDK's ``DeprecationWarning``.

    The SDK marks the licence-key endpoints (``license_keys.list`` and
    ``retrieve``) deprecated in favour of entitlement grants; Dodo still
    serves them and they are what its licence keys are read with. The
    method is called as it is, only its warning is left out (no global
    warning filter is touched, which would not be thread-safe).
    """
    function = getattr(type(resource), name)
    return functools.partial(getattr(function, "__wrapped__", function), resource)


# -- plan changes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DodoPlanChange:
    """What a plan change costs now (Dodo's preview) or what applying it
    asked of the customer."""

    amount: Money
    """Charged now: prorated difference, after credits."""
    effective_at: datetime
    payment_link: str | None = None
    """Set by :meth:`DodoBilling.change_plan` when the customer must pay on
    Dodo's page (the new plan applies once they have)."""


ProrationMode = Literal[
    "prorated_immediately",
    "full_immediately",
    "difference_immediately",
    "do_not_bill",
    "prorated_immediately_keep_cycle",
]


# -- the billing store -------------------------------------------------------------------


class DodoBilling:
    """:class:`~flask_customer_portal.storage.BillingStore` and
    :class:`~flask_customer_portal.storage.LicenseKeyStore` over the Dodo
    Payments API.

    ``customer_id`` arguments are Dodo customer ids (``cus_…``); put the
    store in :class:`DodoCompositeStorage` to use other ids in the portal.
    Every read checks that the record belongs to that customer and answers
    ``None`` otherwise, since the API key can read every customer's data.

    Errors: a 404 from Dodo is "not found" (``None``); a timeout, a network
    error, a 5xx or a refused key raises :class:`DodoUnavailable` (the
    customer sees a 503 page); Dodo refusing a change raises
    :class:`DodoRefused`, a :class:`~flask_customer_portal.storage.StateConflict`.
    """

    def __init__(self, client: DodoPayments, *, environment: str | None = None) -> None:
        if environment is not None and environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {sorted(ENVIRONMENTS)}, not {environment!r}")
        self.client = client
        #: ``"test_mode"`` or ``"live_mode"``: the Dodo environment whose records
        #: and money this store works with. Given, or else read from the
        #: client's API host; any other host (a proxy, a test server) counts as
        #: ``"test_mode"`` unless ``environment="live_mode"`` says otherwise, so
        #: a live portal never runs over an environment it cannot vouch for.
        self.environment = environment or _environment_of(client)

    @classmethod
    def from_api_key(
        cls,
        api_key: str,
        *,
        environment: str = "test_mode",
        base_url: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 2,
    ) -> DodoBilling:
        """A store with its own SDK client. ``environment`` is ``test_mode``
        or ``live_mode``; ``base_url`` overrides its API host (a proxy, a test
        server) while ``environment`` still says which one it stands for."""
        if not api_key:
            raise ValueError("a Dodo Payments API key is required")
        if base_url is None:
            if environment not in ENVIRONMENTS:
                raise ValueError(f"environment must be one of {sorted(ENVIRONMENTS)}, not {environment!r}")
            base_url = ENVIRONMENTS[environment]
        if environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {sorted(ENVIRONMENTS)}, not {environment!r}")
        return cls(
            DodoPayments(bearer_token=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries),
            environment=environment,
        )

    def __repr__(self) -> str:
        return f"DodoBilling(base_url={str(self.client.base_url)!r})"

    # -- calling Dodo ------------------------------------------------------------------

    def _call(self, what: str, func: Callable[[], R]) -> R:
        try:
            return func()
        except APIStatusError as exc:
            status = exc.status_code
            if status == 404:
                raise _Missing(what) from exc
            if 400 <= status < 500 and status not in (401, 403, 429):
                raise DodoRefused(what, status) from exc
            logger.error("Dodo Payments answered HTTP %s to %s", status, what)
            raise DodoUnavailable(f"Dodo Payments answered HTTP {status} to {what}") from exc
        except APIConnectionError as exc:
            logger.error("Dodo Payments could not be reached for %s: %s", what, type(exc).__name__)
            raise DodoUnavailable(f"Dodo Payments could not be reached for {what}") from exc
        except APIError as exc:
            # An answer the SDK could not read (strict response validation).
            logger.error("Dodo Payments sent an answer that could not be read for %s", what)
            raise DodoUnavailable(f"unreadable answer from Dodo Payments for {what}") from exc

    def _or_none(self, what: str, func: Callable[[], R]) -> R | None:
        try:
            return self._call(what, func)
        except _Missing:
            return None

    def _pages(self, what: str, fetch: Callable[[int], Any]) -> Iterator[Any]:
        """Every item of a page-numbered list: pages from 0 until an empty one."""
        for number in range(_MAX_PAGES):
            page = self._call(what, functools.partial(fetch, number))
            items = list(page.items or ())
            if not items:
                return
            yield from items
        logger.warning("Dodo Payments list %s was cut at %d pages", what, _MAX_PAGES)

    # -- raw reads ---------------------------------------------------------------------

    def _raw_subscriptions(self, customer_id: str) -> list[Any]:
        found = self._pages(
            "subscriptions.list",
            lambda n: self.client.subscriptions.list(
                customer_id=customer_id, page_number=n, page_size=_PAGE_SIZE
            ),
        )
        return [s for s in found if s.customer.customer_id == customer_id]

    def _raw_methods(self, customer_id: str) -> list[Any]:
        try:
            answer = self._call(
                "customers.retrieve_payment_methods",
                lambda: self.client.customers.retrieve_payment_methods(customer_id),
            )
        except _Missing:
            return []
        return list(answer.items)

    def _raw_payments(self, customer_id: str) -> list[Any]:
        found = self._pages(
            "payments.list",
            lambda n: self.client.payments.list(customer_id=customer_id, page_number=n, page_size=_PAGE_SIZE),
        )
        return [p for p in found if p.customer.customer_id == customer_id]

    # -- records -------------------------------------------------------------------------

    @staticmethod
    def _method(customer_id: str, raw: Any) -> PaymentMethod:
        card = raw.card
        brand = (
            card.card_network if card is not None and card.card_network else raw.payment_method
        ) or "card"
        return PaymentMethod(
            id=raw.payment_method_id,
            customer_id=customer_id,
            brand=brand.lower(),
            last4=(card.last4_digits if card is not None and card.last4_digits else "") or "",
            exp_month=_int(card.expiry_month if card is not None else None, 0),
            exp_year=_year(card.expiry_year if card is not None else None),
            provider_token=raw.payment_method_id,
            created_at=_optional_utc(raw.last_used_at),
        )

    def _subscription(
        self, raw: Any, product_name: str | None, methods: Mapping[str, PaymentMethod]
    ) -> Subscription:
        status = SUBSCRIPTION_STATUSES.get(raw.status, SubscriptionStatus.ON_HOLD)
        name = product_name or raw.product_id
        plan = (raw.metadata or {}).get("plan_name") if isinstance(raw.metadata, Mapping) else None
        ended = None
        if status is SubscriptionStatus.CANCELLED:
            ended = _optional_utc(raw.cancelled_at) or _utc(raw.next_billing_date)
        hold = None
        if raw.status == "paused" and _PAUSED is None:
            hold = "paused"
        return Subscription(
            id=raw.subscription_id,
            customer_id=raw.customer.customer_id,
            product_name=name,
            plan_name=str(plan) if plan else name,
            price=Money(raw.recurring_pre_tax_amount, raw.currency),
            interval=str(raw.payment_frequency_interval).lower(),
            interval_count=raw.payment_frequency_count,
            status=status,
            current_period_start=_utc(raw.previous_billing_date),
            current_period_end=_utc(raw.next_billing_date),
            cancel_at_period_end=bool(raw.cancel_at_next_billing_date)
            and status is not SubscriptionStatus.CANCELLED,
            cancelled_at=_optional_utc(raw.cancelled_at),
            ended_at=ended,
            payment_method=methods.get(raw.payment_method_id or ""),
            hold_reason=hold,
            created_at=_utc(raw.created_at),
            quantity=raw.quantity,
            paused_at=_optional_utc(raw.paused_at),
        )

    def _subscriptions(self, customer_id: str) -> list[Subscription]:
        raws = [r for r in self._raw_subscriptions(customer_id) if r.status not in _HIDDEN_STATUSES]
        if not raws:
            return []
        methods = {m.payment_method_id: self._method(customer_id, m) for m in self._raw_methods(customer_id)}
        subscriptions = [self._subscription(r, r.product_name, methods) for r in raws]
        subscriptions.sort(key=lambda s: s.created_at or s.current_period_start, reverse=True)
        subscriptions.sort(key=lambda s: not s.is_current)
        return subscriptions

    def _invoice(self, raw: Any, names: Mapping[str, str], open_ids: frozenset[str]) -> Invoice:
        status_name = raw.status or "processing"
        if status_name == "succeeded":
            status = InvoiceStatus.REFUNDED if raw.refund_status == "full" else InvoiceStatus.PAID
        elif status_name in _WAITING or raw.payment_id in open_ids:
            status = InvoiceStatus.OPEN
        else:
            status = InvoiceStatus.VOID
        tax = _declared(raw, "tax") or 0
        method = None
        if _declared(raw, "payment_method_id") and raw.card_last_four:
            method = PaymentMethod(
                id=raw.payment_method_id,
                customer_id=raw.customer.customer_id,
                brand=(raw.card_network or raw.payment_method or "card").lower(),
                last4=raw.card_last_four,
                exp_month=_int(raw.card_exp_month, 0),
                exp_year=_year(raw.card_exp_year),
                provider_token=raw.payment_method_id,
            )
        paid_at = None
        if status in (InvoiceStatus.PAID, InvoiceStatus.REFUNDED):
            paid_at = _utc(_declared(raw, "updated_at") or raw.created_at)
        return Invoice(
            id=raw.payment_id,
            number=raw.invoice_id or raw.payment_id,
            customer_id=raw.customer.customer_id,
            status=status,
            currency=raw.currency,
            subtotal=raw.total_amount - tax,
            tax=tax,
            total=raw.total_amount,
            issued_at=_utc(raw.created_at),
            description=names.get(raw.subscription_id or "", "") or raw.payment_id,
            subscription_id=raw.subscription_id,
            paid_at=paid_at,
            payment_reference=raw.payment_id if paid_at is not None else None,
            payment_method=method,
        )

    @staticmethod
    def _open_payment_ids(payments: Sequence[Any], on_hold: set[str]) -> frozenset[str]:
        """The failed payment that an ``on_hold`` subscription still owes:
        its newest payment, if that one failed. Older failed tries were
        superseded by a retry and show as void."""
        newest: dict[str, Any] = {}
        for payment in payments:
            sid = payment.subscription_id
            if sid in on_hold and (sid not in newest or payment.created_at > newest[sid].created_at):
                newest[sid] = payment
        return frozenset(p.payment_id for p in newest.values() if p.status == "failed")

    def _invoices(self, customer_id: str) -> list[Invoice]:
        payments = self._raw_payments(customer_id)
        if not payments:
            return []
        subscriptions = self._raw_subscriptions(customer_id)
        names = {s.subscription_id: s.product_name or s.product_id for s in subscriptions}
        on_hold = {s.subscription_id for s in subscriptions if s.status in ("on_hold", "past_due")}
        open_ids = self._open_payment_ids(payments, on_hold)
        invoices = [self._invoice(p, names, open_ids) for p in payments]
        invoices.sort(key=lambda i: (i.issued_at, i.id), reverse=True)
        return invoices

    # -- BillingStore: reads -----------------------------------------------------------

    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        return self._subscriptions(customer_id)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        for subscription in self._subscriptions(customer_id):
            if subscription.id == subscription_id:
                return subscription
        return None

    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page start at 1")
        invoices = self._invoices(customer_id)
        start = (page - 1) * per_page
        return Page(
            items=invoices[start : start + per_page], page=page, per_page=per_page, total=len(invoices)
        )

    def list_invoices_after(
        self, customer_id: str, after: Invoice | None, *, limit: int, with_lines: bool = False
    ) -> Sequence[Invoice]:
        invoices = self._invoices(customer_id)
        if after is not None:
            key = (after.issued_at, after.id)
            invoices = [i for i in invoices if (i.issued_at, i.id) < key]
        batch = invoices[:limit]
        if with_lines:
            batch = [replace(i, lines=self._lines(i)) for i in batch]
        return batch

    def _lines(self, invoice: Invoice) -> tuple[InvoiceLine, ...]:
        answer = self._or_none(
            "payments.retrieve_line_items", lambda: self.client.payments.retrieve_line_items(invoice.id)
        )
        if answer is None or not answer.items:
            return (InvoiceLine(invoice.description, 1, invoice.subtotal, invoice.subtotal),)
        return tuple(
            InvoiceLine(item.name or item.description or invoice.description, 1, item.amount, item.amount)
            for item in answer.items
        )

    def _own_payment(self, customer_id: str, payment_id: str) -> Any | None:
        raw = self._or_none("payments.retrieve", lambda: self.client.payments.retrieve(payment_id))
        if raw is None or raw.customer.customer_id != customer_id:
            return None
        return raw

    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        raw = self._own_payment(customer_id, invoice_id)
        if raw is None:
            return None
        names: dict[str, str] = {}
        open_ids: frozenset[str] = frozenset()
        if raw.subscription_id:
            subscriptions = self._raw_subscriptions(customer_id)
            names = {s.subscription_id: s.product_name or s.product_id for s in subscriptions}
            on_hold = {s.subscription_id for s in subscriptions if s.status in ("on_hold", "past_due")}
            if raw.subscription_id in on_hold and raw.status == "failed":
                open_ids = self._open_payment_ids(self._raw_payments(customer_id), on_hold)
        invoice = self._invoice(raw, names, open_ids)
        return replace(invoice, lines=self._lines(invoice))

    def invoice_pdf(self, customer_id: str, invoice_id: str) -> bytes | None:
        """Dodo's own invoice PDF of one of the customer's payments
        (``invoices.payments.retrieve``), or ``None``."""
        if self._own_payment(customer_id, invoice_id) is None:
            return None
        response = self._or_none(
            "invoices.payments.retrieve", lambda: self.client.invoices.payments.retrieve(invoice_id)
        )
        return None if response is None else response.read()

    def list_payment_methods(self, customer_id: str) -> Sequence[PaymentMethod]:
        methods = [self._method(customer_id, m) for m in self._raw_methods(customer_id)]
        methods.sort(key=lambda m: m.created_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
        return methods

    def get_payment_method(self, customer_id: str, payment_method_id: str) -> PaymentMethod | None:
        for method in self.list_payment_methods(customer_id):
            if method.id == payment_method_id:
                return method
        return None

    # -- BillingStore: writes ------------------------------------------------------------

    def add_payment_method(
        self, payment_method: PaymentMethod, *, event: AuditEvent | None = None
    ) -> PaymentMethod:
        """Dodo saves payment methods itself, on its own payment page
        (:meth:`payment_method_link`); there is nothing to add here."""
        raise DodoRefused("adding a payment method outside Dodo's payment page", 405)

    def remove_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> bool:
        if self.get_payment_method(customer_id, payment_method_id) is None:
            return False
        for subscription in self._subscriptions(customer_id):
            method = subscription.payment_method
            if subscription.is_current and method is not None and method.id == payment_method_id:
                raise PaymentMethodInUse(payment_method_id)
        try:
            self._call(
                "customers.delete_payment_method",
                lambda: self.client.customers.delete_payment_method(
                    payment_method_id, customer_id=customer_id
                ),
            )
        except _Missing:
            return False
        return True

    def set_subscription_payment_method(
        self,
        customer_id: str,
        subscription_id: str,
        payment_method_id: str,
        *,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        if self.get_subscription(customer_id, subscription_id) is None:
            return None
        if self.get_payment_method(customer_id, payment_method_id) is None:
            return None
        self._update_payment_method(
            subscription_id, {"type": "existing", "payment_method_id": payment_method_id}
        )
        return self.get_subscription(customer_id, subscription_id)

    def _update_payment_method(self, subscription_id: str, method: Any) -> Any:
        return self._call(
            "subscriptions.update_payment_method",
            lambda: self.client.subscriptions.update_payment_method(subscription_id, payment_method=method),
        )

    def cancel_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        at_period_end: bool,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        current = self.get_subscription(customer_id, subscription_id)
        if current is None:
            return None
        if current.status is SubscriptionStatus.CANCELLED:
            raise StateConflict(f"subscription {subscription_id!r} is already cancelled")
        later = at_period_end and current.status is SubscriptionStatus.ACTIVE
        if later and current.cancel_at_period_end:
            raise StateConflict(f"subscription {subscription_id!r} already ends at its period's end")
        try:
            if later:
                self._call(
                    "subscriptions.update",
                    lambda: self.client.subscriptions.update(
                        subscription_id, cancel_at_next_billing_date=True
                    ),
                )
            else:
                self._call(
                    "subscriptions.update",
                    lambda: self.client.subscriptions.update(
                        subscription_id, status="cancelled", cancel_reason="cancelled_by_customer"
                    ),
                )
        except _Missing:
            return None
        return self.get_subscription(customer_id, subscription_id)

    def undo_cancellation(
        self, customer_id: str, subscription_id: str, *, now: datetime, event: AuditEvent | None = None
    ) -> Subscription | None:
        current = self.get_subscription(customer_id, subscription_id)
        if current is None:
            return None
        if not current.cancel_at_period_end or current.status is SubscriptionStatus.CANCELLED:
            raise StateConflict(f"subscription {subscription_id!r} is not set to end")
        if current.current_period_end <= now:
            raise StateConflict(f"subscription {subscription_id!r} has already ended")
        try:
            self._call(
                "subscriptions.update",
                lambda: self.client.subscriptions.update(subscription_id, cancel_at_next_billing_date=False),
            )
        except _Missing:
            return None
        return self.get_subscription(customer_id, subscription_id)

    def pause_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        now: datetime,
        resumes_at: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        """Refused: Dodo pauses a subscription until someone resumes it and
        keeps no resume date, so a pause that ends by itself cannot be made
        there. ``None`` if the subscription is not this customer's."""
        if self.get_subscription(customer_id, subscription_id) is None:
            return None
        raise DodoRefused("a pause with a resume date (Dodo keeps none)", 409)

    def unpause_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        resumed_at: datetime,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        """Resume a subscription paused at Dodo (``status: active``)."""
        current = self.get_subscription(customer_id, subscription_id)
        if current is None:
            return None
        if current.status is not SUBSCRIPTION_STATUSES["paused"] or current.paused_at is None:
            raise StateConflict(f"subscription {subscription_id!r} is not paused")
        try:
            self._call(
                "subscriptions.update",
                lambda: self.client.subscriptions.update(subscription_id, status="active"),
            )
        except _Missing:
            return None
        return self.get_subscription(customer_id, subscription_id)

    def set_retention_discount(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        percent: int,
        renewals: int,
        event: AuditEvent | None = None,
    ) -> Subscription | None:
        """Refused: Dodo's API has no way to add a discount to a running
        subscription (discount codes apply at checkout and plan changes)."""
        if self.get_subscription(customer_id, subscription_id) is None:
            return None
        raise DodoRefused("a discount on a running subscription", 409)

    # -- payment method changes and arrears ----------------------------------------------

    def payment_method_link(self, customer_id: str, subscription_id: str, *, return_url: str) -> str | None:
        """A link to Dodo's payment page where the customer enters a new
        payment method for the subscription (for an ``on_hold`` one, Dodo
        then charges the arrears). ``None`` if the subscription is not
        this customer's; raises :class:`DodoRefused` if Dodo sends no link."""
        if self.get_subscription(customer_id, subscription_id) is None:
            return None
        return self.new_method_link(subscription_id, return_url=return_url)

    def new_method_link(self, subscription_id: str, *, return_url: str) -> str:
        """:meth:`payment_method_link` for a subscription whose owner was
        checked already (the portal's views look it up first)."""
        answer = self._update_payment_method(subscription_id, {"type": "new", "return_url": return_url})
        if not answer.payment_link:
            raise DodoRefused("a new payment method (no payment link)", 502)
        return str(answer.payment_link)

    # -- plan changes ------------------------------------------------------------------------

    def preview_plan_change(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        product_id: str,
        quantity: int = 1,
        proration: ProrationMode = "prorated_immediately",
    ) -> DodoPlanChange | None:
        """What moving the subscription to ``product_id`` would charge now."""
        if self.get_subscription(customer_id, subscription_id) is None:
            return None
        answer = self._call(
            "subscriptions.preview_change_plan",
            lambda: self.client.subscriptions.preview_change_plan(
                subscription_id, product_id=product_id, quantity=quantity, proration_billing_mode=proration
            ),
        )
        summary = answer.immediate_charge.summary
        return DodoPlanChange(
            amount=Money(summary.total_amount, summary.currency),
            effective_at=_utc(answer.immediate_charge.effective_at),
        )

    def change_plan(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        product_id: str,
        quantity: int = 1,
        proration: ProrationMode = "prorated_immediately",
        return_url: str | None = None,
    ) -> DodoPlanChange | None:
        """Move the subscription to ``product_id``. With ``return_url`` the
        charge is collected on Dodo's payment page (``payment_link``) and
        the plan changes once it is paid; without, Dodo charges the saved
        method and refuses the change if that fails."""
        preview = self.preview_plan_change(
            customer_id, subscription_id, product_id=product_id, quantity=quantity, proration=proration
        )
        if preview is None:
            return None
        extra: dict[str, Any] = {"on_payment_failure": "prevent_change"}
        if return_url is not None:
            extra = {"collect_via_payment_link": True, "return_url": return_url}
        answer = self._call(
            "subscriptions.change_plan",
            lambda: self.client.subscriptions.change_plan(
                subscription_id,
                product_id=product_id,
                quantity=quantity,
                proration_billing_mode=proration,
                **extra,
            ),
        )
        return replace(preview, payment_link=answer.payment_link)

    # -- licence keys --------------------------------------------------------------------

    @staticmethod
    def _license_key(raw: Any, product_names: Mapping[str, str]) -> LicenseKey:
        return LicenseKey(
            id=raw.id,
            customer_id=raw.customer_id,
            key=raw.key,
            product_name=product_names.get(raw.product_id, raw.product_id),
            status=_LICENSE_STATUSES.get(raw.status, LicenseKeyStatus.INACTIVE),
            activations=raw.instances_count,
            activation_limit=raw.activations_limit,
            expires_at=_optional_utc(raw.expires_at),
            created_at=_utc(raw.created_at),
        )

    def _product_names(self, customer_id: str) -> dict[str, str]:
        return {s.product_id: s.product_name for s in self._raw_subscriptions(customer_id) if s.product_name}

    def _raw_license_keys(self, customer_id: str) -> list[Any]:
        found = self._pages(
            "license_keys.list",
            lambda n: _undeprecated(self.client.license_keys, "list")(
                customer_id=customer_id, page_number=n, page_size=_PAGE_SIZE
            ),
        )
        return [k for k in found if k.customer_id == customer_id]

    def list_license_keys(self, customer_id: str) -> Sequence[LicenseKey]:
        raws = self._raw_license_keys(customer_id)
        if not raws:
            return []
        names = self._product_names(customer_id)
        keys = [self._license_key(raw, names) for raw in raws]
        keys.sort(
            key=lambda k: (k.created_at or datetime.min.replace(tzinfo=timezone.utc), k.id), reverse=True
        )
        return keys

    def count_license_keys(self, customer_id: str) -> int:
        return len(self._raw_license_keys(customer_id))

    def _own_license_key(self, customer_id: str, license_key_id: str) -> Any | None:
        raw = self._or_none(
            "license_keys.retrieve",
            lambda: _undeprecated(self.client.license_keys, "retrieve")(license_key_id),
        )
        if raw is None or raw.customer_id != customer_id:
            return None
        return raw

    def get_license_key(self, customer_id: str, license_key_id: str) -> LicenseKey | None:
        raw = self._own_license_key(customer_id, license_key_id)
        return None if raw is None else self._license_key(raw, self._product_names(customer_id))

    def list_license_key_instances(
        self, customer_id: str, license_key_id: str
    ) -> Sequence[LicenseKeyInstance]:
        """The key's activations. Dodo deletes an activation when it is
        deactivated, so every one listed is active."""
        if self._own_license_key(customer_id, license_key_id) is None:
            return []
        found = self._pages(
            "license_key_instances.list",
            lambda n: self.client.license_key_instances.list(
                license_key_id=license_key_id, page_number=n, page_size=_PAGE_SIZE
            ),
        )
        instances = [
            LicenseKeyInstance(
                id=raw.id,
                license_key_id=raw.license_key_id,
                customer_id=customer_id,
                name=raw.name,
                created_at=_utc(raw.created_at),
            )
            for raw in found
            if raw.license_key_id == license_key_id
        ]
        instances.sort(key=lambda i: (i.created_at, i.id), reverse=True)
        return instances

    def deactivate_license_key_instance(
        self,
        customer_id: str,
        license_key_id: str,
        instance_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> LicenseKeyInstance | None:
        """Deactivate one activation at Dodo (``licenses.deactivate``). An
        activation Dodo no longer has is reported as already deactivated."""
        key = self._own_license_key(customer_id, license_key_id)
        if key is None:
            return None
        instance = self._or_none(
            "license_key_instances.retrieve", lambda: self.client.license_key_instances.retrieve(instance_id)
        )
        if instance is None:
            # Dodo forgets an activation once it is deactivated: a second
            # click (or an id that never was) changes nothing.
            raise StateConflict(f"activation {instance_id!r} is already deactivated")
        if instance.license_key_id != license_key_id:
            return None
        try:
            self._call(
                "licenses.deactivate",
                lambda: self.client.licenses.deactivate(
                    license_key=key.key, license_key_instance_id=instance_id
                ),
            )
        except _Missing as exc:
            raise StateConflict(f"activation {instance_id!r} is already deactivated") from exc
        return LicenseKeyInstance(
            id=instance.id,
            license_key_id=license_key_id,
            customer_id=customer_id,
            name=instance.name,
            created_at=_utc(instance.created_at),
            deactivated_at=now,
        )

    # -- Dodo's hosted portal ------------------------------------------------------------------

    def hosted_portal_link(
        self, customer_id: str, *, return_url: str | None = None, send_email: bool = False
    ) -> str:
        """A one-time link (valid 24 hours) to Dodo's own hosted customer
        portal for this customer (``customers.customer_portal.create``), for
        merchants who send some customers there and others to this portal."""
        options: dict[str, Any] = {"send_email": send_email}
        if return_url is not None:
            options["return_url"] = return_url
        session = self._call(
            "customers.customer_portal.create",
            lambda: self.client.customers.customer_portal.create(customer_id, **options),
        )
        return str(session.link)


# -- composite storage --------------------------------------------------------------------

_LICENSE_MEMBERS = frozenset(
    {
        "list_license_keys",
        "count_license_keys",
        "get_license_key",
        "list_license_key_instances",
        "deactivate_license_key_instance",
    }
)


class DodoCompositeStorage(CompositeStorage):
    """:class:`~flask_customer_portal.contrib.composite.CompositeStorage`
    whose licence keys come from Dodo as well: Dodo issues the keys of the
    products it sells, so the merchant's database holds none of them."""

    def __init__(self, local: Any, *, billing: DodoBilling, customer_ids: Any = None) -> None:
        super().__init__(local, billing=billing, customer_ids=customer_ids)
        self.dodo = billing

    def _licence_call(self, name: str, customer_id: str, *args: Any, **kwargs: Any) -> Any:
        event = kwargs.pop("event", None)
        provider_id = self._provider_id(customer_id)
        if provider_id is None:
            return 0 if name == "count_license_keys" else None if name.startswith(("get", "deact")) else []
        result = getattr(self.dodo, name)(provider_id, *args, **kwargs)
        if isinstance(result, LicenseKey | LicenseKeyInstance):
            portal_id = self._portal_id(result.customer_id)
            if portal_id is not None and portal_id != result.customer_id:
                result = replace(result, customer_id=portal_id)
        elif isinstance(result, list):
            mapped = []
            for item in result:
                portal_id = self._portal_id(item.customer_id)
                mapped.append(
                    item if portal_id in (None, item.customer_id) else replace(item, customer_id=portal_id)
                )
            result = mapped
        if name == "deactivate_license_key_instance":
            return self._recorded(event, result)
        return result

    def list_license_keys(self, customer_id: str) -> Any:
        return self._licence_call("list_license_keys", customer_id)

    def count_license_keys(self, customer_id: str) -> int:
        return int(self._licence_call("count_license_keys", customer_id))

    def get_license_key(self, customer_id: str, license_key_id: str) -> Any:
        return self._licence_call("get_license_key", customer_id, license_key_id)

    def list_license_key_instances(self, customer_id: str, license_key_id: str) -> Any:
        return self._licence_call("list_license_key_instances", customer_id, license_key_id)

    def deactivate_license_key_instance(
        self,
        customer_id: str,
        license_key_id: str,
        instance_id: str,
        *,
        now: datetime,
        event: AuditEvent | None = None,
    ) -> Any:
        return self._licence_call(
            "deactivate_license_key_instance", customer_id, license_key_id, instance_id, now=now, event=event
        )


# -- the payment provider ------------------------------------------------------------------


class DodoPaymentProvider:
    """The portal's :class:`~flask_customer_portal.payments.PaymentProvider`
    for Dodo Payments.

    Dodo collects card details on its own payment page and bills
    subscriptions itself, so this provider takes no card data
    (``accepts_raw_cards`` is false, :meth:`attach_card` and
    :meth:`attach_token` refuse) and makes no charges of its own
    (:meth:`charge` answers :class:`~flask_customer_portal.payments.ChargeFailed`).
    What it does do is :meth:`pay_arrears`: give an ``on_hold`` subscription
    a saved payment method through ``update_payment_method``, after which
    Dodo charges what is owed and reactivates the subscription.
    """

    accepts_raw_cards = False
    #: The portal hands reactivations to :meth:`pay_arrears`.
    bills_subscriptions = True
    #: The setting :func:`~flask_customer_portal.production.check_provider_mode` names.
    mode_setting = "DODO_PAYMENTS_ENVIRONMENT"

    def __init__(self, billing: DodoBilling) -> None:
        self.billing = billing
        #: Dodo's test environment moves no real money; ``init_app`` refuses
        #: it in live mode, and the live environment in test mode.
        self.is_test = billing.environment == "test_mode"

    def __repr__(self) -> str:
        return f"DodoPaymentProvider({self.billing!r})"

    def new_method_page(self, *, subscription_id: str, return_url: str) -> str:
        """Where the customer enters a new payment method for the
        subscription: Dodo's payment page, which comes back to
        ``return_url``. For an ``on_hold`` subscription Dodo then charges
        what is owed with it. The portal's payment-method page sends
        "a new card" here (see :doc:`/providers`)."""
        return self.billing.new_method_link(subscription_id, return_url=return_url)

    def attach_card(self, customer_id: str, card: CardDetails) -> AttachResult:
        logger.error("Dodo Payments takes card details on its own payment page only; refused")
        return MethodDeclined(DeclineReason.GENERIC)

    def attach_token(self, customer_id: str, token: str) -> AttachResult:
        logger.error("Dodo Payments has no card element tokens; new methods are added on Dodo's payment page")
        return MethodDeclined(DeclineReason.GENERIC)

    def charge(
        self,
        *,
        customer_id: str,
        provider_token: str,
        amount: Money,
        idempotency_key: str,
        description: str,
    ) -> ChargeResult:
        return ChargeFailed("Dodo Payments bills its subscriptions itself", retryable=False)

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        return None

    def pay_arrears(
        self,
        *,
        subscription_id: str,
        provider_token: str,
        idempotency_key: str | None = None,
        return_url: str | None = None,
    ) -> ChargeResult:
        """Set the saved method ``provider_token`` on the subscription;
        Dodo charges the arrears with it. The answer says what came of that
        charge: :class:`ChargeSucceeded`, :class:`ChargeDeclined`,
        :class:`ChargeRequiresAction` (Dodo's payment page, e.g. 3-D Secure),
        :class:`ChargeUnknown` (still processing, or no answer: Dodo's
        webhook will tell) or :class:`ChargeFailed` (refused, nothing charged).
        The caller must still check the subscription's status.

        ``idempotency_key`` is sent as the ``Idempotency-Key`` header. The
        request is made once, without the SDK's automatic retries: a retry
        of a request whose answer was lost could charge a second time, so
        no answer is :class:`ChargeUnknown`, for the caller to reconcile
        with :meth:`find_arrears_charge`."""
        client = self.billing.client
        if client.max_retries:
            client = client.with_options(max_retries=0)
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else None
        try:
            answer = client.subscriptions.update_payment_method(
                subscription_id,
                payment_method={"type": "existing", "payment_method_id": provider_token},
                extra_headers=headers,
            )
        except APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 429):
                logger.error("Dodo Payments answered HTTP %s to update_payment_method", exc.status_code)
                return ChargeUnknown(subscription_id)
            logger.warning("Dodo Payments refused update_payment_method (HTTP %s)", exc.status_code)
            return ChargeFailed(f"Dodo Payments refused the payment method (HTTP {exc.status_code})", False)
        except APIConnectionError as exc:
            logger.error("No answer from Dodo Payments to update_payment_method: %s", type(exc).__name__)
            return ChargeUnknown(subscription_id)
        except APIError:
            logger.error("Unreadable answer from Dodo Payments to update_payment_method")
            return ChargeUnknown(subscription_id)
        if answer.payment_link:
            return ChargeRequiresAction(answer.payment_id or subscription_id, str(answer.payment_link))
        if not answer.payment_id:
            # Nothing was owed, or Dodo charges later: the subscription says.
            return ChargeUnknown(subscription_id)
        payment = self._payment(answer.payment_id)
        if payment is None:
            return ChargeUnknown(answer.payment_id)
        return _outcome(payment)

    def find_arrears_charge(
        self, *, subscription_id: str, reference: str | None = None, since: datetime | None = None
    ) -> ChargeResult | None:
        """What came of an earlier :meth:`pay_arrears` whose outcome was
        open: the payment ``reference`` if given (``None`` unless it is one
        of this subscription's), else the newest payment of the subscription
        made at or after ``since`` (with five minutes' allowance for the
        clocks), as :meth:`pay_arrears` would answer. ``None`` if Dodo has
        no such payment: then the earlier call charged nothing."""
        billing = self.billing
        if reference is None:
            options: dict[str, Any] = {"subscription_id": subscription_id, "page_size": _PAGE_SIZE}
            if since is not None:
                options["created_at_gte"] = since - _CLOCK_ALLOWANCE
            found = billing._call("payments.list", lambda: billing.client.payments.list(**options))
            mine = [p for p in found.items or () if p.subscription_id == subscription_id]
            if not mine:
                return None
            reference = max(mine, key=lambda p: p.created_at).payment_id
        # A payment that could not be read raises (DodoUnavailable): only
        # Dodo's "not found" means that nothing was charged.
        wanted = reference
        payment = billing._or_none("payments.retrieve", lambda: billing.client.payments.retrieve(wanted))
        if payment is None or payment.subscription_id != subscription_id:
            return None
        return _outcome(payment)

    def _payment(self, payment_id: str) -> Any | None:
        try:
            return self.billing.client.payments.retrieve(payment_id)
        except APIError as exc:
            logger.warning("Could not read Dodo payment %s: %s", payment_id, type(exc).__name__)
            return None


def _outcome(payment: Any) -> ChargeResult:
    """A Dodo payment as the portal's charge result."""
    status = payment.status
    if status == "succeeded":
        return ChargeSucceeded(payment.payment_id, Money(payment.total_amount, payment.currency))
    if status in ("failed", "cancelled"):
        return ChargeDeclined(decline_reason(payment.error_code), payment.payment_id)
    if status == "requires_customer_action" and payment.payment_link:
        return ChargeRequiresAction(payment.payment_id, str(payment.payment_link))
    return ChargeUnknown(payment.payment_id)


# -- webhooks -------------------------------------------------------------------------------


class InvalidDodoWebhook(PortalError):
    """The request is not a webhook Dodo Payments signed (bad or missing
    signature, a timestamp more than five minutes away, or not JSON)."""


@dataclass(frozen=True, slots=True)
class DodoWebhookEvent:
    """A verified webhook: its ``webhook-id`` (unique per event: use it to
    ignore repeats), type (``subscription.on_hold``, ``payment.succeeded`` …),
    the Dodo customer it is about and its ``data``."""

    id: str
    type: str
    customer_id: str | None
    data: Mapping[str, Any]
    timestamp: datetime | None = None

    @property
    def subject_id(self) -> str | None:
        """The subscription, payment, refund, dispute or licence key the
        event is about (by the event type's first word)."""
        key = {
            "subscription": "subscription_id",
            "payment": "payment_id",
            "refund": "refund_id",
            "dispute": "dispute_id",
            "license_key": "id",
        }.get(self.type.split(".", 1)[0])
        value = self.data.get(key) if key else None
        return value if isinstance(value, str) else None

    def audit_event(self, portal_customer_id: str) -> AuditEvent:
        """The event as an entry for the portal's audit log
        (``dodo.subscription.on_hold`` …, actor ``provider``)."""
        details = {
            key: str(self.data[key])
            for key in ("status", "total_amount", "currency", "error_code")
            if self.data.get(key) is not None
        }
        details["webhook_id"] = self.id
        return AuditEvent(
            customer_id=portal_customer_id,
            action=f"dodo.{self.type}",
            occurred_at=self.timestamp or datetime.now(timezone.utc),
            subject_id=self.subject_id,
            provider_reference=self.subject_id,
            actor="provider",
            details=details,
        )


def verify_dodo_webhook(secret: str, body: bytes, headers: Mapping[str, str] | Any) -> DodoWebhookEvent:
    """Check a webhook's Standard Webhooks signature (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature`` headers, the secret from
    Dodo's dashboard, ``whsec_…``) and read it. Raises
    :class:`InvalidDodoWebhook`: answer such a request with 400 and do
    nothing else."""
    wanted = ("webhook-id", "webhook-timestamp", "webhook-signature")
    picked = {name: headers.get(name) or headers.get(name.title()) for name in wanted}
    if not all(picked.values()):
        raise InvalidDodoWebhook("missing webhook signature headers")
    try:
        payload = Webhook(secret).verify(body, {k: str(v) for k, v in picked.items()})
    except WebhookVerificationError as exc:
        raise InvalidDodoWebhook(str(exc)) from exc
    except (ValueError, json.JSONDecodeError) as exc:
        raise InvalidDodoWebhook("webhook body is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise InvalidDodoWebhook("webhook body has no type")
    raw_data = payload.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    customer = data.get("customer")
    customer_id = data.get("customer_id")
    if isinstance(customer, dict) and isinstance(customer.get("customer_id"), str):
        customer_id = customer["customer_id"]
    timestamp = None
    if isinstance(payload.get("timestamp"), str):
        try:
            timestamp = _utc(datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")))
        except ValueError:
            timestamp = None
    return DodoWebhookEvent(
        id=str(picked["webhook-id"]),
        type=payload["type"],
        customer_id=customer_id if isinstance(customer_id, str) else None,
        data=data,
        timestamp=timestamp,
    )


def dodo_webhook_view(
    secret: str,
    *,
    on_event: Callable[[DodoWebhookEvent], None] | None = None,
    lease: timedelta = LEASE,
) -> Callable[[], Any]:
    """A Flask view for Dodo's webhooks; mount it on the app (POST only)::

        app.add_url_rule(
            "/webhooks/dodo",
            view_func=dodo_webhook_view(os.environ["DODO_PAYMENTS_WEBHOOK_KEY"]),
            methods=["POST"],
        )

    It verifies the signature (400 and nothing else if it fails), writes
    the event to the portal's audit log for the customer, sends the
    portal's signals where one fits — ``payment.succeeded`` →
    ``invoice_paid``, ``subscription.renewed`` → ``subscription_renewed``,
    ``subscription.on_hold`` → ``subscription_put_on_hold`` — with the
    records read fresh from Dodo, then calls ``on_event``. The portal's
    pages read Dodo directly, so they are current without the webhook; the
    webhook is how the merchant's code and the audit log learn of changes
    made outside the portal (renewals, Dodo's own retries, the dashboard).

    Dodo retries until it gets a 2xx, and may deliver an event twice: an
    event id that was handled already is answered 204 and does nothing
    else; one that another delivery is handling right now is answered 409,
    so that Dodo delivers it again later. With a store that has
    :meth:`~flask_customer_portal.storage.AccessStore.claim_webhook_event`
    every worker and restart agrees, and a claim left unfinished for
    ``lease`` (5 minutes unless given; its worker died) is taken over by
    the next delivery;
    otherwise each process remembers the ids it handled. If handling
    raises, the answer is an error and Dodo's next delivery of the event
    is handled.
    """
    if not secret:
        raise ValueError("the Dodo Payments webhook secret is required")
    events = WebhookEvents("dodo", lease=lease)

    def view() -> Any:
        from flask import current_app, request

        from ...extension import get_state

        try:
            event = verify_dodo_webhook(secret, request.get_data(cache=False), request.headers)
        except InvalidDodoWebhook as exc:
            logger.warning("Refused a Dodo Payments webhook: %s", exc)
            return "invalid webhook", 400
        storage = get_state().storage
        with events.handling(storage, event.id) as claim:
            answer = repeat_answer(claim)
            if answer is not None:
                return answer
            portal_id = event.customer_id
            if portal_id is not None and isinstance(storage, CompositeStorage):
                portal_id = storage.customer_ids.to_portal(portal_id)
            customer = storage.get_customer(portal_id) if portal_id is not None else None
            if customer is not None:
                storage.record_event(event.audit_event(customer.id))
                _send_signals(current_app._get_current_object(), storage, customer, event)  # type: ignore[attr-defined]
            if on_event is not None:
                on_event(event)
        return "", 204

    view.__name__ = "dodo_webhook"
    return view


def _send_signals(app: Any, storage: Any, customer: Any, event: DodoWebhookEvent) -> None:
    from ... import signals

    subject = event.subject_id
    if subject is None:
        return
    if event.type == "payment.succeeded":
        invoice = storage.get_invoice(customer.id, subject)
        if invoice is not None:
            signals.invoice_paid.send(app, customer=customer, invoice=invoice, provider_reference=subject)
        return
    if not event.type.startswith("subscription."):
        return
    subscription = storage.get_subscription(customer.id, subject)
    if subscription is None:
        return
    payment_id = event.data.get("payment_id")
    invoice = storage.get_invoice(customer.id, payment_id) if isinstance(payment_id, str) else None
    if event.type == "subscription.renewed":
        signals.subscription_renewed.send(app, customer=customer, subscription=subscription, invoice=invoice)
    elif event.type == "subscription.on_hold":
        signals.subscription_put_on_hold.send(
            app, customer=customer, subscription=subscription, invoice=invoice, reason=None
        )
