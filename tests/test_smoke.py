"""The smoke suite: a host app mounts the portal and a customer uses it.

A few fast tests through the public API only, standing on their own (no
fixture of ``tests/``, no demo shop), so that ``make deps-bounds`` and
``make dist-check`` can run them against an installed wheel, with the lowest
and the newest dependency versions the package allows and on each Python
version it claims: app factory and tables, sign-in by link and by login email,
dashboard, invoices, PDF and ZIP (templates, translations, static files and
fonts shipped in the wheel), payment method change with the test provider,
phone numbers and tax IDs, signals and the CLI.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from flask_customer_portal import (
    Customer,
    CustomerPortal,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Money,
    PaymentMethod,
    Subscription,
    SubscriptionStatus,
    TestPaymentProvider,
    signals,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

pytestmark = pytest.mark.smoke

CUSTOMER = "cus_smoke"
SUBSCRIPTION = "sub_smoke"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


class Shop:
    def __init__(self, app: Flask, portal: CustomerPortal, storage: SQLAlchemyStorage, mailer: MemoryMailer):
        self.app, self.portal, self.storage, self.mailer = app, portal, storage, mailer

    def signed_in_client(self) -> FlaskClient:
        client = self.app.test_client()
        with self.app.app_context():
            link = self.portal.create_session(CUSTOMER).link
        assert open_link(client, link).status_code == 303
        return client


def create_app(
    database_url: str, mailer: MemoryMailer, **config: Any
) -> tuple[Flask, CustomerPortal, SQLAlchemyStorage]:
    """A host's application factory."""
    app = Flask("smoke_shop")
    app.config.update(
        TESTING=True,
        SECRET_KEY="smoke-test-secret-key-0123456789abcdef0123",
        SQLALCHEMY_DATABASE_URI=database_url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_smoke",
        CUSTOMER_PORTAL_BASE_URL="http://shop.test",
        CUSTOMER_PORTAL_MERCHANT_NAME="Smoke Shop",
        CUSTOMER_PORTAL_PHONE_DEFAULT_REGION="ID",
        **config,
    )
    db = SQLAlchemy(app)
    storage = SQLAlchemyStorage(db)
    portal = CustomerPortal(app, storage=storage, mailer=mailer, payments=TestPaymentProvider())
    return app, portal, storage


def add_records(storage: SQLAlchemyStorage) -> None:
    start = NOW - timedelta(days=10)
    storage.add_customer(
        Customer(
            id=CUSTOMER, email="ava@example.com", name="Ava Smoke", timezone="Asia/Jakarta", created_at=start
        )
    )
    visa = PaymentMethod(
        id="pm_smoke_visa",
        customer_id=CUSTOMER,
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=NOW.year + 3,
        provider_token=TestPaymentProvider.token_for("4242424242424242"),
        created_at=start,
    )
    storage.add_payment_method(visa)
    storage.add_subscription(
        Subscription(
            id=SUBSCRIPTION,
            customer_id=CUSTOMER,
            product_name="Acme Sync",
            plan_name="Pro (monthly)",
            price=Money(1900, "USD"),
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.ACTIVE,
            current_period_start=start,
            current_period_end=start + timedelta(days=30),
            payment_method=visa,
            created_at=start,
        )
    )
    for number in (1, 2):
        issued = start - timedelta(days=30 * (2 - number))
        storage.add_invoice(
            Invoice(
                id=f"inv_smoke_{number}",
                number=storage.next_invoice_number(),
                customer_id=CUSTOMER,
                subscription_id=SUBSCRIPTION,
                status=InvoiceStatus.PAID,
                currency="USD",
                subtotal=1900,
                tax=0,
                total=1900,
                issued_at=issued,
                paid_at=issued + timedelta(minutes=2),
                payment_reference=f"ch_smoke_{number}",
                payment_method=visa,
                description="Acme Sync — Pro (monthly)",
                lines=(InvoiceLine("Acme Sync Pro (monthly) — Ж Ψ", 1, 1900, 1900),),
            )
        )


#: A PostgreSQL database the smoke suite may empty and use (scripts/check_dist.py
#: sets it); without it, SQLite only.
POSTGRES_URL = os.environ.get("CUSTOMER_PORTAL_SMOKE_POSTGRES_URL")


#: A Redis server for the rate limits (scripts/check_dist.py starts one);
#: without it, the Redis test skips.
REDIS_URL = os.environ.get("CUSTOMER_PORTAL_SMOKE_REDIS_URL")


@pytest.fixture(params=["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shop]:
    mailer = MemoryMailer()
    url = f"sqlite:///{tmp_path / 'shop.sqlite3'}" if request.param == "sqlite" else str(POSTGRES_URL)
    app, portal, storage = create_app(url, mailer)
    with app.app_context():
        storage.drop_all()
        storage.create_all()
        add_records(storage)
    yield Shop(app, portal, storage, mailer)
    portal.get_state(app).shutdown()
    with app.app_context():
        storage.drop_all()
        app.extensions["sqlalchemy"].engine.dispose()


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def open_link(client: FlaskClient, link: str) -> Any:
    """GET a sign-in link, then press its button."""
    page = client.get(path_of(link))
    assert page.status_code == 200, page.status_code
    return client.post(path_of(link), data={"csrf_token": csrf_token_from(page.text)})


def post_form(client: FlaskClient, url: str, data: dict[str, str]) -> Any:
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    fields = {"csrf_token": csrf_token_from(page.text)}
    intent = re.search(r'name="intent" value="(\w+)"', page.text)
    if intent:
        fields["intent"] = intent.group(1)
    return client.post(url, data={**fields, **data})


# -- the tests -------------------------------------------------------------------------


def test_a_link_signs_in_to_the_dashboard(shop: Shop) -> None:
    client = shop.signed_in_client()
    dashboard = client.get("/portal/")
    assert dashboard.status_code == 200
    assert "Ava Smoke" in dashboard.text and "Acme Sync" in dashboard.text
    with client.get("/portal/static/portal.css") as stylesheet:
        assert stylesheet.status_code == 200 and b"{" in stylesheet.data


def test_the_login_email_signs_in(shop: Shop) -> None:
    client = shop.app.test_client()
    assert post_form(client, "/portal/login/biz_smoke", {"email": "AVA@example.com"}).status_code == 200
    shop.portal.get_state(shop.app).wait_for_background_tasks()
    [message] = shop.mailer.outbox
    assert message.to == "ava@example.com"
    link = re.search(r"http://shop\.test/portal/login/biz_smoke/[^\s\"<]+", message.text)
    assert link is not None
    assert open_link(client, link.group(0)).status_code == 303
    assert "Ava Smoke" in client.get("/portal/").text


def test_pages_speak_the_customers_language(shop: Shop) -> None:
    client = shop.signed_in_client()
    page = client.get("/portal/invoices/inv_smoke_1", headers={"Accept-Language": "id"})
    assert page.status_code == 200
    assert '<html lang="id"' in page.text
    assert "Unduh PDF" in page.text  # the compiled Indonesian catalogue is installed


def test_invoices_their_pdf_and_the_zip(shop: Shop) -> None:
    from pypdf import PdfReader

    client = shop.signed_in_client()
    listed = client.get("/portal/invoices")
    assert listed.status_code == 200
    assert "inv_smoke_1" in listed.text and "$19.00" in listed.text
    assert client.get("/portal/invoices/inv_smoke_2").status_code == 200

    pdf = client.get("/portal/invoices/inv_smoke_2/pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "Ava Smoke" in text and "Ж Ψ" in text and "$19.00" in text

    archive = client.get("/portal/invoices/export.zip")
    assert archive.status_code == 200
    files = zipfile.ZipFile(io.BytesIO(archive.data))
    assert files.testzip() is None and len(files.namelist()) == 2
    assert all(files.read(name).startswith(b"%PDF-") for name in files.namelist())


def test_changing_the_card_of_a_subscription(shop: Shop) -> None:
    client = shop.signed_in_client()
    received: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    signals.payment_method_changed.connect(record)
    try:
        response = post_form(
            client,
            f"/portal/subscriptions/{SUBSCRIPTION}/payment-method",
            {
                "payment_method": "new",
                "card_number": "5555 5555 5555 4444",
                "exp_month": "12",
                "exp_year": str(NOW.year + 2),
                "cvc": "123",
            },
        )
    finally:
        signals.payment_method_changed.disconnect(record)
    assert response.status_code in (200, 303), response.status_code
    with shop.app.app_context():
        subscription = shop.storage.get_subscription(CUSTOMER, SUBSCRIPTION)
    assert subscription is not None and subscription.payment_method is not None
    assert subscription.payment_method.last4 == "4444"
    assert len(received) == 1


def test_a_phone_number_and_a_tax_id_are_read_and_saved(shop: Shop) -> None:
    client = shop.signed_in_client()
    saved = post_form(
        client,
        "/portal/profile",
        {"name": "Ava Smoke", "email": "ava@example.com", "phone": "0812-3456-7890"},
    )
    assert saved.status_code in (200, 303), saved.status_code
    details = post_form(
        client,
        "/portal/profile/billing",
        {
            "name": "Acme Analytics GmbH",
            "line1": "Friedrichstraße 123",
            "line2": "",
            "city": "Berlin",
            "region": "",
            "postal_code": "10117",
            "country": "DE",
            "tax_id_scheme": "",
            "tax_id": "de 136 695 976",
        },
    )
    assert details.status_code == 303, details.status_code
    with shop.app.app_context():
        customer = shop.storage.get_customer(CUSTOMER)
        billing = shop.storage.get_billing_details(CUSTOMER)
    assert customer is not None and customer.phone == "+6281234567890"
    assert billing is not None and billing.tax_id == "DE136695976"


def test_the_cli_makes_a_sign_in_link(shop: Shop) -> None:
    result = shop.app.test_cli_runner().invoke(args=["portal", "create-session", CUSTOMER])
    assert result.exit_code == 0, result.output
    assert "http://shop.test/portal/session/" in result.output


@pytest.mark.skipif(REDIS_URL is None, reason="no Redis (CUSTOMER_PORTAL_SMOKE_REDIS_URL)")
def test_login_emails_are_counted_in_redis_by_every_app(tmp_path: Path) -> None:
    """Two apps of one shop (two hosts) on one Redis: one allowance."""
    url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    limits = {"CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": REDIS_URL, "CUSTOMER_PORTAL_TRUSTED_PROXIES": 1}
    limits["CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS"] = "2 per hour"
    mailers = [MemoryMailer(), MemoryMailer()]
    hosts = [create_app(url, mailer, **limits) for mailer in mailers]
    first_app, _portal, first_storage = hosts[0]
    with first_app.app_context():
        first_storage.create_all()
        add_records(first_storage)
    for app, portal, _storage in hosts:
        portal.get_state(app).rate_limits.reset()  # counters a former run left
    for n in range(3):
        app, portal, _storage = hosts[n % 2]
        client = app.test_client()
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        page = client.get("/portal/login/biz_smoke", headers=headers)
        data = {"email": "ava@example.com", "csrf_token": csrf_token_from(page.text)}
        assert client.post("/portal/login/biz_smoke", data=data, headers=headers).status_code == 200
        portal.get_state(app).wait_for_background_tasks()
    assert [len(mailer.outbox) for mailer in mailers] == [1, 1]
    for app, portal, _storage in hosts:
        portal.get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
