"""Plan changes over Dodo Payments: the preview is Dodo's own
(``POST /subscriptions/{id}/change-plan/preview``), the change is Dodo's
(``POST /subscriptions/{id}/change-plan``), made once under the portal's
lock, through the real ``dodopayments`` SDK against the fake Dodo server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_dodo import FakeDodo, shared_fake_dodo
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import BASE_URL, SECRET, sign_in
from test_dodo import IDS, Scenario, _audit_actions, seed

from flask_customer_portal import CustomerPortal, signals
from flask_customer_portal.billing.provider_plans import provider_plan_changes_supported
from flask_customer_portal.capabilities import ChangesPlansAtProvider, capabilities_of
from flask_customer_portal.contrib.composite import MappingCustomerIds
from flask_customer_portal.contrib.dodo import DodoBilling, DodoCompositeStorage, DodoPaymentProvider
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer, Plan
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

PRICES = {"pdt_pro": 1900, "pdt_pro_plus": 2900, "pdt_lite": 900}
#: Dodo sells each plan as a product of its own, with its own name.
NAMES = {"pdt_pro": "Pro", "pdt_pro_plus": "Pro Plus", "pdt_lite": "Lite"}
PLANS = (
    Plan("pdt_lite", "Pro", "Lite", Money(900, "USD"), "month", position=0),
    Plan("pdt_pro", "Pro", "Pro", Money(1900, "USD"), "month", position=1),
    Plan("pdt_pro_plus", "Pro", "Pro Plus", Money(2900, "USD"), "month", position=2),
)


@pytest.fixture
def fake() -> FakeDodo:
    fake = shared_fake_dodo()
    fake.product_prices.update(PRICES)
    fake.product_names.update(NAMES)
    return fake


@pytest.fixture
def scenario(fake: FakeDodo) -> Scenario:
    return seed(fake)


def _app(db_path: Path, fake: FakeDodo, name: str) -> tuple[Flask, SQLAlchemy, SQLAlchemyStorage]:
    app = Flask(name)
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_path}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
    )
    db = SQLAlchemy()
    db.init_app(app)
    local = SQLAlchemyStorage(db)
    billing = DodoBilling(fake.client())
    CustomerPortal(
        app,
        storage=DodoCompositeStorage(local, billing=billing, customer_ids=MappingCustomerIds.from_dict(IDS)),
        payments=DodoPaymentProvider(billing),
        mailer=MemoryMailer(),
    )
    return app, db, local


@pytest.fixture
def apps(tmp_path: Path, fake: FakeDodo, scenario: Scenario) -> Iterator[tuple[Flask, Flask]]:
    """Two portal instances (two apps, as two hosts would run) over one
    database and one Dodo account."""
    db_path = tmp_path / "portal.db"
    made = [_app(db_path, fake, "dodo_plans_a"), _app(db_path, fake, "dodo_plans_b")]
    app, _db, local = made[0]
    with app.app_context():
        local.create_all()
        for customer_id, name in (("cus_demo_ava", "Ava Tan"), ("cus_demo_budi", "Budi Santoso")):
            email = customer_id.removeprefix("cus_demo_") + "@example.com"
            local.add_customer(Customer(id=customer_id, email=email, name=name, locale="en"))
        for plan in PLANS:
            local.add_plan(plan)
    yield made[0][0], made[1][0]
    for each, db, _local in made:
        get_state(each).shutdown()
        with each.app_context():
            db.engine.dispose()


@pytest.fixture
def app(apps: tuple[Flask, Flask]) -> Flask:
    return apps[0]


def _client(app: Flask, customer_id: str = "cus_demo_ava") -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def _changes(fake: FakeDodo, sub: str) -> list[Any]:
    return fake.calls("POST", f"/subscriptions/{sub}/change-plan")


def _plan_payments(fake: FakeDodo, sub: str) -> list[dict[str, Any]]:
    """Payments the fake took for plan changes (the seed's are 1900 each)."""
    return [p for p in fake.payments.values() if p["subscription_id"] == sub and p["total_amount"] != 1900]


def _preview(client: FlaskClient, sub: str, plan: str = "pdt_pro_plus", *, code: str = "") -> Any:
    page = client.get(f"/portal/subscriptions/{sub}/plan")
    assert page.status_code == 200, page.status_code
    data = {"csrf_token": csrf_token_from(page.text), "step": "preview", "plan": plan, "quantity": "1"}
    if code:
        data["promotion_code"] = code
    return client.post(f"/portal/subscriptions/{sub}/plan", data=data)


def _confirm(client: FlaskClient, sub: str, preview: Any, plan: str = "pdt_pro_plus") -> Any:
    quote = re.search(r'name="quote" value="([^"]+)"', preview.text)
    assert quote is not None, preview.text
    return client.post(
        f"/portal/subscriptions/{sub}/plan",
        data={
            "csrf_token": csrf_token_from(preview.text),
            "step": "confirm",
            "plan": plan,
            "quantity": "1",
            "quote": quote.group(1),
        },
    )


def _dodo_due(fake: FakeDodo, sub: str, plan: str = "pdt_pro_plus") -> int:
    """What the fake (as Dodo) says the change costs now."""
    body = fake._plan_preview(fake.subscriptions[sub], {"product_id": plan, "quantity": 1})
    return int(body["immediate_charge"]["summary"]["total_amount"])


def test_the_store_previews_and_changes_with_dodos_figures(fake: FakeDodo, scenario: Scenario) -> None:
    billing = DodoBilling(fake.client())
    assert isinstance(billing, ChangesPlansAtProvider)
    due = _dodo_due(fake, scenario.ava_sub)
    assert due > 0
    preview = billing.preview_provider_plan_change(
        "cus_dodo_ava", scenario.ava_sub, plan_id="pdt_pro_plus", quantity=1, at=fake.now
    )
    assert preview is not None
    assert preview.due_now == Money(due, "USD")
    assert preview.new_charge.amount - preview.unused.amount == due
    assert not _changes(fake, scenario.ava_sub), "a preview changes nothing"
    made = billing.make_provider_plan_change(
        "cus_dodo_ava",
        scenario.ava_sub,
        plan_id="pdt_pro_plus",
        quantity=1,
        at=fake.now,
        idempotency_key="plan_change:key-0001",
    )
    assert made == preview
    sent = _changes(fake, scenario.ava_sub)
    assert len(sent) == 1 and sent[0][3]["on_payment_failure"] == "prevent_change"
    assert sent[0][3]["proration_billing_mode"] == "prorated_immediately"
    assert (f"/subscriptions/{scenario.ava_sub}/change-plan", "plan_change:key-0001") in fake.idempotency_keys
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_pro_plus"
    assert [p["total_amount"] for p in _plan_payments(fake, scenario.ava_sub)] == [due]
    # Another customer's subscription is not found, and nothing is asked of Dodo for it.
    assert (
        billing.preview_provider_plan_change(
            "cus_dodo_budi", scenario.ava_sub, plan_id="pdt_pro", quantity=1, at=fake.now
        )
        is None
    )


def test_the_plan_page_is_offered_over_dodo_with_dodos_preview(
    app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    with app.app_context():
        state = get_state(app)
        assert capabilities_of(state.storage).provider_plan_change
        assert provider_plan_changes_supported(state)
    client = _client(app)
    path = f"/portal/subscriptions/{scenario.ava_sub}"
    assert f"{path}/plan" in client.get(path).text
    choose = client.get(f"{path}/plan")
    assert choose.status_code == 200 and "Pro Plus" in choose.text
    due = _dodo_due(fake, scenario.ava_sub)
    preview = _preview(client, scenario.ava_sub)
    assert preview.status_code == 200
    assert f"${due / 100:.2f}" in preview.text
    assert fake.calls("POST", f"/subscriptions/{scenario.ava_sub}/change-plan/preview")
    assert not _changes(fake, scenario.ava_sub)


def test_confirming_changes_the_plan_once_and_a_double_submit_charges_nothing_more(
    app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    seen: list[Any] = []

    def received(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs["subscription"].plan_id)

    client = _client(app)
    due = _dodo_due(fake, scenario.ava_sub)
    preview = _preview(client, scenario.ava_sub)
    with signals.plan_changed.connected_to(received, app):
        first = _confirm(client, scenario.ava_sub, preview)
        again = _confirm(client, scenario.ava_sub, preview)
    assert first.status_code == 303 and again.status_code == 303
    assert len(_changes(fake, scenario.ava_sub)) == 1
    assert [p["total_amount"] for p in _plan_payments(fake, scenario.ava_sub)] == [due]
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_pro_plus"
    assert seen == ["pdt_pro_plus"]
    page = client.get(first.headers["Location"])
    assert "You are now on Pro Plus." in page.text
    # Dodo names the subscription after its new product; the plan page names
    # it as the catalogue does, and offers the product's other plans.
    choose = client.get(f"/portal/subscriptions/{scenario.ava_sub}/plan")
    assert choose.status_code == 200 and 'value="pdt_pro"' in choose.text
    with app.app_context():
        assert _audit_actions(app, "cus_demo_ava").count("subscription.plan_changed") == 1


def confirm_on_both_at_once(apps: tuple[Flask, Flask], fake: FakeDodo, sub: str, code: str = "") -> list[int]:
    """A preview on each instance (two change ids, two idempotency keys),
    both confirmed at once while Dodo is slow to answer; their statuses."""
    clients = [_client(apps[0]), _client(apps[1])]
    previews = [_preview(c, sub, code=code) for c in clients]
    fake.slow_paths.append((rf"/subscriptions/{sub}/change-plan", 0.4))
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def confirm(index: int) -> None:
        barrier.wait()
        answers.append(_confirm(clients[index], sub, previews[index]).status_code)

    threads = [threading.Thread(target=confirm, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_concurrent_confirmations_on_two_instances_make_one_change(
    apps: tuple[Flask, Flask], fake: FakeDodo, scenario: Scenario
) -> None:
    """Two hosts, two previews (two change ids, two idempotency keys), both
    confirmed at once while Dodo is slow to answer: the portal's lock lets
    one change through; the other finds the plan changed and charges
    nothing."""
    sub = scenario.ava_sub
    assert sorted(confirm_on_both_at_once(apps, fake, sub)) == [303, 303]
    assert len(_changes(fake, sub)) == 1
    assert len(_plan_payments(fake, sub)) == 1


def test_a_preview_that_changed_is_shown_again_and_not_charged(
    app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    client = _client(app)
    preview = _preview(client, scenario.ava_sub)
    fake.product_prices["pdt_pro_plus"] = 3900  # Dodo's price moved since the preview
    answer = _confirm(client, scenario.ava_sub, preview)
    assert answer.status_code == 409
    assert "nothing was charged" in answer.text
    assert f"${_dodo_due(fake, scenario.ava_sub) / 100:.2f}" in answer.text
    assert not _changes(fake, scenario.ava_sub)
    assert not _plan_payments(fake, scenario.ava_sub)
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_pro"
    # The new preview's own quote goes through.
    assert _confirm(client, scenario.ava_sub, answer).status_code == 303
    assert len(_changes(fake, scenario.ava_sub)) == 1


def test_a_failed_payment_leaves_the_plan(app: Flask, fake: FakeDodo, scenario: Scenario) -> None:
    client = _client(app)
    preview = _preview(client, scenario.ava_sub)
    fake.arrears_outcome = "failed"
    answer = _confirm(client, scenario.ava_sub, preview)
    assert answer.status_code == 402
    assert "The payment did not go through, so your plan has not changed." in answer.text
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_pro"
    with app.app_context():
        actions = _audit_actions(app, "cus_demo_ava")
    assert "subscription.plan_changed" not in actions and "subscription.plan_change_failed" in actions


def test_a_change_set_for_the_period_end_is_not_made_early(
    app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    """Downgrades wait for the period's end by default; Dodo changes plans
    now only, so the portal refuses rather than moving it early."""
    client = _client(app)
    answer = _preview(client, scenario.ava_sub, plan="pdt_lite")
    assert answer.status_code == 422
    assert "end of your billing period" in answer.text
    assert not fake.calls("POST", f"/subscriptions/{scenario.ava_sub}/change-plan/preview")


def test_another_customers_subscription_is_not_found(app: Flask, fake: FakeDodo, scenario: Scenario) -> None:
    client = _client(app, "cus_demo_budi")
    path = f"/portal/subscriptions/{scenario.ava_sub}/plan"
    assert client.get(path).status_code == 404
    page = client.get("/portal/subscriptions")
    form = {"csrf_token": csrf_token_from(page.text), "step": "preview", "plan": "pdt_pro_plus"}
    assert client.post(path, data=form).status_code == 404
    assert not fake.calls("POST", f"/subscriptions/{scenario.ava_sub}/change-plan/preview")
