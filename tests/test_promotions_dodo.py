"""Dodo's discount codes at a plan change: looked up at Dodo
(``GET /discounts/code/{code}``), sent with the preview and the change
(``discount_codes``), checked and counted by Dodo (the fake checks them as
Dodo does: started, not expired, not used up, for the new product), under
the portal's lock and the change's idempotency key. Dodo adds a discount
only with a plan change, so the subscription page has no code field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import test_plans_dodo
from fake_dodo import FakeDodo
from flask import Flask
from flask.testing import FlaskClient
from test_dodo import Scenario, _audit_actions
from test_plans_dodo import _changes, _client, _confirm, _dodo_due, _plan_payments, confirm_on_both_at_once
from test_promotions_stripe import INVALID

from flask_customer_portal.billing.promotions import FOREVER_RENEWALS
from flask_customer_portal.billing.provider_plans import plan_change_codes
from flask_customer_portal.billing.provider_promotions import (
    provider_codes_supported,
    provider_plan_change_codes_supported,
)
from flask_customer_portal.billing.subscription_codes import subscription_codes_supported
from flask_customer_portal.capabilities import (
    ProviderPromotionCodeRefused,
    TakesProviderPlanChangeCodes,
    TakesProviderPromotionCodes,
    capabilities_of,
)
from flask_customer_portal.contrib.dodo import DodoBilling
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import PromotionDuration
from flask_customer_portal.testing import csrf_token_from

# The plan-change tests' fixtures: two portal instances over one database
# and the fake Dodo, seeded with Ava and Budi and the three plans.
fake = test_plans_dodo.fake
scenario = test_plans_dodo.scenario
apps = test_plans_dodo.apps
app = test_plans_dodo.app


@pytest.fixture
def codes(fake: FakeDodo) -> dict[str, str]:
    """WELCOME10: 10 % off for three cycles. FIVE: $5 off once. LITEONLY: for
    the Lite product only. OLD: expired. GONE: used up. LATER: not started.
    NEWBIES: for first purchases."""
    return {
        "WELCOME10": fake.add_discount("WELCOME10", amount=1000, subscription_cycles=3),
        "FIVE": fake.add_discount("five", amount=500, type="flat", subscription_cycles=1, usage_limit=100),
        "LITEONLY": fake.add_discount("LITEONLY", amount=2000, restricted_to=("pdt_lite",)),
        "OLD": fake.add_discount("OLD", amount=1000, expires_at=fake.now - timedelta(days=1)),
        "GONE": fake.add_discount("GONE", amount=1000, usage_limit=2, times_used=2),
        "LATER": fake.add_discount("LATER", amount=1000, starts_at=fake.now + timedelta(days=3)),
        "NEWBIES": fake.add_discount("NEWBIES", amount=1000, customer_eligibility="first_time"),
    }


def _sub_url(scenario: Scenario) -> str:
    return f"/portal/subscriptions/{scenario.ava_sub}"


def _preview(client: FlaskClient, sub: str, code: str, plan: str = "pdt_pro_plus") -> Any:
    return test_plans_dodo._preview(client, sub, plan, code=code)


def _error(page: str) -> str:
    return page.split('id="promotion-code-error">')[1].split("<")[0]


def _coded_due(fake: FakeDodo, sub: str, code: str, plan: str = "pdt_pro_plus") -> int:
    """What the fake (as Dodo) says the change costs now with ``code``."""
    body = fake._plan_preview(
        fake.subscriptions[sub], {"product_id": plan, "quantity": 1, "discount_codes": [code]}
    )
    return int(body["immediate_charge"]["summary"]["total_amount"])


# -- the store ---------------------------------------------------------------------------


def test_the_store_finds_dodos_codes_with_their_terms(fake: FakeDodo, codes: dict[str, str]) -> None:
    billing = DodoBilling(fake.client())
    assert isinstance(billing, TakesProviderPlanChangeCodes)
    assert not isinstance(billing, TakesProviderPromotionCodes)
    found = billing.find_provider_promotion_code("cus_dodo_ava", " welcome10 ")
    assert found is not None and found.id == "WELCOME10"
    assert found.code.percent_off == 10 and found.code.active
    assert (found.code.duration, found.code.duration_periods) == (PromotionDuration.REPEATING, 3)
    five = billing.find_provider_promotion_code("cus_dodo_ava", "Five")
    assert five is not None and five.code.amount_off == Money(500, "USD")
    assert five.code.duration == PromotionDuration.ONCE and five.code.max_redemptions == 100
    lite = billing.find_provider_promotion_code("cus_dodo_ava", "LITEONLY")
    assert lite is not None and lite.code.plan_ids == frozenset({"pdt_lite"})
    assert lite.code.duration == PromotionDuration.FOREVER
    old = billing.find_provider_promotion_code("cus_dodo_ava", "OLD")
    assert old is not None and old.code.expires_at is not None and old.code.expires_at < fake.now
    for inactive in ("GONE", "LATER"):
        record = billing.find_provider_promotion_code("cus_dodo_ava", inactive)
        assert record is not None and not record.code.active, inactive
    for none in ("NEWBIES", "NOSUCH", "<b>", "x", "A" * 17):
        assert billing.find_provider_promotion_code("cus_dodo_ava", none) is None, none


def test_the_store_previews_with_the_code_and_refuses_what_dodo_refuses(
    fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    billing = DodoBilling(fake.client())
    sub = scenario.ava_sub
    plain, coded = _dodo_due(fake, sub), _coded_due(fake, sub, "WELCOME10")
    assert 0 < coded < plain
    preview = billing.preview_provider_plan_change_with_code(
        "cus_dodo_ava", sub, plan_id="pdt_pro_plus", quantity=1, at=fake.now, promotion_code_id="WELCOME10"
    )
    assert preview is not None
    assert preview.due_now == Money(coded, "USD")
    assert preview.discount == Money(plain - coded, "USD")
    assert preview.new_charge.amount - preview.unused.amount - preview.discount.amount == coded
    assert preview.from_plan_id == "pdt_pro"
    sent = fake.calls("POST", f"/subscriptions/{sub}/change-plan/preview")[-1]
    assert sent[3]["discount_codes"] == ["WELCOME10"] and "discount_code" not in sent[3]
    with pytest.raises(ProviderPromotionCodeRefused):
        billing.preview_provider_plan_change_with_code(
            "cus_dodo_ava", sub, plan_id="pdt_pro_plus", quantity=1, at=fake.now, promotion_code_id="LITEONLY"
        )
    # Another customer's subscription is not found.
    assert (
        billing.preview_provider_plan_change_with_code(
            "cus_dodo_budi", sub, plan_id="pdt_pro_plus", quantity=1, at=fake.now, promotion_code_id="FIVE"
        )
        is None
    )
    assert not _changes(fake, sub)


# -- at a plan change --------------------------------------------------------------------


def test_the_code_field_is_at_the_plan_change_only(app: Flask, scenario: Scenario) -> None:
    with app.app_context():
        state = get_state(app)
        features = capabilities_of(state.storage)
        assert features.provider_plan_change_codes and not features.provider_promotion_codes
        assert provider_plan_change_codes_supported(state) and not provider_codes_supported(state)
        assert plan_change_codes(state) == "provider"
        assert not subscription_codes_supported(state)
    client = _client(app)
    assert 'name="promotion_code"' in client.get(f"{_sub_url(scenario)}/plan").text
    page = client.get(_sub_url(scenario))
    assert page.status_code == 200 and 'name="promotion_code"' not in page.text
    token = csrf_token_from(page.text)
    posted = client.post(
        f"{_sub_url(scenario)}/promotion-code", data={"csrf_token": token, "promotion_code": "WELCOME10"}
    )
    assert posted.status_code in (404, 405, 409)


def test_a_code_is_in_dodos_preview_and_in_the_change_once(
    app: Flask, fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    sub = scenario.ava_sub
    client = _client(app)
    plain, coded = _dodo_due(fake, sub), _coded_due(fake, sub, "WELCOME10")
    preview = _preview(client, sub, "welcome10")
    assert preview.status_code == 200, preview.text
    assert "Promotion code WELCOME10" in preview.text
    assert f"${coded / 100:.2f}" in preview.text
    assert f"${(plain - coded) / 100:.2f}" in preview.text
    assert not _changes(fake, sub), "a preview changes nothing"
    first = _confirm(client, sub, preview)
    again = _confirm(client, sub, preview)
    assert first.status_code == 303 and again.status_code == 303
    changes = _changes(fake, sub)
    assert len(changes) == 1
    assert changes[0][3]["discount_codes"] == ["WELCOME10"]
    assert changes[0][3]["on_payment_failure"] == "prevent_change"
    keys = [k for path, k in fake.idempotency_keys if path == f"/subscriptions/{sub}/change-plan"]
    assert len(keys) == 1 and keys[0].startswith(f"plan_change:{sub}:")
    assert [p["total_amount"] for p in _plan_payments(fake, sub)] == [coded]
    assert fake.discounts[codes["WELCOME10"]]["times_used"] == 1
    held = fake.subscriptions[sub]
    assert held["product_id"] == "pdt_pro_plus"
    assert [d["code"] for d in held["discounts"]] == ["WELCOME10"]
    # The change's charge was the code's first cycle: two renewals are left,
    # as the preview said, and the subscription page shows them.
    assert held["discounts"][0]["cycles_remaining"] == 2
    assert "also takes 10% off 2 more renewals" in preview.text
    page = client.get(first.headers["Location"]).text
    assert "10% off your next 2 renewals" in page
    assert "$26.10" in page
    with app.app_context():
        events = get_state(app).storage.list_customer_events("cus_demo_ava", page=1, per_page=20).items
    changed = [e for e in events if e.action == "subscription.plan_changed"]
    assert [e.details.get("promotion_code") for e in changed] == ["WELCOME10"]
    assert changed[0].details["amount_due"] == str(coded)


def test_dodos_refusals_and_unknown_codes_get_one_answer(
    app: Flask, fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    client = _client(app)
    answers = set()
    for code in ("NOSUCH", "OLD", "GONE", "LATER", "NEWBIES", "LITEONLY", "<b>"):
        page = _preview(client, scenario.ava_sub, code)
        assert page.status_code == 422, (code, page.status_code)
        answers.add(_error(page.text))
    assert answers == {INVALID}
    assert not _changes(fake, scenario.ava_sub) and not _plan_payments(fake, scenario.ava_sub)
    assert all(d["times_used"] == (2 if d["code"] == "GONE" else 0) for d in fake.discounts.values())


def test_a_code_dodo_refuses_at_the_confirmation_charges_nothing(
    app: Flask, fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    client = _client(app)
    preview = _preview(client, scenario.ava_sub, "WELCOME10")
    assert preview.status_code == 200
    # The merchant limits the code to another product meanwhile: Dodo refuses it.
    fake.discounts[codes["WELCOME10"]]["restricted_to"] = ["pdt_lite"]
    answer = _confirm(client, scenario.ava_sub, preview)
    assert answer.status_code == 409
    assert "This promotion code has been used in the meantime" in answer.text
    assert not _changes(fake, scenario.ava_sub) and not _plan_payments(fake, scenario.ava_sub)
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_pro"
    assert fake.discounts[codes["WELCOME10"]]["times_used"] == 0


def test_a_code_used_up_before_the_confirmation_is_the_one_answer(
    app: Flask, fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    client = _client(app)
    preview = _preview(client, scenario.ava_sub, "FIVE")
    assert preview.status_code == 200
    fake.discounts[codes["FIVE"]]["times_used"] = 100
    answer = _confirm(client, scenario.ava_sub, preview)
    assert answer.status_code == 409 and INVALID in answer.text
    assert not _changes(fake, scenario.ava_sub) and not _plan_payments(fake, scenario.ava_sub)


def test_a_failed_payment_keeps_the_plan_and_the_code_unused(
    app: Flask, fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    client = _client(app)
    preview = _preview(client, scenario.ava_sub, "WELCOME10")
    fake.arrears_outcome = "failed"
    answer = _confirm(client, scenario.ava_sub, preview)
    assert answer.status_code == 402
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_pro"
    assert fake.discounts[codes["WELCOME10"]]["times_used"] == 0
    assert not fake.subscriptions[scenario.ava_sub].get("discounts")
    with app.app_context():
        assert "subscription.plan_change_failed" in _audit_actions(app, "cus_demo_ava")


def test_a_subscription_with_a_discount_at_dodo_keeps_it(
    app: Flask, fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    held = fake.subscriptions[scenario.ava_sub]
    held["discount_id"] = codes["FIVE"]
    page = _preview(_client(app), scenario.ava_sub, "WELCOME10")
    assert page.status_code == 422
    assert _error(page.text).startswith("This subscription already has a discount.")
    assert not _changes(fake, scenario.ava_sub)


def test_concurrent_confirmations_with_a_code_make_one_change(
    apps: tuple[Flask, Flask], fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    """Two hosts, two previews with the code (two change ids, two keys),
    confirmed at once while Dodo is slow: one change, one charge, one use."""
    sub = scenario.ava_sub
    assert sorted(confirm_on_both_at_once(apps, fake, sub, "WELCOME10")) == [303, 303]
    assert len(_changes(fake, sub)) == 1
    assert len(_plan_payments(fake, sub)) == 1
    assert fake.discounts[codes["WELCOME10"]]["times_used"] == 1


def test_a_percentage_code_without_an_end_is_on_every_renewal(
    fake: FakeDodo, scenario: Scenario, codes: dict[str, str]
) -> None:
    fake.add_discount("ALWAYS20", amount=2000)
    billing = DodoBilling(fake.client())
    made = billing.make_provider_plan_change_with_code(
        "cus_dodo_ava",
        scenario.ava_sub,
        plan_id="pdt_pro_plus",
        quantity=1,
        at=fake.now,
        idempotency_key="plan_change:key-always",
        promotion_code_id="ALWAYS20",
    )
    assert made is not None and made.discount is not None and made.discount.amount > 0
    changed = billing.get_subscription("cus_dodo_ava", scenario.ava_sub)
    assert changed is not None
    assert (changed.discount_percent, changed.discount_renewals) == (20, FOREVER_RENEWALS)
    # A flat code is left to Dodo's invoices: the record names no percent.
    fake.subscriptions[scenario.ava_sub]["discounts"][0].update(type="flat", amount=500)
    flat = billing.get_subscription("cus_dodo_ava", scenario.ava_sub)
    assert flat is not None and (flat.discount_percent, flat.discount_renewals) == (0, 0)
