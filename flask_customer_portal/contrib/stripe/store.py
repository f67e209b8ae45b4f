"""Stripe's billing store and the view of a subscription the money path
pays its invoices through (see :mod:`flask_customer_portal.contrib.stripe`
for what holds it still: the local database's lock, taken by the composite
store)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from typing import Any

import stripe

from ...capabilities import ProviderPlanChangeDeclined, ProviderPlanPreview
from ...money import Money
from ...storage import (
    AuditEvent,
    ChargeAttempt,
    CreditNote,
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
from ._attempts import attempt_metadata, attempts_in
from ._cache import CustomerReads, ReadCache
from ._convert import (
    as_dict,
    credit_note_record,
    from_timestamp,
    invoice_billing_details,
    invoice_status,
    invoice_subscription_id,
    object_id,
    subscription_status,
)
from ._discounts import subscription_discount, subscription_expansions
from ._invoice_lock import StripeInvoiceLock, locked_invoice
from ._promotions import StripePromotionCodes, discount_of
from ._refunds import (
    ChargeRefunds,
    charge_refunds,
    invoice_expansions,
    list_expansions,
    needs_charges,
    refunds,
)
from ._unavailable import stripe_read

#: The most invoices read for one customer's invoice list.
MAX_INVOICES = 1000

_HOLD_REASON_KEY = "portal_hold_reason"


class StripeBillingStore(StripePromotionCodes):
    """The portal's :class:`~flask_customer_portal.storage.BillingStore`
    and :class:`~flask_customer_portal.storage.ChargeStore` on Stripe.

    :param client: a :class:`stripe.StripeClient` (its ``base_addresses``
        and HTTP client decide where requests go).
    :param cache: where a customer's reads are kept between page views
        when several processes serve the portal: a Flask-Caching ``Cache``
        on Redis or Memcached, or any :class:`ReadCache`. Without it they
        are kept in the process's memory if the portal runs as one process
        (``CUSTOMER_PORTAL_SINGLE_PROCESS``), else only for one request.
        How long: ``CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS``.
    """

    def __init__(self, client: stripe.StripeClient, *, cache: ReadCache | None = None) -> None:
        self.client = client
        self._reads = CustomerReads(cache)
        self._products: dict[str, str] = {}

    def __repr__(self) -> str:
        return "StripeBillingStore()"

    def forget_customer(self, customer_id: str) -> None:
        """Drop the reads of the Stripe customer ``customer_id`` kept for
        reuse. The portal's own changes and the webhook blueprint (for
        every event about the customer, their subscriptions, invoices and
        payment methods) call it; call it too if your code changes the
        customer at Stripe and should be seen at once."""
        self._reads.forget(customer_id)

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

    def _read_products(self, subscriptions: Sequence[Mapping[str, Any]]) -> None:
        """Learn the names of the subscriptions' products not known yet in
        one request (a product is a catalogue entry: its name is kept for
        the process's lifetime)."""
        missing = set()
        for data in subscriptions:
            for item in (data.get("items") or {}).get("data") or []:
                price = item.get("price") or item.get("plan") or {}
                product = price.get("product")
                if product and isinstance(product, str) and product not in self._products:
                    missing.add(product)
        if len(missing) < 2:
            return  # one is read as it comes
        found = self.client.v1.products.list(params={"ids": sorted(missing), "limit": 100})
        for item in found.data:
            self._products[str(item.id)] = str(item.name or item.id)

    def _payment_method(
        self, data: Mapping[str, Any], customer_id: str, *, default_id: str | None = None
    ) -> PaymentMethod | None:
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
            created_at=from_timestamp(data.get("created")),
            is_default=default_id is not None and str(data["id"]) == default_id,
        )

    @staticmethod
    def _default_id(customer: Any) -> str | None:
        """The ``pm_…`` id of a (retrieved or expanded) customer's default for invoices."""
        if not isinstance(customer, Mapping):
            return None
        settings = customer.get("invoice_settings") or {}
        return object_id(settings.get("default_payment_method"))

    def _method_by_id(
        self, customer_id: str, value: Any, known: Mapping[str, PaymentMethod] | None = None
    ) -> PaymentMethod | None:
        if isinstance(value, Mapping):
            return self._payment_method(value, customer_id)
        if not value:
            return None
        if known is not None and str(value) in known:
            return known[str(value)]
        return self._fetch_payment_method(customer_id, str(value))

    def _default_method(
        self, customer_id: str, known: Mapping[str, PaymentMethod] | None = None
    ) -> PaymentMethod | None:
        """The customer's default for invoices: what Stripe charges a
        subscription that has no ``default_payment_method`` of its own."""
        try:
            customer = as_dict(self.client.v1.customers.retrieve(customer_id))
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
        ended = from_timestamp(data.get("ended_at"))
        interval = str(recurring.get("interval") or price.get("interval") or "month")
        interval_count = int(recurring.get("interval_count") or price.get("interval_count") or 1)
        current_period_end = (
            from_timestamp(period_end) or from_timestamp(data.get("created")) or datetime.now(timezone.utc)
        )
        discount = subscription_discount(
            data, period_end=current_period_end, interval=interval, interval_count=interval_count
        )
        return Subscription(
            id=str(data["id"]),
            customer_id=customer_id,
            product_name=product_name,
            plan_name=str(price.get("nickname") or product_name),
            price=Money(int(unit_amount) * quantity, str(price.get("currency") or "usd").upper()),
            interval=interval,
            interval_count=interval_count,
            status=status,
            current_period_start=from_timestamp(period_start)
            or from_timestamp(data.get("created"))
            or datetime.now(timezone.utc),
            current_period_end=current_period_end,
            cancel_at_period_end=bool(data.get("cancel_at_period_end")),
            cancelled_at=from_timestamp(data.get("canceled_at")),
            ended_at=ended,
            payment_method=payment_method,
            hold_reason=(metadata.get(_HOLD_REASON_KEY) or None)
            if status is SubscriptionStatus.ON_HOLD
            else None,
            created_at=from_timestamp(data.get("created")),
            plan_id=str(price["id"]) if len(items) == 1 and price.get("id") else None,
            quantity=quantity,
            discount_percent=discount[0],
            discount_renewals=discount[1],
        )

    def _invoice(
        self,
        data: Mapping[str, Any],
        customer_id: str,
        *,
        lines: bool,
        known: Mapping[str, PaymentMethod] | None = None,
        credit_notes: tuple[CreditNote, ...] = (),
        charges: ChargeRefunds | None = None,
    ) -> Invoice | None:
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
        subscription_id = invoice_subscription_id(data)
        description = str(data.get("description") or "")
        if not description and all_lines:
            description = str(all_lines[0].get("description") or "")
        payment_method = None
        charge = data.get("charge")
        # Only the invoice's own page names the card: a list never reads it.
        if lines and isinstance(charge, Mapping) and charge.get("payment_method"):
            payment_method = self._method_by_id(customer_id, charge["payment_method"], known)
        return Invoice(
            id=str(data["id"]),
            number=str(data.get("number") or data["id"]),
            customer_id=customer_id,
            status=status,
            currency=str(data.get("currency") or "usd").upper(),
            subtotal=subtotal,
            tax=tax,
            total=total,
            issued_at=from_timestamp(data.get("created") or data.get("date")) or datetime.now(timezone.utc),
            description=description or str(data.get("number") or data["id"]),
            subscription_id=subscription_id,
            paid_at=from_timestamp(transitions.get("paid_at")) if status is not InvoiceStatus.OPEN else None,
            payment_reference=(object_id(charge) or object_id(data.get("payment_intent")))
            if status is not InvoiceStatus.OPEN
            else None,
            payment_method=payment_method if lines else None,
            billing_details=invoice_billing_details(data) if lines else None,
            **refunds(data, total, status, credit_notes, charges),
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
            expand = subscription_expansions(self.client)
            data = as_dict(
                self.client.v1.subscriptions.retrieve(
                    subscription_id, params={"expand": expand} if expand else None
                )
            )
        except stripe.InvalidRequestError:
            return None
        return data if object_id(data.get("customer")) == customer_id else None

    def _retrieve_invoice(
        self, customer_id: str, invoice_id: str, *, expand: list[str] | None = None
    ) -> dict[str, Any] | None:
        if not invoice_id.startswith("in_"):
            return None
        try:
            data = as_dict(
                self.client.v1.invoices.retrieve(invoice_id, params={"expand": expand} if expand else None)
            )
        except stripe.InvalidRequestError:
            return None
        return data if object_id(data.get("customer")) == customer_id else None

    # -- BillingStore: reads --------------------------------------------------------
    #
    # A page's reads go through self._reads (see _cache.py): each is made
    # once per request and, where a cache is set up, reused for a few
    # seconds. The writes and the money path read Stripe directly.

    def _fetch_subscriptions(self, customer_id: str) -> list[Subscription]:
        found = self.client.v1.subscriptions.list(
            params={
                "customer": customer_id,
                "status": "all",
                "limit": 100,
                "expand": subscription_expansions(self.client, prefix="data."),
            }
        )
        raw = [as_dict(s) for s in found.auto_paging_iter()]
        self._read_products(raw)
        # One request for the cards and one for the customer's default,
        # whatever the number of subscriptions.
        methods, default_id = self._read_methods(customer_id) if raw else ([], None)
        known = {m.id: m for m in methods}

        defaults: list[PaymentMethod | None] = []

        def default_method() -> PaymentMethod | None:
            if not defaults:
                defaults.append(self._method_by_id(customer_id, default_id, known))
            return defaults[0]

        subscriptions = [self._subscription(data, customer_id, default_method, known) for data in raw]
        current = [s for s in subscriptions if s.is_current]
        past = [s for s in subscriptions if not s.is_current]
        newest_first = lambda s: (s.created_at or s.current_period_start, s.id)  # noqa: E731
        return sorted(current, key=newest_first, reverse=True) + sorted(past, key=newest_first, reverse=True)

    @stripe_read
    def list_subscriptions(self, customer_id: str) -> Sequence[Subscription]:
        return list(
            self._reads.read(customer_id, "subscriptions", lambda: self._fetch_subscriptions(customer_id))
        )

    @stripe_read
    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        if self._reads.active():
            # The customer's list (every status) holds it if it is theirs: one
            # read serves the list, the subscription and its payment page.
            return next((s for s in self.list_subscriptions(customer_id) if s.id == subscription_id), None)
        data = self._retrieve_subscription(customer_id, subscription_id)
        return None if data is None else self._subscription(data, customer_id)

    def _all_invoices(self, customer_id: str, *, lines: bool) -> list[Invoice]:
        """The customer's invoices (up to :data:`MAX_INVOICES`), newest first, then by id."""
        found = self.client.v1.invoices.list(
            params={"customer": customer_id, "limit": 100, "expand": list_expansions(self.client)}
        )
        known = {m.id: m for m in self.list_payment_methods(customer_id)} if lines else None
        raw: list[dict[str, Any]] = []
        for item in found.auto_paging_iter():
            raw.append(as_dict(item))
            if len(raw) >= MAX_INVOICES:
                break
        # Refunds are on the charges: read together, never one per invoice.
        charges = charge_refunds(self.client, customer_id) if needs_charges(raw) else None
        invoices: list[Invoice] = []
        for listed in raw:
            invoice = self._invoice(listed, customer_id, lines=lines, known=known, charges=charges)
            if invoice is not None:
                invoices.append(invoice)
        invoices.sort(key=lambda i: (i.issued_at, i.id), reverse=True)
        return invoices

    def _invoice_list(self, customer_id: str) -> list[Invoice]:
        return self._reads.read(customer_id, "invoices", lambda: self._all_invoices(customer_id, lines=False))

    @stripe_read
    def list_invoices_after(
        self, customer_id: str, after: Invoice | None, *, limit: int, with_lines: bool = False
    ) -> Sequence[Invoice]:
        if with_lines:
            invoices = self._all_invoices(customer_id, lines=True)
        else:
            invoices = self._invoice_list(customer_id)
        if after is not None:
            invoices = [i for i in invoices if (i.issued_at, i.id) < (after.issued_at, after.id)]
        return invoices[:limit]

    @stripe_read
    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page start at 1")
        invoices = self._invoice_list(customer_id)
        start = (page - 1) * per_page
        return Page(
            items=invoices[start : start + per_page], page=page, per_page=per_page, total=len(invoices)
        )

    def _fetch_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        data = self._retrieve_invoice(customer_id, invoice_id, expand=invoice_expansions(self.client))
        if data is None:
            return None
        charge = data.get("charge")
        # Its refunds, where the answer has no charge: one request for its charges.
        charges = charge_refunds(self.client, customer_id, of=data) if needs_charges([data]) else None
        known = None
        if isinstance(charge, Mapping) and charge.get("payment_method") and self._reads.active():
            known = {m.id: m for m in self.list_payment_methods(customer_id)}
        # Credit notes cost a request only for an invoice that has some.
        notes: tuple[CreditNote, ...] = ()
        if int(data.get("post_payment_credit_notes_amount") or 0) > 0:
            found = self.client.v1.credit_notes.list(params={"invoice": str(data["id"]), "limit": 100})
            converted = (credit_note_record(as_dict(note), customer_id) for note in found.data)
            notes = tuple(sorted((n for n in converted if n is not None), key=lambda n: (n.issued_at, n.id)))
        return self._invoice(data, customer_id, lines=True, known=known, credit_notes=notes, charges=charges)

    @stripe_read
    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        if not invoice_id.startswith("in_"):
            return None
        return self._reads.read(
            customer_id, f"invoice:{invoice_id}", lambda: self._fetch_invoice(customer_id, invoice_id)
        )

    @stripe_read
    def invoice_pdf_url(self, customer_id: str, invoice_id: str) -> str | None:
        """Stripe's PDF of the customer's invoice (``invoice_pdf``), or
        ``None``; the portal's PDF link redirects there."""
        data = self._retrieve_invoice(customer_id, invoice_id)
        if data is None or invoice_status(data) is None:
            return None
        url = data.get("invoice_pdf")
        return str(url) if url else None

    def _methods(self, customer_id: str) -> tuple[list[PaymentMethod], str | None]:
        """The customer's cards, newest first, and the id of their default
        for invoices (which may be no card of theirs): two requests."""
        found = self.client.v1.payment_methods.list(
            params={"customer": customer_id, "type": "card", "limit": 100}
        )
        raw = [as_dict(m) for m in found.auto_paging_iter()]
        try:
            default_id = self._default_id(as_dict(self.client.v1.customers.retrieve(customer_id)))
        except stripe.InvalidRequestError:
            default_id = None
        methods = [self._payment_method(m, customer_id, default_id=default_id) for m in raw]
        present = [m for m in methods if m is not None]
        present.sort(
            key=lambda m: (m.created_at or datetime.min.replace(tzinfo=timezone.utc), m.id),
            reverse=True,
        )
        return present, default_id

    def _read_methods(self, customer_id: str) -> tuple[list[PaymentMethod], str | None]:
        """:meth:`_methods`, read once per page (and cached, see _cache.py)."""
        methods, default_id = self._reads.read(
            customer_id, "payment_methods", lambda: self._methods(customer_id)
        )
        return list(methods), default_id

    @stripe_read
    def list_payment_methods(self, customer_id: str) -> Sequence[PaymentMethod]:
        return self._read_methods(customer_id)[0]

    def _fetch_payment_method(self, customer_id: str, payment_method_id: str) -> PaymentMethod | None:
        if not payment_method_id.startswith("pm_"):
            return None
        try:
            # The customer expanded: whether the method is their default, in the same request.
            data = as_dict(
                self.client.v1.payment_methods.retrieve(payment_method_id, params={"expand": ["customer"]})
            )
        except stripe.InvalidRequestError:
            return None
        if object_id(data.get("customer")) != customer_id:
            return None
        return self._payment_method(data, customer_id, default_id=self._default_id(data.get("customer")))

    @stripe_read
    def get_payment_method(self, customer_id: str, payment_method_id: str) -> PaymentMethod | None:
        if self._reads.active():
            # Attached to the customer means listed for the customer.
            return next(
                (m for m in self.list_payment_methods(customer_id) if m.id == payment_method_id), None
            )
        return self._fetch_payment_method(customer_id, payment_method_id)

    # -- BillingStore: writes --------------------------------------------------------
    #
    # Each write checks what it changes against Stripe itself, then forgets
    # the customer's reads: the next page shows the change.

    def add_payment_method(
        self, payment_method: PaymentMethod, *, event: AuditEvent | None = None
    ) -> PaymentMethod:
        """The method :meth:`StripePaymentProvider.attach_token` attached,
        as Stripe has it (its id is Stripe's ``pm_…``)."""
        customer_id = payment_method.customer_id
        self.forget_customer(customer_id)
        saved = self._fetch_payment_method(customer_id, payment_method.provider_token)
        if saved is None:
            raise StateConflict("the payment method is not attached to this customer at Stripe")
        return saved

    def remove_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> bool:
        if self._fetch_payment_method(customer_id, payment_method_id) is None:
            return False
        for subscription in self._fetch_subscriptions(customer_id):
            if (
                subscription.is_current
                and subscription.payment_method
                and subscription.payment_method.id == payment_method_id
            ):
                raise PaymentMethodInUse(payment_method_id)
        try:
            self.client.v1.payment_methods.detach(payment_method_id)
        finally:
            self.forget_customer(customer_id)
        return True

    def set_default_payment_method(
        self, customer_id: str, payment_method_id: str, *, event: AuditEvent | None = None
    ) -> PaymentMethod | None:
        """The customer's ``invoice_settings.default_payment_method``: what
        Stripe charges a subscription or invoice that names no method."""
        if self.get_payment_method(customer_id, payment_method_id) is None:
            return None
        self.client.v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": payment_method_id}}
        )
        return self.get_payment_method(customer_id, payment_method_id)

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
        if self._fetch_payment_method(customer_id, payment_method_id) is None:
            return None
        try:
            updated = self.client.v1.subscriptions.update(
                subscription_id, params={"default_payment_method": payment_method_id}
            )
        finally:
            self.forget_customer(customer_id)
        return self._subscription(as_dict(updated), customer_id)

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
        try:
            if at_period_end and current.status is not SubscriptionStatus.ON_HOLD:
                if current.cancel_at_period_end:
                    raise StateConflict(f"subscription {subscription_id!r} is already set to end")
                updated = self.client.v1.subscriptions.update(
                    subscription_id, params={"cancel_at_period_end": True}
                )
            else:
                updated = self.client.v1.subscriptions.cancel(subscription_id)
        finally:
            self.forget_customer(customer_id)
        return self._subscription(as_dict(updated), customer_id)

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
        try:
            updated = self.client.v1.subscriptions.update(
                subscription_id, params={"cancel_at_period_end": False}
            )
        finally:
            self.forget_customer(customer_id)
        return self._subscription(as_dict(updated), customer_id)

    # -- plan changes ----------------------------------------------------------------

    def _plan_change_items(
        self, customer_id: str, subscription_id: str, plan_id: str, quantity: int
    ) -> tuple[Subscription, list[dict[str, Any]]] | None:
        """The subscription as Stripe has it now and the ``items`` that put
        it on ``quantity`` of the price ``plan_id``. A subscription of
        several prices is not one the portal changes."""
        data = self._retrieve_subscription(customer_id, subscription_id)
        if data is None:
            return None
        items = (data.get("items") or {}).get("data") or []
        if len(items) != 1:
            raise StateConflict(f"subscription {subscription_id!r} has {len(items)} prices")
        return self._subscription(data, customer_id), [
            {"id": items[0]["id"], "price": plan_id, "quantity": quantity}
        ]

    def preview_provider_plan_change(
        self, customer_id: str, subscription_id: str, *, plan_id: str, quantity: int, at: datetime
    ) -> ProviderPlanPreview | None:
        """Stripe's own proration (``POST /v1/invoices/create_preview``), for
        the second ``at``: the invoice Stripe would issue now with
        ``proration_behavior=always_invoice``."""
        return self._preview_change(customer_id, subscription_id, plan_id, quantity, at)

    def _preview_change(
        self,
        customer_id: str,
        subscription_id: str,
        plan_id: str,
        quantity: int,
        at: datetime,
        promotion_code_id: str | None = None,
    ) -> ProviderPlanPreview | None:
        found = self._plan_change_items(customer_id, subscription_id, plan_id, quantity)
        if found is None:
            return None
        current, items = found
        params: dict[str, Any] = {
            "customer": customer_id,
            "subscription": subscription_id,
            "subscription_details": {
                "items": items,
                "proration_behavior": "always_invoice",
                "proration_date": int(at.timestamp()),
            },
        }
        if promotion_code_id is not None:
            params["discounts"] = [{"promotion_code": promotion_code_id}]
        invoice = as_dict(self.client.v1.invoices.create_preview(params=params))  # type: ignore[arg-type]
        currency = str(invoice.get("currency") or current.price.currency).upper()
        amounts = [int(line.get("amount") or 0) for line in (invoice.get("lines") or {}).get("data") or []]
        return ProviderPlanPreview(
            due_now=Money(max(int(invoice.get("amount_due") or 0), 0), currency),
            unused=Money(-sum(a for a in amounts if a < 0), currency),
            new_charge=Money(sum(a for a in amounts if a > 0), currency),
            effective_at=at,
            from_plan_id=current.plan_id,
            from_quantity=current.quantity,
            discount=None if promotion_code_id is None else discount_of(invoice, currency),
        )

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
        """Update the subscription's price with the proration invoiced and
        charged now, priced at ``at`` as the preview was; with
        ``payment_behavior=error_if_incomplete`` Stripe keeps the old price
        if that payment fails (a declined card is a
        :class:`~flask_customer_portal.storage.StateConflict`)."""
        return self._make_change(customer_id, subscription_id, plan_id, quantity, at, idempotency_key)

    def _make_change(
        self,
        customer_id: str,
        subscription_id: str,
        plan_id: str,
        quantity: int,
        at: datetime,
        idempotency_key: str,
        promotion_code_id: str | None = None,
    ) -> ProviderPlanPreview | None:
        preview = self._preview_change(customer_id, subscription_id, plan_id, quantity, at, promotion_code_id)
        found = self._plan_change_items(customer_id, subscription_id, plan_id, quantity)
        if preview is None or found is None:
            return None
        try:
            params: dict[str, Any] = {
                "items": found[1],
                "proration_behavior": "always_invoice",
                "proration_date": int(at.timestamp()),
                "payment_behavior": "error_if_incomplete",
            }
            if promotion_code_id is not None:
                params["discounts"] = [{"promotion_code": promotion_code_id}]
            self.client.v1.subscriptions.update(
                subscription_id,
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            code = getattr(exc.error, "decline_code", None) or exc.code
            # Stripe's decline codes are the portal's decline reasons' names.
            raise ProviderPlanChangeDeclined(
                f"Stripe declined the plan change of {subscription_id!r}", str(code) if code else None
            ) from exc
        finally:
            self.forget_customer(customer_id)
        return preview

    # -- ChargeStore -----------------------------------------------------------------

    def lock_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[StripeSubscriptionLock | None]:
        """The subscription as Stripe has it when the block starts, for the
        money path; ``None`` if it is not the customer's. Inside the block
        every read goes to Stripe; after it, none of the customer's is reused.

        Stripe has no locks, and this store takes none of its own: a lock
        inside one process would hold nothing across gunicorn workers or
        hosts. What holds the subscription still is the local database's
        lock, which :class:`~flask_customer_portal.contrib.composite.CompositeStorage`
        takes around this block for its whole length (read, check, pay,
        record); the composite refuses the money path when its local store
        has no such lock."""
        return self._reads.fresh(customer_id, self._read_locked(customer_id, subscription_id))

    @contextmanager
    def _read_locked(self, customer_id: str, subscription_id: str) -> Iterator[StripeSubscriptionLock | None]:
        data = self._retrieve_subscription(customer_id, subscription_id)
        yield (
            None
            if data is None
            else StripeSubscriptionLock(self, customer_id, self._subscription(data, customer_id))
        )

    def lock_invoice(
        self, customer_id: str, invoice_id: str
    ) -> AbstractContextManager[StripeInvoiceLock | None]:
        """The customer's one-off invoice (of no subscription) for the money
        path, read from Stripe at each step; ``None`` if it is not theirs or
        bills a subscription. Held still, as :meth:`lock_subscription`, only
        by the local database's lock that the composite store takes around
        it (see :mod:`~flask_customer_portal.contrib.stripe._invoice_lock`)."""
        return self._reads.fresh(customer_id, locked_invoice(self, customer_id, invoice_id))

    def subscriptions_due(self, now: datetime, *, limit: int = 100) -> Sequence[Subscription]:
        """Always empty: Stripe renews subscriptions and retries failed
        renewals itself."""
        return []


class StripeSubscriptionLock:
    """A Stripe subscription seen by the money path, while the composite
    store holds the local database's lock on it (see
    :meth:`StripeBillingStore.lock_subscription`)."""

    def __init__(self, store: StripeBillingStore, customer_id: str, subscription: Subscription) -> None:
        self._store = store
        self._customer_id = customer_id
        self._subscription = subscription

    @property
    def subscription(self) -> Subscription:
        return self._subscription

    def _invoice_data(self, invoice_id: str) -> dict[str, Any] | None:
        data = self._store._retrieve_invoice(self._customer_id, invoice_id)
        if data is None or invoice_subscription_id(data) != self._subscription.id:
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
            data = as_dict(item)
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
        return [] if data is None else attempts_in(data, self._customer_id)

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        if self._invoice_data(attempt.invoice_id) is None:
            raise StateConflict(f"invoice {attempt.invoice_id!r} is not this subscription's")
        self._store.client.v1.invoices.update(
            attempt.invoice_id,
            params={"metadata": attempt_metadata(attempt)},
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
        expand = subscription_expansions(client)
        if params:
            params["expand"] = expand
            data = as_dict(client.v1.subscriptions.update(self._subscription.id, params=params))  # type: ignore[arg-type]
        else:
            data = as_dict(
                client.v1.subscriptions.retrieve(
                    self._subscription.id, params={"expand": expand} if expand else None
                )
            )
        self._subscription = self._store._subscription(data, self._customer_id)
        return self._subscription

    def record_event(self, event: AuditEvent) -> None:
        """Refused: the audit log is local; mount the store in a
        :class:`~flask_customer_portal.contrib.composite.CompositeStorage`."""
        raise TypeError("StripeBillingStore keeps no audit log: use it inside a CompositeStorage")
