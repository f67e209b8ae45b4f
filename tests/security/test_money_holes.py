"""Money holes of issue 15: a retried decline that claimed success, plan
changes left unconfirmed for ever, quotes that did not hold their amount,
arrears without discounts, provider amounts taken on trust, a payment
without an explicit intent and an amount due that did not match the charge.

Each test is named after the item it covers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import open_link
from security_support import AVA

from flask_customer_portal import signals
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.extension import get_state
from flask_customer_portal.payments import DeclineReason, TestPaymentProvider
from flask_customer_portal.storage import InvoiceStatus, PaymentMethod, Subscription
from flask_customer_portal.testing import csrf_token_from

AVA_SUB = "sub_demo_ava_sync"
PLAN_URL = f"/portal/subscriptions/{AVA_SUB}/plan"
PRO = "plan_sync_pro_monthly"
BUSINESS = "plan_sync_business_monthly"
RETURN_URL = "http://shop.test/account?tab=billing"


def _store(app: Flask) -> SQLAlchemyStorage:
    store = get_state(app).storage
    assert isinstance(store, SQLAlchemyStorage)
    return store


def _subscription(app: Flask, customer_id: str = AVA, subscription_id: str = AVA_SUB) -> Subscription:
    with app.app_context():
        found = _store(app).get_subscription(customer_id, subscription_id)
    assert found is not None
    return found


def _invoices(app: Flask, customer_id: str = AVA) -> list[Any]:
    with app.app_context():
        return list(_store(app).list_invoices(customer_id, page=1, per_page=10_000).items)


def _events(app: Flask, customer_id: str = AVA) -> list[str]:
    with app.app_context():
        return [e.action for e in _store(app).list_events(customer_id)]


def _preview(client: FlaskClient, plan: str, quantity: str = "") -> Any:
    token = csrf_token_from(client.get(PLAN_URL).text)
    return client.post(
        PLAN_URL, data={"csrf_token": token, "step": "preview", "plan": plan, "quantity": quantity}
    )


def _confirm_form(page: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page))
    assert fields["step"] == "confirm"
    return fields


def _card(app: Flask, customer_id: str, method_id: str, *, declines: DeclineReason | None = None) -> None:
    """Save a card for the customer and charge their subscription to it."""
    number = "4000000000009995" if declines else "4242424242424242"
    with app.app_context():
        store = _store(app)
        store.add_payment_method(
            PaymentMethod(
                id=method_id,
                customer_id=customer_id,
                brand="visa",
                last4=number[-4:],
                exp_month=12,
                exp_year=datetime.now(timezone.utc).year + 3,
                provider_token=TestPaymentProvider.token_for(number, charges_decline=declines),
            )
        )


def _collect(signal: Any) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def listener(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    signal.connect(listener)
    try:
        yield received
    finally:
        signal.disconnect(listener)


@pytest.fixture
def plan_changed() -> Iterator[list[dict[str, Any]]]:
    yield from _collect(signals.plan_changed)


# --- item 1: a declined plan change, retried, says it was declined ------------------------------


def test_item1_declined_plan_change_retried_says_declined(
    shop: Flask, payments: TestPaymentProvider, plan_changed: list[dict[str, Any]]
) -> None:
    # Ava arrives through a deep link that returns to the shop once the plan is changed.
    client = shop.test_client()
    with shop.app_context():
        link = (
            get_state(shop)
            .portal.create_session(AVA, flow="plan_change", subscription_id=AVA_SUB, return_url=RETURN_URL)
            .link
        )
    assert open_link(client, link).status_code == 303
    _card(shop, AVA, "pm_ava_broke", declines=DeclineReason.INSUFFICIENT_FUNDS)
    with shop.app_context():
        _store(shop).set_subscription_payment_method(AVA, AVA_SUB, "pm_ava_broke")
    before = _subscription(shop)

    form = _confirm_form(_preview(client, BUSINESS).text)
    first = client.post(PLAN_URL, data=form)
    assert first.status_code == 402
    assert "insufficient funds" in first.text

    # A double click, or the back button and the same confirmation again.
    for _ in range(2):
        again = client.post(PLAN_URL, data=form)
        assert again.status_code == 402, again.status_code
        assert "Location" not in again.headers
        assert "The payment did not go through, so your plan has not changed." in again.text
        assert "insufficient funds" in again.text
        assert "You are now on" not in again.text
    page = client.get(f"/portal/subscriptions/{AVA_SUB}").text
    assert "You are now on" not in page and "We charged" not in page
    assert payments.charges == []
    assert _subscription(shop) == before
    assert [i.status for i in _invoices(shop) if i.id.startswith("in_pc_")] == [InvoiceStatus.VOID]
    assert plan_changed == []
    assert "subscription.plan_changed" not in _events(shop)


def test_item1_a_paid_change_confirmed_again_is_done_already(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    """The other side of item 1: a paid change, confirmed again, is done once."""
    form = _confirm_form(_preview(ava, BUSINESS).text)
    assert ava.post(PLAN_URL, data=form).status_code == 303
    again = ava.post(PLAN_URL, data=form)
    assert again.status_code == 303
    assert len(payments.charges) == 1
    assert _subscription(shop).plan_id == BUSINESS


def test_item1_a_declined_change_can_be_tried_again_with_a_fresh_preview(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    _card(shop, AVA, "pm_ava_broke", declines=DeclineReason.GENERIC)
    with shop.app_context():
        _store(shop).set_subscription_payment_method(AVA, AVA_SUB, "pm_ava_broke")
    declined = ava.post(PLAN_URL, data=_confirm_form(_preview(ava, BUSINESS).text))
    assert declined.status_code == 402
    # The customer gives the subscription a working card, then confirms the new preview.
    _card(shop, AVA, "pm_ava_good")
    with shop.app_context():
        _store(shop).set_subscription_payment_method(AVA, AVA_SUB, "pm_ava_good")
    retried = ava.post(PLAN_URL, data=_confirm_form(declined.text))
    assert retried.status_code == 303
    assert len(payments.charges) == 1
    assert _subscription(shop).plan_id == BUSINESS
