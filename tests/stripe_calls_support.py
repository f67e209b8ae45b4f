"""Counting the Stripe API requests each portal page makes.

:class:`CountingHTTPClient` is the Stripe client's own HTTP client with a
tally: every request the SDK sends (list pages, expansions, retries, the
lock's reads, the provider's) goes through it, so nothing escapes the count.
:func:`seed_busy_customer` makes, through Stripe's API, a customer with as
many invoices, subscriptions and cards as asked; :data:`PAGES` are the
portal's pages over Stripe and :func:`calls_per_page` reads each once and
says what it asked Stripe. ``tests/test_stripe_calls.py`` asserts the
counts, ``benchmarks/stripe_calls.py`` prints them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import stripe


class CountingHTTPClient(stripe.RequestsClient):
    """:class:`stripe.RequestsClient` that remembers ``(method, path)`` of every request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[tuple[str, str]] = []
        self._guard = threading.Lock()

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        with self._guard:
            self.sent.append((method.upper(), urlsplit(url).path))
        return super().request(method, url, headers, post_data)

    def request_stream(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        with self._guard:
            self.sent.append((method.upper(), urlsplit(url).path))
        return super().request_stream(method, url, headers, post_data)

    @contextmanager
    def counting(self) -> Iterator[list[tuple[str, str]]]:
        """The requests sent inside the block (filled in when it ends)."""
        start = len(self.sent)
        seen: list[tuple[str, str]] = []
        try:
            yield seen
        finally:
            seen.extend(self.sent[start:])


def counting_client(
    url: str, *, api_key: str = "sk_test_portal"
) -> tuple[stripe.StripeClient, CountingHTTPClient]:
    """A client for the Stripe-like server at ``url`` whose requests are counted."""
    http = CountingHTTPClient()
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": url, "files": url, "connect": url},
        http_client=http,
        max_network_retries=0,
    )
    return client, http


def kinds(sent: list[tuple[str, str]]) -> Counter[str]:
    """Requests by kind, ids blanked: ``GET /v1/invoices/in_…`` → ``GET /v1/invoices/{id}``."""
    named: Counter[str] = Counter()
    for method, path in sent:
        parts = [part if "_" not in part or part == "payment_methods" else "{id}" for part in path.split("/")]
        named[f"{method} {'/'.join(parts)}"] += 1
    return named


@dataclass
class BusyCustomer:
    """What :func:`seed_busy_customer` made, by Stripe id."""

    customer_id: str
    subscription_ids: list[str]
    card_ids: list[str]
    invoice_ids: list[str] = field(default_factory=list)
    other_customer_id: str = ""


def seed_busy_customer(
    client: stripe.StripeClient, *, invoices: int, subscriptions: int = 2, cards: int = 2
) -> BusyCustomer:
    """A customer with ``subscriptions`` monthly subscriptions (each of
    another product, each starting with a paid invoice), ``cards`` cards
    (the first their default) and one-off paid invoices up to ``invoices``
    in all; and another customer with a subscription of their own."""
    customer = client.v1.customers.create(params={"email": "ava@example.com", "name": "Ava"})
    card_ids = []
    for _ in range(cards):
        card_ids.append(
            str(client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id}).id)
        )
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": card_ids[0]}}
    )
    subscription_ids = []
    plan = ""
    for n in range(subscriptions):
        product = client.v1.products.create(params={"name": f"Product {n}"})
        plan = str(
            client.v1.plans.create(
                params={
                    "amount": 1000 + n,
                    "currency": "usd",
                    "interval": "month",
                    "product": product.id,
                    "nickname": f"Monthly {n}",
                }
            ).id
        )
        subscription = client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"plan": plan}]}
        )
        subscription_ids.append(str(subscription.id))
    for n in range(max(invoices - subscriptions, 0)):
        client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "amount": 500 + n,
                "currency": "usd",
                "description": f"Extra {n}",
            }
        )
        client.v1.invoices.pay(client.v1.invoices.create(params={"customer": customer.id}).id)
    other = client.v1.customers.create(params={"email": "budi@example.com", "name": "Budi"})
    other_card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": other.id})
    client.v1.customers.update(
        other.id, params={"invoice_settings": {"default_payment_method": other_card.id}}
    )
    if plan:
        client.v1.subscriptions.create(params={"customer": other.id, "items": [{"plan": plan}]})
    invoice_ids = [
        str(i.id)
        for i in client.v1.invoices.list(params={"customer": customer.id, "limit": 100}).auto_paging_iter()
    ]
    return BusyCustomer(
        customer_id=str(customer.id),
        subscription_ids=subscription_ids,
        card_ids=card_ids,
        invoice_ids=invoice_ids,
        other_customer_id=str(other.id),
    )


