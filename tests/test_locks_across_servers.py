"""Fifty simultaneous reactivations of one ``on_hold`` subscription, spread
over two gunicorn servers of the example app (two loopback ports, two
workers of four threads each, one PostgreSQL), pay once: over Stripe
(localstripe) and over Dodo Payments (the fake Dodo server).

Neither payment company has a lock; what makes one payment of fifty
submits is the merchant's database lock that the portal takes around the
whole check-then-charge. Each test counts what the payment company was
asked and charged, and what the portal recorded (attempts and the audit
log); every submit must land on the "reactivated" page, none on an error.
The lock's row exists before the submits (as after any earlier visit), so
they queue on the row's lock itself.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
from example_app_servers import ExampleServer, example_app_servers
from fake_dodo import API_KEY, FakeDodo
from flask import Flask
from portal_fixtures import path_of
from sqlalchemy import create_engine, make_url, text
from stripe_support import invoice_pays, seed_stripe

from example_app import create_app, storage
from flask_customer_portal.billing.collect import idempotency_key
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer
from flask_customer_portal.testing import csrf_token_from

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SUBMITS = 50
#: Signed-in browsers; each sends its share of the submits, to both servers.
BROWSERS = 10
#: The whole burst of submits must be answered within this.
BURST_TIMEOUT = 180.0
UPDATE_PAYMENT_METHOD = r"/subscriptions/[^/]+/update-payment-method"


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A database of its own on the test PostgreSQL server, dropped afterwards."""
    server = make_url(postgres_url)
    name = f"portal_locks_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            force = " WITH (FORCE)" if connection.dialect.server_version_info >= (13,) else ""
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
    finally:
        admin.dispose()


@dataclass
class Shop:
    """The example app's settings for the servers, and the same app in this
    process: it makes the tables, the customer and the sign-in links, and
    reads the audit log afterwards."""

    env: dict[str, str]
    app: Flask

    def close(self) -> None:
        get_state(self.app).shutdown()
        with self.app.app_context():
            self.app.extensions["sqlalchemy"].engine.dispose()


def _shop(database: str, **backend: str) -> Shop:
    env = {
        "DATABASE_URL": database,
        "SECRET_KEY": secrets.token_hex(32),
        "CUSTOMER_PORTAL_BASE_URL": "http://127.0.0.1",
        **backend,
    }
    settings: dict[str, Any] = {key: value for key, value in env.items() if key != "DATABASE_URL"}
    app = create_app({**settings, "SQLALCHEMY_DATABASE_URI": database})
    return Shop(env, app)


def _hold_once(shop: Shop, customer_id: str, subscription_id: str) -> None:
    """Take and release the subscription's lock, as an earlier visit would:
    its row is there when the submits come."""
    with (
        shop.app.app_context(),
        get_state(shop.app).storage.lock_provider_subscription(customer_id, subscription_id),
    ):
        pass


@dataclass
class Browser:
    cookies: dict[str, str]
    csrf_token: str


def _sign_in(shop: Shop, server: ExampleServer, customer_id: str, subscription_id: str) -> Browser:
    """Open a sign-in link on ``server`` and press its button, then open
    the subscription's payment-method page."""
    with shop.app.app_context():
        link = shop.app.extensions["customer_portal"].create_session(customer_id).link
    with requests.Session() as browser:
        page = browser.get(server.url + path_of(link), timeout=60)
        assert page.status_code == 200, page.status_code
        pressed = browser.post(
            server.url + path_of(link),
            data={"csrf_token": csrf_token_from(page.text)},
            allow_redirects=False,
            timeout=60,
        )
        assert pressed.status_code == 303, pressed.status_code
        form = browser.get(f"{server.url}/portal/subscriptions/{subscription_id}/payment-method", timeout=60)
        assert form.status_code == 200, form.status_code
        return Browser(browser.cookies.get_dict(), csrf_token_from(form.text))


