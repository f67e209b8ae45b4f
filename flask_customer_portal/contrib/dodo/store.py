"""Dodo's billing store: subscriptions, payments (the portal's invoices),
saved payment methods and licence keys read and changed through the
``dodopayments`` SDK, and the composite store whose licence keys come from
Dodo as well."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from dodopayments import (
    APIConnectionError,
    APIError,
    APIStatusError,
    DodoPayments,
    omit,
)
from werkzeug.exceptions import ServiceUnavailable

from ...capabilities import ProviderPlanChangeDeclined, ProviderPlanPreview
from ...errors import PortalError, ProviderUnavailable
from ...money import Money
from ...storage import (
    AuditEvent,
    Invoice,
    InvoiceLine,
    LicenseKey,
    LicenseKeyInstance,
    Page,
    PaymentMethod,
    PaymentMethodInUse,
    ProviderSubscriptionLock,
    StateConflict,
    Subscription,
    SubscriptionStatus,
)
from .._unavailable import reads_of
from ..composite import CompositeStorage
from ._convert import (
    HIDDEN_STATUSES,
    SUBSCRIPTION_STATUSES,
    decline_reason,
    invoice_record,
    license_key_record,
    open_payment_ids,
    payment_method_record,
    plan_preview_of,
    subscription_record,
    utc,
)
from ._discounts import DodoDiscountCodes, refusal_code

logger = logging.getLogger("flask_customer_portal")

#: Takes the portal's lock of a subscription (Dodo customer id, subscription id).
SubscriptionHold = Callable[[str, str], AbstractContextManager[object]]
#: The ``(portal customer id, subscription id)`` locks this thread holds
#: through :meth:`DodoCompositeStorage.lock_provider_subscription`: taking
#: one again on the same session would end the first one's transaction.
_HELD: ContextVar[frozenset[tuple[str, str]]] = ContextVar("portal_dodo_held", default=frozenset())

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
PAGE_SIZE = 100
#: A customer's history is read page by page up to this many pages.
_MAX_PAGES = 50


class DodoUnavailable(PortalError, ServiceUnavailable):
    """Dodo Payments did not answer in time, could not be reached, or
    answered with a server error (or a refusal of the API key). Shown to the
    customer as the portal's "try again in a moment" page (HTTP 503); the
    log names the request, never the key."""


class DodoReadUnavailable(DodoUnavailable, ProviderUnavailable):
    """Dodo Payments did not answer a page's read (see
    :class:`~flask_customer_portal.errors.ProviderUnavailable`)."""


def _unanswered(error: Exception) -> bool:
    # A refused key is the merchant's to fix, not Dodo's silence.
    cause = error.__cause__
    refused = isinstance(cause, APIStatusError) and cause.status_code in (401, 403)
    return isinstance(error, DodoUnavailable) and not refused


#: Decorates the store's page reads; :meth:`DodoBilling._call` has logged the failure.
_dodo_read = reads_of("Dodo Payments", _unanswered, raise_as=DodoReadUnavailable, log=False)


class DodoRefused(StateConflict):
    """Dodo Payments refused a change (HTTP 4xx other than 404): the
    subscription is not in a state that allows it."""

    def __init__(self, what: str, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(f"Dodo Payments refused {what} (HTTP {status_code})")


class _Missing(Exception):
    """Dodo answered 404."""


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


class DodoBilling(DodoDiscountCodes):
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
        self._hold: SubscriptionHold | None = None

    def hold_money_paths_with(self, hold: SubscriptionHold) -> None:
        """Take ``hold(customer_id, subscription_id)`` (Dodo ids) around
        every call of this store that moves money (:meth:`change_plan`), as
        the portal's own payments over Dodo do. :class:`DodoCompositeStorage`
        sets it to the local store's lock across processes, so a plan change
        takes turns with a reactivation of the same subscription in any
        worker or host."""
        self._hold = hold

    def _held(self, customer_id: str, subscription_id: str) -> AbstractContextManager[object]:
        return nullcontext() if self._hold is None else self._hold(customer_id, subscription_id)

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
            logger.warning("Dodo Payments answered HTTP %s to %s", status, what)
            raise DodoUnavailable(f"Dodo Payments answered HTTP {status} to {what}") from exc
        except APIConnectionError as exc:
            logger.warning("Dodo Payments could not be reached for %s: %s", what, type(exc).__name__)
            raise DodoUnavailable(f"Dodo Payments could not be reached for {what}") from exc
        except APIError as exc:
            # An answer the SDK could not read (strict response validation).
            logger.warning("Dodo Payments sent an answer that could not be read for %s", what)
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
                customer_id=customer_id, page_number=n, page_size=PAGE_SIZE
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
            lambda n: self.client.payments.list(customer_id=customer_id, page_number=n, page_size=PAGE_SIZE),
        )
        return [p for p in found if p.customer.customer_id == customer_id]

    def _raw_refunds(self, customer_id: str) -> list[Any]:
        found = self._pages(
            "refunds.list",
            lambda n: self.client.refunds.list(
                customer_id=customer_id, status="succeeded", page_number=n, page_size=PAGE_SIZE
            ),
        )
        # Its items name no customer: a refund counts only for a payment of
        # this customer's (see _invoices), whatever the filter let through.
        return list(found)

    def _subscriptions(self, customer_id: str) -> list[Subscription]:
        raws = [r for r in self._raw_subscriptions(customer_id) if r.status not in HIDDEN_STATUSES]
        if not raws:
            return []
        methods = {
            m.payment_method_id: payment_method_record(customer_id, m) for m in self._raw_methods(customer_id)
        }
        subscriptions = [subscription_record(r, r.product_name, methods) for r in raws]
        subscriptions.sort(key=lambda s: s.created_at or s.current_period_start, reverse=True)
        subscriptions.sort(key=lambda s: not s.is_current)
        return subscriptions

    def _invoices(self, customer_id: str) -> list[Invoice]:
        payments = self._raw_payments(customer_id)
        if not payments:
            return []
        subscriptions = self._raw_subscriptions(customer_id)
        names = {s.subscription_id: s.product_name or s.product_id for s in subscriptions}
        on_hold = {s.subscription_id for s in subscriptions if s.status in ("on_hold", "past_due")}
        open_ids = open_payment_ids(payments, on_hold)
        # A list's payments carry only a refund status: the amounts come from
        # one list of the customer's refunds, read only when some were made.
        refunds: dict[str, list[Any]] = {}
        if any(p.refund_status for p in payments):
            for refund in self._raw_refunds(customer_id):
                refunds.setdefault(refund.payment_id, []).append(refund)
        invoices = [invoice_record(p, names, open_ids, refunds.get(p.payment_id, ())) for p in payments]
        invoices.sort(key=lambda i: (i.issued_at, i.id), reverse=True)
        return invoices

    # -- BillingStore: reads -----------------------------------------------------------

    @_dodo_read
    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        return self._subscriptions(customer_id)

    @_dodo_read
    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        for subscription in self._subscriptions(customer_id):
            if subscription.id == subscription_id:
                return subscription
        return None

    @_dodo_read
    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page start at 1")
        invoices = self._invoices(customer_id)
        start = (page - 1) * per_page
        return Page(
            items=invoices[start : start + per_page], page=page, per_page=per_page, total=len(invoices)
        )

    @_dodo_read
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

    @_dodo_read
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
                open_ids = open_payment_ids(self._raw_payments(customer_id), on_hold)
        invoice = invoice_record(raw, names, open_ids)
        return replace(invoice, lines=self._lines(invoice))

    @_dodo_read
    def invoice_pdf(self, customer_id: str, invoice_id: str) -> bytes | None:
        """Dodo's own invoice PDF of one of the customer's payments
        (``invoices.payments.retrieve``), or ``None``."""
        if self._own_payment(customer_id, invoice_id) is None:
            return None
        response = self._or_none(
            "invoices.payments.retrieve", lambda: self.client.invoices.payments.retrieve(invoice_id)
        )
        return None if response is None else response.read()

    @_dodo_read
    def list_payment_methods(self, customer_id: str) -> Sequence[PaymentMethod]:
        methods = [payment_method_record(customer_id, m) for m in self._raw_methods(customer_id)]
        methods.sort(key=lambda m: m.created_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
        return methods

    @_dodo_read
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
        # A trial is Dodo's ``active`` too: it ends with its trial, uncharged.
        later = at_period_end and current.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
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
            effective_at=utc(answer.immediate_charge.effective_at),
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
        method and refuses the change if that fails.

        Under :class:`DodoCompositeStorage` the preview and the change are
        made under the portal's lock of the subscription
        (:meth:`hold_money_paths_with`), so they take turns with the
        portal's payments for it and with other plan changes, in every
        worker and host on the same database."""
        with self._held(customer_id, subscription_id):
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

    def preview_provider_plan_change(
        self, customer_id: str, subscription_id: str, *, plan_id: str, quantity: int, at: datetime
    ) -> ProviderPlanPreview | None:
        """Dodo's own figures for moving the subscription to the product
        ``plan_id``, prorated now (Dodo prorates to the second it answers,
        so ``at`` is not sent)."""
        current = self.get_subscription(customer_id, subscription_id)
        if current is None:
            return None
        answer = self._call(
            "subscriptions.preview_change_plan",
            lambda: self.client.subscriptions.preview_change_plan(
                subscription_id,
                product_id=plan_id,
                quantity=quantity,
                proration_billing_mode="prorated_immediately",
            ),
        )
        preview = plan_preview_of(answer.immediate_charge, plan_id)
        return replace(preview, from_plan_id=current.plan_id, from_quantity=current.quantity)

    def make_provider_plan_change(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        plan_id: str,
        quantity: int,
        at: datetime,
        idempotency_key: str,
    ) -> ProviderPlanPreview | None:
        """Change the plan with Dodo charging the saved method now; Dodo
        keeps the old plan if that payment fails (``prevent_change``). The
        portal calls it holding its lock of the subscription, having checked
        the subscription is not on the plan yet, which is what makes a
        repeat change nothing; your own code's call takes that lock as
        :meth:`change_plan` does."""
        with self._held(customer_id, subscription_id):
            return self._make_plan_change(
                customer_id, subscription_id, plan_id, quantity, at, idempotency_key
            )

    def _make_plan_change(
        self,
        customer_id: str,
        subscription_id: str,
        plan_id: str,
        quantity: int,
        at: datetime,
        idempotency_key: str,
    ) -> ProviderPlanPreview | None:
        preview = self.preview_provider_plan_change(
            customer_id, subscription_id, plan_id=plan_id, quantity=quantity, at=at
        )
        if preview is None:
            return None
        self._change_plan(subscription_id, plan_id, quantity, idempotency_key)
        return preview

    def _change_plan(
        self,
        subscription_id: str,
        plan_id: str,
        quantity: int,
        idempotency_key: str,
        discount_codes: Sequence[str] = (),
    ) -> None:
        """Dodo's change-plan, charging the saved method now; Dodo keeps the
        old plan if that payment fails (``prevent_change``), which is
        raised as :class:`ProviderPlanChangeDeclined`. With ``discount_codes``
        a refusal that names a discount is the code's, and is raised as it
        came (:class:`DodoRefused`)."""
        try:
            self._call(
                "subscriptions.change_plan",
                lambda: self.client.subscriptions.change_plan(
                    subscription_id,
                    product_id=plan_id,
                    quantity=quantity,
                    proration_billing_mode="prorated_immediately",
                    on_payment_failure="prevent_change",
                    discount_codes=list(discount_codes) if discount_codes else omit,
                    extra_headers={"Idempotency-Key": idempotency_key},
                ),
            )
        except DodoRefused as exc:
            # Dodo previewed this very change a moment ago: a refusal now is
            # the payment's (prevent_change kept the old plan), unless it
            # names the discount code sent with it.
            if exc.status_code not in (402, 422):
                raise
            code = refusal_code(exc)
            if discount_codes and "DISCOUNT" in code:
                raise
            raise ProviderPlanChangeDeclined(
                f"Dodo Payments declined the plan change of {subscription_id!r}", decline_reason(code).value
            ) from exc

    # -- licence keys --------------------------------------------------------------------
    def _product_names(self, customer_id: str) -> dict[str, str]:
        return {s.product_id: s.product_name for s in self._raw_subscriptions(customer_id) if s.product_name}

    def _raw_license_keys(self, customer_id: str) -> list[Any]:
        found = self._pages(
            "license_keys.list",
            lambda n: _undeprecated(self.client.license_keys, "list")(
                customer_id=customer_id, page_number=n, page_size=PAGE_SIZE
            ),
        )
        return [k for k in found if k.customer_id == customer_id]

    @_dodo_read
    def list_license_keys(self, customer_id: str) -> Sequence[LicenseKey]:
        raws = self._raw_license_keys(customer_id)
        if not raws:
            return []
        names = self._product_names(customer_id)
        keys = [license_key_record(raw, names) for raw in raws]
        keys.sort(
            key=lambda k: (k.created_at or datetime.min.replace(tzinfo=timezone.utc), k.id), reverse=True
        )
        return keys

    @_dodo_read
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

    @_dodo_read
    def get_license_key(self, customer_id: str, license_key_id: str) -> LicenseKey | None:
        raw = self._own_license_key(customer_id, license_key_id)
        return None if raw is None else license_key_record(raw, self._product_names(customer_id))

    @_dodo_read
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
                license_key_id=license_key_id, page_number=n, page_size=PAGE_SIZE
            ),
        )
        instances = [
            LicenseKeyInstance(
                id=raw.id,
                license_key_id=raw.license_key_id,
                customer_id=customer_id,
                name=raw.name,
                created_at=utc(raw.created_at),
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
            created_at=utc(instance.created_at),
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


class DodoCompositeStorage(CompositeStorage):
    """:class:`~flask_customer_portal.contrib.composite.CompositeStorage`
    whose licence keys come from Dodo as well: Dodo issues the keys of the
    products it sells, so the merchant's database holds none of them.
    :class:`DodoBilling` has every licence-key method, so the composite
    serves them all from Dodo, mapped to portal customer ids."""

    def __init__(self, local: Any, *, billing: DodoBilling, customer_ids: Any = None) -> None:
        super().__init__(local, billing=billing, customer_ids=customer_ids)
        billing.hold_money_paths_with(self._hold_for_dodo)

    def lock_provider_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[ProviderSubscriptionLock]:
        """The local store's lock, as the composite's; a
        :meth:`DodoBilling.change_plan` inside it (your code, holding the
        lock itself) does not take it again."""
        return self._marked(customer_id, subscription_id, super().lock_provider_subscription)

    @contextmanager
    def _marked(
        self,
        customer_id: str,
        subscription_id: str,
        take: Callable[[str, str], AbstractContextManager[ProviderSubscriptionLock]],
    ) -> Iterator[ProviderSubscriptionLock]:
        key = (customer_id, subscription_id)
        held = _HELD.get()
        with take(customer_id, subscription_id) as lock:
            token = _HELD.set(held | {key})
            try:
                yield lock
            finally:
                _HELD.reset(token)

    def _hold_for_dodo(self, dodo_customer_id: str, subscription_id: str) -> AbstractContextManager[object]:
        """The lock for a call :class:`DodoBilling` makes with Dodo's
        customer id: the one the portal takes for that customer (by its
        portal id), unless this thread holds it already."""
        customer_id = self._portal_id(dodo_customer_id) or dodo_customer_id
        if (customer_id, subscription_id) in _HELD.get():
            return nullcontext()
        return self.lock_provider_subscription(customer_id, subscription_id)
