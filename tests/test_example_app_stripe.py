"""The demo shop on Stripe (``PORTAL_BACKEND=stripe``), against localstripe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from portal_fixtures import open_link
from stripe_support import WEBHOOK_SECRET

from example_app import create_app, storage
from flask_customer_portal.contrib.composite import CompositeStorage
from flask_customer_portal.contrib.stripe import StripeBillingStore, StripePaymentProvider
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}",
        "PORTAL_BACKEND": "stripe",
        "STRIPE_SECRET_KEY": "sk_test_shop",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_shop",
        **extra,
    }


@pytest.fixture
def shop(tmp_path: Path, localstripe_url: str, localstripe: stripe.StripeClient) -> Iterator[Flask]:
    app = create_app(_config(tmp_path, STRIPE_API_BASE=localstripe_url, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET))
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_the_shop_reads_billing_from_stripe(
    shop: Flask, localstripe: stripe.StripeClient, localstripe_url: str
) -> None:
    state = get_state(shop)
    assert isinstance(state.storage, CompositeStorage)
    assert isinstance(state.storage.billing, StripeBillingStore)
    assert isinstance(state.payments, StripePaymentProvider)
    assert state.payments.js_url == f"{localstripe_url}/js.stripe.com/v3/"

    customer = localstripe.v1.customers.create(params={"email": "ava@example.com", "name": "Ava"})
    card = localstripe.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    localstripe.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    product = localstripe.v1.products.create(params={"name": "Pro"})
    plan = localstripe.v1.plans.create(
        params={"amount": 1999, "currency": "usd", "interval": "month", "product": product.id}
    )
    sub = localstripe.v1.subscriptions.create(params={"customer": customer.id, "items": [{"plan": plan.id}]})
    with shop.app_context():
        storage().add_customer(Customer(customer.id, "ava@example.com", "Ava"))
        link = shop.extensions["customer_portal"].create_session(customer.id).link
    client = shop.test_client()
    assert open_link(client, link).status_code == 303
    page = client.get("/portal/subscriptions")
    assert page.status_code == 200 and "Pro" in page.text
    payment = client.get(f"/portal/subscriptions/{sub.id}/payment-method")
    assert payment.status_code == 200
    assert f'<script src="{localstripe_url}/js.stripe.com/v3/" defer></script>' in payment.text
    assert f"script-src 'self' {localstripe_url}" in payment.headers["Content-Security-Policy"]


def test_the_webhook_route_checks_signatures(shop: Flask) -> None:
    response = shop.test_client().post(
        "/webhooks/stripe", data="{}", headers={"Stripe-Signature": "t=1,v1=0"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("missing", ["STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY"])
def test_keys_are_required(tmp_path: Path, missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(missing, raising=False)
    with pytest.raises(ConfigurationError) as raised:
        create_app(_config(tmp_path, **{missing: ""}))
    assert raised.value.key == missing


def test_without_a_webhook_secret_there_is_no_webhook_route(
    tmp_path: Path, localstripe_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    app = create_app(_config(tmp_path, STRIPE_API_BASE=localstripe_url))
    try:
        assert app.test_client().post("/webhooks/stripe", data="{}").status_code == 404
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def test_the_shop_keeps_stripe_reads_in_redis_when_told(
    tmp_path: Path, localstripe_url: str, localstripe: stripe.StripeClient, redis_url: str
) -> None:
    from flask_caching import Cache

    app = create_app(
        _config(
            tmp_path,
            STRIPE_API_BASE=localstripe_url,
            STRIPE_CACHE_REDIS_URL=redis_url,
            CUSTOMER_PORTAL_STRIPE_CACHE_SECONDS=30,
        )
    )
    try:
        billing = get_state(app).storage.billing  # type: ignore[attr-defined]
        cache = billing._reads.shared
        assert isinstance(cache, Cache)
        with app.app_context():
            assert cache.set("probe", {"a": 1}, timeout=5)
            assert cache.get("probe") == {"a": 1}
            keys = list(cache.cache._write_client.scan_iter("example_app.portal:probe"))  # type: ignore[attr-defined]
            cache.delete("probe")
        assert keys == [b"example_app.portal:probe"]
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def test_a_cache_url_that_is_not_redis_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        create_app(_config(tmp_path, STRIPE_CACHE_REDIS_URL="memcached://127.0.0.1:11211"))
    assert raised.value.key == "STRIPE_CACHE_REDIS_URL"
