"""Money holes of issue 15: a retried decline that claimed success, plan
changes left unconfirmed for ever, quotes that did not hold their amount,
arrears without discounts, provider amounts taken on trust, a payment
without an explicit intent and an amount due that did not match the charge.

Each test is named after the item it covers."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import open_link, portal_store, sign_in, stored_subscription
from portal_fixtures import plan_confirm_form as _confirm_form
from portal_fixtures import plan_preview as _preview
from security_support import AVA, BUDI, db_dump
from sqlalchemy import update

from flask_customer_portal import signals
from flask_customer_portal.billing.renewal import renew_due
from flask_customer_portal.billing.retention import discount_amount
from flask_customer_portal.contrib.sqla import PlanModel
from flask_customer_portal.money import Money, format_money
from flask_customer_portal.payments import (
    ChargeResult,
    ChargeSucceeded,
    ChargeUnknown,
    DeclineReason,
    TestPaymentProvider,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    ChargeAttemptStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentMethod,
    Subscription,
    SubscriptionStatus,
)
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA_SUB = "sub_demo_ava_sync"
BUDI_SUB = "sub_demo_budi_sync"
BUDI_OPEN_INVOICE = "inv_demo_budi_sync_03"
PLAN_URL = f"/portal/subscriptions/{AVA_SUB}/plan"
PRO = "plan_sync_pro_monthly"
BUSINESS = "plan_sync_business_monthly"
RETURN_URL = "http://shop.test/account?tab=billing"


def _subscription(app: Flask, customer_id: str = AVA, subscription_id: str = AVA_SUB) -> Subscription:
    return stored_subscription(app, customer_id, subscription_id)


def _invoices(app: Flask, customer_id: str = AVA) -> list[Any]:
    with app.app_context():
        return list(portal_store(app).list_invoices(customer_id, page=1, per_page=10_000).items)


def _events(app: Flask, customer_id: str = AVA) -> list[str]:
    with app.app_context():
        return [e.action for e in portal_store(app).list_events(customer_id)]


def _card(app: Flask, customer_id: str, method_id: str, *, declines: DeclineReason | None = None) -> None:
    """Save a card for the customer and charge their subscription to it."""
    number = "4000000000009995" if declines else "4242424242424242"
    with app.app_context():
        store = portal_store(app)
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


def _budi(app: Flask) -> FlaskClient:
    """A browser signed in as Budi, who reads the portal in English here."""
    with app.app_context():
        portal_store(app).set_locale(BUDI, "en")
    client = app.test_client()
    sign_in(app, client, BUDI)
    return client


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
            shop.extensions["customer_portal"]
            .create_session(AVA, flow="plan_change", subscription_id=AVA_SUB, return_url=RETURN_URL)
            .link
        )
    assert open_link(client, link).status_code == 303
    _card(shop, AVA, "pm_ava_broke", declines=DeclineReason.INSUFFICIENT_FUNDS)
    with shop.app_context():
        portal_store(shop).set_subscription_payment_method(AVA, AVA_SUB, "pm_ava_broke")
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


# --- item 2: a plan-change payment with an unknown outcome is settled ----------------------------


class Forgetful(TestPaymentProvider):
    """The test provider, whose lookups of earlier charges can be made to
    answer "not known yet" (its own ledger is not up to date)."""

    def __init__(self) -> None:
        super().__init__()
        self.knows = True

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        if not self.knows:
            self.calls.append("find_charge")
            return ChargeUnknown(idempotency_key)
        return super().find_charge(idempotency_key)


def _lost_plan_change(client: FlaskClient, app: Flask) -> Any:
    """Ava confirms an upgrade to Business; the provider's answer is lost."""
    response = client.post(PLAN_URL, data=_confirm_form(_preview(client, BUSINESS).text))
    assert response.status_code == 202, response.status_code
    assert _subscription(app).plan_id == PRO
    [invoice] = [i for i in _invoices(app) if i.id.startswith("in_pc_")]
    assert invoice.status is InvoiceStatus.OPEN
    return invoice


