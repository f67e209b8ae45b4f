"""The demo shop under load: gunicorn with two workers on PostgreSQL.

A bounded run (about eight seconds of traffic, on 127.0.0.1 only) of
signed-in customers reading their pages, visitors asking for login emails,
customers opening magic links, and, at the same moment, several customers
whose subscription is ``on_hold`` each pressing "Confirm" from several
browsers at once. Two worker processes each keep their own test payment
provider, so the database is the witness: every reactivated invoice has
exactly one successful charge attempt.

The figures (requests, requests per second, median and 95th percentile
latency, errors) are printed and recorded as test properties.
"""

from __future__ import annotations

import http.client
import math
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask
from portal_fixtures import free_port
from sqlalchemy import create_engine, make_url, text

from example_app import create_app
from example_app.demo import load_demo_data
from flask_customer_portal import (
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    PaymentMethod,
    Subscription,
    SubscriptionStatus,
    TestPaymentProvider,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.payments import DeclineReason
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import ChargeAttemptStatus
from flask_customer_portal.testing import csrf_token_from

#: Seconds of traffic through gunicorn: left out of `make check`.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WORKERS = 2
THREADS = 4
TRAFFIC_SECONDS = 8.0
ON_HOLD_CUSTOMERS = 6
#: Each submit hands a new card to the provider first: as many as one
#: customer may in an hour (CUSTOMER_PORTAL_CARD_ATTACH_LIMIT).
SUBMITS_PER_SUBSCRIPTION = 5
MAGIC_LINKS = 24
GOOD_CARD = "4242424242424242"


# --- a database and a server of our own --------------------------------------------------------


@pytest.fixture
def load_database(postgres_url: str) -> Iterator[str]:
    """A fresh database in the test cluster, dropped afterwards."""
    name = f"portal_load_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Shop:
    app: Flask
    port: int
    on_hold: list[tuple[str, str, str]]
    """``(customer id, subscription id, open invoice id)`` of each customer on hold."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def magic_link(self, customer_id: str) -> str:
        with self.app.app_context():
            link = self.app.extensions["customer_portal"].create_session(customer_id).link
        return urlsplit(link).path


def _add_customer_on_hold(store: SQLAlchemyStorage, n: int, now: datetime) -> tuple[str, str, str]:
    """A customer like Budi: a card that declines, a renewal that failed,
    the subscription on hold with that invoice open."""
    customer = store.add_customer(
        Customer(id=f"cus_load_{n}", email=f"load{n}@example.com", name=f"Load Customer {n}", locale="en")
    )
    card = store.add_payment_method(
        PaymentMethod(
            id=f"pm_load_{n}_declines",
            customer_id=customer.id,
            brand="visa",
            last4="0002",
            exp_month=12,
            exp_year=now.year + 2,
            provider_token=TestPaymentProvider.token_for(
                "4000000000000002", charges_decline=DeclineReason.GENERIC
            ),
        )
    )
    price = Money(2900, "USD")
    start = now - timedelta(days=33)
    subscription = store.add_subscription(
        Subscription(
            id=f"sub_load_{n}",
            customer_id=customer.id,
            product_name="Acme Sync",
            plan_name="Pro (monthly)",
            price=price,
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.ON_HOLD,
            current_period_start=start,
            current_period_end=now - timedelta(days=3),
            payment_method=card,
            hold_reason=str(DeclineReason.GENERIC),
        )
    )
    invoice = store.add_invoice(
        Invoice(
            id=f"inv_load_{n}",
            number=store.next_invoice_number(),
            customer_id=customer.id,
            subscription_id=subscription.id,
            status=InvoiceStatus.OPEN,
            currency="USD",
            subtotal=price.amount,
            tax=0,
            total=price.amount,
            issued_at=now - timedelta(days=3),
            description="Acme Sync — Pro (monthly)",
            lines=(InvoiceLine("Acme Sync Pro, one month", 1, price.amount, price.amount),),
        )
    )
    return customer.id, subscription.id, invoice.id


@pytest.fixture
def served_shop(load_database: str, tmp_path: Path) -> Iterator[Shop]:
    """The demo shop on PostgreSQL under gunicorn, and the same shop in this
    process to make links and read the database."""
    port = free_port()
    settings = {
        "DATABASE_URL": load_database,
        "SECRET_KEY": secrets.token_hex(32),
        "CUSTOMER_PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
    }
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": settings["DATABASE_URL"],
            "SECRET_KEY": settings["SECRET_KEY"],
            "CUSTOMER_PORTAL_BASE_URL": settings["CUSTOMER_PORTAL_BASE_URL"],
        }
    )
    now = datetime.now(timezone.utc)
    with app.app_context():
        store = get_state(app).storage
        assert isinstance(store, SQLAlchemyStorage)
        load_demo_data(store)
        on_hold = [_add_customer_on_hold(store, n, now) for n in range(ON_HOLD_CUSTOMERS)]

    log = tmp_path / "gunicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAIL_", "CUSTOMER_PORTAL_"))}
    env.update(settings, PYTHONPATH=str(REPO))
    with log.open("w") as output:
        server = subprocess.Popen(  # fixed arguments
            [
                sys.executable, "-m", "gunicorn",
                "--workers", str(WORKERS), "--threads", str(THREADS),
                "--bind", f"127.0.0.1:{port}", "--timeout", "30", "--graceful-timeout", "5",
                "example_app:create_app()",
            ],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_until_serving(port, server, log)
        yield Shop(app=app, port=port, on_hold=on_hold)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
        # The gunicorn log must show no request that failed in a worker.
        problems = [
            line for line in log.read_text().splitlines() if "Exception on" in line or "Traceback" in line
        ]
        assert problems == [], "\n".join(problems[:10])


def _wait_until_serving(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/portal/login/biz_demo")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    pytest.fail(f"gunicorn did not answer within 15 s:\n{log.read_text()[-3000:]}")


# --- the traffic ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """What every request did, from every thread."""

    samples: list[tuple[str, int, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int, seconds: float) -> None:
        with self.lock:
            self.samples.append((kind, status, seconds))

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


class Browser:
    """One visitor: a cookie jar and plain HTTP to 127.0.0.1."""

    def __init__(self, port: int, figures: Figures) -> None:
        self.port = port
        self.figures = figures
        self.cookies: dict[str, str] = {}

    def request(
        self, kind: str, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        headers = {"Accept-Language": "en"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text_body = response.read().decode()
        except OSError as exc:
            self.figures.fail(f"{kind} {method} {path[:60]}: {exc!r}")
            raise
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
        self.figures.add(kind, response.status, elapsed)
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel.value and morsel["expires"] != "Thu, 01 Jan 1970 00:00:00 GMT":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response.status, response.headers.get("Location", ""), text_body

    def open_magic_link(self, path: str) -> None:
        status, _, page = self.request("magic link", "GET", path)
        assert status == 200, status
        status, location, _ = self.request("magic link", "POST", path, {"csrf_token": csrf_token_from(page)})
        assert (status, location) == (303, "/portal/"), (status, location)


def _run(threads: list[threading.Thread], deadline: float) -> None:
    """Start every thread; each stops by itself at ``deadline`` (or when its
    work is done), with 20 seconds of grace for requests in flight."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.1, deadline + 20 - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running: {alive}"


def _guarded(figures: Figures, name: str, work: Any) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except Exception as exc:
            figures.fail(f"{name}: {exc!r}")

    return threading.Thread(target=run, name=name, daemon=True)


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds."""
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)] * 1000


@pytest.mark.postgres
def test_the_shop_under_load(
    served_shop: Shop, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = served_shop
    # Idle first, one request at a time: the baseline the figures under load
    # compare with (and every worker has compiled its templates).
    idle = Figures()
    browser = Browser(shop.port, idle)
    browser.open_magic_link(shop.magic_link("cus_demo_ava"))
    for n in range(15):
        browser.request("idle", "GET", ["/portal/", "/portal/invoices", "/portal/subscriptions"][n % 3])
    idle_p50, _ = _percentiles([seconds for kind, _, seconds in idle.samples if kind == "idle"])

    figures = Figures()
    started = time.monotonic()
    deadline = started + TRAFFIC_SECONDS
    pages = ["/portal/", "/portal/invoices", "/portal/subscriptions"]
    reactivations: list[tuple[int, str]] = []

    def reader(customer_id: str) -> None:
        browser = Browser(shop.port, figures)
        browser.open_magic_link(shop.magic_link(customer_id))
        n = 0
        while time.monotonic() < deadline:
            status, _, _ = browser.request("page", "GET", pages[n % len(pages)])
            assert status == 200, status
            n += 1

    def login_emails(seed: int) -> None:
        browser = Browser(shop.port, figures)
        n = seed
        while time.monotonic() < deadline:
            status, _, page = browser.request("login email", "GET", "/portal/login/biz_demo")
            assert status == 200, status
            email = "ava@example.com" if n % 3 == 0 else f"nobody{n}@example.com"
            form = {"email": email, "csrf_token": csrf_token_from(page)}
            status, _, page = browser.request("login email", "POST", "/portal/login/biz_demo", form)
            assert status == 200 and "on its way" in page, status
            n += 1

    links = [
        shop.magic_link(("cus_demo_ava", "cus_demo_budi", "cus_demo_chen")[n % 3]) for n in range(MAGIC_LINKS)
    ]

    def magic_links() -> None:
        for path in links:
            if time.monotonic() >= deadline:
                return
            browser = Browser(shop.port, figures)
            browser.open_magic_link(path)
            status, _, _ = browser.request("page", "GET", "/portal/")
            assert status == 200, status

    go = threading.Barrier(ON_HOLD_CUSTOMERS * SUBMITS_PER_SUBSCRIPTION, timeout=30)

    def confirm(customer_id: str, subscription_id: str) -> None:
        browser = Browser(shop.port, figures)
        browser.open_magic_link(shop.magic_link(customer_id))
        url = f"/portal/subscriptions/{subscription_id}/payment-method"
        status, _, page = browser.request("reactivation", "GET", url)
        assert status == 200, status
        intent = re.search(r'name="intent" value="(\w+)"', page)
        form = {
            "csrf_token": csrf_token_from(page),
            "intent": intent.group(1) if intent else "",
            "payment_method": "new",
            "card_number": GOOD_CARD,
            "exp_month": "12",
            "exp_year": str(datetime.now(timezone.utc).year + 2),
            "cvc": "123",
        }
        go.wait()  # every browser of every customer presses "Confirm" at once
        status, location, _ = browser.request("reactivation", "POST", url, form)
        with figures.lock:
            reactivations.append((status, location))

    threads = [
        _guarded(figures, f"reader-{c}", lambda c=c: reader(c))
        for c in ("cus_demo_ava", "cus_demo_budi", "cus_demo_chen", "cus_demo_ava")
    ]
    threads += [_guarded(figures, f"login-{n}", lambda n=n: login_emails(n)) for n in range(2)]
    threads.append(_guarded(figures, "magic-links", magic_links))
    threads += [
        _guarded(
            figures, f"confirm-{customer_id}-{n}", lambda c=customer_id, s=subscription_id: confirm(c, s)
        )
        for customer_id, subscription_id, _ in shop.on_hold
        for n in range(SUBMITS_PER_SUBSCRIPTION)
    ]
    _run(threads, deadline)
    elapsed = time.monotonic() - started

    # -- the figures ---------------------------------------------------------------------
    latencies = [seconds for _, _, seconds in figures.samples]
    server_errors = [(kind, status) for kind, status, _ in figures.samples if status >= 500]
    count = len(latencies)
    p50, p95 = _percentiles(latencies)
    by_kind = {
        kind: [seconds for k, _, seconds in figures.samples if k == kind]
        for kind in sorted({kind for kind, _, _ in figures.samples})
    }
    summary = (
        f"load: {count} requests in {elapsed:.1f} s = {count / elapsed:.0f} req/s "
        f"(gunicorn {WORKERS} workers x {THREADS} threads, PostgreSQL, the clients on the same machine); "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms; 5xx {len(server_errors)}, errors {len(figures.failures)}; "
        f"{ON_HOLD_CUSTOMERS} subscriptions reactivated by {len(reactivations)} simultaneous submits; "
        f"one page at a time when idle: p50 {idle_p50:.0f} ms\n      "
        + "; ".join(
            "{} {} (p50 {:.0f} ms, p95 {:.0f} ms)".format(kind, len(values), *_percentiles(values))
            for kind, values in by_kind.items()
        )
    )
    for name, value in (
        ("load_requests", count),
        ("load_requests_per_second", round(count / elapsed, 1)),
        ("load_p50_ms", round(p50, 1)),
        ("load_p95_ms", round(p95, 1)),
        ("idle_p50_ms", round(idle_p50, 1)),
        ("load_5xx", len(server_errors)),
        ("load_errors", len(figures.failures)),
    ):
        record_property(name, value)
    with capsys.disabled():
        print(f"\n{summary}")

    assert figures.failures == [], figures.failures[:10]
    assert server_errors == []
    assert count > 100
    assert len(reactivations) == ON_HOLD_CUSTOMERS * SUBMITS_PER_SUBSCRIPTION
    for status, location in reactivations:
        assert status == 303, status
        assert location.endswith("/reactivated"), location

    # -- exactly one charge per reactivated subscription, by the database ------------------
    with shop.app.app_context():
        store = get_state(shop.app).storage
        for customer_id, subscription_id, invoice_id in shop.on_hold:
            subscription = store.get_subscription(customer_id, subscription_id)
            assert subscription is not None and subscription.status is SubscriptionStatus.ACTIVE
            invoices = store.list_invoices(customer_id, page=1, per_page=100).items
            assert [i.status for i in invoices] == [InvoiceStatus.PAID], invoices
            with store.lock_subscription(customer_id, subscription_id) as lock:
                assert lock is not None
                attempts = lock.attempts(invoice_id)
            succeeded = [a for a in attempts if a.status is ChargeAttemptStatus.SUCCEEDED]
            assert len(succeeded) == 1, attempts
            assert [a.status for a in attempts] == [ChargeAttemptStatus.SUCCEEDED], attempts
