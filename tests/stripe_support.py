"""Stripe for the tests, offline: localstripe and recorded responses.

``localstripe_url`` starts localstripe (``tests/localstripe_server.py``) on a
free port of 127.0.0.1 once per test session, with its state in memory (not
in localstripe's shared ``/tmp/localstripe.pickle``), and stops it afterwards. It is a dev dependency: when it
cannot start, the tests that need it fail — they are never skipped.

``stripe_client(url)`` makes a :class:`stripe.StripeClient` for one server;
nothing is set on the ``stripe`` module, so no test leaks a base URL into
another.

``RecordedStripe`` is a small HTTP server that answers with Stripe-shaped
JSON bodies the test gives it, for what localstripe does not have (Prices,
idempotency replay, invoice PDFs, decline codes), and remembers every
request. ``default_payment_method`` on subscriptions and paying an invoice
with a given method are added to localstripe by ``tests/localstripe_server.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import stripe

SERVER = Path(__file__).with_name("localstripe_server.py")
START_TIMEOUT = 20.0


def stripe_client(url: str, *, api_key: str = "sk_test_portal") -> stripe.StripeClient:
    """A client for the Stripe-like server at ``url``, with no retries (a
    test wants the first answer) and its own HTTP client."""
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": url, "files": url, "connect": url},
        http_client=stripe.RequestsClient(),
        max_network_retries=0,
    )


@pytest.fixture(scope="session")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a localstripe server for this test session (its state in memory)."""
    log = tmp_path_factory.mktemp("localstripe") / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(SERVER)], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "PORT <n>", or "" if it died
        if not line.startswith("PORT "):
            process.kill()
            process.wait(timeout=START_TIMEOUT)
            pytest.fail(
                f"localstripe did not start (it is a dev dependency: `pip install -e .[dev]`):\n{log.read_text()}"
            )
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with requests.get(
                    f"{url}/v1/balance", timeout=1, headers={"Authorization": "Bearer sk_test_x"}
                ):
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"localstripe did not answer:\n{log.read_text()}")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def localstripe(localstripe_url: str) -> stripe.StripeClient:
    """A client for localstripe, with every object deleted before the test."""
    with requests.delete(f"{localstripe_url}/_config/data", timeout=10) as response:
        response.raise_for_status()
    return stripe_client(localstripe_url)


def invoice_pays(url: str, invoice_id: str) -> list[dict[str, Any]]:
    """Every request to pay ``invoice_id`` that the localstripe at ``url``
    received, in order: ``invoice``, ``idempotency_key`` and the answer's
    HTTP ``status`` (see ``tests/localstripe_server.py``)."""
    with requests.get(f"{url}/_config/invoice_pays", params={"invoice": invoice_id}, timeout=10) as response:
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
    return found


# -- a scenario made through Stripe's API ---------------------------------------------

#: Charging this card fails although it attaches (Stripe's ``pm_card_chargeCustomerFail``).
CARD_CHARGE_FAILS = "pm_card_chargeCustomerFail"
#: A card whose payments need 3-D Secure.
CARD_3DS = "4000000000003220"


@dataclass
class StripeScenario:
    """What :func:`seed_stripe` made, by Stripe id."""

    customer_id: str
    other_customer_id: str
    card_id: str
    active_subscription_id: str
    on_hold_subscription_id: str
    paid_invoice_ids: list[str] = field(default_factory=list)
    open_invoice_id: str = ""
    other_subscription_id: str = ""
    other_card_id: str = ""
    plan_id: str = ""


def _plan(client: stripe.StripeClient, name: str, nickname: str, amount: int) -> str:
    product = client.v1.products.create(params={"name": name})
    plan = client.v1.plans.create(
        params={
            "amount": amount,
            "currency": "usd",
            "interval": "month",
            "product": product.id,
            "nickname": nickname,
        }
    )
    return str(plan.id)