def test_item2_money_taken_plan_changes_on_next_visit(
    shop: Flask,
    ava: FlaskClient,
    payments: TestPaymentProvider,
    mailer: MemoryMailer,
    plan_changed: list[dict[str, Any]],
) -> None:
    payments.lose_answers(1)  # charged, then the answer is lost
    invoice = _lost_plan_change(ava, shop)
    # Ava closed the tab. The next time she opens her subscription:
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}")
    assert page.status_code == 200
    assert "Your payment for the plan change came through: you are now on Business (monthly)." in page.text
    after = _subscription(shop)
    assert after.plan_id == BUSINESS
    with shop.app_context():
        paid = portal_store(shop).get_invoice(AVA, invoice.id)
    assert paid is not None and paid.status is InvoiceStatus.PAID
    assert len(payments.charges) == 1 and payments.charges[0][1] == invoice.total_money
    assert len(plan_changed) == 1 and plan_changed[0]["invoice"].id == invoice.id
    get_state(shop).wait_for_background_tasks()
    subjects = [m.subject for m in mailer.outbox]
    assert subjects[-2:] == [
        "Your Acme Sync plan is now Business (monthly)",
        f"Receipt for invoice {paid.number}",
    ]
    # Nothing blocks her any more, and it is not done twice.
    assert ava.get(PLAN_URL).status_code == 200
    assert ava.get(f"/portal/subscriptions/{AVA_SUB}").status_code == 200
    assert len(payments.charges) == 1 and len(plan_changed) == 1
    get_state(shop).wait_for_background_tasks()
    assert [m.subject for m in mailer.outbox] == subjects
    assert _events(shop).count("subscription.plan_changed") == 1


def test_item2_money_taken_plan_changes_by_renew_due(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider, plan_changed: list[dict[str, Any]]
) -> None:
    payments.lose_answers(1)
    invoice = _lost_plan_change(ava, shop)
    result = shop.test_cli_runner().invoke(args=["portal", "renew-due"])
    assert result.exit_code == 0, result.output
    assert "plan_change_changed: 1" in result.output
    assert _subscription(shop).plan_id == BUSINESS
    with shop.app_context():
        paid = portal_store(shop).get_invoice(AVA, invoice.id)
    assert paid is not None and paid.status is InvoiceStatus.PAID
    assert len(payments.charges) == 1
    assert len(plan_changed) == 1
    # A second run finds nothing left to settle.
    again = shop.test_cli_runner().invoke(args=["portal", "renew-due"])
    assert "plan_change_changed: 0" in again.output
    assert len(payments.charges) == 1


@pytest.mark.parametrize("settled_by", ["visit", "renew-due", "new change"])
def test_item2_never_seen_invoice_is_voided_and_customer_can_change_again(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider, settled_by: str
) -> None:
    payments.lose_answers(1, charged=False)  # the provider never saw it
    invoice = _lost_plan_change(ava, shop)
    if settled_by == "visit":
        page = ava.get(f"/portal/subscriptions/{AVA_SUB}")
        assert "Your last plan change did not go through and nothing was charged." in page.text
    elif settled_by == "renew-due":
        result = shop.test_cli_runner().invoke(args=["portal", "renew-due"])
        assert result.exit_code == 0 and "plan_change_voided: 1" in result.output
    with shop.app_context():
        voided = portal_store(shop).get_invoice(AVA, invoice.id)
    assert voided is not None
    if settled_by != "new change":
        assert voided.status is InvoiceStatus.VOID
    assert payments.charges == []
    assert _subscription(shop).plan_id == PRO
    # Not blocked: a new change goes through, charged once.
    response = ava.post(PLAN_URL, data=_confirm_form(_preview(ava, BUSINESS).text))
    assert response.status_code == 303, response.status_code
    assert _subscription(shop).plan_id == BUSINESS
    assert len(payments.charges) == 1
    with shop.app_context():
        voided = portal_store(shop).get_invoice(AVA, invoice.id)
    assert voided is not None and voided.status is InvoiceStatus.VOID


def test_item2_money_taken_after_the_period_moved_on_becomes_credit(
    make_app: Any, mailer: MemoryMailer
) -> None:
    provider = Forgetful()
    shop = make_app(mailer=mailer, payments=provider)
    client = shop.test_client()
    sign_in(shop, client, AVA)
    provider.lose_answers(1)
    invoice = _lost_plan_change(client, shop)
    credited: list[dict[str, Any]] = []

    def on_credited(sender: Any, **kwargs: Any) -> None:
        credited.append(kwargs)

    signals.plan_change_credited.connect(on_credited, shop)
    try:
        end = _subscription(shop).current_period_end
        provider.knows = False  # the provider's ledger lags: still unknown at renewal time
        with shop.app_context():
            report = renew_due(get_state(shop), now=end + timedelta(hours=1))
        assert [str(s.outcome) for s in report.plan_changes.settled] == ["pending"]
        renewed = _subscription(shop)
        assert renewed.plan_id == PRO and renewed.current_period_start == end  # renewed on its plan
        provider.knows = True
        with shop.app_context():
            report = renew_due(get_state(shop), now=end + timedelta(hours=2))
        assert [str(s.outcome) for s in report.plan_changes.settled] == ["credited"]
    finally:
        signals.plan_change_credited.disconnect(on_credited, shop)
    after = _subscription(shop)
    assert after.plan_id == PRO  # not changed against a period it was not priced for
    assert after.credit == renewed.credit + invoice.total
    with shop.app_context():
        paid = portal_store(shop).get_invoice(AVA, invoice.id)
    assert paid is not None and paid.status is InvoiceStatus.PAID
    assert [(c["amount"], c["reason"]) for c in credited] == [(invoice.total_money, "subscription_changed")]
    assert "subscription.plan_change_credited" in _events(shop)


