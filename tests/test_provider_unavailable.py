"""A payment company that does not answer a page's read: the customer gets
the portal's page, HTTP 503 with ``Retry-After`` and a plain sentence, and
the log names the failure's class, never what the company said. A refusal
of what the portal asked stays a 500 (the portal's own bug), and a form's
POST keeps its own handling.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe
from fake_dodo import FakeDodo, shared_fake_dodo
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import BASE_URL, SECRET, sign_in
from stripe_calls_support import counting_client, make_counted_portal, signed_in
from test_dodo import IDS, Scenario, seed

from flask_customer_portal import CustomerPortal, ProviderUnavailable
from flask_customer_portal.contrib.composite import MappingCustomerIds
from flask_customer_portal.contrib.dodo import (
    DodoBilling,
    DodoCompositeStorage,
    DodoPaymentProvider,
    DodoReadUnavailable,
    DodoUnavailable,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.contrib.stripe import StripeBillingStore
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer
from flask_customer_portal.testing import MemoryMailer

#: What a company's error may repeat of the request; it must reach neither the page nor the log.
LEAK = "pm_secret_4242 sent by ava@example.com"

STRIPE_SENTENCE = "Stripe did not answer. Nothing was changed. Please try again in a minute."
DODO_SENTENCE = "Dodo Payments did not answer. Nothing was changed. Please try again in a minute."


def _assert_unavailable_page(response: Any, sentence: str) -> None:
    assert response.status_code == 503, response.status_code
    assert response.headers["Retry-After"] == str(ProviderUnavailable.RETRY_AFTER)
    assert 'class="panel narrow error-page"' in response.text
    assert sentence in response.text
    assert 'href="/portal/"' in response.text  # the way back
    assert LEAK not in response.text


def _assert_logged_once_by_class(caplog: pytest.LogCaptureFixture, provider: str, name: str) -> None:
    lines = [r for r in caplog.records if r.name == "flask_customer_portal"]
    assert LEAK not in caplog.text
    unanswered = [r for r in lines if f"{provider} did not answer a read" in r.getMessage()]
    assert len(unanswered) == 1, [r.getMessage() for r in lines]
    assert unanswered[0].levelno == logging.WARNING
    assert name in unanswered[0].getMessage()
    assert not [r for r in lines if r.levelno >= logging.ERROR]


# -- Stripe ----------------------------------------------------------------------------------


class AnsweringAll:
    """A Stripe-like server answering every request with one status and error."""

    def __init__(self, status: int, error_type: str, *, delay: float = 0.0) -> None:
        body = json.dumps({"error": {"type": error_type, "message": f"Failed for {LEAK}"}}).encode()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer  # noqa: N815  (http.server's names)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


STRIPE_PAGES = (
    "/portal/",
    "/portal/invoices",
    "/portal/invoices/in_1Abc",
    "/portal/invoices/in_1Abc/pdf",
    "/portal/subscriptions",
    "/portal/subscriptions/sub_1Abc",
    "/portal/payment-methods",
)


def _stripe_portal(tmp_path: Path, url: str, *, timeout: float | None = None) -> Flask:
    if timeout is None:
        client, _http = counting_client(url)
    else:
        client = stripe.StripeClient(
            "sk_test_portal",
            base_addresses={"api": url, "files": url, "connect": url},
            http_client=stripe.RequestsClient(timeout=timeout),
            max_network_retries=0,
        )
    app = make_counted_portal(f"sqlite:///{tmp_path / 'portal.db'}", client, {"ava": "cus_Ava"})
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


@pytest.fixture
def stripe_down(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    """A portal over a Stripe that is unreachable, too slow, or answers 5xx or 429,
    and the class of the SDK's error."""
    kind = request.param
    if kind == "closed port":
        yield _stripe_portal(tmp_path, f"http://127.0.0.1:{_closed_port()}"), "APIConnectionError"
        return
    if kind == "timeout":
        hanging = AnsweringAll(200, "api_error", delay=1.0)
        try:
            yield _stripe_portal(tmp_path, hanging.url, timeout=0.2), "APIConnectionError"
        finally:
            hanging.close()
        return
    status, error_type, name = {
        "503": (503, "api_error", "APIError"),
        "500": (500, "api_error", "APIError"),
        "429": (429, "rate_limit_error", "RateLimitError"),
    }[kind]
    server = AnsweringAll(status, error_type)
    try:
        yield _stripe_portal(tmp_path, server.url), name
    finally:
        server.close()


@pytest.mark.parametrize("stripe_down", ["closed port", "timeout", "503", "500", "429"], indirect=True)
@pytest.mark.parametrize("path", STRIPE_PAGES)
def test_every_page_over_a_silent_stripe_is_a_503(
    stripe_down: tuple[Flask, str], path: str, caplog: pytest.LogCaptureFixture
) -> None:
    app, error_name = stripe_down
    browser = signed_in(app)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="flask_customer_portal"):
        response = browser.get(path)
    _assert_unavailable_page(response, STRIPE_SENTENCE)
    _assert_logged_once_by_class(caplog, "Stripe", error_name)


