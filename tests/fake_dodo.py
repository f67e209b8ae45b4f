"""A small fake of the Dodo Payments API for tests, on 127.0.0.1.

It serves only the endpoints :mod:`flask_customer_portal.contrib.dodo` uses,
keeps its state in memory (one :class:`FakeDodo` per test) and shapes every
body like the SDK's types: each one is checked against the SDK's pydantic
model before it is sent, and clients made by :meth:`FakeDodo.client` also
validate strictly on their side, so a misspelt or missing field fails the
test instead of slipping through.

Lists are page-numbered from 0 (``page_number``, ``page_size``) and end with
an empty page, as Dodo's do. What Dodo does on its own is simulated:
discount codes sent with a plan change (``discount_codes``) are checked
as Dodo checks them (known, started, not expired, not used up, for the
new product) and refused with a 422 otherwise; an applied one takes its
percentage (basis points) or flat amount off the new plan's prorated
charge and counts one use once the change is made;
``update_payment_method`` on an ``on_hold`` subscription charges the
arrears with the outcome set in :attr:`FakeDodo.arrears_outcome` and, when
that succeeds, makes the subscription ``active`` with a new period;
:meth:`FakeDodo.settle` finishes a payment left ``processing``.

A ``POST`` with an ``Idempotency-Key`` header is answered once: the same key
again gets the first answer, and nothing is done a second time.
"""

from __future__ import annotations

import atexit
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dodopayments import DodoPayments
from dodopayments.types import (
    CustomerPortalSession,
    CustomerRetrievePaymentMethodsResponse,
    Discount,
    LicenseKey,
    LicenseKeyInstance,
    Payment,
    PaymentListResponse,
    Refund,
    Subscription,
    SubscriptionChangePlanResponse,
    SubscriptionListResponse,
    SubscriptionPreviewChangePlanResponse,
    SubscriptionUpdatePaymentMethodResponse,
)
from dodopayments.types.payment_retrieve_line_items_response import PaymentRetrieveLineItemsResponse
from dodopayments.types.refund_list_item import RefundListItem
from fake_dodo_discounts import asked_codes, discount_off, new_discount, refusal
from pydantic import BaseModel

__all__ = ["API_KEY", "ContractScenario", "FakeDodo", "seed_contract", "shared_fake_dodo"]

API_KEY = "dodo_test_key_0123456789"
BUSINESS_ID = "bus_fake"
BRAND_ID = "brd_fake"
#: What ``invoices.payments.retrieve`` returns (a real PDF's first bytes).
PDF_BYTES = b"%PDF-1.4\n% fake Dodo invoice\n%%EOF\n"
_INTERVALS = {"Day": timedelta(days=1), "Week": timedelta(weeks=1), "Month": timedelta(days=30)}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_time(value: str) -> datetime:
    """An ISO 8601 time as Dodo and the SDK write it (``Z`` or an offset)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _checked(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """``body`` after the SDK's model accepted it (raises if not)."""
    model.model_validate(body)
    return body


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, content_type: str = "application/json") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type


@dataclass
class Failure:
    """Answer the next matching request with ``status`` (or hang past the
    client's timeout when ``status`` is ``"timeout"``)."""

    method: str
    path: re.Pattern[str]
    status: int | str
    times: int = 1


