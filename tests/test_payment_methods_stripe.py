"""The customer's default payment method at Stripe
(``invoice_settings.default_payment_method``), against localstripe: the
store, and the payment-methods page over the composite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from portal_fixtures import open_link
from stripe_support import StripeScenario, make_stripe_portal_app, seed_stripe

from flask_customer_portal.contrib.stripe import StripeBillingStore
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import csrf_token_from

pytestmark = pytest.mark.slow


@pytest.fixture
def scenario(localstripe: stripe.StripeClient) -> StripeScenario:
    return seed_stripe(localstripe)


def _default_at_stripe(client: stripe.StripeClient, customer_id: str) -> str | None:
    settings = client.v1.customers.retrieve(customer_id).invoice_settings
    return None if settings is None else settings.default_payment_method  # type: ignore[return-value]


def _attach_mastercard(client: stripe.StripeClient, customer_id: str) -> str:
    made = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        }
    )
    return str(client.v1.payment_methods.attach(made.id, params={"customer": customer_id}).id)


def test_the_store_reads_and_sets_the_customers_default(
    localstripe: stripe.StripeClient, scenario: StripeScenario
) -> None:
    store = StripeBillingStore(localstripe)
    methods = store.list_payment_methods(scenario.customer_id)
    assert [m.id for m in methods if m.is_default] == [scenario.card_id]
    visa = store.get_payment_method(scenario.customer_id, scenario.card_id)
    assert visa is not None and visa.is_default

    mastercard = _attach_mastercard(localstripe, scenario.customer_id)
    made = store.set_default_payment_method(scenario.customer_id, mastercard)
    assert made is not None and made.id == mastercard and made.is_default
    assert _default_at_stripe(localstripe, scenario.customer_id) == mastercard
    assert [m.id for m in store.list_payment_methods(scenario.customer_id) if m.is_default] == [mastercard]
    old = store.get_payment_method(scenario.customer_id, scenario.card_id)
    assert old is not None and not old.is_default
    # A subscription without a method of its own is charged to the customer's default.
    active = store.get_subscription(scenario.customer_id, scenario.active_subscription_id)
    assert active is not None and active.payment_method is not None
    assert active.payment_method.id == mastercard


def test_another_customers_card_is_never_made_the_default(
    localstripe: stripe.StripeClient, scenario: StripeScenario
) -> None:
    store = StripeBillingStore(localstripe)
    assert store.set_default_payment_method(scenario.customer_id, scenario.other_card_id) is None
    assert store.set_default_payment_method(scenario.customer_id, "pm_doesnotexist") is None
    assert store.set_default_payment_method(scenario.customer_id, "not-a-pm") is None
    assert _default_at_stripe(localstripe, scenario.customer_id) == scenario.card_id
    assert _default_at_stripe(localstripe, scenario.other_customer_id) == scenario.other_card_id


def test_listing_subscriptions_reads_the_default_once(
    localstripe: stripe.StripeClient, scenario: StripeScenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StripeBillingStore(localstripe)
    retrieved: list[str] = []
    original = localstripe.v1.customers.retrieve

    def counting(customer_id: str, *args: Any, **kwargs: Any) -> Any:
        retrieved.append(customer_id)
        return original(customer_id, *args, **kwargs)

    monkeypatch.setattr(localstripe.v1.customers, "retrieve", counting)
    subscriptions = store.list_subscriptions(scenario.customer_id)
    assert len(subscriptions) >= 2
    assert retrieved == [scenario.customer_id]


@pytest.fixture
def stripe_app(localstripe: stripe.StripeClient, scenario: StripeScenario, tmp_path: Path) -> Iterator[Flask]:
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        localstripe,
        {"ava": scenario.customer_id, "budi": scenario.other_customer_id},
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _sign_in(app: Flask, customer_id: str = "ava") -> Any:
    client = app.test_client()
    with app.app_context():
        link = app.extensions["customer_portal"].create_session(customer_id).link
    assert open_link(client, link).status_code == 303
    return client


def test_the_page_over_stripe_makes_a_card_the_default(
    stripe_app: Flask, localstripe: stripe.StripeClient, scenario: StripeScenario
) -> None:
    mastercard = _attach_mastercard(localstripe, scenario.customer_id)
    client = _sign_in(stripe_app)
    page = client.get("/portal/payment-methods")
    assert page.status_code == 200
    assert 'data-publishable-key="pk_test_portal"' in page.text  # a new card goes through Stripe Elements
    assert 'name="card_number"' not in page.text
    assert f'action="/portal/payment-methods/{mastercard}/default"' in page.text
    assert f'action="/portal/payment-methods/{scenario.card_id}/default"' not in page.text  # already it

    token = csrf_token_from(page.text)
    assert (
        client.post(
            f"/portal/payment-methods/{scenario.other_card_id}/default", data={"csrf_token": token}
        ).status_code
        == 404
    )
    response = client.post(f"/portal/payment-methods/{mastercard}/default", data={"csrf_token": token})
    assert response.status_code == 303
    assert _default_at_stripe(localstripe, scenario.customer_id) == mastercard
    # (localstripe names every test card's brand "visa")
    assert "•••• 4444 is now your default card." in client.get("/portal/payment-methods").text
    with stripe_app.app_context():
        events = get_state(stripe_app).storage.local.list_events("ava")  # type: ignore[attr-defined]
    assert [(e.action, e.subject_id) for e in events if e.action.startswith("payment_method.")] == [
        ("payment_method.default_changed", mastercard)
    ]


def test_a_card_from_stripe_elements_is_added_on_the_page(
    stripe_app: Flask, localstripe: stripe.StripeClient, scenario: StripeScenario
) -> None:
    client = _sign_in(stripe_app)
    page = client.get("/portal/payment-methods")
    # What Stripe Elements makes in the browser, posted as the page's form does.
    made = localstripe.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        }
    )
    response = client.post(
        "/portal/payment-methods",
        data={"csrf_token": csrf_token_from(page.text), "payment_method": "new", "payment_token": made.id},
    )
    assert response.status_code == 303
    listed = StripeBillingStore(localstripe).list_payment_methods(scenario.customer_id)
    assert made.id in [m.id for m in listed]
    # Raw card numbers never reach this server with Stripe.
    raw = client.post(
        "/portal/payment-methods",
        data={
            "csrf_token": csrf_token_from(page.text),
            "payment_method": "new",
            "card_number": "4242424242424242",
        },
    )
    assert raw.status_code == 400
