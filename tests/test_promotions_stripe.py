"""Stripe's own promotion codes: looked up with ``GET /v1/promotion_codes``,
previewed (``discounts`` on ``create_preview``) and applied with the plan
change in one update, or on the subscription page alone; Stripe's refusals
answered as an unknown code is.

localstripe has no ``/v1/promotion_codes``: Stripe is answered here by
recorded Stripe-shaped responses (:class:`RecordedStripe`, with the plan
change of ``test_plans_stripe``), which replay a repeated idempotency key
as Stripe does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in
from stripe_support import (
    NOW,
    RecordedRequest,
    RecordedStripe,
    ScriptedStripe,
    stripe_client,
)
from test_plans_stripe import StripePlans, ava_over_recorded_stripe

from flask_customer_portal.billing.provider_plans import plan_change_codes
from flask_customer_portal.contrib.stripe import StripeBillingStore
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import PromotionDuration
from flask_customer_portal.testing import csrf_token_from

INVALID = "This code is not valid. Check it and try again."
SUB_URL = "/portal/subscriptions/sub_R"
PLAN_URL = f"{SUB_URL}/plan"


def _code(
    code: str,
    *,
    percent: float | None = 10.0,
    amount: int | None = None,
    duration: str = "once",
    months: int | None = None,
    customer: str | None = None,
    expires_at: int | None = None,
) -> dict[str, Any]:
    """A promotion code as Stripe lists it (API 2026-10-28), its coupon expanded."""
    return {
        "id": f"promo_{code}",
        "object": "promotion_code",
        "active": True,
        "code": code,
        "created": NOW - 86400,
        "customer": customer,
        "expires_at": expires_at,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "promotion": {
            "type": "coupon",
            "coupon": {
                "id": f"co_{code}",
                "object": "coupon",
                "percent_off": percent,
                "amount_off": amount,
                "currency": "eur" if amount else None,
                "duration": duration,
                "duration_in_months": months,
                "valid": True,
                "redeem_by": None,
            },
        },
        "restrictions": {
            "first_time_transaction": False,
            "minimum_amount": None,
            "minimum_amount_currency": None,
        },
        "times_redeemed": 0,
    }


#: What Stripe answers when one of a code's restrictions is not met.
REFUSAL = (
    400,
    {
        "error": {
            "type": "invalid_request_error",
            "message": "This promotion code cannot be redeemed because the associated customer has "
            "prior transactions.",
            "param": "discounts[0][promotion_code]",
        }
    },
)


class StripeCodes(StripePlans):
    """:class:`StripePlans` with promotion codes: listed by ``code``, taken
    off the preview and the change, and kept as the subscription's discount."""

    def __init__(self, scripted: ScriptedStripe) -> None:
        super().__init__(scripted)
        self.codes = {
            "WELCOME10": _code("WELCOME10"),
            "FIVE": _code("FIVE", percent=None, amount=500),
            "THREE": _code("THREE", percent=12.5, duration="repeating", months=3),
            "BUDIONLY": _code("BUDIONLY", customer="cus_other"),
            "FIRSTONLY": _code("FIRSTONLY"),
        }
        self.refused = {"promo_FIRSTONLY"}
        """Codes Stripe refuses for this customer (a restriction not met)."""
        self.applied: list[str] = []
        server = scripted.server
        server.handle("GET", "/v1/promotion_codes", self._list_codes)
        server.handle("POST", "/v1/invoices/create_preview", self._coded_preview)
        server.handle("POST", "/v1/subscriptions/sub_R", self._coded_update)
        self._plain_preview = super()._preview
        self._plain_update = super()._update

    def _list_codes(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        assert request.params["active"] == "true"
        assert request.params["expand[0]"] == "data.promotion.coupon"
        typed = request.params["code"].upper()
        found = [c for key, c in self.codes.items() if key == typed]
        return 200, {"object": "list", "data": found, "has_more": False, "url": "/v1/promotion_codes"}

    def _off(self, promo: str, amount: int) -> int:
        coupon = next(c for c in self.codes.values() if c["id"] == promo)["promotion"]["coupon"]
        if coupon["percent_off"]:
            return round(amount * coupon["percent_off"] / 100)
        return min(amount, coupon["amount_off"])

    def _coded_preview(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        promo = request.params.get("discounts[0][promotion_code]")
        status, body = self._plain_preview(request)
        if promo is None:
            return status, body
        if promo in self.refused:
            return REFUSAL
        off = self._off(promo, body["amount_due"])
        return 200, dict(
            body,
            amount_due=body["amount_due"] - off,
            total_discount_amounts=[{"amount": off, "discount": f"di_{promo}"}],
        )

    def _coded_update(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        promo = request.params.get("discounts[0][promotion_code]")
        if promo is None:
            return self._plain_update(request)
        if promo in self.refused:
            return REFUSAL
        key = request.headers.get("idempotency-key", "")
        if key in self._answered:
            return self._answered[key]
        if "items[0][price]" in request.params:
            before = len(self.charges)
            status, body = self._plain_update(request)
            if status == 200 and len(self.charges) > before:
                self.charges[-1] -= self._off(promo, self.charges[-1])
        else:
            status, body = 200, self.scripted.subscription
        if status == 200:
            self.applied.append(promo)
            self.scripted.subscription["discounts"] = [f"di_{promo}"]
        self._answered[key] = (status, body)
        return status, body


@pytest.fixture
def stripe_codes(recorded_stripe: RecordedStripe) -> StripeCodes:
    return StripeCodes(ScriptedStripe(recorded_stripe))


@pytest.fixture
def app(recorded_stripe: RecordedStripe, stripe_codes: StripeCodes, tmp_path: Path) -> Iterator[Flask]:
    with ava_over_recorded_stripe(recorded_stripe, tmp_path) as app:
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, "ava")
    return client


def _preview(client: FlaskClient, code: str, plan: str = "price_T") -> Any:
    page = client.get(PLAN_URL)
    assert page.status_code == 200, page.status_code
    return client.post(
        PLAN_URL,
        data={
            "csrf_token": csrf_token_from(page.text),
            "step": "preview",
            "plan": plan,
            "quantity": "2",
            "promotion_code": code,
        },
    )


def _confirm(client: FlaskClient, preview: Any, plan: str = "price_T") -> Any:
    quote = re.search(r'name="quote" value="([^"]+)"', preview.text)
    assert quote is not None, preview.text
    return client.post(
        PLAN_URL,
        data={
            "csrf_token": csrf_token_from(preview.text),
            "step": "confirm",
            "plan": plan,
            "quantity": "2",
            "quote": quote.group(1),
        },
    )


def _error(page: str) -> str:
    return page.split('id="promotion-code-error">')[1].split("<")[0]


# -- the store ---------------------------------------------------------------------------


def test_the_store_finds_stripes_codes_with_their_terms(
    recorded_stripe: RecordedStripe, stripe_codes: StripeCodes
) -> None:
    store = StripeBillingStore(stripe_client(recorded_stripe.url))
    found = store.find_provider_promotion_code("cus_R", " welcome10 ")
    assert found is not None and found.id == "promo_WELCOME10"
    assert (found.code.key, found.code.percent_off, found.code.duration) == (
        "WELCOME10",
        10,
        PromotionDuration.ONCE,
    )
    sent = recorded_stripe.sent("GET", "/v1/promotion_codes")[-1]
    assert sent.params["code"] == "welcome10"
    five = store.find_provider_promotion_code("cus_R", "FIVE")
    assert five is not None and five.code.amount_off == Money(500, "EUR") and five.code.percent_off is None
    three = store.find_provider_promotion_code("cus_R", "three")
    assert three is not None
    assert (three.code.percent_off, three.code.duration, three.code.duration_periods) == (
        12,
        PromotionDuration.REPEATING,
        3,
    )
    # Another customer's code, an unknown one, and text that is not a code (never sent).
    assert store.find_provider_promotion_code("cus_R", "BUDIONLY") is None
    assert store.find_provider_promotion_code("cus_other", "BUDIONLY") is not None
    assert store.find_provider_promotion_code("cus_R", "NOSUCH") is None
    asked = len(recorded_stripe.sent("GET", "/v1/promotion_codes"))
    assert store.find_provider_promotion_code("cus_R", "<script>") is None
    assert len(recorded_stripe.sent("GET", "/v1/promotion_codes")) == asked
    expired = _code("OLD", expires_at=NOW - 60)
    stripe_codes.codes["OLD"] = expired
    old = store.find_provider_promotion_code("cus_R", "OLD")
    assert old is not None and old.code.expires_at == datetime.fromtimestamp(NOW - 60, tz=timezone.utc)


# -- at a plan change --------------------------------------------------------------------


def test_a_code_is_in_stripes_preview_and_in_the_change_once(
    app: Flask, client: FlaskClient, stripe_codes: StripeCodes, recorded_stripe: RecordedStripe
) -> None:
    with app.app_context():
        assert plan_change_codes(get_state(app)) == "provider"
    assert 'name="promotion_code"' in client.get(PLAN_URL).text
    preview = _preview(client, "welcome10")
    assert preview.status_code == 200, preview.text
    sent = recorded_stripe.sent("POST", "/v1/invoices/create_preview")[-1]
    assert sent.params["discounts[0][promotion_code]"] == "promo_WELCOME10"
    unused, new = stripe_codes.figures("price_T", 2, int(sent.params["subscription_details[proration_date]"]))
    off = round((new - unused) * 10 / 100)
    assert "Promotion code WELCOME10" in preview.text
    assert f"€{(new - unused - off) / 100:,.2f}" in preview.text
    first = _confirm(client, preview)
    again = _confirm(client, preview)
    assert first.status_code == 303 and again.status_code == 303
    updates = stripe_codes.updates()
    assert len(updates) == 1
    assert updates[0].params["discounts[0][promotion_code]"] == "promo_WELCOME10"
    assert updates[0].headers["idempotency-key"].startswith("plan_change:sub_R:")
    assert stripe_codes.charges == [new - unused - off]
    assert stripe_codes.applied == ["promo_WELCOME10"]
    with app.app_context():
        events = get_state(app).storage.list_customer_events("ava", page=1, per_page=20).items
    changed = [e for e in events if e.action == "subscription.plan_changed"]
    assert [e.details.get("promotion_code") for e in changed] == ["WELCOME10"]


def test_stripes_refusal_and_unknown_codes_get_one_answer(
    client: FlaskClient, stripe_codes: StripeCodes
) -> None:
    answers = set()
    for code in ("NOSUCH", "BUDIONLY", "FIRSTONLY", "<b>"):
        page = _preview(client, code)
        assert page.status_code == 422, (code, page.status_code)
        answers.add(_error(page.text))
    assert answers == {INVALID}
    assert not stripe_codes.updates() and not stripe_codes.applied


def test_a_code_stripe_refuses_at_the_confirmation_charges_nothing(
    client: FlaskClient, stripe_codes: StripeCodes
) -> None:
    preview = _preview(client, "WELCOME10")
    assert preview.status_code == 200
    stripe_codes.refused.add("promo_WELCOME10")  # used up meanwhile
    answer = _confirm(client, preview)
    assert answer.status_code == 409
    assert "This promotion code has been used in the meantime" in answer.text
    assert not stripe_codes.updates() and not stripe_codes.charges
    assert stripe_codes.scripted.subscription["items"]["data"][0]["price"]["id"] == "price_R"


def test_a_subscription_with_a_discount_at_stripe_keeps_it(
    client: FlaskClient, stripe_codes: StripeCodes
) -> None:
    stripe_codes.scripted.subscription["discounts"] = ["di_retention"]
    page = _preview(client, "WELCOME10")
    assert page.status_code == 422
    assert _error(page.text).startswith("This subscription already has a discount.")


# -- on the subscription page ------------------------------------------------------------


def _apply(client: FlaskClient, code: str) -> Any:
    token = csrf_token_from(client.get(SUB_URL).text)
    return client.post(f"{SUB_URL}/promotion-code", data={"csrf_token": token, "promotion_code": code})


def test_a_code_on_the_subscription_page_is_applied_by_stripe(
    app: Flask, client: FlaskClient, stripe_codes: StripeCodes, recorded_stripe: RecordedStripe
) -> None:
    assert 'name="promotion_code"' in client.get(SUB_URL).text
    done = _apply(client, "five")
    assert done.status_code == 303, done.text
    update = [
        r
        for r in recorded_stripe.sent("POST", "/v1/subscriptions/sub_R")
        if "discounts[0][promotion_code]" in r.params
    ]
    assert [r.params["discounts[0][promotion_code]"] for r in update] == ["promo_FIVE"]
    assert update[0].headers["idempotency-key"] == "promotion_code:sub_R:promo_FIVE"
    assert "Promotion code FIVE added." in client.get(SUB_URL).text
    with app.app_context():
        events = get_state(app).storage.list_customer_events("ava", page=1, per_page=20).items
    assert [e.details["code"] for e in events if e.action == "subscription.promotion_code_applied"] == [
        "FIVE"
    ]
    # A second code: Stripe's discounts would replace the first.
    again = _apply(client, "WELCOME10")
    assert again.status_code == 409 and "This subscription already has a discount." in again.text
    assert stripe_codes.applied == ["promo_FIVE"]


def test_stripes_refusal_on_the_subscription_page_is_the_one_answer(
    client: FlaskClient, stripe_codes: StripeCodes
) -> None:
    for code in ("FIRSTONLY", "NOSUCH", "BUDIONLY"):
        page = _apply(client, code)
        assert page.status_code == 422 and _error(page.text) == INVALID, code
    assert not stripe_codes.applied


def test_an_account_without_promotion_codes_finds_none(recorded_stripe: RecordedStripe) -> None:
    # localstripe answers 404 here: the field's answer is the one answer.
    recorded_stripe.fail(
        "GET", "/v1/promotion_codes", 404, {"type": "invalid_request_error", "message": "nope"}
    )
    store = StripeBillingStore(stripe_client(recorded_stripe.url))
    assert store.find_provider_promotion_code("cus_R", "WELCOME10") is None
