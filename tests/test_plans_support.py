"""Plan changes are offered only where the back end can make them: asked
of the store's capabilities as pausing is, on top of the customer's rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, sign_in

from flask_customer_portal.billing.plan_change import change_plan_now, plan_changes_supported
from flask_customer_portal.capabilities import capabilities_of
from flask_customer_portal.contrib.composite import BILLING_CORE, CompositeStorage, protocol_members
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.offers import PlanOffer
from flask_customer_portal.rules import CustomerRules
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import ChargeStore, PlanStore, StateConflict
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
SUB_URL = f"/portal/subscriptions/{AVA_SUB}"
PLAN_URL = f"{SUB_URL}/plan"
PRO = "plan_sync_pro_monthly"
BUSINESS = "plan_sync_business_monthly"
BASIC = "plan_sync_basic_monthly"

#: A billing adapter that holds subscriptions and runs the money path, but
#: has no plan catalogue and cannot schedule a change.
WITHOUT_PLANS = frozenset(BILLING_CORE) | protocol_members(ChargeStore)
#: The same with the plan catalogue: everything a plan change needs.
WITH_PLANS = WITHOUT_PLANS | protocol_members(PlanStore)


class Adapter:
    """The local store seen as a payment company's adapter that has only
    ``members`` (customer ids are the same on both sides)."""

    def __init__(self, inner: SQLAlchemyStorage, members: frozenset[str]) -> None:
        self._inner = inner
        self._members = members

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._members:
            raise AttributeError(name)
        return getattr(self._inner, name)


def _app(tmp_path: Path, payments: TestPaymentProvider, members: frozenset[str] | None) -> Flask:
    """The demo shop over the local store, or (with ``members``) over a
    :class:`CompositeStorage` whose billing adapter has only those."""

    def composite(local: SQLAlchemyStorage) -> Any:
        return CompositeStorage(local, billing=Adapter(local, members or frozenset()))

    return make_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        mailer=MemoryMailer(),
        payments=payments,
        wrap_storage=None if members is None else composite,
    )


@pytest.fixture
def payments() -> TestPaymentProvider:
    return TestPaymentProvider()


@pytest.fixture(params=["local", "composite-with-plans", "composite-without-plans"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, payments: TestPaymentProvider) -> Iterator[Flask]:
    members = {"local": None, "composite-with-plans": WITH_PLANS, "composite-without-plans": WITHOUT_PLANS}
    app = _app(tmp_path, payments, members[request.param])
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, AVA)
    return client


def _plan_id(app: Flask) -> str | None:
    with app.app_context():
        found = get_state(app).storage.get_subscription(AVA, AVA_SUB)
    assert found is not None
    return found.plan_id


def _local(app: Flask) -> SQLAlchemyStorage:
    """The local store (customers, the audit log, the plan catalogue)."""
    return SQLAlchemyStorage(app.extensions["sqlalchemy"])


def _events(app: Flask) -> list[str]:
    with app.app_context():
        return [e.action for e in _local(app).list_events(AVA)]


def _supported(app: Flask) -> bool:
    with app.app_context():
        return plan_changes_supported(get_state(app))


def _confirm_form(page: str) -> dict[str, str]:
    """The hidden fields of the preview's confirmation form."""
    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page))


def test_what_each_back_end_supports(backend: Flask) -> None:
    with backend.app_context():
        storage = get_state(backend).storage
        capabilities = capabilities_of(storage)
        # What a plan change needs of the store that holds the subscription:
        # the plan catalogue and the money path.
        answers = {"plans": capabilities.plans, "charge": capabilities.charge}
    if isinstance(storage, CompositeStorage) and not hasattr(storage.billing, "list_plans"):
        # The local store has the plan catalogue, but not the adapter's subscriptions.
        assert answers == {"plans": False, "charge": True}
        assert not capabilities.plan_change
        assert not _supported(backend)
    else:
        assert all(answers.values())
        assert capabilities.plan_change
        assert _supported(backend)


