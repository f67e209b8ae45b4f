"""Changing plan: choose → preview → confirm, charged once, scheduled
downgrades applied at renewal, and the merchant's per-customer rules."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, portal_store, sign_in, stored_subscription
from portal_fixtures import plan_confirm_form as _confirm_form
from portal_fixtures import plan_preview as _preview

from flask_customer_portal import signals
from flask_customer_portal.billing.outcomes import PaymentOutcome
from flask_customer_portal.billing.plan_change import change_plan_now
from flask_customer_portal.billing.proration import prorate
from flask_customer_portal.billing.renewal import renew_due
from flask_customer_portal.money import Money
from flask_customer_portal.payments import ChargeResult, ChargeUnknown, DeclineReason, TestPaymentProvider
from flask_customer_portal.rules import CustomerRules
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    InvoiceStatus,
    PaymentMethod,
    Plan,
    StateConflict,
    Subscription,
)
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
BUDI_SUB = "sub_demo_budi_sync"
PLAN_URL = f"/portal/subscriptions/{AVA_SUB}/plan"
BUSINESS = "plan_sync_business_monthly"
BASIC = "plan_sync_basic_monthly"
TEAM = "plan_sync_team_monthly"
PRO = "plan_sync_pro_monthly"


def _sub(app: Flask, customer_id: str = AVA, subscription_id: str = AVA_SUB) -> Subscription:
    return stored_subscription(app, customer_id, subscription_id)


def _invoices(app: Flask, customer_id: str = AVA) -> list[Any]:
    with app.app_context():
        return list(portal_store(app).list_invoices(customer_id, page=1, per_page=1000).items)


def _charges_of(app: Flask, provider: TestPaymentProvider, customer_id: str = AVA) -> list[Any]:
    """The provider's charges for ``customer_id``'s invoices (other demo
    customers renew in the same runs)."""
    ids = {invoice.id for invoice in _invoices(app, customer_id)}
    return [charge for charge in provider.charges if charge[0].split(":")[1] in ids]


def _events(app: Flask, customer_id: str = AVA) -> list[str]:
    with app.app_context():
        return [e.action for e in portal_store(app).list_events(customer_id)]


def _change(client: FlaskClient, plan: str, quantity: str = "") -> tuple[Any, dict[str, str]]:
    preview = _preview(client, plan, quantity)
    assert preview.status_code == 200, preview.text
    form = _confirm_form(preview.text)
    return client.post(PLAN_URL, data=form), form


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


# -- choosing and previewing ----------------------------------------------------------


def test_the_subscription_page_offers_a_plan_change(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get(f"/portal/subscriptions/{AVA_SUB}").text
    assert f'href="{PLAN_URL}"' in page


def test_the_plan_page_lists_the_products_plans_in_its_currency(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get(PLAN_URL)
    assert page.status_code == 200
    for name in ("Basic (monthly)", "Pro (monthly)", "Business (monthly)", "Pro (yearly)", "Team (monthly)"):
        assert name in page.text
    assert "bulanan" not in page.text  # Budi's IDR plans are not Ava's
    assert "Current plan" in page.text
    assert 'id="quantity"' in page.text  # a seat plan is offered


def test_a_deep_link_preselects_a_plan(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get(f"{PLAN_URL}?plan={BUSINESS}").text
    assert f'value="{BUSINESS}" checked' in page
    unknown = ava_client.get(f"{PLAN_URL}?plan=plan_sync_pro_idr_monthly").text
    assert "checked" not in unknown


def test_the_preview_shows_what_is_due_now_the_new_price_and_the_renewal(
    app: Flask, ava_client: FlaskClient
) -> None:
    before = _sub(app)
    page = _preview(ava_client, BUSINESS)
    assert page.status_code == 200
    assert "Due now" in page.text
    assert "$49.00 / month" in page.text
    assert "Confirm and pay $" in page.text
    assert _sub(app) == before  # a preview changes nothing


@pytest.mark.parametrize(
    ("plan", "quantity", "message"),
    [
        ("plan_nope", "", "Choose one of the plans listed."),
        ("plan_sync_pro_idr_monthly", "", "Choose one of the plans listed."),  # another currency
        ("", "", "Choose one of the plans listed."),
        ("x" * 500, "", "Choose one of the plans listed."),
        (TEAM, "", "Enter a number of seats from 2 to 50."),
        (TEAM, "1", "Enter a number of seats from 2 to 50."),
        (TEAM, "51", "Enter a number of seats from 2 to 50."),
        (TEAM, "3.5", "Enter a number of seats from 2 to 50."),
        (TEAM, "-3", "Enter a number of seats from 2 to 50."),
        (TEAM, "²", "Enter a number of seats from 2 to 50."),
        (TEAM, "\uff19", "Enter a number of seats from 2 to 50."),
        (TEAM, "1" * 40, "Enter a number of seats from 2 to 50."),
        (PRO, "", "This is your current plan."),
    ],
)
def test_bad_choices_are_refused_next_to_the_field(
    app: Flask, ava_client: FlaskClient, plan: str, quantity: str, message: str
) -> None:
    before = _sub(app)
    page = _preview(ava_client, plan, quantity)
    assert page.status_code == 422
    assert message in page.text
    assert 'class="field-message"' in page.text
    if quantity:
        assert f'value="{quantity}"' in page.text  # what was typed is kept
    assert _sub(app) == before


def test_a_seat_plan_previews_the_chosen_quantity(app: Flask, ava_client: FlaskClient) -> None:
    page = _preview(ava_client, TEAM, "3")
    assert page.status_code == 200
    assert "3 seats" in page.text
    assert "$45.00 / month" in page.text


# -- changing now: the money path -----------------------------------------------------


def test_an_upgrade_is_charged_once_and_switched_in_the_same_step(
    app: Flask,
    ava_client: FlaskClient,
    payments: TestPaymentProvider,
    mailer: MemoryMailer,
    plan_changed: list[dict[str, Any]],
) -> None:
    before = _sub(app)
    invoices_before = len(_invoices(app))
    response, _form = _change(ava_client, BUSINESS)
    assert response.status_code == 303
    after = _sub(app)
    assert (after.plan_id, after.plan_name, after.price) == (
        BUSINESS,
        "Business (monthly)",
        Money(4900, "USD"),
    )
    assert (after.current_period_start, after.current_period_end) == (
        before.current_period_start,
        before.current_period_end,
    )
    assert len(payments.charges) == 1
    key, amount = payments.charges[0]
    assert re.fullmatch(r"invoice:in_pc_[0-9a-f]{24}:attempt:1", key)
    invoices = _invoices(app)
    assert len(invoices) == invoices_before + 1
    invoice = next(i for i in invoices if i.id.startswith("in_pc_"))
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.total_money == amount
    with app.app_context():
        full = portal_store(app).get_invoice(AVA, invoice.id)
    assert full is not None and sum(line.amount for line in full.lines) == full.total
    assert any(line.amount < 0 for line in full.lines)  # the unused time of Pro, credited
    # The amount is the preview's, to the second it was priced at.
    page = ava_client.get(f"/portal/subscriptions/{AVA_SUB}").text
    assert "You are now on Business (monthly)" in page
    assert "invoice.paid" in _events(app) and "subscription.plan_changed" in _events(app)
    assert len(plan_changed) == 1 and plan_changed[0]["when"] == "now"
    assert plan_changed[0]["previous"].plan_id == PRO
    get_state(app).wait_for_background_tasks()
    assert "Your Acme Sync plan is now Business (monthly)" in [m.subject for m in mailer.outbox]


def test_the_amount_charged_is_the_one_previewed(app: Flask, ava_client: FlaskClient, payments: Any) -> None:
    preview = _preview(ava_client, BUSINESS)
    shown = re.search(r"Confirm and pay (\$[0-9.,]+)", preview.text)
    assert shown is not None
    with time_machine.travel(datetime.now(timezone.utc) + timedelta(minutes=10)):
        response = ava_client.post(PLAN_URL, data=_confirm_form(preview.text))
    assert response.status_code == 303
    charged = payments.charges[0][1]
    assert f"${charged.amount // 100}.{charged.amount % 100:02d}" == shown.group(1)


def test_a_double_submit_charges_once(app: Flask, ava_client: FlaskClient, payments: Any) -> None:
    response, form = _change(ava_client, BUSINESS)
    assert response.status_code == 303
    again = ava_client.post(PLAN_URL, data=form)
    assert again.status_code in (303, 422)
    assert len(payments.charges) == 1
    assert len([i for i in _invoices(app) if i.id.startswith("in_pc_")]) == 1


def test_the_same_confirmation_twice_in_a_row_changes_once(app: Flask, payments: Any) -> None:
    """Two tabs with the same preview, submitted one after the other."""
    first, second = app.test_client(), app.test_client()
    sign_in(app, first)
    sign_in(app, second)
    preview = _preview(first, BUSINESS)
    form = _confirm_form(preview.text)
    assert first.post(PLAN_URL, data=form).status_code == 303
    form_b = {**form, "csrf_token": csrf_token_from(second.get("/portal/").text)}
    assert second.post(PLAN_URL, data=form_b).status_code == 303
    assert len(payments.charges) == 1
    assert _events(app).count("subscription.plan_changed") == 1


def _decline_for_ava(app: Flask) -> None:
    with app.app_context():
        store = portal_store(app)
        store.add_payment_method(
            PaymentMethod(
                id="pm_ava_broke",
                customer_id=AVA,
                brand="visa",
                last4="9995",
                exp_month=12,
                exp_year=2099,
                provider_token=TestPaymentProvider.token_for(
                    "4000000000009995", charges_decline=DeclineReason.INSUFFICIENT_FUNDS
                ),
            )
        )
        store.set_subscription_payment_method(AVA, AVA_SUB, "pm_ava_broke")


def test_a_declined_upgrade_changes_nothing_and_says_why(
    app: Flask, ava_client: FlaskClient, payments: Any, plan_changed: list[Any]
) -> None:
    _decline_for_ava(app)
    before = _sub(app)
    response, _form = _change(ava_client, BUSINESS)
    assert response.status_code == 402
    assert "insufficient funds" in response.text
    assert "your plan has not changed" in response.text
    assert _sub(app) == before
    assert payments.charges == []
    voided = [i for i in _invoices(app) if i.id.startswith("in_pc_")]
    assert [i.status for i in voided] == [InvoiceStatus.VOID]  # never owed
    assert "subscription.plan_change_failed" in _events(app)
    assert plan_changed == []


def test_after_a_decline_the_fresh_preview_goes_through_with_a_working_card(
    app: Flask, ava_client: FlaskClient, payments: Any
) -> None:
    _decline_for_ava(app)
    declined, _form = _change(ava_client, BUSINESS)
    assert declined.status_code == 402
    with app.app_context():
        card = portal_store(app).list_payment_methods(AVA)[-1]  # Ava's Visa 4242, the oldest
        portal_store(app).set_subscription_payment_method(AVA, AVA_SUB, card.id)
    retried = ava_client.post(PLAN_URL, data=_confirm_form(declined.text))
    assert retried.status_code == 303
    assert len(payments.charges) == 1
    assert _sub(app).plan_id == BUSINESS


class TimesOutAfterCharging(TestPaymentProvider):
    """Charges, then loses the answer (a network timeout) the first time;
    with ``unknown_lookups`` its first lookups of a charge do not know either."""

    def __init__(self, *, unknown_lookups: int = 0) -> None:
        super().__init__()
        self.timeouts = 1
        self.unknown_lookups = unknown_lookups

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        if self.unknown_lookups:
            self.unknown_lookups -= 1
            self.calls.append("find_charge")
            return ChargeUnknown(idempotency_key)
        return super().find_charge(idempotency_key)

    def charge(self, **kwargs: Any) -> ChargeResult:
        result = super().charge(**kwargs)
        if self.timeouts:
            self.timeouts -= 1
            return ChargeUnknown(kwargs["idempotency_key"])
        return result


class RaisesOnCharge(TestPaymentProvider):
    def charge(self, **kwargs: Any) -> ChargeResult:
        raise ConnectionError("provider unreachable")


def _app_with(tmp_path: Path, provider: TestPaymentProvider, **config: Any) -> Flask:
    return make_portal_app(
        f"sqlite:///{tmp_path / 'plans.db'}", mailer=MemoryMailer(), payments=provider, **config
    )


def test_a_lost_answer_is_reconciled_on_the_next_press_not_charged_again(tmp_path: Path) -> None:
    # The provider does not know either for the next two lookups (the plan
    # page's and the other change's): the change stays unconfirmed.
    provider = TimesOutAfterCharging(unknown_lookups=2)
    app = _app_with(tmp_path, provider)
    client = app.test_client()
    sign_in(app, client)
    preview = _preview(client, BUSINESS)
    form = _confirm_form(preview.text)
    first = client.post(PLAN_URL, data=form)
    assert first.status_code == 202
    assert "you will not be charged twice" in first.text
    assert _sub(app).plan_id == PRO  # not switched while the payment is unknown
    # Another change cannot start while this payment is unconfirmed.
    other = client.post(PLAN_URL, data=_confirm_form(_preview(client, TEAM, "3").text))
    assert other.status_code == 409
    retry_form = _confirm_form(first.text)
    assert retry_form["quote"] == form["quote"]  # the same change, the same key
    second = client.post(PLAN_URL, data=retry_form)
    assert second.status_code == 303
    assert _sub(app).plan_id == BUSINESS
    assert len(provider.charges) == 1
    assert "find_charge" in provider.calls
    assert "charge.reconciled" in _events(app)
    get_state(app).shutdown()


def test_a_provider_that_raises_leaves_nothing_behind(tmp_path: Path) -> None:
    app = _app_with(tmp_path, RaisesOnCharge())
    client = app.test_client()
    sign_in(app, client)
    before = (_sub(app), _invoices(app))
    response, _form = _change(client, BUSINESS)
    assert response.status_code == 503
    assert "Nothing was charged" in response.text
    assert (_sub(app), _invoices(app)) == before
    get_state(app).shutdown()


def test_an_expired_preview_is_priced_again_not_charged(
    app: Flask, ava_client: FlaskClient, payments: Any
) -> None:
    preview = _preview(ava_client, BUSINESS)
    start = datetime.now(timezone.utc)
    with time_machine.travel(start + timedelta(minutes=20)):
        ava_client.get("/portal/")  # still active: the session stays open
    with time_machine.travel(start + timedelta(minutes=35)):
        response = ava_client.post(PLAN_URL, data=_confirm_form(preview.text))
    assert response.status_code == 409
    assert "worked out again" in response.text
    assert payments.charges == []


def test_a_forged_quote_is_priced_again(app: Flask, ava_client: FlaskClient, payments: Any) -> None:
    preview = _preview(ava_client, BUSINESS)
    form = _confirm_form(preview.text)
    for quote in ("", "x", form["quote"][:-2] + "AA"):
        response = ava_client.post(PLAN_URL, data={**form, "quote": quote})
        assert response.status_code == 409
    # A quote for one plan does not confirm another.
    response = ava_client.post(PLAN_URL, data={**form, "plan": TEAM, "quantity": "3"})
    assert response.status_code == 409
    assert payments.charges == []


# -- downgrades -----------------------------------------------------------------------


def test_a_downgrade_is_scheduled_for_the_period_end_and_can_be_withdrawn(
    app: Flask, ava_client: FlaskClient, payments: Any
) -> None:
    scheduled: list[dict[str, Any]] = []
    withdrawn: list[dict[str, Any]] = []
    signals.plan_change_scheduled.connect(lambda s, **kw: scheduled.append(kw), weak=False)
    signals.plan_change_schedule_cancelled.connect(lambda s, **kw: withdrawn.append(kw), weak=False)
    try:
        preview = _preview(ava_client, BASIC)
        assert "Nothing is charged now" in preview.text
        response = ava_client.post(PLAN_URL, data=_confirm_form(preview.text))
        assert response.status_code == 303
        after = _sub(app)
        assert (after.plan_id, after.scheduled_plan_id) == (PRO, BASIC)
        assert payments.charges == []
        page = ava_client.get(f"/portal/subscriptions/{AVA_SUB}").text
        assert "your plan changes to Basic (monthly)" in page
        token = csrf_token_from(page)
        cancel_url = f"/portal/subscriptions/{AVA_SUB}/plan/cancel-scheduled"
        assert ava_client.post(cancel_url, data={}).status_code == 400
        assert _sub(app).scheduled_plan_id == BASIC
        assert ava_client.post(cancel_url, data={"csrf_token": token}).status_code == 303
        assert _sub(app).scheduled_plan_id is None
        assert "You stay on Pro (monthly)" in ava_client.get(f"/portal/subscriptions/{AVA_SUB}").text
        assert len(scheduled) == 1 and len(withdrawn) == 1
        assert "subscription.plan_change_scheduled" in _events(app)
        assert "subscription.plan_change_schedule_cancelled" in _events(app)
    finally:
        signals.plan_change_scheduled.receivers.clear()
        signals.plan_change_schedule_cancelled.receivers.clear()


def test_a_scheduled_downgrade_takes_over_at_renewal(
    app: Flask, ava_client: FlaskClient, payments: Any, mailer: MemoryMailer, plan_changed: list[Any]
) -> None:
    preview = _preview(ava_client, BASIC)
    assert ava_client.post(PLAN_URL, data=_confirm_form(preview.text)).status_code == 303
    before = _sub(app)
    # The day before the period ends: nothing yet.
    with time_machine.travel(before.current_period_end - timedelta(days=1)), app.app_context():
        renew_due(get_state(app))
    assert _sub(app).plan_id == PRO
    with time_machine.travel(before.current_period_end + timedelta(hours=1)), app.app_context():
        report = renew_due(get_state(app))
    assert report.errors == []
    after = _sub(app)
    assert (after.plan_id, after.price, after.scheduled_plan_id) == (BASIC, Money(900, "USD"), None)
    assert after.current_period_start == before.current_period_end
    assert payments.charges[-1][1] == Money(900, "USD")  # the renewal at the new price
    assert [c["when"] for c in plan_changed] == ["period_end"]
    get_state(app).wait_for_background_tasks()
    subjects = [m.subject for m in mailer.outbox]
    assert "Your Acme Sync plan is now Basic (monthly)" in subjects


def test_a_downgrade_now_keeps_the_credit_for_the_next_renewal(tmp_path: Path) -> None:
    provider = TestPaymentProvider()
    app = _app_with(tmp_path, provider, CUSTOMER_PORTAL_PLAN_CHANGE_DOWNGRADES="now")
    client = app.test_client()
    sign_in(app, client)
    before = _sub(app)
    preview = _preview(client, BASIC)
    assert "of credit, taken off your next invoices" in preview.text
    assert client.post(PLAN_URL, data=_confirm_form(preview.text)).status_code == 303
    after = _sub(app)
    assert after.plan_id == BASIC
    assert provider.charges == []  # nothing was due
    credit = after.credit
    # Demo data: about three quarters of Pro's month is left; the credit is
    # its unused part less Basic's price for the same time, under Basic's price.
    assert 0 < credit < 900
    with time_machine.travel(before.current_period_end + timedelta(hours=1)), app.app_context():
        renew_due(get_state(app))
    assert _sub(app).credit == 0
    charges = _charges_of(app, provider)
    assert charges == [(charges[0][0], Money(900 - credit, "USD"))]
    renewal = next(i for i in _invoices(app) if i.total == 900 - credit)
    with app.app_context():
        full = portal_store(app).get_invoice(AVA, renewal.id)
    assert full is not None
    assert full.lines[-1].description == "Account credit" and full.lines[-1].amount == -credit
    get_state(app).shutdown()


def test_credit_that_covers_a_renewal_pays_it_without_a_charge(tmp_path: Path) -> None:
    provider = TestPaymentProvider()
    app = _app_with(tmp_path, provider)
    with app.app_context():
        store = portal_store(app)
        with store.lock_subscription(AVA, AVA_SUB) as lock:
            assert lock is not None
            lock.set_credit(5000)
    end = _sub(app).current_period_end
    with time_machine.travel(end + timedelta(hours=1)), app.app_context():
        report = renew_due(get_state(app))
    assert report.errors == []
    assert _charges_of(app, provider) == []
    assert _sub(app).credit == 5000 - 1900
    paid = [i for i in _invoices(app) if i.payment_reference and i.payment_reference.startswith("credit:")]
    assert len(paid) == 1 and paid[0].status is InvoiceStatus.PAID and paid[0].total == 0
    get_state(app).shutdown()


def test_a_downgrade_now_is_charged_nothing_and_credited_exactly(tmp_path: Path) -> None:
    app = _app_with(tmp_path, TestPaymentProvider(), CUSTOMER_PORTAL_PLAN_CHANGE_DOWNGRADES="now")
    client = app.test_client()
    sign_in(app, client)
    before = _sub(app)
    moment = datetime.now(timezone.utc).replace(microsecond=0)
    with time_machine.travel(moment, tick=False):
        preview = _preview(client, BASIC)
        assert client.post(PLAN_URL, data=_confirm_form(preview.text)).status_code == 303
    with app.app_context():
        plan = portal_store(app).get_plan(BASIC)
    assert plan is not None
    expected = prorate(before, plan, 1, moment)
    assert _sub(app).credit == expected.credit_after > 0
    get_state(app).shutdown()


# -- who may change what --------------------------------------------------------------


def test_another_customers_subscription_is_not_found(app: Flask, ava_client: FlaskClient) -> None:
    url = f"/portal/subscriptions/{BUDI_SUB}/plan"
    assert ava_client.get(url).status_code == 404
    token = csrf_token_from(ava_client.get(PLAN_URL).text)
    data = {"csrf_token": token, "step": "preview", "plan": "plan_sync_basic_idr_monthly"}
    assert ava_client.post(url, data=data).status_code == 404
    cancel = f"/portal/subscriptions/{BUDI_SUB}/plan/cancel-scheduled"
    assert ava_client.post(cancel, data={"csrf_token": token}).status_code == 404


def test_a_post_without_a_valid_csrf_token_is_refused(
    app: Flask, ava_client: FlaskClient, payments: Any
) -> None:
    preview = _preview(ava_client, BUSINESS)
    form = _confirm_form(preview.text)
    for token in (None, "forged"):
        data = {k: v for k, v in form.items() if k != "csrf_token"}
        if token:
            data["csrf_token"] = token
        assert ava_client.post(PLAN_URL, data=data).status_code == 400
    assert _sub(app).plan_id == PRO and payments.charges == []


def test_an_on_hold_subscription_cannot_change_plan(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_budi")
    page = client.get(f"/portal/subscriptions/{BUDI_SUB}/plan")
    assert page.status_code == 409
    assert "Bayar" in page.text or "on hold" in page.text
    assert (
        f'href="/portal/subscriptions/{BUDI_SUB}/plan"'
        not in client.get(f"/portal/subscriptions/{BUDI_SUB}").text
    )


def test_a_cancelled_subscription_cannot_change_plan(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/subscriptions/sub_demo_ava_desktop/plan")
    assert page.status_code == 409
    assert "has ended" in page.text


def _rules(app: Flask, rules: CustomerRules) -> None:
    app.extensions["customer_portal"].rules_loader(lambda customer, subscription: rules)


@pytest.mark.parametrize("rules", [CustomerRules(can_change_plan=False), CustomerRules(billing_only=True)])
def test_rules_that_forbid_plan_changes_hide_and_refuse_them(
    app: Flask, ava_client: FlaskClient, rules: CustomerRules
) -> None:
    token = csrf_token_from(ava_client.get(PLAN_URL).text)
    _rules(app, rules)
    assert PLAN_URL not in ava_client.get(f"/portal/subscriptions/{AVA_SUB}").text
    assert ava_client.get(PLAN_URL).status_code == 403
    data = {"csrf_token": token, "step": "preview", "plan": BUSINESS}
    assert ava_client.post(PLAN_URL, data=data).status_code == 403
    cancel = f"/portal/subscriptions/{AVA_SUB}/plan/cancel-scheduled"
    assert ava_client.post(cancel, data={"csrf_token": token}).status_code == 403
    assert _sub(app).plan_id == PRO


def test_rules_limit_the_plans_offered_and_refuse_the_others(
    app: Flask, ava_client: FlaskClient, payments: Any
) -> None:
    _rules(app, CustomerRules(allowed_plan_ids=frozenset({BASIC, PRO})))
    page = ava_client.get(PLAN_URL).text
    assert "Basic (monthly)" in page and "Business (monthly)" not in page
    token = csrf_token_from(page)
    response = ava_client.post(PLAN_URL, data={"csrf_token": token, "step": "preview", "plan": BUSINESS})
    assert response.status_code == 403
    assert payments.charges == []


# -- cost -----------------------------------------------------------------------------


def test_the_plan_pages_take_a_fixed_number_of_queries(
    app: Flask, ava_client: FlaskClient, count_queries: Callable[..., Any]
) -> None:
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        store = portal_store(app)
        for n in range(20):
            store.add_plan(Plan(f"plan_more_{n}", "Acme Sync", f"Extra {n}", Money(100 + n, "USD"), "month"))
    with count_queries(engine) as queries:
        assert ava_client.get(PLAN_URL).status_code == 200
    # session + customer, the subscription, the plans.
    assert queries.count <= 4, queries.statements
    token = csrf_token_from(ava_client.get(PLAN_URL).text)
    with count_queries(engine) as preview:
        data = {"csrf_token": token, "step": "preview", "plan": BUSINESS}
        assert ava_client.post(PLAN_URL, data=data).status_code == 200
    assert preview.count <= 4, preview.statements
    with count_queries(engine) as detail:
        assert ava_client.get(f"/portal/subscriptions/{AVA_SUB}").status_code == 200
    assert detail.count <= 4, detail.statements


def test_subscriptions_outside_the_catalogue_offer_no_plan_change(
    app: Flask, ava_client: FlaskClient
) -> None:
    with app.app_context():
        store = portal_store(app)
        sub = _sub(app)
        store.add_subscription(replace(sub, id="sub_legacy", plan_id=None, created_at=None))
    assert "/plan" not in ava_client.get("/portal/subscriptions/sub_legacy").text
    assert ava_client.get("/portal/subscriptions/sub_legacy/plan").status_code == 409


# -- exactly once under concurrency ---------------------------------------------------


def _concurrent_changes(app: Flask, workers: int) -> list[PaymentOutcome]:
    barrier = threading.Barrier(workers, timeout=30)
    outcomes: list[PaymentOutcome] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def submit() -> None:
        try:
            with app.test_request_context():
                state = get_state(app)
                customer = state.storage.get_customer(AVA)
                plan = state.storage.get_plan(BUSINESS)
                assert customer is not None and plan is not None
                portal_store(app).close_db_session()  # back to the pool while waiting
                barrier.wait()
                result = change_plan_now(
                    state, customer, AVA_SUB, plan, 1, change_id="same-confirmation-0001"
                )
        except BaseException as exc:  # re-raised in the test's thread
            barrier.abort()
            with guard:
                errors.append(exc)
            return
        with guard:
            outcomes.append(result.outcome)

    threads = [threading.Thread(target=submit) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        errors.sort(key=lambda exc: isinstance(exc, threading.BrokenBarrierError))
        raise errors[0]
    get_state(app).wait_for_background_tasks()
    return outcomes


def test_simultaneous_confirmations_charge_once_on_sqlite(app: Flask, payments: TestPaymentProvider) -> None:
    outcomes = _concurrent_changes(app, 6)
    assert sorted(outcomes) == sorted([PaymentOutcome.PAID] + [PaymentOutcome.ALREADY_PAID] * 5)
    assert len(payments.charges) == 1
    assert _events(app).count("subscription.plan_changed") == 1
    assert _sub(app).plan_id == BUSINESS


@pytest.mark.postgres
def test_simultaneous_confirmations_charge_once_on_postgresql(postgres_url: str) -> None:
    provider = TestPaymentProvider()
    app = make_portal_app(
        postgres_url,
        mailer=MemoryMailer(),
        payments=provider,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10, "max_overflow": 0, "pool_timeout": 120},
    )
    try:
        outcomes = _concurrent_changes(app, 20)
        assert outcomes.count(PaymentOutcome.PAID) == 1
        assert outcomes.count(PaymentOutcome.ALREADY_PAID) == 19
        assert len(provider.charges) == 1
    finally:
        get_state(app).shutdown()
        with app.app_context():
            portal_store(app).drop_all()
            app.extensions["sqlalchemy"].engine.dispose()


class BillsSubscriptions(TestPaymentProvider):
    """A provider that bills subscriptions itself and so owns their plans."""

    bills_subscriptions = True


def test_no_plan_change_when_the_provider_bills_subscriptions(tmp_path: Path) -> None:
    provider = BillsSubscriptions()
    app = _app_with(tmp_path, provider)
    client = app.test_client()
    sign_in(app, client)
    page = client.get(f"/portal/subscriptions/{AVA_SUB}")
    assert PLAN_URL not in page.text
    # Refused as an action the back end cannot do (403), not as a state (409).
    assert client.get(PLAN_URL).status_code == 403
    form = {"csrf_token": csrf_token_from(page.text), "step": "preview", "plan": BUSINESS}
    assert client.post(PLAN_URL, data=form).status_code == 403
    with app.test_request_context():
        state = get_state(app)
        customer = state.storage.get_customer(AVA)
        plan = state.storage.get_plan(BUSINESS)
        assert customer is not None and plan is not None
        with pytest.raises(StateConflict):
            change_plan_now(state, customer, AVA_SUB, plan, 1, change_id="provider-owned-0001")
    assert provider.charges == [] and _sub(app).plan_id == PRO
    get_state(app).shutdown()


def test_a_pending_payment_can_be_checked_after_the_quote_would_have_expired(tmp_path: Path) -> None:
    provider = TimesOutAfterCharging()
    app = _app_with(tmp_path, provider)
    client = app.test_client()
    sign_in(app, client)
    first = client.post(PLAN_URL, data=_confirm_form(_preview(client, BUSINESS).text))
    assert first.status_code == 202
    start = datetime.now(timezone.utc)
    with time_machine.travel(start + timedelta(minutes=20)):
        client.get("/portal/")
    with time_machine.travel(start + timedelta(minutes=35)):
        second = client.post(PLAN_URL, data=_confirm_form(first.text))
    assert second.status_code == 303
    assert _sub(app).plan_id == BUSINESS
    assert len(provider.charges) == 1
    get_state(app).shutdown()