def test_the_page_is_in_the_customers_language(tmp_path: Path) -> None:
    app = _stripe_portal(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    browser = signed_in(app)
    response = browser.get("/portal/invoices", headers={"Accept-Language": "id"})
    assert response.status_code == 503
    assert '<html lang="id"' in response.text
    assert "Stripe tidak merespons. Tidak ada yang diubah." in response.text


def test_a_refusal_of_what_the_portal_asked_stays_a_500(tmp_path: Path) -> None:
    server = AnsweringAll(400, "invalid_request_error")
    try:
        app = _stripe_portal(tmp_path, server.url)
        browser = signed_in(app)
        for path in ("/portal/subscriptions", "/portal/invoices"):
            assert browser.get(path).status_code == 500
    finally:
        server.close()


def test_the_store_raises_the_sdks_error_outside_a_page(tmp_path: Path) -> None:
    """Outside a GET (a form's POST, the CLI, a worker) the caller's own
    handling sees Stripe's error as it was."""
    client, _http = counting_client(f"http://127.0.0.1:{_closed_port()}")
    store = StripeBillingStore(client)
    with pytest.raises(stripe.APIConnectionError):
        store.list_subscriptions("cus_Ava")
    app = Flask("post_read")
    posted = app.test_request_context("/portal/invoices/in_1Abc/pay", method="POST")
    with posted, pytest.raises(stripe.APIConnectionError):
        store.get_invoice("cus_Ava", "in_1Abc")
    with app.test_request_context("/portal/invoices/in_1Abc"), pytest.raises(ProviderUnavailable) as raised:
        store.get_invoice("cus_Ava", "in_1Abc")
    assert raised.value.provider == "Stripe"
    assert isinstance(raised.value.__cause__, stripe.APIConnectionError)


# -- Dodo Payments ---------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeDodo:
    return shared_fake_dodo()


@pytest.fixture
def scenario(fake: FakeDodo) -> Scenario:
    return seed(fake)


def _dodo_portal(tmp_path: Path, fake: FakeDodo, *, timeout: float) -> Flask:
    app = Flask("dodo_unavailable_app")
    app.config.update(
        TESTING=True,
        PROPAGATE_EXCEPTIONS=False,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'portal.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
    )
    db = SQLAlchemy()
    db.init_app(app)
    local = SQLAlchemyStorage(db)
    billing = DodoBilling(fake.client(timeout=timeout))
    CustomerPortal(
        app,
        storage=DodoCompositeStorage(local, billing=billing, customer_ids=MappingCustomerIds.from_dict(IDS)),
        payments=DodoPaymentProvider(billing),
        mailer=MemoryMailer(),
    )
    with app.app_context():
        local.create_all()
        local.add_customer(Customer(id="cus_demo_ava", email="ava@example.com", name="Ava Tan", locale="en"))
    return app


@pytest.fixture
def dodo_client(
    request: pytest.FixtureRequest, tmp_path: Path, fake: FakeDodo, scenario: Scenario
) -> Iterator[tuple[FlaskClient, Scenario]]:
    # A short timeout only where the test waits for one: on a busy machine
    # an ordinary answer may take longer than the timeout case needs.
    failure = getattr(request, "param", "timeout")
    app = _dodo_portal(tmp_path, fake, timeout=0.3 if failure == "timeout" else 5.0)
    client = app.test_client()
    sign_in(app, client, "cus_demo_ava")
    yield client, scenario
    get_state(app).shutdown()


def _dodo_pages(scenario: Scenario) -> list[str]:
    return [
        "/portal/",
        "/portal/invoices",
        f"/portal/invoices/{scenario.ava_paid[0]}",
        f"/portal/invoices/{scenario.ava_paid[0]}/pdf",
        "/portal/subscriptions",
        f"/portal/subscriptions/{scenario.ava_sub}",
        "/portal/payment-methods",
        "/portal/license-keys",
    ]


@pytest.mark.parametrize(
    ("failure", "name", "dodo_client"),
    [(500, "HTTP 500", 500), (503, "HTTP 503", 503), ("timeout", "APITimeoutError", "timeout")],
    indirect=["dodo_client"],
)
def test_every_page_over_a_silent_dodo_is_a_503(
    dodo_client: tuple[FlaskClient, Scenario],
    fake: FakeDodo,
    failure: int | str,
    name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, scenario = dodo_client
    for path in _dodo_pages(scenario):
        assert client.get(path).status_code == 200, path
        fake.fail("GET", ".*", failure, times=1)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="flask_customer_portal"):
            response = client.get(path)
        _assert_unavailable_page(response, DODO_SENTENCE)
        lines = [r for r in caplog.records if r.name == "flask_customer_portal"]
        assert [r.levelno for r in lines] == [logging.WARNING], (path, [r.getMessage() for r in lines])
        assert name in lines[0].getMessage()
        assert LEAK not in caplog.text
        fake.failures.clear()


def test_a_dodo_read_error_is_still_dodo_unavailable(fake: FakeDodo, scenario: Scenario) -> None:
    billing = DodoBilling(fake.client())
    app = Flask("dodo_read")
    fake.fail("GET", "/subscriptions", 502)
    with app.test_request_context("/portal/subscriptions"), pytest.raises(DodoReadUnavailable) as raised:
        billing.list_subscriptions("cus_dodo_ava")
    assert isinstance(raised.value, DodoUnavailable) and raised.value.provider == "Dodo Payments"
    # A refused key is the merchant's to fix: the page does not blame Dodo's silence.
    wrong = DodoBilling(fake.client(api_key="dodo_wrong"))
    with app.test_request_context("/portal/subscriptions"), pytest.raises(DodoUnavailable) as refused:
        wrong.list_subscriptions("cus_dodo_ava")
    assert not isinstance(refused.value, ProviderUnavailable)