def seed_stripe(client: stripe.StripeClient) -> StripeScenario:
    """The shared billing scenario, made through Stripe's API: a customer
    with an active monthly subscription, two paid invoices and a saved Visa
    (their default), plus an ``on_hold`` subscription whose first payment
    failed (its invoice open); another customer with a subscription of their own."""
    pro = _plan(client, "Pro", "Monthly", 1999)
    team = _plan(client, "Team", "Team monthly", 4999)
    customer = client.v1.customers.create(params={"email": "ava@example.com", "name": "Ava"})
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})
    active = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"plan": pro}]})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 500, "currency": "usd", "description": "Setup"}
    )
    extra = client.v1.invoices.create(params={"customer": customer.id})
    client.v1.invoices.pay(extra.id)
    # A card that attaches but whose charges fail, as the default when the
    # second subscription starts: its first invoice stays open.
    failing = client.v1.payment_methods.attach(CARD_CHARGE_FAILS, params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": failing.id}}
    )
    on_hold = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"plan": team}]})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})
    client.v1.payment_methods.detach(failing.id)
    invoices = list(client.v1.invoices.list(params={"customer": customer.id}).data)
    other = client.v1.customers.create(params={"email": "budi@example.com", "name": "Budi"})
    other_card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": other.id})
    client.v1.customers.update(
        other.id, params={"invoice_settings": {"default_payment_method": other_card.id}}
    )
    other_sub = client.v1.subscriptions.create(params={"customer": other.id, "items": [{"plan": pro}]})
    return StripeScenario(
        customer_id=str(customer.id),
        other_customer_id=str(other.id),
        card_id=str(card.id),
        active_subscription_id=str(active.id),
        on_hold_subscription_id=str(on_hold.id),
        paid_invoice_ids=[str(i.id) for i in invoices if i.status == "paid"],
        open_invoice_id=next(str(i.id) for i in invoices if i.status == "open"),
        other_subscription_id=str(other_sub.id),
        other_card_id=str(other_card.id),
        plan_id=pro,
    )


# -- recorded responses -------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


Handler = Callable[[RecordedRequest], tuple[int, dict[str, Any]]]
Answer = tuple[int, dict[str, Any]] | Handler