@dataclass
class FakeDodo:
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    line_items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    methods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    license_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Discounts by id (:meth:`add_discount`).
    discounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What charging an ``on_hold`` subscription's arrears does:
    #: ``succeeded``, ``failed`` (with :attr:`arrears_error_code`),
    #: ``requires_customer_action`` (a payment link) or ``processing``.
    arrears_outcome: str = "succeeded"
    arrears_error_code: str = "INSUFFICIENT_FUNDS"
    failures: list[Failure] = field(default_factory=list)
    #: ``(method, path, query, body)`` of every request, in order.
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    #: ``(path, key)`` of every ``POST`` that carried an ``Idempotency-Key``.
    idempotency_keys: list[tuple[str, str]] = field(default_factory=list)
    #: ``(path pattern, seconds)``: answer matching requests that much later
    #: (outside the server's lock), so that concurrent callers overlap.
    slow_paths: list[tuple[str, float]] = field(default_factory=list)
    #: The price of each product a subscription may change to (minor units).
    product_prices: dict[str, int] = field(default_factory=dict)
    #: The names of those products (a subscription takes its product's name).
    product_names: dict[str, str] = field(default_factory=dict)
    #: The first answer ``(status, body)`` to each ``(path, idempotency key)``.
    _answered: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _clients: dict[tuple[float, str], DodoPayments] = field(default_factory=dict)
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- running ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeDodo:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815 - http.server's names

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> FakeDodo:
        """Forget every record, failure and request (one server serves a
        whole test session; each test starts from nothing)."""
        with self._lock:
            self.now = datetime.now(timezone.utc).replace(microsecond=0)
            for records in (
                self.customers,
                self.subscriptions,
                self.payments,
                self.line_items,
                self.methods,
                self.license_keys,
                self.instances,
                self.refunds,
                self.discounts,
                self.product_prices,
                self.product_names,
                self.slow_paths,
            ):
                records.clear()
            self.failures.clear()
            self.requests.clear()
            self.idempotency_keys.clear()
            self._answered.clear()
            self.arrears_outcome = "succeeded"
            self.arrears_error_code = "INSUFFICIENT_FUNDS"
        return self

    def client(self, *, timeout: float = 5.0, api_key: str = API_KEY) -> DodoPayments:
        """An SDK client for this server: no retries, strict validation.
        Made once per setting (making one costs a TLS context)."""
        key = (timeout, api_key)
        if key not in self._clients:
            self._clients[key] = DodoPayments(
                bearer_token=api_key,
                base_url=self.url,
                max_retries=0,
                timeout=timeout,
                _strict_response_validation=True,
            )
        return self._clients[key]

    def settle(self, payment_id: str, status: str = "succeeded") -> None:
        """Finish a payment left ``processing``, as Dodo would: a
        succeeded arrears payment makes its subscription ``active`` with a
        new period."""
        with self._lock:
            payment = self.payments[payment_id]
            payment["status"] = status
            if status == "succeeded":
                payment["invoice_id"] = "inv_" + payment_id[4:]
            else:
                payment["error_code"] = self.arrears_error_code
            self.payments[payment_id] = _checked(Payment, payment)
            sub = self.subscriptions.get(payment.get("subscription_id") or "")
            if status == "succeeded" and sub is not None and sub["status"] in ("on_hold", "past_due"):
                sub["status"] = "active"
                sub["previous_billing_date"] = iso(self.now)
                step = _INTERVALS.get(sub["payment_frequency_interval"], timedelta(days=365))
                sub["next_billing_date"] = iso(self.now + step)
                self._subscription_checked(sub)

    def fail(self, method: str, path: str, status: int | str, *, times: int = 1) -> None:
        """Make the next ``times`` requests matching ``method`` and the
        regular expression ``path`` fail with ``status`` or ``"timeout"``."""
        self.failures.append(Failure(method, re.compile(path), status, times))

    def calls(self, method: str, path: str) -> list[tuple[str, str, dict[str, str], Any]]:
        """The requests made to ``method`` and a path matching ``path``."""
        pattern = re.compile(path)
        return [r for r in self.requests if r[0] == method and pattern.fullmatch(r[1])]

    # -- seeding ------------------------------------------------------------------------

    def add_discount(self, code: str, *, amount: int, **terms: Any) -> str:
        """A discount code (see :func:`fake_dodo_discounts.new_discount`); its id."""
        body = new_discount(code, business_id=BUSINESS_ID, now=self.now, amount=amount, **terms)
        self.discounts[body["discount_id"]] = _checked(Discount, body)
        return str(body["discount_id"])

    def add_customer(self, customer_id: str, email: str, name: str) -> dict[str, Any]:
        self.customers[customer_id] = {"customer_id": customer_id, "email": email, "name": name}
        self.methods.setdefault(customer_id, [])
        return self.customers[customer_id]

    def add_payment_method(
        self,
        customer_id: str,
        *,
        last4: str = "4242",
        network: str = "VISA",
        exp: tuple[str, str] = ("12", "2031"),
    ) -> str:
        method_id = "pm_" + secrets.token_hex(8)
        body = {
            "payment_method": "card",
            "payment_method_id": method_id,
            "card": {
                "card_network": network,
                "last4_digits": last4,
                "expiry_month": exp[0],
                "expiry_year": exp[1],
                "card_type": "CREDIT",
            },
            "last_used_at": iso(self.now - timedelta(days=len(self.methods[customer_id]))),
            "recurring_enabled": True,
        }
        self.methods[customer_id].append(body)
        _checked(CustomerRetrievePaymentMethodsResponse, {"items": self.methods[customer_id]})
        return method_id

    def add_subscription(
        self,
        customer_id: str,
        *,
        product_name: str = "Pro",
        amount: int = 1900,
        currency: str = "USD",
        interval: str = "Month",
        status: str = "active",
        payment_method_id: str | None = None,
        created_days_ago: int = 40,
        cancel_at_next_billing_date: bool = False,
        subscription_id: str | None = None,
        trial_period_days: int = 0,
        product_id: str | None = None,
    ) -> str:
        """A subscription; with ``trial_period_days``, made ``created_days_ago``
        with its first billing date at the trial's end, as Dodo makes one.
        Its product is ``product_id``, or one named after ``product_name``."""
        sid = subscription_id or "sub_" + secrets.token_hex(8)
        start = self.now - timedelta(days=10)
        end = start + _INTERVALS.get(interval, timedelta(days=365))
        if trial_period_days:
            start = self.now - timedelta(days=created_days_ago)
            end = start + timedelta(days=trial_period_days)
        body: dict[str, Any] = {
            "addons": [],
            "billing": {"country": "ID", "city": "Jakarta"},
            "brand_id": BRAND_ID,
            "cancel_at_next_billing_date": cancel_at_next_billing_date,
            "created_at": iso(self.now - timedelta(days=created_days_ago)),
            "credit_entitlement_cart": [],
            "currency": currency,
            "customer": self.customers[customer_id],
            "discounts": [],
            "has_payment_method": payment_method_id is not None,
            "metadata": {},
            "meter_credit_entitlement_cart": [],
            "meters": [],
            "next_billing_date": iso(end),
            "on_demand": False,
            "payment_frequency_count": 1,
            "payment_frequency_interval": interval,
            "previous_billing_date": iso(start),
            "product_id": product_id or "pdt_" + product_name.lower().replace(" ", "_"),
            "product_name": product_name,
            "quantity": 1,
            "recurring_pre_tax_amount": amount,
            "status": status,
            "subscription_id": sid,
            "subscription_period_count": 10,
            "subscription_period_interval": "Year",
            "tax_inclusive": False,
            "trial_period_days": trial_period_days,
            "payment_method_id": payment_method_id,
            "cancelled_at": iso(self.now - timedelta(days=1)) if status == "cancelled" else None,
            "paused_at": iso(self.now - timedelta(days=1)) if status == "paused" else None,
        }
        self.subscriptions[sid] = self._subscription_checked(body)
        return sid

    def _subscription_checked(self, body: dict[str, Any]) -> dict[str, Any]:
        _checked(SubscriptionListResponse, body)
        return _checked(Subscription, body)

    def add_payment(
        self,
        customer_id: str,
        *,
        amount: int,
        currency: str = "USD",
        status: str = "succeeded",
        subscription_id: str | None = None,
        days_ago: int = 0,
        tax: int = 0,
        error_code: str | None = None,
        payment_method_id: str | None = None,
        refund_status: str | None = None,
        payment_link: str | None = None,
    ) -> str:
        pid = "pay_" + secrets.token_hex(8)
        created = self.now - timedelta(days=days_ago, seconds=len(self.payments))
        body: dict[str, Any] = {
            "billing": {"country": "ID"},
            "brand_id": BRAND_ID,
            "business_id": BUSINESS_ID,
            "created_at": iso(created),
            "updated_at": iso(created + timedelta(seconds=5)),
            "currency": currency,
            "customer": self.customers[customer_id],
            "digital_products_delivered": False,
            "disputes": [],
            "has_license_key": False,
            "includes_usage": False,
            "is_multi_subscription": False,
            "is_update_payment_method": False,
            "metadata": {},
            "payment_id": pid,
            "payment_provider": "dodo",
            "refunds": [],
            "retry_attempt": 0,
            "service_periods": [],
            "settlement_amount": amount,
            "settlement_currency": currency,
            "subscription_ids": [subscription_id] if subscription_id else [],
            "subscription_id": subscription_id,
            "total_amount": amount,
            "tax": tax,
            "status": status,
            "error_code": error_code,
            "invoice_id": "inv_" + pid[4:] if status == "succeeded" else None,
            "refund_status": refund_status,
            "payment_link": payment_link,
            "payment_method_id": payment_method_id,
            "card_last_four": "4242" if payment_method_id else None,
            "card_network": "VISA" if payment_method_id else None,
            "card_exp_month": "12" if payment_method_id else None,
            "card_exp_year": "2031" if payment_method_id else None,
        }
        _checked(PaymentListResponse, body)
        self.payments[pid] = _checked(Payment, body)
        self.line_items[pid] = [
            {
                "amount": amount - tax,
                "items_id": "pdt_" + pid[4:],
                "refundable_amount": amount if status == "succeeded" else 0,
                "tax": tax,
                "name": "Pro plan",
            }
        ]
        return pid

    def add_refund(
        self,
        payment_id: str,
        *,
        amount: int,
        reason: str | None = None,
        status: str = "succeeded",
        hours_after: int = 1,
    ) -> str:
        """A refund of the payment, as Dodo records one: the ``Refund`` of
        ``GET /refunds/{id}`` and ``GET /refunds``, the ``RefundListItem`` in
        the payment's ``refunds``, and the payment's ``refund_status``
        (``partial`` or ``full``, from its succeeded refunds only)."""
        payment = self.payments[payment_id]
        rid = "ref_" + secrets.token_hex(8)
        created = _parse_time(payment["created_at"]) + timedelta(hours=hours_after, seconds=len(self.refunds))
        item = {
            "business_id": BUSINESS_ID,
            "created_at": iso(created),
            "is_partial": amount < payment["total_amount"],
            "payment_id": payment_id,
            "refund_id": rid,
            "status": status,
            "amount": amount,
            "currency": payment["currency"],
            "reason": reason,
        }
        customer = payment["customer"]
        self.refunds[rid] = _checked(
            Refund,
            {
                **item,
                "brand_id": BRAND_ID,
                "customer": {k: customer[k] for k in ("customer_id", "email", "name") if k in customer},
                "metadata": {},
            },
        )
        payment["refunds"].append(_checked(RefundListItem, item))
        refunded = sum(r["amount"] for r in payment["refunds"] if r["status"] == "succeeded")
        payment["refund_status"] = (
            None if not refunded else "full" if refunded >= payment["total_amount"] else "partial"
        )
        self.payments[payment_id] = _checked(Payment, payment)
        return rid

    def add_license_key(
        self, customer_id: str, *, product_id: str = "pdt_pro", status: str = "active", limit: int | None = 3
    ) -> str:
        kid = "lic_" + secrets.token_hex(8)
        body = {
            "id": kid,
            "brand_id": BRAND_ID,
            "business_id": BUSINESS_ID,
            "created_at": iso(self.now - timedelta(days=len(self.license_keys) + 1)),
            "customer_id": customer_id,
            "instances_count": 0,
            "key": "KEY-" + secrets.token_hex(6).upper(),
            "product_id": product_id,
            "source": "auto",
            "status": status,
            "activations_limit": limit,
            "expires_at": None,
        }
        self.license_keys[kid] = _checked(LicenseKey, body)
        return kid

    def add_instance(self, license_key_id: str, name: str) -> str:
        iid = "lki_" + secrets.token_hex(8)
        body = {
            "id": iid,
            "business_id": BUSINESS_ID,
            "created_at": iso(self.now - timedelta(hours=len(self.instances) + 1)),
            "license_key_id": license_key_id,
            "name": name,
        }
        self.instances[iid] = _checked(LicenseKeyInstance, body)
        self.license_keys[license_key_id]["instances_count"] += 1
        return iid

    # -- serving --------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        method = handler.command
        key = handler.headers.get("Idempotency-Key") if method == "POST" else None
        with self._lock:
            self.requests.append((method, parts.path, query, body))
            if key is not None:
                self.idempotency_keys.append((parts.path, key))
            failure = self._failure(method, parts.path)
        try:
            if failure is not None:
                if failure == "timeout":
                    self._release.wait(2.0)
                    raise _Reply(500, {"code": "TIMEOUT", "message": "too late"})
                raise _Reply(int(failure), {"code": "INJECTED", "message": "injected failure"})
            for pattern, seconds in list(self.slow_paths):
                if re.fullmatch(pattern, parts.path):
                    time.sleep(seconds)
            if handler.headers.get("Authorization") != f"Bearer {API_KEY}":
                raise _Reply(401, {"code": "UNAUTHORIZED", "message": "invalid API key"})
            with self._lock:
                if key is not None and (parts.path, key) in self._answered:
                    raise _Reply(*self._answered[(parts.path, key)])
                try:
                    reply = _Reply(200, self._route(method, parts.path, query, body))
                except _Reply as refused:
                    reply = refused
                if key is not None and reply.status < 500:
                    self._answered[(parts.path, key)] = (reply.status, reply.body)
            raise reply
        except _Reply as answer:
            payload: bytes
            if answer.content_type == "application/json":
                payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            else:
                payload = answer.body
            try:
                handler.send_response(answer.status)
                handler.send_header("Content-Type", answer.content_type)
                handler.send_header("Content-Length", str(len(payload)))
                handler.end_headers()
                handler.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def _failure(self, method: str, path: str) -> int | str | None:
        for failure in self.failures:
            if failure.method == method and failure.path.fullmatch(path) and failure.times > 0:
                failure.times -= 1
                return failure.status
        return None

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        for pattern_method, pattern, func in self._routes():
            if pattern_method != method:
                continue
            match = re.fullmatch(pattern, path)
            if match:
                return func(*match.groups(), query=query, body=body)
        raise _Reply(404, {"code": "NOT_FOUND", "message": f"no route {method} {path}"})

    def _routes(self) -> Iterator[tuple[str, str, Callable[..., Any]]]:
        yield "GET", r"/subscriptions", self._list_subscriptions
        yield "PATCH", r"/subscriptions/([^/]+)", self._update_subscription
        yield "POST", r"/subscriptions/([^/]+)/update-payment-method", self._update_payment_method
        yield "POST", r"/subscriptions/([^/]+)/change-plan/preview", self._preview_change_plan
        yield "POST", r"/subscriptions/([^/]+)/change-plan", self._change_plan
        yield "GET", r"/customers/([^/]+)/payment-methods", self._payment_methods
        yield "DELETE", r"/customers/([^/]+)/payment-methods/([^/]+)", self._delete_payment_method
        yield "POST", r"/customers/([^/]+)/customer-portal/session", self._portal_session
        yield "GET", r"/payments", self._list_payments
        yield "GET", r"/payments/([^/]+)", self._payment
        yield "GET", r"/payments/([^/]+)/line-items", self._line_items
        yield "GET", r"/invoices/payments/([^/]+)", self._invoice_pdf
        yield "GET", r"/refunds", self._list_refunds
        yield "GET", r"/refunds/([^/]+)", self._refund
        yield "GET", r"/license_keys", self._list_license_keys
        yield "GET", r"/license_keys/([^/]+)", self._license_key
        yield "GET", r"/license_key_instances", self._list_instances
        yield "GET", r"/license_key_instances/([^/]+)", self._instance
        yield "POST", r"/licenses/deactivate", self._deactivate
        yield "GET", r"/discounts", self._list_discounts
        yield "GET", r"/discounts/code/([^/]+)", self._discount_by_code

    @staticmethod
    def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        number = int(query.get("page_number", "0"))
        size = min(int(query.get("page_size", "10")), 100)
        return {"items": items[number * size : (number + 1) * size]}

    @staticmethod
    def _missing(what: str) -> _Reply:
        return _Reply(404, {"code": "NOT_FOUND", "message": f"{what} not found"})

    def _subscription(self, sid: str) -> dict[str, Any]:
        if sid not in self.subscriptions:
            raise self._missing("subscription")
        return self.subscriptions[sid]

    def _list_subscriptions(self, *, query: dict[str, str], body: Any) -> Any:
        found = [
            s
            for s in sorted(self.subscriptions.values(), key=lambda s: s["created_at"], reverse=True)
            if "customer_id" not in query or s["customer"]["customer_id"] == query["customer_id"]
        ]
        return _checked_page(SubscriptionListResponse, self._page(found, query))

    def _update_subscription(self, sid: str, *, query: dict[str, str], body: Any) -> Any:
        sub = self._subscription(sid)
        body = body or {}
        if body.get("status") == "cancelled":
            if sub["status"] in ("cancelled", "expired", "failed"):
                raise _Reply(409, {"code": "INVALID_STATE", "message": "subscription already ended"})
            sub["status"] = "cancelled"
            sub["cancelled_at"] = iso(self.now)
        elif body.get("status") == "active":
            if sub["status"] != "paused":
                raise _Reply(422, {"code": "INVALID_STATE", "message": "not paused"})
            sub["status"] = "active"
            sub["paused_at"] = None
        elif "cancel_at_next_billing_date" in body:
            if sub["status"] not in ("active", "on_hold", "past_due"):
                raise _Reply(409, {"code": "INVALID_STATE", "message": "subscription is not running"})
            sub["cancel_at_next_billing_date"] = bool(body["cancel_at_next_billing_date"])
        else:
            raise _Reply(422, {"code": "UNSUPPORTED", "message": "the fake does not do that"})
        return self._subscription_checked(sub)

    def _update_payment_method(self, sid: str, *, query: dict[str, str], body: Any) -> Any:
        sub = self._subscription(sid)
        customer_id = sub["customer"]["customer_id"]
        if sub["status"] in ("cancelled", "expired", "failed"):
            raise _Reply(409, {"code": "INVALID_STATE", "message": "subscription has ended"})
        if body["type"] == "new":
            if not body.get("return_url"):
                raise _Reply(422, {"code": "RETURN_URL_REQUIRED", "message": "return_url is required"})
            link = f"https://test.checkout.dodopayments.com/pm/{sid}"
            return _checked(SubscriptionUpdatePaymentMethodResponse, {"payment_link": link})
        method_id = body["payment_method_id"]
        if not any(m["payment_method_id"] == method_id for m in self.methods.get(customer_id, [])):
            raise _Reply(404, {"code": "NOT_FOUND", "message": "payment method not found"})
        if sub["status"] not in ("on_hold", "past_due"):
            sub["payment_method_id"] = method_id
            sub["has_payment_method"] = True
            self._subscription_checked(sub)
            return _checked(SubscriptionUpdatePaymentMethodResponse, {})
        outcome = self.arrears_outcome
        link = (
            f"https://test.checkout.dodopayments.com/3ds/{sid}"
            if outcome == "requires_customer_action"
            else None
        )
        pid = self.add_payment(
            customer_id,
            amount=sub["recurring_pre_tax_amount"],
            currency=sub["currency"],
            status=outcome,
            subscription_id=sid,
            error_code=self.arrears_error_code if outcome == "failed" else None,
            payment_method_id=method_id,
            payment_link=link,
        )
        sub["payment_method_id"] = method_id
        if outcome == "succeeded":
            sub["status"] = "active"
            sub["previous_billing_date"] = iso(self.now)
            step = _INTERVALS.get(sub["payment_frequency_interval"], timedelta(days=365))
            sub["next_billing_date"] = iso(self.now + step)
        self._subscription_checked(sub)
        answer: dict[str, Any] = {"payment_id": pid}
        if link:
            answer["payment_link"] = link
        return _checked(SubscriptionUpdatePaymentMethodResponse, answer)

    def _plan_preview(self, sub: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Dodo's ``prorated_immediately``: the new plan's price for the
        rest of the period, less the unused time of the old one, due now."""
        product_id, quantity = body["product_id"], int(body["quantity"])
        if product_id not in self.product_prices:
            raise self._missing("product")
        start = _parse_time(sub["previous_billing_date"])
        end = _parse_time(sub["next_billing_date"])
        factor = max(min((end - self.now) / (end - start), 1.0), 0.0)
        unit_price = self.product_prices[product_id]
        new_charge = round(unit_price * quantity * factor)
        unused = round(sub["recurring_pre_tax_amount"] * factor)
        off = sum(discount_off(d, new_charge) for d in self._discounts_for(body, product_id))
        amount = max(new_charge - off - unused, 0)
        new_plan = dict(
            sub,
            product_id=product_id,
            product_name=self.product_names.get(product_id, sub["product_name"]),
            quantity=quantity,
            recurring_pre_tax_amount=unit_price * quantity,
        )
        return {
            "immediate_charge": {
                "effective_at": iso(self.now),
                "line_items": [
                    {
                        "id": product_id,
                        "currency": sub["currency"],
                        "product_id": product_id,
                        "proration_factor": factor,
                        "quantity": quantity,
                        "tax_inclusive": False,
                        "type": "subscription",
                        "unit_price": unit_price,
                    }
                ],
                "summary": {
                    "currency": sub["currency"],
                    "customer_credits": 0,
                    "customer_credits_currency": sub["currency"],
                    "settlement_amount": amount,
                    "settlement_currency": sub["currency"],
                    "total_amount": amount,
                },
            },
            "new_plan": new_plan,
        }

    def _preview_change_plan(self, sid: str, *, query: dict[str, str], body: Any) -> Any:
        sub = self._subscription(sid)
        return _checked(SubscriptionPreviewChangePlanResponse, self._plan_preview(sub, body))

    def _change_plan(self, sid: str, *, query: dict[str, str], body: Any) -> Any:
        sub = self._subscription(sid)
        if body.get("collect_via_payment_link"):
            if not body.get("return_url"):
                raise _Reply(422, {"code": "RETURN_URL_REQUIRED", "message": "return_url is required"})
            link = f"https://test.checkout.dodopayments.com/plan/{sid}"
            return _checked(SubscriptionChangePlanResponse, {"payment_link": link, "payment_id": "pay_plan"})
        preview = self._plan_preview(sub, body)
        amount = preview["immediate_charge"]["summary"]["total_amount"]
        answer: dict[str, Any] = {}
        if amount > 0:
            # Charged to the saved method now; with prevent_change a failed
            # payment leaves the plan as it was.
            failed = not sub.get("payment_method_id") or self.arrears_outcome != "succeeded"
            pid = self.add_payment(
                sub["customer"]["customer_id"],
                amount=amount,
                currency=sub["currency"],
                status="failed" if failed else "succeeded",
                subscription_id=sid,
                error_code=self.arrears_error_code if failed else None,
                payment_method_id=sub.get("payment_method_id"),
            )
            answer["payment_id"] = pid
            if failed and body.get("on_payment_failure") == "prevent_change":
                raise _Reply(422, {"code": "PAYMENT_FAILED", "message": "the payment for the change failed"})
        new_plan = preview["new_plan"]
        applied = self._discounts_for(body, new_plan["product_id"])
        for position, discount in enumerate(applied):
            discount["times_used"] += 1
            detail = {k: v for k, v in discount.items() if k not in ("customer_eligibility", "starts_at")}
            # The change's own charge is the code's first cycle.
            cycles = discount["subscription_cycles"]
            remaining = None if cycles is None else max(cycles - (1 if amount > 0 else 0), 0)
            applied[position] = dict(detail, position=position, cycles_remaining=remaining)
        if "discount_codes" in body or "discount_code" in body:
            # Dodo's discount_codes replace the subscription's discounts.
            sub["discounts"] = applied
            sub["discount_id"] = applied[0]["discount_id"] if applied else None
        sub["product_id"] = new_plan["product_id"]
        sub["product_name"] = new_plan["product_name"]
        sub["quantity"] = new_plan["quantity"]
        sub["recurring_pre_tax_amount"] = new_plan["recurring_pre_tax_amount"]
        self._subscription_checked(sub)
        return _checked(SubscriptionChangePlanResponse, answer)

    def _discount_by_code(self, code: str, *, query: dict[str, str], body: Any) -> Any:
        for discount in self.discounts.values():
            if discount["code"] == code.upper():
                return _checked(Discount, discount)
        raise self._missing("discount")

    def _list_discounts(self, *, query: dict[str, str], body: Any) -> Any:
        wanted = query.get("code", "").upper()
        found = [d for d in self.discounts.values() if wanted in d["code"]]
        if "active" in query:
            active = query["active"] == "true"
            found = [d for d in found if (refusal(d, self.now) is None) == active]
        return _checked_page(Discount, self._page(found, query))

    def _discounts_for(self, body: dict[str, Any], product_id: str) -> list[dict[str, Any]]:
        """The discounts a change-plan body asks for, each checked as Dodo
        checks it; a 422 for the first it refuses."""
        codes = asked_codes(body)
        if isinstance(codes, str):
            raise _Reply(422, {"code": "INVALID_REQUEST", "message": codes})
        found = []
        for code in codes:
            discount = next((d for d in self.discounts.values() if d["code"] == code), None)
            why = "DISCOUNT_NOT_FOUND" if discount is None else refusal(discount, self.now, product_id)
            if why is not None or discount is None:
                raise _Reply(422, {"code": why, "message": "the discount code cannot be applied"})
            found.append(discount)
        return found

    def _payment_methods(self, customer_id: str, *, query: dict[str, str], body: Any) -> Any:
        if customer_id not in self.customers:
            raise self._missing("customer")
        return _checked(CustomerRetrievePaymentMethodsResponse, {"items": self.methods[customer_id]})

    def _delete_payment_method(
        self, customer_id: str, method_id: str, *, query: dict[str, str], body: Any
    ) -> Any:
        methods = self.methods.get(customer_id, [])
        for index, method in enumerate(methods):
            if method["payment_method_id"] == method_id:
                del methods[index]
                return None
        raise self._missing("payment method")

    def _portal_session(self, customer_id: str, *, query: dict[str, str], body: Any) -> Any:
        if customer_id not in self.customers:
            raise self._missing("customer")
        link = f"https://test.customer.dodopayments.com/session/{secrets.token_urlsafe(12)}"
        return _checked(CustomerPortalSession, {"link": link})

    def _list_payments(self, *, query: dict[str, str], body: Any) -> Any:
        since = _parse_time(query["created_at_gte"]) if "created_at_gte" in query else None
        found = [
            p
            for p in sorted(self.payments.values(), key=lambda p: p["created_at"], reverse=True)
            if ("customer_id" not in query or p["customer"]["customer_id"] == query["customer_id"])
            and ("subscription_id" not in query or p["subscription_id"] == query["subscription_id"])
            and (since is None or _parse_time(p["created_at"]) >= since)
        ]
        return _checked_page(PaymentListResponse, self._page(found, query))

    def _list_refunds(self, *, query: dict[str, str], body: Any) -> Any:
        found = [
            r
            for r in sorted(self.refunds.values(), key=lambda r: r["created_at"], reverse=True)
            if ("customer_id" not in query or r["customer"]["customer_id"] == query["customer_id"])
            and ("status" not in query or r["status"] == query["status"])
        ]
        # The list's items are RefundListItem: no customer, brand or metadata.
        items = [{k: v for k, v in r.items() if k not in ("customer", "brand_id", "metadata")} for r in found]
        return _checked_page(RefundListItem, self._page(items, query))

    def _refund(self, rid: str, *, query: dict[str, str], body: Any) -> Any:
        if rid not in self.refunds:
            raise self._missing("refund")
        return _checked(Refund, self.refunds[rid])

    def _payment(self, pid: str, *, query: dict[str, str], body: Any) -> Any:
        if pid not in self.payments:
            raise self._missing("payment")
        return _checked(Payment, self.payments[pid])

    def _line_items(self, pid: str, *, query: dict[str, str], body: Any) -> Any:
        if pid not in self.payments:
            raise self._missing("payment")
        payment = self.payments[pid]
        answer = {
            "currency": payment["currency"],
            "items": self.line_items[pid],
            "partial_refund_allowed": True,
        }
        return _checked(PaymentRetrieveLineItemsResponse, answer)

    def _invoice_pdf(self, pid: str, *, query: dict[str, str], body: Any) -> Any:
        if pid not in self.payments or self.payments[pid]["status"] != "succeeded":
            raise self._missing("invoice")
        raise _Reply(200, PDF_BYTES, "application/pdf")

    def _list_license_keys(self, *, query: dict[str, str], body: Any) -> Any:
        found = [
            k
            for k in sorted(self.license_keys.values(), key=lambda k: k["created_at"], reverse=True)
            if "customer_id" not in query or k["customer_id"] == query["customer_id"]
        ]
        return _checked_page(LicenseKey, self._page(found, query))

    def _license_key(self, kid: str, *, query: dict[str, str], body: Any) -> Any:
        if kid not in self.license_keys:
            raise self._missing("license key")
        return _checked(LicenseKey, self.license_keys[kid])

    def _list_instances(self, *, query: dict[str, str], body: Any) -> Any:
        found = [
            i
            for i in sorted(self.instances.values(), key=lambda i: i["created_at"], reverse=True)
            if "license_key_id" not in query or i["license_key_id"] == query["license_key_id"]
        ]
        return _checked_page(LicenseKeyInstance, self._page(found, query))

    def _instance(self, iid: str, *, query: dict[str, str], body: Any) -> Any:
        if iid not in self.instances:
            raise self._missing("license key instance")
        return _checked(LicenseKeyInstance, self.instances[iid])

    def _deactivate(self, *, query: dict[str, str], body: Any) -> Any:
        iid = body["license_key_instance_id"]
        instance = self.instances.get(iid)
        key = self.license_keys.get(instance["license_key_id"]) if instance else None
        if instance is None or key is None or key["key"] != body["license_key"]:
            raise self._missing("license key instance")
        del self.instances[iid]
        key["instances_count"] -= 1
        return None


def _checked_page(model: type[BaseModel], page: dict[str, Any]) -> dict[str, Any]:
    for item in page["items"]:
        model.model_validate(item)
    return page


_shared: list[FakeDodo] = []


def shared_fake_dodo() -> FakeDodo:
    """The test process's fake Dodo server, emptied: started on first use
    (an SDK client costs a TLS context, so one server and its clients serve
    every test), stopped when the process ends."""
    if not _shared:
        server = FakeDodo().start()
        atexit.register(server.stop)
        _shared.append(server)
    return _shared[0].reset()


@dataclass(frozen=True)
class ContractScenario:
    """The shared billing contract's scenario, made at the fake Dodo (see
    ``tests/billing_backends.py``)."""

    customer_id: str
    other_customer_id: str
    card_id: str
    other_card_id: str
    active_subscription_id: str
    on_hold_subscription_id: str
    other_subscription_id: str
    paid_invoice_ids: list[str]
    open_invoice_id: str


def seed_contract(fake: FakeDodo) -> ContractScenario:
    """Ava: an active monthly USD subscription on her only card (Visa
    4242) with two paid payments, and an ``on_hold`` one whose renewal
    failed (the open invoice). Budi: a card and an active subscription."""
    fake.add_customer("cus_c_ava", "ava@example.com", "Ava")
    fake.add_customer("cus_c_budi", "budi@example.com", "Budi")
    card = fake.add_payment_method("cus_c_ava", last4="4242")
    other_card = fake.add_payment_method("cus_c_budi", last4="4242")
    active = fake.add_subscription("cus_c_ava", product_name="Pro", amount=1999, payment_method_id=card)
    on_hold = fake.add_subscription(
        "cus_c_ava", product_name="Pro", amount=1999, status="on_hold", created_days_ago=41
    )
    other = fake.add_subscription("cus_c_budi", product_name="Pro", amount=1999, payment_method_id=other_card)
    paid = [
        fake.add_payment(
            "cus_c_ava", amount=1999, subscription_id=active, days_ago=days, payment_method_id=card
        )
        for days in (40, 10)
    ]
    open_id = fake.add_payment("cus_c_ava", amount=1999, status="failed", subscription_id=on_hold, days_ago=1)
    fake.add_payment(
        "cus_c_budi", amount=1999, subscription_id=other, days_ago=3, payment_method_id=other_card
    )
    return ContractScenario(
        "cus_c_ava", "cus_c_budi", card, other_card, active, on_hold, other, paid, open_id
    )