def test_the_link_and_the_pages_follow_the_back_end(backend: Flask, payments: TestPaymentProvider) -> None:
    client = _client(backend)
    page = client.get(SUB_URL)
    assert page.status_code == 200
    token = csrf_token_from(page.text)
    if _supported(backend):
        assert f'href="{PLAN_URL}"' in page.text
        choose = client.get(PLAN_URL)
        assert choose.status_code == 200 and BUSINESS in choose.text
        preview = client.post(PLAN_URL, data={"csrf_token": token, "step": "preview", "plan": BUSINESS})
        assert preview.status_code == 200
        done = client.post(PLAN_URL, data=_confirm_form(preview.text))
        assert done.status_code == 303
        assert _plan_id(backend) == BUSINESS
        assert len(payments.charges) == 1
        assert "subscription.plan_changed" in _events(backend)
        return
    assert PLAN_URL not in page.text
    assert client.get(PLAN_URL).status_code == 403
    assert client.get(f"{PLAN_URL}?plan={BUSINESS}").status_code == 403
    for step in ("preview", "confirm"):
        form = {"csrf_token": token, "step": step, "plan": BUSINESS}
        assert client.post(PLAN_URL, data=form).status_code == 403, step
    response = client.post(f"{PLAN_URL}/cancel-scheduled", data={"csrf_token": token})
    assert response.status_code == 403
    assert _plan_id(backend) == PRO
    assert payments.charges == []
    assert not any(action.startswith("subscription.plan_change") for action in _events(backend))


def test_change_plan_now_refuses_where_plans_cannot_change(
    backend: Flask, payments: TestPaymentProvider
) -> None:
    with backend.test_request_context():
        state = get_state(backend)
        customer = state.storage.get_customer(AVA)
        plan = _local(backend).get_plan(BUSINESS)
        assert customer is not None and plan is not None
        if plan_changes_supported(state):
            change_plan_now(state, customer, AVA_SUB, plan, 1, change_id="supported-change-0001")
        else:
            with pytest.raises(StateConflict, match="unsupported"):
                change_plan_now(state, customer, AVA_SUB, plan, 1, change_id="unsupported-change-01")
    assert _plan_id(backend) == (BUSINESS if _supported(backend) else PRO)
    assert len(payments.charges) == (1 if _supported(backend) else 0)


def test_the_rules_still_apply(backend: Flask) -> None:
    get_state(backend).hooks.rules_loader = lambda customer, subscription: CustomerRules(
        can_change_plan=False
    )
    client = _client(backend)
    page = client.get(SUB_URL)
    assert page.status_code == 200 and PLAN_URL not in page.text
    assert client.get(PLAN_URL).status_code == 403
    form = {"csrf_token": csrf_token_from(page.text), "step": "preview", "plan": BUSINESS}
    assert client.post(PLAN_URL, data=form).status_code == 403


def test_a_plan_offer_and_a_plan_change_link_only_where_plans_can_change(backend: Flask) -> None:
    get_state(backend).hooks.retention_offer = lambda customer, subscription, reason: PlanOffer(plan_id=BASIC)
    client = _client(backend)
    reason_page = client.get(f"{SUB_URL}/cancel/reason")
    assert reason_page.status_code == 200
    confirm = client.post(
        f"{SUB_URL}/cancel/reason",
        data={"csrf_token": csrf_token_from(reason_page.text), "reason": "too_expensive"},
    )
    assert confirm.status_code == 200
    offered = f'href="{PLAN_URL}?plan={BASIC}"' in confirm.text
    assert offered is _supported(backend)
    with backend.app_context():
        portal = backend.extensions["customer_portal"]
        if _supported(backend):
            assert portal.create_session(AVA, flow="plan_change", subscription_id=AVA_SUB).link
        else:
            with pytest.raises(ValueError, match="can change plans"):
                portal.create_session(AVA, flow="plan_change", subscription_id=AVA_SUB)


class _BillsSubscriptions(TestPaymentProvider):
    bills_subscriptions = True


@pytest.mark.parametrize(
    ("provider", "supported"), [(TestPaymentProvider, True), (_BillsSubscriptions, False)]
)
def test_a_provider_that_bills_subscriptions_itself_owns_their_plans(
    tmp_path: Path, provider: type[TestPaymentProvider], supported: bool
) -> None:
    # What the provider does is read once, when the portal is registered.
    app = _app(tmp_path, provider(), None)
    try:
        with app.app_context():
            state = get_state(app)
            capabilities = capabilities_of(state.storage)
            assert capabilities.plans and capabilities.charge
            assert state.provider_capabilities.bills_subscriptions is not supported
            assert plan_changes_supported(state) is supported
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def test_a_composite_without_the_money_path_cannot_change_plans(tmp_path: Path) -> None:
    members = WITH_PLANS - protocol_members(ChargeStore)
    app = _app(tmp_path, TestPaymentProvider(), frozenset(members))
    try:
        with app.app_context():
            storage = get_state(app).storage
            assert capabilities_of(storage).plans
            assert not capabilities_of(storage).charge
            assert not plan_changes_supported(get_state(app))
        client = _client(app)
        assert PLAN_URL not in client.get(SUB_URL).text
        assert client.get(PLAN_URL).status_code == 403
    finally:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