class RecordedStripe:
    """Answers ``(method, path)`` with the JSON bodies queued by
    :meth:`respond` (the last one repeats), 404 for anything else, and
    keeps every request in :attr:`requests`."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[RecordedRequest] = []
        recorded = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = dict(parse_qsl(parts.query, keep_blank_values=True)) | dict(
                    parse_qsl(body, keep_blank_values=True)
                )
                recorded.requests.append(
                    RecordedRequest(
                        self.command, parts.path, params, {k.lower(): v for k, v in self.headers.items()}
                    )
                )
                answers = recorded.routes.get((self.command, parts.path))
                if not answers:
                    status, payload = (
                        404,
                        {"error": {"type": "invalid_request_error", "message": "No such object"}},
                    )
                else:
                    answer = answers.pop(0) if len(answers) > 1 else answers[0]
                    status, payload = answer(recorded.requests[-1]) if callable(answer) else answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{len(recorded.requests)}")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815  (http.server's names)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll: shutdown() waits for it, after every test.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def respond(self, method: str, path: str, *answers: dict[str, Any], status: int = 200) -> None:
        self.routes[(method, path)] = [(status, answer) for answer in answers]

    def handle(self, method: str, path: str, handler: Handler) -> None:
        """Answer with ``handler(request) -> (status, body)`` every time."""
        self.routes[(method, path)] = [handler]

    def fail(self, method: str, path: str, status: int, error: dict[str, Any]) -> None:
        self.routes[(method, path)] = [(status, {"error": error})]

    def sent(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def __enter__(self) -> RecordedStripe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def recorded_stripe() -> Iterator[RecordedStripe]:
    with RecordedStripe() as server:
        yield server


# -- a scripted Stripe account -----------------------------------------------------------

NOW = int(time.time())
MONTH = 30 * 24 * 3600


class ScriptedStripe:
    """Stripe-shaped objects for one customer ("cus_R") with a Price-based
    subscription that is ``past_due`` with one open invoice, served by a
    :class:`RecordedStripe` that changes them as Stripe would."""

    def __init__(self, server: RecordedStripe) -> None:
        self.server = server
        self.pay_outcome = "paid"
        self.methods = {
            "pm_good": self._method("pm_good", "4242", "visa"),
            "pm_new": self._method("pm_new", "4444", "mastercard"),
        }
        self.customer = {
            "id": "cus_R",
            "object": "customer",
            "invoice_settings": {"default_payment_method": "pm_good"},
        }
        self.subscription: dict[str, Any] = {
            "id": "sub_R",
            "object": "subscription",
            "customer": "cus_R",
            "status": "past_due",
            "created": NOW - 2 * MONTH,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "ended_at": None,
            "default_payment_method": None,
            "metadata": {},
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": "si_R",
                        "object": "subscription_item",
                        "quantity": 2,
                        "current_period_start": NOW - 3600,
                        "current_period_end": NOW + MONTH,
                        "price": {
                            "id": "price_R",
                            "object": "price",
                            "unit_amount": 1500,
                            "currency": "eur",
                            "nickname": "Team (per seat)",
                            "product": "prod_R",
                            "recurring": {"interval": "year", "interval_count": 1},
                        },
                    }
                ],
            },
        }
        self.invoice: dict[str, Any] = {
            "id": "in_R",
            "object": "invoice",
            "customer": "cus_R",
            "number": "ACME-0042",
            "status": "open",
            "currency": "eur",
            "subtotal": 3000,
            "total": 3570,
            "amount_due": 3570,
            "amount_paid": 0,
            "created": NOW - 3600,
            "description": None,
            "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/in_R",
            "invoice_pdf": "https://pay.stripe.com/invoice/acct_1/in_R/pdf",
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_R"}},
            "metadata": {},
            "status_transitions": {"paid_at": None},
            "lines": {
                "object": "list",
                "data": [{"id": "il_R", "description": "2 x Team (per seat)", "quantity": 2, "amount": 3000}],
            },
        }
        s = server
        s.respond("GET", "/v1/products/prod_R", {"id": "prod_R", "object": "product", "name": "Team"})
        s.respond("GET", "/v1/customers/cus_R", self.customer)
        s.handle("GET", "/v1/payment_methods/pm_good", lambda r: (200, self.methods["pm_good"]))
        s.handle("GET", "/v1/payment_methods/pm_new", lambda r: (200, self.methods["pm_new"]))
        s.handle("GET", "/v1/subscriptions/sub_R", lambda r: (200, self.subscription))
        s.handle("POST", "/v1/subscriptions/sub_R", self._update_subscription)
        s.handle("GET", "/v1/invoices/in_R", lambda r: (200, self.invoice))
        s.handle("POST", "/v1/invoices/in_R", self._update_invoice)
        s.handle("POST", "/v1/invoices/in_R/pay", self._pay)
        s.handle("GET", "/v1/invoices", lambda r: (200, self._list([self.invoice])))
        s.handle("GET", "/v1/subscriptions", lambda r: (200, self._list([self.subscription])))
        s.handle("POST", "/v1/payment_methods/pm_new/attach", lambda r: (200, self.methods["pm_new"]))
        s.handle("GET", "/v1/payment_methods", lambda r: (200, self._list(list(self.methods.values()))))
        s.handle("GET", "/v1/charges", lambda r: (200, self._list([])))

    @staticmethod
    def _method(pm_id: str, last4: str, brand: str) -> dict[str, Any]:
        return {
            "id": pm_id,
            "object": "payment_method",
            "type": "card",
            "customer": "cus_R",
            "created": NOW - MONTH,
            "card": {"brand": brand, "last4": last4, "exp_month": 3, "exp_year": 2031},
        }

    @staticmethod
    def _list(data: list[dict[str, Any]]) -> dict[str, Any]:
        return {"object": "list", "data": data, "has_more": False, "url": "/v1/x"}

    def _update_subscription(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        if "default_payment_method" in request.params:
            self.subscription["default_payment_method"] = request.params["default_payment_method"]
        for key, value in request.params.items():
            if key.startswith("metadata["):
                self.subscription["metadata"][key[len("metadata[") : -1]] = value
        if "cancel_at_period_end" in request.params:
            self.subscription["cancel_at_period_end"] = request.params["cancel_at_period_end"] == "true"
        return 200, self.subscription

    def _update_invoice(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        for key, value in request.params.items():
            if key.startswith("metadata["):
                self.invoice["metadata"][key[len("metadata[") : -1]] = value
        return 200, self.invoice

    def _pay(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        if self.pay_outcome == "paid":
            self.invoice.update(
                status="paid",
                amount_paid=self.invoice["amount_due"],
                charge="ch_R",
                status_transitions={"paid_at": NOW},
            )
            self.subscription["status"] = "active"
            return 200, self.invoice
        if self.pay_outcome == "insufficient_funds":
            return 402, {
                "error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds.",
                    "charge": "ch_declined",
                }
            }
        if self.pay_outcome == "3ds":
            self.invoice["payment_intent"] = {
                "id": "pi_R",
                "object": "payment_intent",
                "status": "requires_action",
                "next_action": {
                    "type": "redirect_to_url",
                    "redirect_to_url": {"url": "https://hooks.stripe.com/3d_secure_2/hosted?pi=pi_R"},
                },
            }
            return 402, {
                "error": {
                    "type": "card_error",
                    "code": "invoice_payment_intent_requires_action",
                    "message": "This payment requires additional user action before it can be completed.",
                }
            }
        return 500, {"error": {"type": "api_error", "message": "Something went wrong on Stripe's end."}}

    def pays(self) -> list[RecordedRequest]:
        return self.server.sent("POST", "/v1/invoices/in_R/pay")


# -- a portal on Stripe ----------------------------------------------------------------

WEBHOOK_SECRET = "whsec_test_portal"


def make_stripe_portal_app(
    db_url: str,
    client: stripe.StripeClient,
    customers: dict[str, str],
    *,
    mailer: Any = None,
    base_url: str | None = None,
    js_url: str | None = None,
    add_customers: bool = True,
) -> Any:
    """A portal whose billing is at ``client``'s server: customers (portal id
    → Stripe id) in a local SQLite store, the Stripe provider, and the
    webhook blueprint at ``/stripe/webhook``. A second app on the same
    database passes ``add_customers=False``."""
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from portal_fixtures import BASE_URL, SECRET

    from flask_customer_portal import CustomerPortal
    from flask_customer_portal.contrib.composite import CompositeStorage, MappingCustomerIds
    from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
    from flask_customer_portal.contrib.stripe import (
        StripeBillingStore,
        StripePaymentProvider,
        stripe_webhook_blueprint,
    )
    from flask_customer_portal.storage import Customer
    from flask_customer_portal.testing import MemoryMailer

    app = Flask("portal_stripe_test_app")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=db_url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=base_url or BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
    )
    db = SQLAlchemy()
    db.init_app(app)
    local = SQLAlchemyStorage(db)
    ids = MappingCustomerIds.from_dict(customers)
    CustomerPortal(
        app,
        storage=CompositeStorage(local, billing=StripeBillingStore(client), customer_ids=ids),
        payments=StripePaymentProvider(
            client,
            publishable_key="pk_test_portal",
            customer_ids=ids,
            **({"js_url": js_url} if js_url else {}),
        ),
        mailer=mailer or MemoryMailer(),
    )
    app.register_blueprint(stripe_webhook_blueprint(WEBHOOK_SECRET, customer_ids=ids))
    with app.app_context():
        local.create_all()
        for portal_id in customers if add_customers else ():
            local.add_customer(Customer(portal_id, f"{portal_id}@example.com", portal_id.title()))
    return app