def _burst(
    shop: Shop, servers: list[ExampleServer], customer_id: str, subscription_id: str, card: str
) -> tuple[list[tuple[int, str]], float]:
    """:data:`SUBMITS` reactivation submits released at once, spread over
    the servers; their (status, Location) and how long the burst took."""
    browsers = [
        _sign_in(shop, servers[n % len(servers)], customer_id, subscription_id) for n in range(BROWSERS)
    ]
    barrier = threading.Barrier(SUBMITS, timeout=60)
    answers: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def submit(n: int) -> None:
        browser = browsers[n % BROWSERS]
        server = servers[(n // BROWSERS) % len(servers)]  # each browser's submits go to both servers
        try:
            barrier.wait()
            answer = requests.post(
                f"{server.url}/portal/subscriptions/{subscription_id}/payment-method",
                data={"csrf_token": browser.csrf_token, "payment_method": card, "intent": "reactivate"},
                cookies=browser.cookies,
                allow_redirects=False,
                timeout=BURST_TIMEOUT,
            )
        except BaseException as exc:  # re-raised in the test's thread
            with guard:
                errors.append(exc)
            return
        with guard:
            answers.append((answer.status_code, answer.headers.get("Location", "")))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(SUBMITS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BURST_TIMEOUT)
    took = time.monotonic() - started
    if errors:
        raise errors[0]
    return answers, took


def _assert_all_reactivated(
    answers: list[tuple[int, str]], subscription_id: str, servers: list[ExampleServer]
) -> None:
    assert [line for server in servers for line in server.failures()] == []
    assert len(answers) == SUBMITS
    # One submit paid; every other one waited for the lock and found the
    # subscription active: all land on the "reactivated" page, none errs.
    landed = [
        status == 303 and location.endswith(f"/subscriptions/{subscription_id}/reactivated")
        for status, location in answers
    ]
    assert all(landed), sorted(set(answers))


def _money_events(shop: Shop, customer_id: str) -> list[str]:
    with shop.app.app_context():
        return [
            e.action
            for e in storage().list_events(customer_id)
            if e.action.startswith(("charge.", "subscription."))
        ]


def test_fifty_reactivations_over_two_servers_pay_stripe_once(
    database: str, localstripe: stripe.StripeClient, localstripe_url: str, tmp_path: Path
) -> None:
    scenario = seed_stripe(localstripe)
    customer, subscription, invoice = (
        scenario.customer_id,
        scenario.on_hold_subscription_id,
        scenario.open_invoice_id,
    )
    shop = _shop(
        database,
        PORTAL_BACKEND="stripe",
        STRIPE_SECRET_KEY="sk_test_portal",
        STRIPE_PUBLISHABLE_KEY="pk_test_portal",
        STRIPE_API_BASE=localstripe_url,
    )
    try:
        with shop.app.app_context():
            storage().add_customer(Customer(customer, "ava@example.com", "Ava"))
        _hold_once(shop, customer, subscription)
        with example_app_servers(shop.env, tmp_path) as servers:
            answers, took = _burst(shop, servers, customer, subscription, scenario.card_id)
        print(f"\n{SUBMITS} reactivations over Stripe on 2 servers: {took:.1f} s")
        _assert_all_reactivated(answers, subscription, servers)

        # Stripe was asked to pay the invoice once, with the portal's key, and paid it once.
        key = idempotency_key(invoice, 1)
        assert [(p["idempotency_key"], p["status"]) for p in invoice_pays(localstripe_url, invoice)] == [
            (key, 200)
        ]
        paid = localstripe.v1.invoices.retrieve(invoice).to_dict()
        assert paid["status"] == "paid"
        intents = [
            intent
            for intent in localstripe.v1.payment_intents.list().auto_paging_iter()
            if intent.to_dict().get("invoice") == invoice and intent.status == "succeeded"
        ]
        assert len(intents) == 1
        assert localstripe.v1.subscriptions.retrieve(subscription).status == "active"
        # One attempt in the invoice's attempt log, one payment in the audit log.
        attempts = {
            k: json.loads(v)["s"] for k, v in paid["metadata"].items() if k.startswith("portal_attempt_")
        }
        assert attempts == {"portal_attempt_1": "succeeded"}
        events = _money_events(shop, customer)
        assert events.count("charge.succeeded") == 1
        assert events.count("subscription.reactivated") == 1
        assert not [e for e in events if re.search(r"failed|declined|unknown|reconciled", e)], events
    finally:
        shop.close()


def _seed_dodo(fake: FakeDodo, customer: str) -> tuple[str, str]:
    """A saved card and an ``on_hold`` subscription whose renewal failed
    two days ago; (subscription id, card id)."""
    fake.add_customer(customer, "ava@example.com", "Ava")
    card = fake.add_payment_method(customer, last4="4242")
    subscription = fake.add_subscription(
        customer, product_name="Pro", amount=1999, status="on_hold", payment_method_id=card
    )
    fake.add_payment(
        customer,
        amount=1999,
        status="failed",
        subscription_id=subscription,
        days_ago=2,
        error_code="INSUFFICIENT_FUNDS",
    )
    return subscription, card


@pytest.fixture
def fake_dodo() -> Iterator[FakeDodo]:
    fake = FakeDodo().start()
    yield fake
    fake.stop()


def test_fifty_reactivations_over_two_servers_pay_dodo_once(
    database: str, fake_dodo: FakeDodo, tmp_path: Path
) -> None:
    customer = "cus_locks_ava"
    subscription, card = _seed_dodo(fake_dodo, customer)
    shop = _shop(
        database,
        PORTAL_BACKEND="dodo",
        DODO_PAYMENTS_API_KEY=API_KEY,
        DODO_PAYMENTS_BASE_URL=fake_dodo.url,
    )
    try:
        with shop.app.app_context():
            storage().add_customer(Customer(customer, "ava@example.com", "Ava"))
        _hold_once(shop, customer, subscription)
        with example_app_servers(shop.env, tmp_path) as servers:
            answers, took = _burst(shop, servers, customer, subscription, card)
        print(f"\n{SUBMITS} reactivations over Dodo on 2 servers: {took:.1f} s")
        _assert_all_reactivated(answers, subscription, servers)

        # Dodo was asked to charge once, with the portal's key, and charged once.
        calls = fake_dodo.calls("POST", UPDATE_PAYMENT_METHOD)
        assert len(calls) == 1
        [(_, key)] = fake_dodo.idempotency_keys
        assert key.startswith(f"arrears:{subscription}:") and key.endswith(":attempt:1")
        charges = [
            p
            for p in fake_dodo.payments.values()
            if p["subscription_id"] == subscription and p["payment_method_id"] == card
        ]
        assert [p["status"] for p in charges] == ["succeeded"]
        assert fake_dodo.subscriptions[subscription]["status"] == "active"
        # One attempt recorded, one payment in the audit log.
        with shop.app.app_context():
            rows = shop.app.extensions["sqlalchemy"].session.execute(
                text(
                    "SELECT attempt, idempotency_key, status FROM portal_arrears_attempts "
                    "WHERE customer_id = :c ORDER BY attempt"
                ),
                {"c": customer},
            )
            assert [tuple(row) for row in rows] == [(1, key, "succeeded")]
        events = _money_events(shop, customer)
        assert events.count("charge.succeeded") == 1
        assert events.count("subscription.reactivated") == 1
        assert not [e for e in events if re.search(r"failed|declined|unknown|reconciled", e)], events
    finally:
        shop.close()
