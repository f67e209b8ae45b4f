"""A Stripe subscription's discount on its page: the record's
``discount_percent`` and ``discount_renewals`` read from the subscription
object (legacy ``discount``, ``discounts`` expanded, the coupon in
``source.coupon``), and "Next invoice" taking it off.

localstripe keeps no discounts: Stripe is answered by the recorded
responses of ``test_promotions_stripe``, which expand a subscription's
``discounts`` only when the request asks for it, as Stripe does."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in
from stripe_support import NOW, RecordedRequest, RecordedStripe, ScriptedStripe, make_stripe_portal_app
from test_plans_stripe import PLANS
from test_promotions_stripe import SUB_URL, StripeCodes, _apply

from flask_customer_portal.billing.promotions import FOREVER_RENEWALS
from flask_customer_portal.contrib.stripe._discounts import subscription_discount, subscription_expansions
from flask_customer_portal.state import get_state

#: The expansion the SDK's own API version (Clover and later) asks for.
EXPANSION = "discounts.source.coupon"


def _coupon(
    percent: float | None = 10.0, *, duration: str = "once", months: int | None = None
) -> dict[str, Any]:
    return {
        "id": f"co_{percent}_{duration}",
        "object": "coupon",
        "percent_off": percent,
        "amount_off": None if percent else 500,
        "currency": None if percent else "eur",
        "duration": duration,
        "duration_in_months": months,
        "valid": True,
    }


def _discount(coupon: dict[str, Any], *, end: int | None = None, inline: bool = False) -> dict[str, Any]:
    """A discount as Stripe gives it: the coupon in ``source`` (Clover) or inline (earlier)."""
    found: dict[str, Any] = {
        "id": f"di_{coupon['id']}",
        "object": "discount",
        "start": NOW - 3600,
        "end": end,
        "promotion_code": None,
        "subscription": "sub_R",
    }
    if inline:
        found["coupon"] = coupon
    else:
        found["source"] = {"type": "coupon", "coupon": coupon}
    return found


PERIOD_END = datetime(2027, 1, 15, tzinfo=timezone.utc)


def _read(data: dict[str, Any], interval: str = "month") -> dict[str, int]:
    percent, renewals = subscription_discount(
        data, period_end=PERIOD_END, interval=interval, interval_count=1
    )
    return {"discount_percent": percent, "discount_renewals": renewals} if renewals else {}


def _at(moment: datetime) -> int:
    return int(moment.timestamp())


# -- reading the subscription object -----------------------------------------------------


def test_each_api_versions_shape_of_a_discount_is_read() -> None:
    once = _coupon(10.0)
    assert _read({"discount": _discount(once, inline=True), "discounts": ["di_x"]}) == {
        "discount_percent": 10,
        "discount_renewals": 1,
    }
    assert _read({"discounts": [_discount(once, inline=True)]})["discount_percent"] == 10
    assert _read({"discounts": [_discount(once)]})["discount_percent"] == 10
    # Ids only (not expanded), a coupon left as an id, no discount: nothing to show.
    assert _read({"discounts": ["di_x"]}) == {}
    assert _read({"discounts": [{"id": "di_x", "source": {"type": "coupon", "coupon": "co_x"}}]}) == {}
    assert _read({"discount": None, "discounts": []}) == {}


def test_a_coupons_duration_is_the_renewals_it_takes_off() -> None:
    forever = _read({"discounts": [_discount(_coupon(25.0, duration="forever"))]})
    assert forever == {"discount_percent": 25, "discount_renewals": FOREVER_RENEWALS}
    # Three months from mid-period: the renewals on 15 Jan, Feb and Mar fall
    # before its end on 20 Mar; 15 Apr does not.
    end = _at(datetime(2027, 3, 20, tzinfo=timezone.utc))
    three = {"discounts": [_discount(_coupon(20.0, duration="repeating", months=3), end=end)]}
    assert _read(three) == {"discount_percent": 20, "discount_renewals": 3}
    # A discount that ends before the renewal (a yearly plan's) takes nothing off it.
    ended = {
        "discounts": [_discount(_coupon(20.0, duration="repeating", months=3), end=_at(PERIOD_END) - 60)]
    }
    assert _read(ended, "year") == {}
    assert _read(three, "year")["discount_renewals"] == 1
    two_years = {
        "discounts": [
            _discount(_coupon(20.0, duration="repeating", months=24), end=_at(PERIOD_END) + 400 * 86400)
        ]
    }
    assert _read(two_years, "year")["discount_renewals"] == 2
    # Fractions are whole percents; an amount off is left to Stripe's invoice.
    assert _read({"discounts": [_discount(_coupon(12.5))]})["discount_percent"] == 12
    assert _read({"discounts": [_discount(_coupon(None))]}) == {}
    # Several discounts: the first with a percent off.
    both = {"discounts": [_discount(_coupon(None)), _discount(_coupon(30.0))]}
    assert _read(both)["discount_percent"] == 30


def test_the_expansion_follows_the_clients_api_version() -> None:
    def client(version: str) -> stripe.StripeClient:
        return stripe.StripeClient("sk_test_portal", stripe_version=version)

    assert subscription_expansions(client("2024-06-20")) == []
    assert subscription_expansions(client("2025-03-31.basil"), prefix="data.") == ["data.discounts"]
    assert subscription_expansions(client("2025-09-30.clover")) == [EXPANSION]
    assert subscription_expansions(stripe.StripeClient("sk_test_portal"), prefix="data.") == [
        f"data.{EXPANSION}"
    ]


# -- on the subscription page ------------------------------------------------------------


class DiscountedStripe(StripeCodes):
    """:class:`StripeCodes` whose subscription reads expand its discounts
    when asked (``expand[]=…discounts.source.coupon``), as Stripe does."""

    def __init__(self, scripted: ScriptedStripe) -> None:
        super().__init__(scripted)
        self.discounts: dict[str, dict[str, Any]] = {
            f"di_{code['id']}": _discount(code["promotion"]["coupon"]) for code in self.codes.values()
        }
        server = scripted.server
        server.handle(
            "GET", "/v1/subscriptions/sub_R", lambda r: (200, self._expanded(r, scripted.subscription))
        )
        server.handle("GET", "/v1/subscriptions", self._list)
        coded = self._coded_update
        server.handle("POST", "/v1/subscriptions/sub_R", lambda r: self._expand_answer(r, coded(r)))

    def _expanded(self, request: RecordedRequest, subscription: dict[str, Any]) -> dict[str, Any]:
        asked = {v for k, v in request.params.items() if k.startswith("expand[")}
        if not asked & {EXPANSION, f"data.{EXPANSION}"}:
            return subscription
        shown = copy.deepcopy(subscription)
        shown["discounts"] = [
            self.discounts.get(d, d) if isinstance(d, str) else d for d in shown.get("discounts") or []
        ]
        return shown

    def _list(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        subscription = self._expanded(request, self.scripted.subscription)
        return 200, {"object": "list", "data": [subscription], "has_more": False, "url": "/v1/subscriptions"}

    def _expand_answer(
        self, request: RecordedRequest, answer: tuple[int, dict[str, Any]]
    ) -> tuple[int, dict[str, Any]]:
        status, body = answer
        return status, self._expanded(request, body) if status == 200 else body


@pytest.fixture
def stripe_discounts(recorded_stripe: RecordedStripe) -> DiscountedStripe:
    return DiscountedStripe(ScriptedStripe(recorded_stripe))


@pytest.fixture
def app(
    recorded_stripe: RecordedStripe, stripe_discounts: DiscountedStripe, tmp_path: Path
) -> Iterator[Flask]:
    from stripe_support import stripe_client

    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}", stripe_client(recorded_stripe.url), {"ava": "cus_R"}
    )
    with app.app_context():
        for plan in PLANS:
            get_state(app).storage.local.add_plan(plan)  # type: ignore[attr-defined]
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, "ava")
    return client


def _next_invoice(page: str) -> str:
    return page.split('id="next-invoice-title"')[1].split("</section>")[0]


def test_a_code_applied_over_stripe_shows_and_is_taken_off_the_next_invoice(
    client: FlaskClient, stripe_discounts: DiscountedStripe, recorded_stripe: RecordedStripe
) -> None:
    before = client.get(SUB_URL).text
    assert "€30.00" in _next_invoice(before) and "off your next renewal" not in before
    reads_before = len(recorded_stripe.requests)
    client.get(SUB_URL)
    per_page = len(recorded_stripe.requests) - reads_before
    assert _apply(client, "WELCOME10").status_code == 303
    update = [
        r
        for r in recorded_stripe.sent("POST", "/v1/subscriptions/sub_R")
        if "discounts[0][promotion_code]" in r.params
    ]
    assert update[-1].params["expand[0]"] == EXPANSION
    reads_before = len(recorded_stripe.requests)
    page = client.get(SUB_URL).text
    # The discount is read with the subscription: no request of its own.
    assert len(recorded_stripe.requests) - reads_before == per_page
    listed = recorded_stripe.sent("GET", "/v1/subscriptions")[-1]
    assert f"data.{EXPANSION}" in listed.params.values()
    shown = _next_invoice(page)
    # 2 seats at €15.00 a year, 10% off the next renewal.
    assert "10% off your next renewal" in shown
    assert "\u2212€3.00" in shown and "you will be charged €27.00" in shown
    # The page no longer offers a second code.
    assert 'name="promotion_code"' not in page


def test_a_merchants_coupon_on_the_subscription_shows(
    client: FlaskClient, stripe_discounts: DiscountedStripe
) -> None:
    item = stripe_discounts.scripted.subscription["items"]["data"][0]
    renewal = datetime.fromtimestamp(item["current_period_end"], tz=timezone.utc)
    # 25% for two years from now: this renewal and the next take it off.
    end = renewal + timedelta(days=400)
    coupon = _discount(_coupon(25.0, duration="repeating", months=24), end=_at(end))
    stripe_discounts.discounts[coupon["id"]] = coupon
    stripe_discounts.scripted.subscription["discounts"] = [coupon["id"]]
    shown = _next_invoice(client.get(SUB_URL).text)
    assert "25% off your next 2 renewals" in shown
    assert "\u2212€7.50" in shown and "you will be charged €22.50" in shown


def test_an_amount_off_leaves_the_next_invoice_to_stripe(
    client: FlaskClient, stripe_discounts: DiscountedStripe
) -> None:
    coupon = _discount(_coupon(None, duration="forever"))
    stripe_discounts.discounts[coupon["id"]] = coupon
    stripe_discounts.scripted.subscription["discounts"] = [coupon["id"]]
    page = client.get(SUB_URL).text
    assert "off your next" not in page
