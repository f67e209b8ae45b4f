"""A plan change made at the payment company whose call errs or times out
(Stripe through recorded responses, Dodo Payments through the real SDK
against the fake Dodo server): never the bare error page, the customer is
told plainly that the change may have been made, and the same confirmation
tried again finishes it with one charge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_dodo import FakeDodo, shared_fake_dodo
from flask import Flask
from flask_babel import force_locale
from portal_fixtures import sign_in
from stripe_support import (
    RecordedRequest,
    RecordedStripe,
    ScriptedStripe,
    make_stripe_portal_app,
    stripe_client,
)
from test_dodo import Scenario, seed
from test_plans_dodo import NAMES, PLANS, PRICES, _app, _changes, _client, _confirm, _plan_payments, _preview
from test_plans_stripe import PLANS as STRIPE_PLANS
from test_plans_stripe import StripePlans
from test_plans_stripe import _confirm as stripe_confirm
from test_plans_stripe import _preview as stripe_preview

from flask_customer_portal.i18n import gettext
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer


@pytest.fixture
def stripe_shop(recorded_stripe: RecordedStripe, tmp_path: Path) -> Iterator[tuple[Flask, StripePlans]]:
    """Ava's yearly Stripe subscription (2 seats) and the plans to change to."""
    plans = StripePlans(ScriptedStripe(recorded_stripe))
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}", stripe_client(recorded_stripe.url), {"ava": "cus_R"}
    )
    with app.app_context():
        for plan in STRIPE_PLANS:
            get_state(app).storage.local.add_plan(plan)  # type: ignore[attr-defined]
    yield app, plans
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def dodo_shop(tmp_path: Path) -> Iterator[tuple[Flask, FakeDodo, Scenario]]:
    """Ava's Dodo subscription, and a portal over the fake Dodo server."""
    fake = shared_fake_dodo()
    fake.product_prices.update(PRICES)
    fake.product_names.update(NAMES)
    scenario = seed(fake)
    app, db, local = _app(tmp_path / "portal.db", fake, "dodo_plan_faults")
    with app.app_context():
        local.create_all()
        local.add_customer(Customer(id="cus_demo_ava", email="ava@example.com", name="Ava Tan", locale="en"))
        for plan in PLANS:
            local.add_plan(plan)
    yield app, fake, scenario
    get_state(app).shutdown()
    with app.app_context():
        db.engine.dispose()


UNCONFIRMED = "did not answer in time, so we cannot tell yet whether your plan changed"
NOT_TWICE = "You will not be charged twice"


@pytest.mark.parametrize("made", [True, False], ids=["made", "not_made"])
def test_a_stripe_update_that_errs_is_told_plainly_and_finished_once(
    recorded_stripe: RecordedStripe, stripe_shop: tuple[Flask, StripePlans], made: bool
) -> None:
    stripe_app, stripe_plans = stripe_shop
    stripe_app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: no test-client re-raise
    client = stripe_app.test_client()
    sign_in(stripe_app, client, "ava")
    failing = [True]

    def lossy(request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        if "items[0][price]" in request.params and failing:
            failing.clear()
            if made:
                stripe_plans._update(request)  # made and charged; the answer is lost
            return 500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}
        return stripe_plans._update(request)

    recorded_stripe.handle("POST", "/v1/subscriptions/sub_R", lossy)
    preview = stripe_preview(client)
    assert preview.status_code == 200
    failed = stripe_confirm(client, preview)
    assert failed.status_code == 503, failed.status_code
    assert UNCONFIRMED in failed.text and NOT_TWICE in failed.text
    assert 'name="quote"' in failed.text  # the same confirmation, to try again
    again = stripe_confirm(client, preview)
    assert again.status_code == 303, again.status_code
    assert len(stripe_plans.charges) == 1
    assert stripe_plans.scripted.subscription["items"]["data"][0]["price"]["id"] == "price_T"


@pytest.mark.parametrize("failure", [500, 503, "timeout"])
def test_a_dodo_change_plan_call_that_fails_is_told_plainly_and_finished_once(
    dodo_shop: tuple[Flask, FakeDodo, Scenario], failure: Any
) -> None:
    app, fake, scenario = dodo_shop
    client = _client(app)
    preview = _preview(client, scenario.ava_sub)
    assert preview.status_code == 200
    fake.fail("POST", rf"/subscriptions/{scenario.ava_sub}/change-plan", failure)
    failed = _confirm(client, scenario.ava_sub, preview)
    assert failed.status_code == 503, failed.status_code
    assert UNCONFIRMED in failed.text and NOT_TWICE in failed.text
    again = _confirm(client, scenario.ava_sub, preview)
    assert again.status_code == 303, again.status_code
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_pro_plus"
    assert len(_plan_payments(fake, scenario.ava_sub)) == 1


def test_a_dodo_preview_that_fails_at_the_confirmation_says_nothing_was_charged(
    dodo_shop: tuple[Flask, FakeDodo, Scenario],
) -> None:
    app, fake, scenario = dodo_shop
    client = _client(app)
    preview = _preview(client, scenario.ava_sub)
    fake.fail("POST", rf"/subscriptions/{scenario.ava_sub}/change-plan/preview", 500)
    failed = _confirm(client, scenario.ava_sub, preview)
    assert failed.status_code == 503
    assert "Nothing was charged" in failed.text
    assert not _changes(fake, scenario.ava_sub)


def test_the_unconfirmed_change_is_told_in_indonesian(dodo_shop: tuple[Flask, FakeDodo, Scenario]) -> None:
    app = dodo_shop[0]
    english = (
        "The payment company did not answer in time, so we cannot tell yet whether your plan changed. "
        "You will not be charged twice: confirm again to finish the change, or check your subscription "
        "in a few minutes."
    )
    with app.test_request_context(), force_locale("id"):
        assert gettext(english).startswith("Perusahaan pembayaran tidak menjawab tepat waktu")