# --- item 4a: a quote holds its amount ------------------------------------------------------------


def _set_plan_price(app: Flask, plan_id: str, amount: int) -> None:
    with app.app_context():
        db = app.extensions["sqlalchemy"]
        db.session.execute(update(PlanModel).where(PlanModel.id == plan_id).values(price_amount=amount))
        db.session.commit()


def test_item4a_a_price_changed_after_the_preview_is_not_charged(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    preview = _preview(ava, BUSINESS)
    shown = re.search(r"Confirm and pay (\$[0-9.,]+)", preview.text)
    assert shown is not None
    _set_plan_price(shop, BUSINESS, 9900)  # the merchant raises the price within the quote's lifetime
    refused = ava.post(PLAN_URL, data=_confirm_form(preview.text))
    assert refused.status_code == 409
    assert "The price changed since you saw it, so nothing was charged." in refused.text
    assert payments.charges == []
    assert _subscription(shop).plan_id == PRO
    assert not [i for i in _invoices(shop) if i.id.startswith("in_pc_")]
    # The fresh preview shows the new amount, and confirming it charges exactly that.
    fresh = re.search(r"Confirm and pay (\$[0-9.,]+)", refused.text)
    assert fresh is not None and fresh.group(1) != shown.group(1)
    confirmed = ava.post(PLAN_URL, data=_confirm_form(refused.text))
    assert confirmed.status_code == 303
    [(_key, charged)] = payments.charges
    assert f"${charged.amount // 100}.{charged.amount % 100:02d}" == fresh.group(1)
    after = _subscription(shop)
    assert (after.plan_id, after.price.amount) == (BUSINESS, 9900)


# --- item 4b: the arrears invoice takes the retention discount and the credit -------------------------


def _on_hold_without_an_open_invoice(app: Flask, *, percent: int, renewals: int, credit: int) -> None:
    with app.app_context():
        store = portal_store(app)
        if percent:
            store.set_retention_discount(AVA, AVA_SUB, percent=percent, renewals=renewals)
        with store.lock_subscription(AVA, AVA_SUB) as lock:
            assert lock is not None
            assert not lock.open_invoices()
            lock.set_credit(credit)
            lock.update_subscription(status=SubscriptionStatus.ON_HOLD, hold_reason="generic_decline")


def _pay_arrears(client: FlaskClient, subscription_id: str, **fields: str) -> tuple[Any, Any]:
    url = f"/portal/subscriptions/{subscription_id}/payment-method"
    page = client.get(url)
    assert page.status_code == 200
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page.text))
    form.pop("subscription_id", None)
    return page, client.post(url, data={**form, "csrf_token": csrf_token_from(page.text), **fields})


