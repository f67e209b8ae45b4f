"""Plan changes over Stripe: Stripe's own proration preview
(``POST /v1/invoices/create_preview`` with ``subscription_details``) and the
change (``POST /v1/subscriptions/{id}`` with ``proration_behavior=always_invoice``,
the preview's ``proration_date`` and an idempotency key).

localstripe's ``create_preview`` takes legacy ``plan`` items only and does
not prorate by date, and its subscription update knows no
``always_invoice``: both are answered here by recorded Stripe-shaped
responses (:class:`RecordedStripe`), which replay a repeated idempotency
key as Stripe does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in
from stripe_support import (
    MONTH,
    NOW,
    RecordedRequest,
    RecordedStripe,
    ScriptedStripe,
    make_stripe_portal_app,
    stripe_client,
)

from flask_customer_portal.billing.provider_plans import provider_plan_changes_supported
from flask_customer_portal.contrib.stripe import StripeBillingStore
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Plan
from flask_customer_portal.testing import csrf_token_from

PRICES = {"price_R": 1500, "price_T": 2500}
PLANS = (
    Plan("price_R", "Team", "Team (per seat)", Money(1500, "EUR"), "year", per_seat=True, max_quantity=10),
    Plan(
        "price_T",
        "Team",
        "Team Plus (per seat)",
        Money(2500, "EUR"),
        "year",
        per_seat=True,
        max_quantity=10,
        position=1,
    ),
)


class StripePlans:
    """An active yearly subscription (2 seats of ``price_R``) whose
    proration preview and update answer as Stripe's do."""

    def __init__(self, scripted: ScriptedStripe) -> None:
        self.scripted = scripted
        scripted.subscription["status"] = "active"
        scripted.invoice.update(status="paid", amount_paid=3570, status_transitions={"paid_at": NOW - 3600})
        item = scripted.subscription["items"]["data"][0]
        item.update(current_period_start=NOW - MONTH, current_period_end=NOW + 11 * MONTH)
        self.extra = 0
        """Added to every amount due Stripe previews (its prices moved)."""
        self.decline = False
        self.charges: list[int] = []
        self._answered: dict[str, tuple[int, dict[str, Any]]] = {}
        server = scripted.server
        server.handle("POST", "/v1/invoices/create_preview", self._preview)
        server.handle("POST", "/v1/subscriptions/sub_R", self._update)

    def figures(self, price: str, quantity: int, proration_date: int) -> tuple[int, int]:
        item = self.scripted.subscription["items"]["data"][0]
        start, end = item["current_period_start"], item["current_period_end"]
        left = (end - proration_date) / (end - start)
        unused = round(item["price"]["unit_amount"] * item["quantity"] * left)
        return unused, round(PRICES[price] * quantity * left) + self.extra

    def _preview(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        p = request.params
        assert p["subscription"] == "sub_R" and p["customer"] == "cus_R"
        assert p["subscription_details[items][0][id]"] == "si_R"
        assert p["subscription_details[proration_behavior]"] == "always_invoice"
        unused, new = self.figures(
            p["subscription_details[items][0][price]"],
            int(p["subscription_details[items][0][quantity]"]),
            int(p["subscription_details[proration_date]"]),
        )
        return 200, {
            "object": "invoice",
            "currency": "eur",
            "amount_due": max(new - unused, 0),
            "lines": {"object": "list", "data": [{"amount": -unused}, {"amount": new}]},
        }

    def _update(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        if "items[0][price]" not in request.params:
            return self.scripted._update_subscription(request)
        key = request.headers.get("idempotency-key", "")
        if key in self._answered:
            return self._answered[key]
        p = request.params
        assert p["proration_behavior"] == "always_invoice"
        assert p["payment_behavior"] == "error_if_incomplete"
        if self.decline:
            answer: tuple[int, dict[str, Any]] = (
                402,
                {
                    "error": {
                        "type": "card_error",
                        "code": "card_declined",
                        "message": "Your card was declined.",
                    }
                },
            )
        else:
            price, quantity = p["items[0][price]"], int(p["items[0][quantity]"])
            unused, new = self.figures(price, quantity, int(p["proration_date"]))
            self.charges.append(max(new - unused, 0))
            item = self.scripted.subscription["items"]["data"][0]
            item["quantity"] = quantity
            item["price"] = dict(item["price"], id=price, unit_amount=PRICES[price], nickname=price)
            answer = (200, self.scripted.subscription)
        self._answered[key] = answer
        return answer

    def updates(self) -> list[RecordedRequest]:
        return [
            r
            for r in self.scripted.server.sent("POST", "/v1/subscriptions/sub_R")
            if "items[0][price]" in r.params
        ]


@contextmanager
def ava_over_recorded_stripe(recorded_stripe: RecordedStripe, tmp_path: Path) -> Iterator[Flask]:
    """A portal over the recorded Stripe with Ava as ``cus_R`` and the plans
    of :data:`PLANS` in its catalogue, closed afterwards."""
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}", stripe_client(recorded_stripe.url), {"ava": "cus_R"}
    )
    with app.app_context():
        for plan in PLANS:
            get_state(app).storage.local.add_plan(plan)  # type: ignore[attr-defined]
    try:
        yield app
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def stripe_plans(recorded_stripe: RecordedStripe) -> StripePlans:
    return StripePlans(ScriptedStripe(recorded_stripe))


@pytest.fixture
def app(recorded_stripe: RecordedStripe, stripe_plans: StripePlans, tmp_path: Path) -> Iterator[Flask]:
    with ava_over_recorded_stripe(recorded_stripe, tmp_path) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, "ava")
    return client


def _preview(client: FlaskClient, plan: str = "price_T", seats: str = "2") -> Any:
    page = client.get("/portal/subscriptions/sub_R/plan")
    assert page.status_code == 200, page.status_code
    return client.post(
        "/portal/subscriptions/sub_R/plan",
        data={"csrf_token": csrf_token_from(page.text), "step": "preview", "plan": plan, "quantity": seats},
    )


def _confirm(client: FlaskClient, preview: Any, plan: str = "price_T", seats: str = "2") -> Any:
    quote = re.search(r'name="quote" value="([^"]+)"', preview.text)
    assert quote is not None
    return client.post(
        "/portal/subscriptions/sub_R/plan",
        data={
            "csrf_token": csrf_token_from(preview.text),
            "step": "confirm",
            "plan": plan,
            "quantity": seats,
            "quote": quote.group(1),
        },
    )


def test_the_store_reads_the_price_as_the_plan_and_previews_with_stripe(
    recorded_stripe: RecordedStripe, stripe_plans: StripePlans
) -> None:
    from datetime import datetime, timezone

    store = StripeBillingStore(stripe_client(recorded_stripe.url))
    sub = store.get_subscription("cus_R", "sub_R")
    assert sub is not None and (sub.plan_id, sub.quantity) == ("price_R", 2)
    at = datetime.fromtimestamp(NOW, tz=timezone.utc)
    preview = store.preview_provider_plan_change("cus_R", "sub_R", plan_id="price_T", quantity=2, at=at)
    unused, new = stripe_plans.figures("price_T", 2, NOW)
    assert preview is not None
    assert (preview.due_now, preview.unused, preview.new_charge) == (
        Money(new - unused, "EUR"),
        Money(unused, "EUR"),
        Money(new, "EUR"),
    )
    assert (preview.from_plan_id, preview.from_quantity) == ("price_R", 2)
    sent = recorded_stripe.sent("POST", "/v1/invoices/create_preview")[-1]
    assert sent.params["subscription_details[proration_date]"] == str(NOW)
    assert not stripe_plans.updates()
    assert (
        store.preview_provider_plan_change("cus_other", "sub_R", plan_id="price_T", quantity=2, at=at) is None
    )


def test_the_change_is_made_once_at_the_previewed_second(
    app: Flask, client: FlaskClient, stripe_plans: StripePlans, recorded_stripe: RecordedStripe
) -> None:
    with app.app_context():
        assert provider_plan_changes_supported(get_state(app))
    assert "/portal/subscriptions/sub_R/plan" in client.get("/portal/subscriptions/sub_R").text
    preview = _preview(client)
    assert preview.status_code == 200
    proration_date = int(
        recorded_stripe.sent("POST", "/v1/invoices/create_preview")[-1].params[
            "subscription_details[proration_date]"
        ]
    )
    unused, new = stripe_plans.figures("price_T", 2, proration_date)
    assert f"€{(new - unused) / 100:,.2f}" in preview.text
    first = _confirm(client, preview)
    again = _confirm(client, preview)
    assert first.status_code == 303 and again.status_code == 303
    updates = stripe_plans.updates()
    assert len(updates) == 1
    assert updates[0].params["proration_date"] == str(proration_date)
    assert updates[0].headers["idempotency-key"].startswith("plan_change:sub_R:")
    assert stripe_plans.charges == [new - unused]


def test_a_preview_stripe_no_longer_gives_is_shown_again(
    client: FlaskClient, stripe_plans: StripePlans
) -> None:
    preview = _preview(client)
    stripe_plans.extra = 700
    answer = _confirm(client, preview)
    assert answer.status_code == 409 and "nothing was charged" in answer.text
    assert not stripe_plans.updates() and not stripe_plans.charges


def test_a_declined_card_leaves_the_plan(client: FlaskClient, stripe_plans: StripePlans) -> None:
    preview = _preview(client)
    stripe_plans.decline = True
    answer = _confirm(client, preview)
    assert answer.status_code == 402
    assert "The payment did not go through, so your plan has not changed." in answer.text
    assert stripe_plans.scripted.subscription["items"]["data"][0]["price"]["id"] == "price_R"
    assert not stripe_plans.charges