#: The portal's pages over Stripe: name → path, given the seeded customer.
PAGES: dict[str, Callable[[BusyCustomer], str]] = {
    "dashboard": lambda c: "/portal/",
    "subscriptions": lambda c: "/portal/subscriptions",
    "subscription": lambda c: f"/portal/subscriptions/{c.subscription_ids[0]}",
    "payment method": lambda c: f"/portal/subscriptions/{c.subscription_ids[0]}/payment-method",
    "invoices": lambda c: "/portal/invoices",
    "invoice": lambda c: f"/portal/invoices/{c.invoice_ids[0]}",
    "licence keys": lambda c: "/portal/license-keys",
    "profile": lambda c: "/portal/profile",
}


def calls_per_page(
    browser: Any, http: CountingHTTPClient, customer: BusyCustomer
) -> dict[str, list[tuple[str, str]]]:
    """Each page of :data:`PAGES` read once with the signed-in ``browser``
    (a Flask test client): the Stripe requests it made."""
    made: dict[str, list[tuple[str, str]]] = {}
    for name, path in PAGES.items():
        with http.counting() as sent:
            response = browser.get(path(customer))
        assert response.status_code == 200, (name, response.status_code)
        made[name] = sent
    return made


def make_counted_portal(
    db_url: str,
    client: stripe.StripeClient,
    customers: dict[str, str],
    *,
    cache: Any = None,
    **config: Any,
) -> Any:
    """A portal over ``client``'s Stripe (as ``make_stripe_portal_app`` in
    ``stripe_support``) whose :class:`StripeBillingStore` may be given a
    shared ``cache``, with ``config`` on top of the test settings."""
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

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

    app = Flask("portal_stripe_calls_app")
    app.config.update(
        TESTING=True,
        SECRET_KEY="test-secret-key-0123456789abcdef0123456789",
        SQLALCHEMY_DATABASE_URI=db_url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="http://shop.test",
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
        **config,
    )
    db = SQLAlchemy()
    db.init_app(app)
    local = SQLAlchemyStorage(db)
    ids = MappingCustomerIds.from_dict(customers)
    store = StripeBillingStore(client) if cache is None else StripeBillingStore(client, cache=cache)
    CustomerPortal(
        app,
        storage=CompositeStorage(local, billing=store, customer_ids=ids),
        payments=StripePaymentProvider(client, publishable_key="pk_test_portal", customer_ids=ids),
        mailer=MemoryMailer(),
    )
    app.register_blueprint(stripe_webhook_blueprint(WEBHOOK_SECRET, customer_ids=ids))
    with app.app_context():
        local.create_all()
        for portal_id in customers:
            local.add_customer(Customer(portal_id, f"{portal_id}@example.com", portal_id.title()))
    return app


#: The webhook secret of :func:`make_counted_portal`'s blueprint (``stripe_support``'s).
WEBHOOK_SECRET = "whsec_test_portal"


def signed_in(app: Any, customer_id: str = "ava") -> Any:
    """A test client signed in as ``customer_id`` (the link opened, its button pressed)."""
    from flask_customer_portal.testing import csrf_token_from

    browser = app.test_client()
    with app.app_context():
        link = urlsplit(app.extensions["customer_portal"].create_session(customer_id).link)
    path = link.path + (f"?{link.query}" if link.query else "")
    page = browser.get(path)
    assert page.status_code == 200, page.status_code
    assert browser.post(path, data={"csrf_token": csrf_token_from(page.text)}).status_code == 303
    return browser