def test_item4b_arrears_invoice_takes_the_retention_discount_and_credit(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    _on_hold_without_an_open_invoice(shop, percent=20, renewals=2, credit=300)
    price = _subscription(shop).price.amount  # 1900
    expected = price - discount_amount(price, 20) - 300
    with shop.app_context():
        card = portal_store(shop).list_payment_methods(AVA)[0]
    page, response = _pay_arrears(ava, AVA_SUB, payment_method=card.id)
    assert f"Pay {format_money(Money(expected, 'USD'), 'en')} and reactivate" in page.text
    assert response.status_code == 303, response.status_code
    [(_key, charged)] = payments.charges
    assert charged == Money(expected, "USD")
    [arrears] = [i for i in _invoices(shop) if i.total == expected and i.status is InvoiceStatus.PAID]
    with shop.app_context():
        full = portal_store(shop).get_invoice(AVA, arrears.id)
    assert full is not None
    assert [line.amount for line in full.lines] == [price, -discount_amount(price, 20), -300]
    after = _subscription(shop)
    assert after.status is SubscriptionStatus.ACTIVE
    assert (after.discount_renewals, after.credit) == (1, 0)  # one renewal's discount and the credit used


def test_item4b_credit_that_covers_the_arrears_charges_nothing(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    _on_hold_without_an_open_invoice(shop, percent=0, renewals=0, credit=5000)
    with shop.app_context():
        card = portal_store(shop).list_payment_methods(AVA)[0]
    _page, response = _pay_arrears(ava, AVA_SUB, payment_method=card.id)
    assert response.status_code == 303
    assert payments.charges == []
    after = _subscription(shop)
    assert after.status is SubscriptionStatus.ACTIVE and after.credit == 5000 - 1900


# --- item 4c: another amount charged is flagged, not taken as paid ----------------------------------


class ChargesAnotherAmount(TestPaymentProvider):
    """Takes one more minor unit than asked for, and says so."""

    def charge(self, *, amount: Money, **kwargs: Any) -> ChargeResult:
        result = super().charge(amount=amount, **kwargs)
        if isinstance(result, ChargeSucceeded):
            return ChargeSucceeded(result.charge_id, Money(amount.amount + 1, amount.currency))
        return result

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        result = super().find_charge(idempotency_key)
        if isinstance(result, ChargeSucceeded):
            return ChargeSucceeded(result.charge_id, Money(result.amount.amount + 1, result.amount.currency))
        return result


@pytest.fixture
def mismatches() -> Iterator[list[dict[str, Any]]]:
    yield from _collect(signals.charge_amount_mismatch)


def test_item4c_another_amount_keeps_the_invoice_open_and_flagged(
    make_app: Any, mismatches: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    provider = ChargesAnotherAmount()
    shop = make_app(payments=provider)
    client = _budi(shop)
    card = {"payment_method": "new", "card_number": "4242 4242 4242 4242", "exp_month": "12", "cvc": "123"}
    card["exp_year"] = str(datetime.now(timezone.utc).year + 2)
    with caplog.at_level(logging.ERROR, logger="flask_customer_portal"):
        _page, response = _pay_arrears(client, BUDI_SUB, **card)
    assert response.status_code == 409
    assert "Your bank reported a payment of another amount than the amount due." in response.text
    assert "reactivated" not in response.headers.get("Location", "")
    assert _subscription(shop, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD
    with shop.app_context():
        invoice = portal_store(shop).get_invoice(BUDI, BUDI_OPEN_INVOICE)
        assert invoice is not None and invoice.status is InvoiceStatus.OPEN
        with portal_store(shop).lock_subscription(BUDI, BUDI_SUB) as lock:
            assert lock is not None
            [attempt] = lock.attempts(BUDI_OPEN_INVOICE)
    assert attempt.status is ChargeAttemptStatus.AMOUNT_MISMATCH
    assert "charge.amount_mismatch" in _events(shop, BUDI)
    [signal] = mismatches
    assert signal["invoice"].id == BUDI_OPEN_INVOICE
    assert signal["charged"] == Money(invoice.total + 1, invoice.currency)
    assert signal["expected"] == invoice.total_money
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(BUDI_OPEN_INVOICE in line and "flagged" in line for line in logged)
    assert not any("4242424242424242" in line or "pm_test_" in line for line in logged)
    # Trying again charges nothing more and tells the merchant nothing new.
    _page, again = _pay_arrears(client, BUDI_SUB, **card)
    assert again.status_code == 409
    assert len(provider.charges) == 1 and len(mismatches) == 1


def test_item4c_a_plan_change_charged_another_amount_is_not_a_success(
    make_app: Any, mismatches: list[dict[str, Any]]
) -> None:
    provider = ChargesAnotherAmount()
    shop = make_app(payments=provider)
    client = shop.test_client()
    sign_in(shop, client, AVA)
    response = client.post(PLAN_URL, data=_confirm_form(_preview(client, BUSINESS).text))
    assert response.status_code == 409
    assert "Your bank reported a payment of another amount than the amount due" in response.text
    assert "You are now on" not in response.text
    assert _subscription(shop).plan_id == PRO
    [invoice] = [i for i in _invoices(shop) if i.id.startswith("in_pc_")]
    assert invoice.status is InvoiceStatus.OPEN  # not voided: money was taken
    assert len(mismatches) == 1


# --- item 4d: paying needs an explicit intent ----------------------------------------------------------


@pytest.mark.parametrize("intent", [None, "", "pay", "change "])
def test_item4d_a_post_without_the_pay_intent_charges_nothing(
    shop: Flask, payments: TestPaymentProvider, intent: str | None
) -> None:
    client = _budi(shop)
    url = f"/portal/subscriptions/{BUDI_SUB}/payment-method"
    page = client.get(url)
    data = {
        "csrf_token": csrf_token_from(page.text),
        "payment_method": "new",
        "card_number": "4242 4242 4242 4242",
        "exp_month": "12",
        "exp_year": str(datetime.now(timezone.utc).year + 2),
        "cvc": "123",
    }
    if intent is not None:
        data["intent"] = intent
    before = db_dump(shop)
    response = client.post(url, data=data)
    assert response.status_code == 422
    assert "Nothing was charged." in response.text
    assert "charge" not in payments.calls and "attach_card" not in payments.calls
    assert db_dump(shop) == before
    # The page's own form says what it does; with it, the payment goes through.
    assert 'name="intent" value="reactivate"' in page.text
    assert client.post(url, data={**data, "intent": "reactivate"}).status_code == 303


# --- item 4e: the page shows what the charge takes -------------------------------------------------


def test_item4e_the_amount_shown_is_the_amount_charged_past_fifty_open_invoices(
    shop: Flask, payments: TestPaymentProvider
) -> None:
    now = datetime.now(timezone.utc)
    with shop.app_context():
        store = portal_store(shop)
        for n in range(60):
            amount = 1_000_00 + n
            store.add_invoice(
                Invoice(
                    id=f"inv_budi_owed_{n:03d}",
                    number=f"INV-OWED-{n:03d}",
                    customer_id=BUDI,
                    status=InvoiceStatus.OPEN,
                    currency="IDR",
                    subtotal=amount,
                    tax=0,
                    total=amount,
                    issued_at=now - timedelta(days=400 - n),
                    description="Acme Sync — usage",
                    subscription_id=BUDI_SUB,
                    lines=(InvoiceLine("Usage", 1, amount, amount),),
                )
            )
        owed = [
            i
            for i in store.list_invoices(BUDI, page=1, per_page=1000).items
            if i.status is InvoiceStatus.OPEN
        ]
    assert len(owed) == 61
    client = _budi(shop)
    card = {
        "payment_method": "new",
        "card_number": "4242 4242 4242 4242",
        "exp_month": "12",
        "exp_year": str(datetime.now(timezone.utc).year + 2),
        "cvc": "123",
    }
    page, response = _pay_arrears(client, BUDI_SUB, **card)
    shown = re.search(r"<dt>Amount due</dt><dd><strong>([^<]+)</strong>", page.text)
    assert shown is not None
    assert response.status_code == 303, response.status_code
    charged = Money(sum(amount.amount for _key, amount in payments.charges), "IDR")
    assert len(payments.charges) == 61
    assert charged == Money(sum(i.total for i in owed), "IDR")
    assert shown.group(1) == format_money(charged, "en")


def test_item4e_an_amount_due_that_changed_since_the_page_is_not_charged(
    shop: Flask, payments: TestPaymentProvider
) -> None:
    client = _budi(shop)
    url = f"/portal/subscriptions/{BUDI_SUB}/payment-method"
    page = client.get(url)
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page.text))
    assert form["amount_due"].endswith(" IDR")
    with shop.app_context():
        portal_store(shop).add_invoice(
            Invoice(
                id="inv_budi_late_fee",
                number="INV-LATE-001",
                customer_id=BUDI,
                status=InvoiceStatus.OPEN,
                currency="IDR",
                subtotal=5_000_00,
                tax=0,
                total=5_000_00,
                issued_at=datetime.now(timezone.utc),
                description="Late fee",
                subscription_id=BUDI_SUB,
                lines=(InvoiceLine("Late fee", 1, 5_000_00, 5_000_00),),
            )
        )
    data = {
        "csrf_token": csrf_token_from(page.text),
        "intent": "reactivate",
        "amount_due": form["amount_due"],
        "payment_method": "new",
        "card_number": "4242 4242 4242 4242",
        "exp_month": "12",
        "exp_year": str(datetime.now(timezone.utc).year + 2),
        "cvc": "123",
    }
    response = client.post(url, data=data)
    assert response.status_code == 409
    assert "The amount due changed since this page was shown, so nothing was charged." in response.text
    assert payments.charges == []
    assert _subscription(shop, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD
