"""The Dodo Payments back end, through the real ``dodopayments`` SDK against
the fake Dodo server in :mod:`tests.fake_dodo`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fake_dodo import API_KEY, PDF_BYTES, FakeDodo, shared_fake_dodo
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import BASE_URL, SECRET, sign_in

from flask_customer_portal import CustomerPortal, signals
from flask_customer_portal.billing.outcomes import PaymentOutcome
from flask_customer_portal.billing.renewal import SubscriptionBiller, reactivate_subscription
from flask_customer_portal.contrib.composite import MappingCustomerIds
from flask_customer_portal.contrib.dodo import (
    SUBSCRIPTION_STATUSES,
    DodoBilling,
    DodoCompositeStorage,
    DodoPaymentProvider,
    DodoRefused,
    DodoUnavailable,
    InvalidDodoWebhook,
    decline_reason,
    dodo_webhook_view,
    verify_dodo_webhook,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.payments import (
    ChargeDeclined,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeSucceeded,
    ChargeUnknown,
    DeclineReason,
    MethodDeclined,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    BillingStore,
    Customer,
    InvoiceStatus,
    LicenseKeyStatus,
    LicenseKeyStore,
    PaymentMethodInUse,
    StateConflict,
    SubscriptionStatus,
)
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"dodo-webhook-secret-for-tests!!").decode()
IDS = {"cus_demo_ava": "cus_dodo_ava", "cus_demo_budi": "cus_dodo_budi", "cus_demo_chen": "cus_dodo_chen"}


@pytest.fixture
def fake() -> FakeDodo:
    return shared_fake_dodo()


@dataclass(frozen=True)
class Scenario:
    ava_sub: str
    ava_old_sub: str
    budi_sub: str
    ava_card: str
    ava_second_card: str
    budi_card: str
    ava_paid: tuple[str, ...]
    budi_failed: str
    ava_key: str
    budi_key: str
    ava_instances: tuple[str, str]


def seed(fake: FakeDodo) -> Scenario:
    """Ava: an active monthly USD subscription paid by a Visa, a cancelled
    yearly one, 14 paid invoices, a licence key with two activations.
    Budi: an ``on_hold`` IDR subscription whose renewal failed, one key.
    Chen: a customer with nothing."""
    fake.add_customer("cus_dodo_ava", "ava@example.com", "Ava Tan")
    fake.add_customer("cus_dodo_budi", "budi@example.com", "Budi Santoso")
    fake.add_customer("cus_dodo_chen", "chen@example.com", "Chen Wei")
    ava_card = fake.add_payment_method("cus_dodo_ava", last4="4242")
    ava_second = fake.add_payment_method("cus_dodo_ava", last4="5556", network="MASTERCARD")
    budi_card = fake.add_payment_method("cus_dodo_budi", last4="0341")
    ava_sub = fake.add_subscription(
        "cus_dodo_ava", product_name="Pro", amount=1900, payment_method_id=ava_card
    )
    ava_old = fake.add_subscription(
        "cus_dodo_ava",
        product_name="Team",
        amount=49000,
        interval="Year",
        status="cancelled",
        created_days_ago=400,
    )
    budi_sub = fake.add_subscription(
        "cus_dodo_budi",
        product_name="Pro",
        amount=15000000,
        currency="IDR",
        status="on_hold",
        payment_method_id=budi_card,
    )
    paid = tuple(
        fake.add_payment(
            "cus_dodo_ava",
            amount=1900,
            tax=171,
            subscription_id=ava_sub,
            days_ago=30 * n + 1,
            payment_method_id=ava_card,
        )
        for n in range(14)
    )
    fake.add_payment(
        "cus_dodo_budi",
        amount=15000000,
        currency="IDR",
        status="failed",
        subscription_id=budi_sub,
        days_ago=40,
        error_code="INSUFFICIENT_FUNDS",
    )
    budi_failed = fake.add_payment(
        "cus_dodo_budi",
        amount=15000000,
        currency="IDR",
        status="failed",
        subscription_id=budi_sub,
        days_ago=2,
        error_code="INSUFFICIENT_FUNDS",
    )
    ava_key = fake.add_license_key("cus_dodo_ava", product_id="pdt_pro")
    budi_key = fake.add_license_key("cus_dodo_budi", product_id="pdt_pro", limit=None)
    instances = (fake.add_instance(ava_key, "Ava's laptop"), fake.add_instance(ava_key, "Ava's desktop"))
    return Scenario(
        ava_sub,
        ava_old,
        budi_sub,
        ava_card,
        ava_second,
        budi_card,
        paid,
        budi_failed,
        ava_key,
        budi_key,
        instances,
    )


@pytest.fixture
def scenario(fake: FakeDodo) -> Scenario:
    return seed(fake)


@pytest.fixture
def billing(fake: FakeDodo) -> DodoBilling:
    return DodoBilling(fake.client())


# -- the adapter on its own ------------------------------------------------------------------


def test_implements_the_portal_protocols(billing: DodoBilling) -> None:
    assert isinstance(billing, BillingStore)
    assert isinstance(billing, LicenseKeyStore)
    provider = DodoPaymentProvider(billing)
    assert isinstance(provider, SubscriptionBiller)
    assert provider.accepts_raw_cards is False
    assert provider.is_test is True  # the fake server stands for Dodo's test environment
    assert provider.mode_setting == "DODO_PAYMENTS_ENVIRONMENT"


def test_subscriptions_are_read_with_money_periods_and_methods(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo
) -> None:
    subscriptions = billing.list_subscriptions("cus_dodo_ava")
    assert [s.id for s in subscriptions] == [scenario.ava_sub, scenario.ava_old_sub]
    current, old = subscriptions
    assert current.status is SubscriptionStatus.ACTIVE
    assert (current.price.amount, current.price.currency) == (1900, "USD")
    assert (current.interval, current.interval_count) == ("month", 1)
    assert current.product_name == "Pro"
    assert current.current_period_end - current.current_period_start == timedelta(days=30)
    assert current.payment_method is not None
    assert (current.payment_method.id, current.payment_method.brand, current.payment_method.last4) == (
        scenario.ava_card,
        "visa",
        "4242",
    )
    assert (current.payment_method.exp_month, current.payment_method.exp_year) == (12, 2031)
    assert old.status is SubscriptionStatus.CANCELLED
    assert old.ended_at is not None and old.interval == "year"
    budi = billing.get_subscription("cus_dodo_budi", scenario.budi_sub)
    assert budi is not None and budi.status is SubscriptionStatus.ON_HOLD
    assert (budi.price.amount, budi.price.currency) == (15000000, "IDR")
    # Lists go to Dodo filtered by customer, one page at a time.
    assert all(q["customer_id"] == "cus_dodo_budi" for _, _, q, _ in fake.calls("GET", "/subscriptions")[-1:])


def test_another_customers_records_are_not_found(billing: DodoBilling, scenario: Scenario) -> None:
    assert billing.get_subscription("cus_dodo_budi", scenario.ava_sub) is None
    assert billing.get_invoice("cus_dodo_budi", scenario.ava_paid[0]) is None
    assert billing.invoice_pdf("cus_dodo_budi", scenario.ava_paid[0]) is None
    assert billing.get_payment_method("cus_dodo_budi", scenario.ava_card) is None
    assert billing.get_license_key("cus_dodo_budi", scenario.ava_key) is None
    assert billing.list_license_key_instances("cus_dodo_budi", scenario.ava_key) == []
    assert billing.get_subscription("cus_dodo_ava", "sub_does_not_exist") is None
    assert billing.get_invoice("cus_dodo_ava", "pay_does_not_exist") is None
    assert billing.list_subscriptions("cus_dodo_chen") == []
    assert billing.list_invoices("cus_dodo_chen", page=1, per_page=10).total == 0
    assert (
        billing.set_subscription_payment_method("cus_dodo_budi", scenario.ava_sub, scenario.budi_card) is None
    )


@pytest.mark.parametrize(
    ("dodo", "portal"),
    [
        ("active", SubscriptionStatus.ACTIVE),
        ("on_hold", SubscriptionStatus.ON_HOLD),
        ("past_due", SubscriptionStatus.ON_HOLD),
        ("cancelled", SubscriptionStatus.CANCELLED),
        ("expired", SubscriptionStatus.CANCELLED),
        ("failed", SubscriptionStatus.CANCELLED),
    ],
)
def test_statuses_map_to_the_portals(
    fake: FakeDodo, billing: DodoBilling, dodo: str, portal: SubscriptionStatus
) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    sid = fake.add_subscription("cus_x", status=dodo)
    found = billing.get_subscription("cus_x", sid)
    assert found is not None and found.status is portal
    assert SUBSCRIPTION_STATUSES[dodo] is portal


def test_pending_subscriptions_are_not_shown(fake: FakeDodo, billing: DodoBilling) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    sid = fake.add_subscription("cus_x", status="pending")
    assert billing.list_subscriptions("cus_x") == []
    assert billing.get_subscription("cus_x", sid) is None


def test_paused_subscription_reads_as_paused(fake: FakeDodo, billing: DodoBilling) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    sid = fake.add_subscription("cus_x", status="paused")
    found = billing.get_subscription("cus_x", sid)
    assert found is not None and found.status is SUBSCRIPTION_STATUSES["paused"]
    assert found.paused_at is not None
    resumed = billing.unpause_subscription("cus_x", sid, resumed_at=fake.now)
    assert resumed is not None and resumed.status is SubscriptionStatus.ACTIVE
    with pytest.raises(StateConflict):
        billing.unpause_subscription("cus_x", sid, resumed_at=fake.now)
    with pytest.raises(DodoRefused):
        billing.pause_subscription("cus_x", sid, now=fake.now, resumes_at=fake.now + timedelta(days=30))


def test_invoices_are_payments_newest_first_across_pages(fake: FakeDodo, billing: DodoBilling) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    sid = fake.add_subscription("cus_x", amount=500)
    ids = [fake.add_payment("cus_x", amount=500, subscription_id=sid, days_ago=n) for n in range(105)]
    page = billing.list_invoices("cus_x", page=3, per_page=50)
    assert page.total == 105 and page.pages == 3
    assert [i.id for i in page.items] == ids[100:]
    first = billing.list_invoices("cus_x", page=1, per_page=10)
    assert [i.id for i in first.items] == ids[:10]
    assert all(i.status is InvoiceStatus.PAID and i.total_money.amount == 500 for i in first.items)
    # Dodo's pages, from 0, until an empty one: 100 + 5 + 0.
    numbers = [q["page_number"] for _, _, q, _ in fake.calls("GET", "/payments")][:3]
    assert numbers == ["0", "1", "2"]
    batch = billing.list_invoices_after("cus_x", first.items[-1], limit=3, with_lines=True)
    assert [i.id for i in batch] == ids[10:13]
    assert all(i.lines for i in batch)


def test_invoice_detail_has_lines_tax_and_the_pdf(billing: DodoBilling, scenario: Scenario) -> None:
    invoice = billing.get_invoice("cus_dodo_ava", scenario.ava_paid[0])
    assert invoice is not None
    assert invoice.status is InvoiceStatus.PAID
    assert (invoice.total, invoice.tax, invoice.subtotal, invoice.currency) == (1900, 171, 1729, "USD")
    assert invoice.number.startswith("inv_")
    assert invoice.subscription_id == scenario.ava_sub and invoice.description == "Pro"
    assert [(line.description, line.amount) for line in invoice.lines] == [("Pro plan", 1729)]
    assert invoice.payment_method is not None and invoice.payment_method.last4 == "4242"
    assert billing.invoice_pdf("cus_dodo_ava", scenario.ava_paid[0]) == PDF_BYTES


def test_only_the_failed_renewal_an_on_hold_subscription_owes_is_open(
    billing: DodoBilling, scenario: Scenario
) -> None:
    invoices = billing.list_invoices("cus_dodo_budi", page=1, per_page=10).items
    assert [(i.id == scenario.budi_failed, i.status) for i in invoices] == [
        (True, InvoiceStatus.OPEN),
        (False, InvoiceStatus.VOID),
    ]
    detail = billing.get_invoice("cus_dodo_budi", scenario.budi_failed)
    assert detail is not None and detail.status is InvoiceStatus.OPEN
    assert (detail.total, detail.currency) == (15000000, "IDR")


def test_refunds_and_pending_payments(fake: FakeDodo, billing: DodoBilling) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    refunded = fake.add_payment("cus_x", amount=700, refund_status="full")
    processing = fake.add_payment("cus_x", amount=700, status="processing")
    cancelled = fake.add_payment("cus_x", amount=700, status="cancelled")
    statuses = {i.id: i.status for i in billing.list_invoices("cus_x", page=1, per_page=10).items}
    assert statuses == {
        refunded: InvoiceStatus.REFUNDED,
        processing: InvoiceStatus.OPEN,
        cancelled: InvoiceStatus.VOID,
    }


def test_payment_methods_newest_first_and_removal(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo
) -> None:
    methods = billing.list_payment_methods("cus_dodo_ava")
    assert [m.id for m in methods] == [scenario.ava_card, scenario.ava_second_card]
    assert methods[1].brand == "mastercard"
    with pytest.raises(PaymentMethodInUse):
        billing.remove_payment_method("cus_dodo_ava", scenario.ava_card)
    assert billing.remove_payment_method("cus_dodo_budi", scenario.ava_second_card) is False
    assert billing.remove_payment_method("cus_dodo_ava", scenario.ava_second_card) is True
    assert [m.id for m in billing.list_payment_methods("cus_dodo_ava")] == [scenario.ava_card]
    assert fake.calls("DELETE", f"/customers/cus_dodo_ava/payment-methods/{scenario.ava_second_card}")


def test_cancel_at_next_billing_date_and_undo(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo
) -> None:
    now = fake.now
    ending = billing.cancel_subscription("cus_dodo_ava", scenario.ava_sub, at_period_end=True, now=now)
    assert ending is not None
    assert ending.status is SubscriptionStatus.ACTIVE and ending.cancel_at_period_end
    assert fake.calls("PATCH", f"/subscriptions/{scenario.ava_sub}")[-1][3] == {
        "cancel_at_next_billing_date": True
    }
    with pytest.raises(StateConflict):
        billing.cancel_subscription("cus_dodo_ava", scenario.ava_sub, at_period_end=True, now=now)
    kept = billing.undo_cancellation("cus_dodo_ava", scenario.ava_sub, now=now)
    assert kept is not None and not kept.cancel_at_period_end
    assert fake.calls("PATCH", f"/subscriptions/{scenario.ava_sub}")[-1][3] == {
        "cancel_at_next_billing_date": False
    }
    with pytest.raises(StateConflict):
        billing.undo_cancellation("cus_dodo_ava", scenario.ava_sub, now=now)
    # Too late: the billing date has passed.
    billing.cancel_subscription("cus_dodo_ava", scenario.ava_sub, at_period_end=True, now=now)
    with pytest.raises(StateConflict):
        billing.undo_cancellation("cus_dodo_ava", scenario.ava_sub, now=now + timedelta(days=60))
    # Another customer's: not found, nothing sent.
    patches = len(fake.calls("PATCH", r"/subscriptions/.*"))
    assert billing.cancel_subscription("cus_dodo_budi", scenario.ava_sub, at_period_end=True, now=now) is None
    assert len(fake.calls("PATCH", r"/subscriptions/.*")) == patches


def test_cancel_now(billing: DodoBilling, scenario: Scenario, fake: FakeDodo) -> None:
    ended = billing.cancel_subscription("cus_dodo_budi", scenario.budi_sub, at_period_end=True, now=fake.now)
    # An on_hold subscription is always cancelled now.
    assert ended is not None and ended.status is SubscriptionStatus.CANCELLED
    assert fake.calls("PATCH", f"/subscriptions/{scenario.budi_sub}")[-1][3] == {
        "status": "cancelled",
        "cancel_reason": "cancelled_by_customer",
    }
    with pytest.raises(StateConflict):
        billing.cancel_subscription("cus_dodo_budi", scenario.budi_sub, at_period_end=False, now=fake.now)


def test_dodo_refusing_a_change_is_a_state_conflict(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo
) -> None:
    fake.fail("PATCH", f"/subscriptions/{scenario.ava_sub}", 409)
    with pytest.raises(DodoRefused) as refused:
        billing.cancel_subscription("cus_dodo_ava", scenario.ava_sub, at_period_end=True, now=fake.now)
    assert isinstance(refused.value, StateConflict) and refused.value.status_code == 409


def test_changing_the_method_of_an_active_subscription(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo
) -> None:
    updated = billing.set_subscription_payment_method(
        "cus_dodo_ava", scenario.ava_sub, scenario.ava_second_card
    )
    assert updated is not None and updated.payment_method is not None
    assert updated.payment_method.id == scenario.ava_second_card
    assert updated.status is SubscriptionStatus.ACTIVE
    sent = fake.calls("POST", f"/subscriptions/{scenario.ava_sub}/update-payment-method")[-1][3]
    assert sent == {"type": "existing", "payment_method_id": scenario.ava_second_card}
    # Budi's card is not Ava's: nothing is sent.
    assert (
        billing.set_subscription_payment_method("cus_dodo_ava", scenario.ava_sub, scenario.budi_card) is None
    )
    assert len(fake.calls("POST", r"/subscriptions/.*/update-payment-method")) == 1


def test_a_new_method_is_entered_on_dodos_page(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo
) -> None:
    link = billing.payment_method_link(
        "cus_dodo_budi", scenario.budi_sub, return_url="https://shop.example/back"
    )
    assert link is not None and link.startswith("https://test.checkout.dodopayments.com/")
    sent = fake.calls("POST", f"/subscriptions/{scenario.budi_sub}/update-payment-method")[-1][3]
    assert sent == {"type": "new", "return_url": "https://shop.example/back"}
    assert (
        billing.payment_method_link("cus_dodo_ava", scenario.budi_sub, return_url="https://x.example") is None
    )


def test_pay_arrears_outcomes(billing: DodoBilling, scenario: Scenario, fake: FakeDodo) -> None:
    provider = DodoPaymentProvider(billing)
    fake.arrears_outcome = "failed"
    declined = provider.pay_arrears(subscription_id=scenario.budi_sub, provider_token=scenario.budi_card)
    assert isinstance(declined, ChargeDeclined) and declined.reason is DeclineReason.INSUFFICIENT_FUNDS
    fake.arrears_outcome = "requires_customer_action"
    action = provider.pay_arrears(subscription_id=scenario.budi_sub, provider_token=scenario.budi_card)
    assert isinstance(action, ChargeRequiresAction) and action.redirect_url.startswith("https://")
    fake.arrears_outcome = "processing"
    unknown = provider.pay_arrears(subscription_id=scenario.budi_sub, provider_token=scenario.budi_card)
    assert isinstance(unknown, ChargeUnknown)
    fake.arrears_outcome = "succeeded"
    paid = provider.pay_arrears(subscription_id=scenario.budi_sub, provider_token=scenario.budi_card)
    assert isinstance(paid, ChargeSucceeded)
    assert (paid.amount.amount, paid.amount.currency) == (15000000, "IDR")
    assert fake.subscriptions[scenario.budi_sub]["status"] == "active"
    # The portal never charges by itself, and takes no card data.
    assert isinstance(
        provider.charge(
            customer_id="cus_dodo_ava",
            provider_token=scenario.ava_card,
            amount=paid.amount,
            idempotency_key="invoice:x:attempt:1",
            invoice_id="x",
            description="x",
        ),
        ChargeFailed,
    )
    assert provider.find_charge("invoice:x:attempt:1") is None
    assert isinstance(provider.attach_token("cus_dodo_ava", "tok_x"), MethodDeclined)


def test_pay_arrears_without_an_answer_is_unknown_never_failed(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo
) -> None:
    provider = DodoPaymentProvider(billing)
    path = f"/subscriptions/{scenario.budi_sub}/update-payment-method"
    fake.fail("POST", path, 502)
    assert isinstance(
        provider.pay_arrears(subscription_id=scenario.budi_sub, provider_token="pm_x"), ChargeUnknown
    )
    fake.fail("POST", path, 422)
    refused = provider.pay_arrears(subscription_id=scenario.budi_sub, provider_token=scenario.budi_card)
    assert isinstance(refused, ChargeFailed) and not refused.retryable
    slow = DodoPaymentProvider(DodoBilling(fake.client(timeout=0.2)))
    fake.fail("POST", path, "timeout")
    assert isinstance(
        slow.pay_arrears(subscription_id=scenario.budi_sub, provider_token="pm_x"), ChargeUnknown
    )


def test_decline_codes() -> None:
    assert decline_reason("INSUFFICIENT_FUNDS") is DeclineReason.INSUFFICIENT_FUNDS
    assert decline_reason("expired_card") is DeclineReason.EXPIRED_CARD
    assert decline_reason("DO_NOT_HONOR") is DeclineReason.GENERIC
    assert decline_reason(None) is DeclineReason.GENERIC


def test_plan_change_preview_and_apply(billing: DodoBilling, scenario: Scenario, fake: FakeDodo) -> None:
    fake.product_prices.update({"pdt_team": 1500, "pdt_pro": 1900})
    sub = fake.subscriptions[scenario.ava_sub]
    start, end = (
        datetime.fromisoformat(sub[k].replace("Z", "+00:00"))
        for k in ("previous_billing_date", "next_billing_date")
    )
    factor = (end - fake.now) / (end - start)
    expected = round(1500 * 2 * factor) - round(1900 * factor)
    preview = billing.preview_plan_change("cus_dodo_ava", scenario.ava_sub, product_id="pdt_team", quantity=2)
    assert preview is not None and (preview.amount.amount, preview.amount.currency) == (expected, "USD")
    applied = billing.change_plan("cus_dodo_ava", scenario.ava_sub, product_id="pdt_team", quantity=2)
    assert applied is not None and applied.payment_link is None
    assert fake.subscriptions[scenario.ava_sub]["product_id"] == "pdt_team"
    sent = fake.calls("POST", f"/subscriptions/{scenario.ava_sub}/change-plan")[-1][3]
    assert sent["on_payment_failure"] == "prevent_change"
    linked = billing.change_plan(
        "cus_dodo_ava", scenario.ava_sub, product_id="pdt_pro", return_url="https://shop.example/plan"
    )
    assert linked is not None and linked.payment_link is not None
    assert billing.preview_plan_change("cus_dodo_budi", scenario.ava_sub, product_id="pdt_team") is None


def test_licence_keys_and_activations(billing: DodoBilling, scenario: Scenario, fake: FakeDodo) -> None:
    keys = billing.list_license_keys("cus_dodo_ava")
    assert [k.id for k in keys] == [scenario.ava_key]
    key = keys[0]
    assert key.status is LicenseKeyStatus.ACTIVE
    assert (key.activations, key.activation_limit, key.product_name) == (2, 3, "Pro")
    assert billing.count_license_keys("cus_dodo_ava") == 1
    instances = billing.list_license_key_instances("cus_dodo_ava", scenario.ava_key)
    assert [i.name for i in instances] == ["Ava's laptop", "Ava's desktop"]
    assert all(i.is_active and i.customer_id == "cus_dodo_ava" for i in instances)
    laptop = scenario.ava_instances[0]
    assert (
        billing.deactivate_license_key_instance("cus_dodo_budi", scenario.ava_key, laptop, now=fake.now)
        is None
    )
    assert (
        billing.deactivate_license_key_instance("cus_dodo_ava", scenario.budi_key, laptop, now=fake.now)
        is None
    )
    done = billing.deactivate_license_key_instance("cus_dodo_ava", scenario.ava_key, laptop, now=fake.now)
    assert done is not None and done.deactivated_at == fake.now
    assert fake.calls("POST", "/licenses/deactivate")[-1][3] == {
        "license_key": fake.license_keys[scenario.ava_key]["key"],
        "license_key_instance_id": laptop,
    }
    assert [i.name for i in billing.list_license_key_instances("cus_dodo_ava", scenario.ava_key)] == [
        "Ava's desktop"
    ]
    assert billing.list_license_keys("cus_dodo_ava")[0].activations == 1
    # Gone at Dodo: already deactivated, never a second success.
    with pytest.raises(StateConflict):
        billing.deactivate_license_key_instance("cus_dodo_ava", scenario.ava_key, laptop, now=fake.now)
    assert len(fake.calls("POST", "/licenses/deactivate")) == 1
    fake.add_license_key("cus_dodo_budi", status="disabled")
    assert {k.status for k in billing.list_license_keys("cus_dodo_budi")} == {
        LicenseKeyStatus.ACTIVE,
        LicenseKeyStatus.REVOKED,
    }


def test_hosted_portal_link(billing: DodoBilling, scenario: Scenario, fake: FakeDodo) -> None:
    link = billing.hosted_portal_link("cus_dodo_ava", return_url="https://shop.example/account")
    assert link.startswith("https://test.customer.dodopayments.com/session/")
    query = fake.calls("POST", "/customers/cus_dodo_ava/customer-portal/session")[-1][2]
    assert query == {"return_url": "https://shop.example/account", "send_email": "false"}


@pytest.mark.parametrize("status", [500, 503, 401, 429])
def test_server_errors_and_refused_keys_are_unavailable(
    billing: DodoBilling, scenario: Scenario, fake: FakeDodo, status: int
) -> None:
    fake.fail("GET", "/subscriptions", status)
    with pytest.raises(DodoUnavailable) as raised:
        billing.list_subscriptions("cus_dodo_ava")
    assert raised.value.code == 503


def test_a_timeout_is_unavailable(fake: FakeDodo, scenario: Scenario) -> None:
    slow = DodoBilling(fake.client(timeout=0.2))
    fake.fail("GET", "/payments", "timeout")
    with pytest.raises(DodoUnavailable):
        slow.list_invoices("cus_dodo_ava", page=1, per_page=10)


def test_a_wrong_api_key_is_unavailable_not_empty(fake: FakeDodo, scenario: Scenario) -> None:
    wrong = DodoBilling(fake.client(api_key="dodo_wrong"))
    with pytest.raises(DodoUnavailable):
        wrong.list_subscriptions("cus_dodo_ava")


def test_from_api_key_picks_the_environment() -> None:
    assert str(DodoBilling.from_api_key("k", environment="live_mode").client.base_url).startswith(
        "https://live.dodopayments.com"
    )
    assert str(DodoBilling.from_api_key("k").client.base_url).startswith("https://test.dodopayments.com")
    with pytest.raises(ValueError, match="environment"):
        DodoBilling.from_api_key("k", environment="sandbox")
    with pytest.raises(ValueError, match="API key"):
        DodoBilling.from_api_key("")


# -- the portal over Dodo ---------------------------------------------------------------------


@pytest.fixture
def dodo_app(tmp_path: Path, fake: FakeDodo, scenario: Scenario) -> Iterator[Flask]:
    app = Flask("dodo_portal_app")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'portal.db'}",
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
    app.add_url_rule("/webhooks/dodo", view_func=dodo_webhook_view(WEBHOOK_SECRET), methods=["POST"])
    with app.app_context():
        local.create_all()
        local.add_customer(Customer(id="cus_demo_ava", email="ava@example.com", name="Ava Tan", locale="en"))
        local.add_customer(
            Customer(id="cus_demo_budi", email="budi@example.com", name="Budi Santoso", locale="en")
        )
        local.add_customer(
            Customer(id="cus_demo_chen", email="chen@example.com", name="Chen Wei", locale="en")
        )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        db.engine.dispose()


def _signed_in(app: Flask, customer_id: str) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def test_the_payment_methods_page_over_dodo_has_no_default_and_adds_cards_per_subscription(
    dodo_app: Flask, scenario: Scenario
) -> None:
    """Dodo's API keeps no default payment method of a customer, and takes a
    new method on its own page for one subscription at a time."""
    assert not get_state(dodo_app).capabilities.default_payment_method
    client = _signed_in(dodo_app, "cus_demo_ava")
    page = client.get("/portal/payment-methods")
    assert page.status_code == 200
    assert "Make default" not in page.text and "/default" not in page.text
    assert 'name="card_number"' not in page.text and "Add card" not in page.text
    assert f'href="/portal/subscriptions/{scenario.ava_sub}/payment-method"' in page.text
    token = csrf_token_from(page.text)
    assert (
        client.post(
            "/portal/payment-methods", data={"csrf_token": token, "payment_method": "new"}
        ).status_code
        == 400
    )
    method = scenario.ava_second_card
    assert (
        client.post(f"/portal/payment-methods/{method}/default", data={"csrf_token": token}).status_code
        == 404
    )


def test_portal_pages_show_dodos_records(dodo_app: Flask, scenario: Scenario) -> None:
    client = _signed_in(dodo_app, "cus_demo_ava")
    page = client.get("/portal/subscriptions")
    assert page.status_code == 200
    assert scenario.ava_sub in page.text
    assert scenario.budi_sub not in page.text
    invoices = client.get("/portal/invoices")
    assert invoices.status_code == 200 and scenario.ava_paid[0] in invoices.text
    assert client.get(f"/portal/invoices/{scenario.ava_paid[0]}").status_code == 200
    # Budi's records are not found for Ava.
    assert client.get(f"/portal/subscriptions/{scenario.budi_sub}").status_code == 404
    assert client.get(f"/portal/invoices/{scenario.budi_failed}").status_code == 404
    with dodo_app.app_context():
        storage = get_state(dodo_app).storage
        keys = storage.list_license_keys("cus_demo_ava")
        assert [k.customer_id for k in keys] == ["cus_demo_ava"]
        assert storage.count_license_keys("cus_demo_chen") == 0


def test_portal_cancel_and_undo_reach_dodo(dodo_app: Flask, scenario: Scenario, fake: FakeDodo) -> None:
    client = _signed_in(dodo_app, "cus_demo_ava")
    page = client.get(f"/portal/subscriptions/{scenario.ava_sub}")
    assert page.status_code == 200
    done = client.post(
        f"/portal/subscriptions/{scenario.ava_sub}/cancel",
        data={"csrf_token": csrf_token_from(page.text), "confirm": "yes"},
    )
    assert done.status_code == 303
    assert fake.subscriptions[scenario.ava_sub]["cancel_at_next_billing_date"] is True
    page = client.get(f"/portal/subscriptions/{scenario.ava_sub}")
    undo = client.post(
        f"/portal/subscriptions/{scenario.ava_sub}/resume", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert undo.status_code in (302, 303)
    assert fake.subscriptions[scenario.ava_sub]["cancel_at_next_billing_date"] is False
    with dodo_app.app_context():
        actions = _audit_actions(dodo_app, "cus_demo_ava")
    assert "subscription.cancelled" in actions and "subscription.cancellation_undone" in actions


def test_plan_changes_over_dodo_need_the_portals_lock(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dodo bills its subscriptions itself, so the portal's own money path
    does not change its plans; Dodo's does (``tests/test_plans_dodo.py``),
    but only under the portal's lock: without it there is no **Change
    plan** link, and the plan page is refused (403), as a pause the back
    end cannot make is."""
    import dataclasses

    from flask_customer_portal.billing.plan_change import plan_changes_supported
    from flask_customer_portal.capabilities import capabilities_of

    with dodo_app.app_context():
        state = get_state(dodo_app)
        assert not capabilities_of(state.storage).plans
        assert not capabilities_of(state.storage).charge
        assert not plan_changes_supported(state)
        assert capabilities_of(state.storage).provider_plan_change
        monkeypatch.setattr(
            state, "capabilities", dataclasses.replace(state.capabilities, provider_lock=False)
        )
    client = _signed_in(dodo_app, "cus_demo_ava")
    path = f"/portal/subscriptions/{scenario.ava_sub}"
    page = client.get(path)
    assert page.status_code == 200
    assert f"{path}/plan" not in page.text
    before = dict(fake.subscriptions[scenario.ava_sub])
    assert client.get(f"{path}/plan").status_code == 403
    form = {"csrf_token": csrf_token_from(page.text), "step": "preview", "plan": "pdt_other"}
    assert client.post(f"{path}/plan", data=form).status_code == 403
    assert fake.subscriptions[scenario.ava_sub] == before


def _audit_actions(app: Flask, customer_id: str) -> list[str]:
    from sqlalchemy import text

    db = app.extensions["sqlalchemy"]
    rows = db.session.execute(
        text("SELECT action FROM portal_audit_events WHERE customer_id = :c"), {"c": customer_id}
    )
    return [row[0] for row in rows]


def _reactivate(app: Flask, client: FlaskClient, subscription_id: str, method_id: str) -> Any:
    page = client.get(f"/portal/subscriptions/{subscription_id}/payment-method")
    assert page.status_code == 200
    return client.post(
        f"/portal/subscriptions/{subscription_id}/payment-method",
        data={"csrf_token": csrf_token_from(page.text), "payment_method": method_id, "intent": "reactivate"},
    )


def test_reactivating_an_on_hold_subscription_through_dodo(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    client = _signed_in(dodo_app, "cus_demo_budi")
    reactivated: list[dict[str, Any]] = []

    def received(sender: Any, **kwargs: Any) -> None:
        reactivated.append(kwargs)

    with signals.reactivation_succeeded.connected_to(received, dodo_app):
        answer = _reactivate(dodo_app, client, scenario.budi_sub, scenario.budi_card)
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith(f"/subscriptions/{scenario.budi_sub}/reactivated")
    assert fake.subscriptions[scenario.budi_sub]["status"] == "active"
    assert client.get(answer.headers["Location"]).status_code == 200
    assert len(reactivated) == 1 and reactivated[0]["subscription"].customer_id == "cus_demo_budi"
    assert reactivated[0]["invoice"] is not None and reactivated[0]["invoice"].status is InvoiceStatus.PAID
    with dodo_app.app_context():
        assert "subscription.reactivated" in _audit_actions(dodo_app, "cus_demo_budi")
    # Once more (back button): already active, Dodo is not asked again.
    calls = len(fake.calls("POST", r"/subscriptions/.*/update-payment-method"))
    with dodo_app.test_request_context(), dodo_app.app_context():
        state = get_state(dodo_app)
        budi = state.storage.get_customer("cus_demo_budi")
        method = state.storage.get_payment_method("cus_demo_budi", scenario.budi_card)
        assert budi is not None and method is not None
        again = reactivate_subscription(state, budi, scenario.budi_sub, method)
    assert again.outcome is PaymentOutcome.ALREADY_PAID
    assert len(fake.calls("POST", r"/subscriptions/.*/update-payment-method")) == calls


def test_a_declined_arrears_charge_keeps_the_hold(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    fake.arrears_outcome = "failed"
    client = _signed_in(dodo_app, "cus_demo_budi")
    answer = _reactivate(dodo_app, client, scenario.budi_sub, scenario.budi_card)
    assert answer.status_code == 422
    assert fake.subscriptions[scenario.budi_sub]["status"] == "on_hold"


def test_a_bank_confirmation_redirects_to_dodos_page(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    fake.arrears_outcome = "requires_customer_action"
    client = _signed_in(dodo_app, "cus_demo_budi")
    answer = _reactivate(dodo_app, client, scenario.budi_sub, scenario.budi_card)
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"https://test.checkout.dodopayments.com/3ds/{scenario.budi_sub}"


def test_a_processing_charge_is_pending_and_an_outage_is_not_a_500(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    fake.arrears_outcome = "processing"
    client = _signed_in(dodo_app, "cus_demo_budi")
    answer = _reactivate(dodo_app, client, scenario.budi_sub, scenario.budi_card)
    assert answer.status_code == 202
    fake.fail("GET", "/subscriptions", 500)
    outage = client.get("/portal/subscriptions")
    assert outage.status_code == 503
    assert 'id="error-title"' in outage.text and "Traceback" not in outage.text


def test_another_customers_subscription_cannot_be_reactivated(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    client = _signed_in(dodo_app, "cus_demo_ava")
    page = client.get(f"/portal/subscriptions/{scenario.ava_sub}/payment-method")
    answer = client.post(
        f"/portal/subscriptions/{scenario.budi_sub}/payment-method",
        data={
            "csrf_token": csrf_token_from(page.text),
            "payment_method": scenario.budi_card,
            "intent": "reactivate",
        },
    )
    assert answer.status_code == 404
    assert fake.calls("POST", r"/subscriptions/.*/update-payment-method") == []


# -- webhooks --------------------------------------------------------------------------------


def _sign(
    body: bytes, *, msg_id: str = "msg_1", timestamp: int | None = None, secret: str = WEBHOOK_SECRET
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def _event(fake: FakeDodo, kind: str, subscription_id: str) -> bytes:
    data = dict(fake.subscriptions[subscription_id], payload_type="Subscription")
    return json.dumps(
        {"business_id": "bus_fake", "type": kind, "timestamp": "2026-11-25T10:00:00Z", "data": data}
    ).encode()


def test_webhook_signatures_are_verified(fake: FakeDodo, scenario: Scenario) -> None:
    body = _event(fake, "subscription.on_hold", scenario.budi_sub)
    event = verify_dodo_webhook(WEBHOOK_SECRET, body, _sign(body))
    assert (event.type, event.customer_id, event.subject_id) == (
        "subscription.on_hold",
        "cus_dodo_budi",
        scenario.budi_sub,
    )
    with pytest.raises(InvalidDodoWebhook):
        verify_dodo_webhook(WEBHOOK_SECRET, body + b" ", _sign(body))
    with pytest.raises(InvalidDodoWebhook):
        verify_dodo_webhook(WEBHOOK_SECRET, body, _sign(body, timestamp=int(time.time()) - 600))
    other = "whsec_" + base64.b64encode(b"another-secret-entirely-here!!!").decode()
    with pytest.raises(InvalidDodoWebhook):
        verify_dodo_webhook(WEBHOOK_SECRET, body, _sign(body, secret=other))
    with pytest.raises(InvalidDodoWebhook):
        verify_dodo_webhook(WEBHOOK_SECRET, body, {})


def test_webhook_route_records_signals_and_ignores_repeats(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    client = dodo_app.test_client()
    fake.subscriptions[scenario.ava_sub]["status"] = "on_hold"
    body = _event(fake, "subscription.on_hold", scenario.ava_sub)
    held: list[dict[str, Any]] = []

    def received(sender: Any, **kwargs: Any) -> None:
        held.append(kwargs)

    with signals.subscription_put_on_hold.connected_to(received, dodo_app):
        first = client.post("/webhooks/dodo", data=body, headers=_sign(body, msg_id="msg_hold"))
        again = client.post("/webhooks/dodo", data=body, headers=_sign(body, msg_id="msg_hold"))
    assert (first.status_code, again.status_code) == (204, 204)
    assert len(held) == 1
    assert held[0]["customer"].id == "cus_demo_ava"
    assert held[0]["subscription"].status is SubscriptionStatus.ON_HOLD
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("dodo.subscription.on_hold") == 1


def test_webhook_route_refuses_bad_and_old_signatures(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    client = dodo_app.test_client()
    body = _event(fake, "subscription.renewed", scenario.ava_sub)
    bad = client.post("/webhooks/dodo", data=body, headers=_sign(b"{}"))
    old = client.post("/webhooks/dodo", data=body, headers=_sign(body, timestamp=int(time.time()) - 3600))
    unsigned = client.post("/webhooks/dodo", data=body)
    assert (bad.status_code, old.status_code, unsigned.status_code) == (400, 400, 400)
    assert client.get("/webhooks/dodo").status_code == 405
    with dodo_app.app_context():
        assert not any(a.startswith("dodo.") for a in _audit_actions(dodo_app, "cus_demo_ava"))


def test_payment_webhook_sends_invoice_paid(dodo_app: Flask, fake: FakeDodo, scenario: Scenario) -> None:
    client = dodo_app.test_client()
    data = dict(fake.payments[scenario.ava_paid[0]], payload_type="Payment")
    body = json.dumps(
        {
            "business_id": "bus_fake",
            "type": "payment.succeeded",
            "timestamp": "2026-11-25T10:00:00Z",
            "data": data,
        }
    ).encode()
    paid: list[dict[str, Any]] = []

    def received(sender: Any, **kwargs: Any) -> None:
        paid.append(kwargs)

    with signals.invoice_paid.connected_to(received, dodo_app):
        answer = client.post("/webhooks/dodo", data=body, headers=_sign(body, msg_id="msg_paid"))
    assert answer.status_code == 204
    assert [p["invoice"].id for p in paid] == [scenario.ava_paid[0]]
    assert paid[0]["customer"].id == "cus_demo_ava"


def _on_hold_event(fake: FakeDodo, scenario: Scenario) -> bytes:
    fake.subscriptions[scenario.ava_sub]["status"] = "on_hold"
    return _event(fake, "subscription.on_hold", scenario.ava_sub)


def test_a_repeated_webhook_is_ignored_by_another_worker_and_after_a_restart(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    # A second view has nothing in memory: another worker, or the same one
    # after a restart. The store's claim is what both see.
    dodo_app.add_url_rule(
        "/webhooks/dodo-2", "dodo_webhook_2", view_func=dodo_webhook_view(WEBHOOK_SECRET), methods=["POST"]
    )
    body = _on_hold_event(fake, scenario)
    held: list[Any] = []
    with signals.subscription_put_on_hold.connected_to(lambda sender, **kw: held.append(kw), dodo_app):
        answers = [
            dodo_app.test_client().post(url, data=body, headers=_sign(body, msg_id="msg_twice")).status_code
            for url in ("/webhooks/dodo", "/webhooks/dodo-2", "/webhooks/dodo")
        ]
    assert answers == [204, 204, 204]
    assert len(held) == 1
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("dodo.subscription.on_hold") == 1


def test_concurrent_deliveries_of_one_webhook_are_handled_once(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    body = _on_hold_event(fake, scenario)
    count = 6
    barrier = threading.Barrier(count)
    statuses: list[int] = []
    lock = threading.Lock()

    def deliver() -> None:
        client = dodo_app.test_client()
        barrier.wait(timeout=30)
        status = client.post("/webhooks/dodo", data=body, headers=_sign(body, msg_id="msg_race")).status_code
        with lock:
            statuses.append(status)

    held: list[Any] = []
    with signals.subscription_put_on_hold.connected_to(lambda sender, **kw: held.append(kw), dodo_app):
        threads = [threading.Thread(target=deliver) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    # One delivery handled it; each other one found it handled (204) or
    # still being handled (409, Dodo delivers it again later).
    assert len(statuses) == count
    assert 204 in statuses and set(statuses) <= {204, 409}
    assert len(held) == 1
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("dodo.subscription.on_hold") == 1


def _deliver(app: Flask, body: bytes, msg_id: str, url: str = "/webhooks/dodo") -> int:
    return app.test_client().post(url, data=body, headers=_sign(body, msg_id=msg_id)).status_code


def test_a_repeat_while_the_webhook_is_being_handled_is_answered_409(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow_on_event(event: Any) -> None:
        seen.append(event.id)
        started.set()
        assert release.wait(timeout=30)

    dodo_app.add_url_rule(
        "/webhooks/dodo-slow",
        "dodo_webhook_slow",
        view_func=dodo_webhook_view(WEBHOOK_SECRET, on_event=slow_on_event),
        methods=["POST"],
    )
    body = _on_hold_event(fake, scenario)
    held: list[Any] = []
    first: list[int] = []
    with signals.subscription_put_on_hold.connected_to(lambda sender, **kw: held.append(kw), dodo_app):
        worker = threading.Thread(
            target=lambda: first.append(_deliver(dodo_app, body, "msg_slow", "/webhooks/dodo-slow"))
        )
        worker.start()
        try:
            assert started.wait(timeout=30)
            repeat = dodo_app.test_client().post(
                "/webhooks/dodo", data=body, headers=_sign(body, msg_id="msg_slow")
            )
            assert repeat.status_code == 409
            assert repeat.get_data(as_text=True) == "event being handled, deliver it again later"
            assert _deliver(dodo_app, body, "msg_slow", "/webhooks/dodo-slow") == 409
            assert len(held) == 1
        finally:
            release.set()
            worker.join(timeout=30)
        assert first == [204]
        # Once the first delivery finished, a repeat is answered 204.
        assert _deliver(dodo_app, body, "msg_slow") == 204
        assert _deliver(dodo_app, body, "msg_slow", "/webhooks/dodo-slow") == 204
    assert seen == ["msg_slow"]
    assert len(held) == 1
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("dodo.subscription.on_hold") == 1


def _claim_left_by_a_dead_worker(app: Flask, msg_id: str, age: timedelta) -> None:
    from sqlalchemy import insert

    from flask_customer_portal.contrib.sqla import WebhookEventModel

    with app.app_context():
        session = app.extensions["sqlalchemy"].session
        session.execute(
            insert(WebhookEventModel).values(
                provider="dodo", event_id=msg_id, received_at=datetime.now(timezone.utc) - age
            )
        )
        session.commit()


def test_a_webhook_claimed_by_a_dead_worker_is_handled_after_the_lease(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    body = _on_hold_event(fake, scenario)
    held: list[Any] = []
    with signals.subscription_put_on_hold.connected_to(lambda sender, **kw: held.append(kw), dodo_app):
        # Within the lease the claim may still be a live worker's: 409.
        _claim_left_by_a_dead_worker(dodo_app, "msg_young", timedelta(minutes=4))
        assert _deliver(dodo_app, body, "msg_young") == 409
        assert held == []
        # Past the lease (5 minutes) its worker died: the next delivery handles it.
        _claim_left_by_a_dead_worker(dodo_app, "msg_dead", timedelta(minutes=6))
        assert _deliver(dodo_app, body, "msg_dead") == 204
        assert len(held) == 1
        assert _deliver(dodo_app, body, "msg_dead") == 204
        assert len(held) == 1
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("dodo.subscription.on_hold") == 1


def test_the_lease_is_an_argument_of_the_view(dodo_app: Flask, fake: FakeDodo, scenario: Scenario) -> None:
    dodo_app.add_url_rule(
        "/webhooks/dodo-short",
        "dodo_webhook_short",
        view_func=dodo_webhook_view(WEBHOOK_SECRET, lease=timedelta(minutes=1)),
        methods=["POST"],
    )
    body = _on_hold_event(fake, scenario)
    _claim_left_by_a_dead_worker(dodo_app, "msg_short", timedelta(minutes=2))
    assert _deliver(dodo_app, body, "msg_short") == 409
    assert _deliver(dodo_app, body, "msg_short", "/webhooks/dodo-short") == 204
    assert _deliver(dodo_app, body, "msg_short") == 204
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("dodo.subscription.on_hold") == 1
    with pytest.raises(ValueError, match="lease"):
        dodo_webhook_view(WEBHOOK_SECRET, lease=-timedelta(minutes=1))


def test_a_webhook_whose_handling_failed_is_handled_when_dodo_delivers_it_again(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = get_state(dodo_app).storage.local  # type: ignore[attr-defined]
    record_event = local.record_event
    failures = [OSError("the database went away")]

    def record_or_fail(event: Any) -> None:
        if failures:
            raise failures.pop()
        record_event(event)

    monkeypatch.setattr(local, "record_event", record_or_fail)
    body = _on_hold_event(fake, scenario)
    headers = _sign(body, msg_id="msg_retry")
    client = dodo_app.test_client()
    held: list[Any] = []
    with signals.subscription_put_on_hold.connected_to(lambda sender, **kw: held.append(kw), dodo_app):
        with pytest.raises(OSError, match="went away"):
            client.post("/webhooks/dodo", data=body, headers=headers)
        assert held == []
        retried = client.post("/webhooks/dodo", data=body, headers=headers)
        again = client.post("/webhooks/dodo", data=body, headers=headers)
    assert (retried.status_code, again.status_code) == (204, 204)
    assert len(held) == 1
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("dodo.subscription.on_hold") == 1


def test_a_webhook_whose_merchant_hook_failed_reaches_it_again(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    seen: list[str] = []

    def on_event(event: Any) -> None:
        seen.append(event.id)
        if len(seen) == 1:
            raise RuntimeError("the merchant's hook failed")

    dodo_app.add_url_rule(
        "/webhooks/dodo-hook",
        "dodo_webhook_hook",
        view_func=dodo_webhook_view(WEBHOOK_SECRET, on_event=on_event),
        methods=["POST"],
    )
    body = _on_hold_event(fake, scenario)
    headers = _sign(body, msg_id="msg_hook")
    client = dodo_app.test_client()
    with pytest.raises(RuntimeError):
        client.post("/webhooks/dodo-hook", data=body, headers=headers)
    assert client.post("/webhooks/dodo-hook", data=body, headers=headers).status_code == 204
    assert client.post("/webhooks/dodo-hook", data=body, headers=headers).status_code == 204
    assert seen == ["msg_hook", "msg_hook"]


# -- the example shop -------------------------------------------------------------------------


def test_the_example_shop_runs_on_dodo(tmp_path: Path, fake: FakeDodo, scenario: Scenario) -> None:
    from example_app import create_app

    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}",
            "PORTAL_BACKEND": "dodo",
            "DODO_PAYMENTS_API_KEY": API_KEY,
            "DODO_PAYMENTS_BASE_URL": fake.url,
            "DODO_PAYMENTS_WEBHOOK_KEY": WEBHOOK_SECRET,
        }
    )
    try:
        state = get_state(app)
        assert isinstance(state.storage, DodoCompositeStorage)
        assert isinstance(state.payments, DodoPaymentProvider)
        with app.app_context():
            assert [s.id for s in state.storage.list_subscriptions("cus_dodo_ava")] == [
                scenario.ava_sub,
                scenario.ava_old_sub,
            ]
        body = _event(fake, "subscription.renewed", scenario.ava_sub)
        assert app.test_client().post("/webhooks/dodo", data=body, headers=_sign(b"{}")).status_code == 400
    finally:
        state.shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"PORTAL_BACKEND": "dodo"}, "DODO_PAYMENTS_API_KEY"),
        (
            {"PORTAL_BACKEND": "dodo", "DODO_PAYMENTS_API_KEY": "k", "DODO_PAYMENTS_ENVIRONMENT": "x"},
            "DODO_PAYMENTS_ENVIRONMENT",
        ),
        ({"PORTAL_BACKEND": "paypal"}, "PORTAL_BACKEND"),
    ],
)
def test_the_example_shop_names_a_wrong_backend_setting(
    tmp_path: Path, config: dict[str, str], key: str
) -> None:
    from example_app import create_app

    with pytest.raises(ConfigurationError) as raised:
        create_app(
            {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}", **config}
        )
    assert raised.value.key == key


def test_two_digit_expiry_years(fake: FakeDodo, billing: DodoBilling) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    fake.add_payment_method("cus_x", exp=("01", "29"))
    [method] = billing.list_payment_methods("cus_x")
    assert (method.exp_month, method.exp_year) == (1, 2029)


def test_portal_deactivates_a_licence_activation_at_dodo(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    client = _signed_in(dodo_app, "cus_demo_ava")
    page = client.get(f"/portal/license-keys/{scenario.ava_key}")
    assert page.status_code == 200 and "Ava&#39;s laptop" in page.text
    laptop = scenario.ava_instances[0]
    url = f"/portal/license-keys/{scenario.ava_key}/instances/{laptop}/deactivate"
    done = client.post(url, data={"csrf_token": csrf_token_from(page.text)})
    assert done.status_code == 303
    assert laptop not in fake.instances
    again = client.post(url, data={"csrf_token": csrf_token_from(page.text)})
    assert again.status_code == 303
    assert len(fake.calls("POST", "/licenses/deactivate")) == 1
    # Budi's key is not Ava's.
    assert client.get(f"/portal/license-keys/{scenario.budi_key}").status_code == 404
    with dodo_app.app_context():
        assert _audit_actions(dodo_app, "cus_demo_ava").count("license_key.instance_deactivated") == 1


@pytest.mark.parametrize(
    "path", ["/portal/subscriptions", "/portal/invoices", "/portal/license-keys", "/portal/"]
)
def test_dodo_requests_per_page_do_not_grow_with_the_records(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo, path: str
) -> None:
    """No N+1 over HTTP: a page asks Dodo the same number of questions for
    two records or twenty."""
    client = _signed_in(dodo_app, "cus_demo_ava")

    def requests_for_page() -> int:
        before = len(fake.requests)
        assert client.get(path).status_code == 200
        return len(fake.requests) - before

    few = requests_for_page()
    for n in range(10):
        sid = fake.add_subscription("cus_dodo_ava", product_name=f"Extra {n}", created_days_ago=5 + n)
        fake.add_payment("cus_dodo_ava", amount=900, subscription_id=sid, days_ago=n)
        fake.add_license_key("cus_dodo_ava")
    assert requests_for_page() == few
    assert few <= 12


def test_a_new_card_in_the_portal_is_entered_on_dodos_page(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    client = _signed_in(dodo_app, "cus_demo_budi")
    url = f"/portal/subscriptions/{scenario.budi_sub}/payment-method"
    page = client.get(url)
    assert page.status_code == 200
    assert "secure page" in page.text and 'name="card_number"' not in page.text
    answer = client.post(
        url, data={"csrf_token": csrf_token_from(page.text), "payment_method": "new", "intent": "reactivate"}
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"https://test.checkout.dodopayments.com/pm/{scenario.budi_sub}"
    sent = fake.calls("POST", f"/subscriptions/{scenario.budi_sub}/update-payment-method")[-1][3]
    assert sent == {"type": "new", "return_url": BASE_URL + url}
    # Without a valid CSRF token nothing reaches Dodo; another customer's subscription is a 404.
    before = len(fake.calls("POST", r"/subscriptions/.*/update-payment-method"))
    assert client.post(url, data={"payment_method": "new"}).status_code == 400
    other = client.post(
        f"/portal/subscriptions/{scenario.ava_sub}/payment-method",
        data={"csrf_token": csrf_token_from(page.text), "payment_method": "new"},
    )
    assert other.status_code == 404
    assert len(fake.calls("POST", r"/subscriptions/.*/update-payment-method")) == before
    # Dodo failing is a clear page, not a 500.
    fake.fail("POST", f"/subscriptions/{scenario.budi_sub}/update-payment-method", 500)
    failed = client.post(
        url, data={"csrf_token": csrf_token_from(page.text), "payment_method": "new", "intent": "reactivate"}
    )
    assert failed.status_code == 502 and "Traceback" not in failed.text


def test_a_resume_email_over_dodo_gives_the_renewal_date_dodo_answers(
    dodo_app: Flask, scenario: Scenario, fake: FakeDodo
) -> None:
    """Dodo keeps the next billing date as it was when a subscription is
    resumed: the email says that date, not the one the portal would have
    worked out for a pause of its own (moved on by the paused time)."""
    from flask_customer_portal.formatting import format_date

    card = fake.add_payment_method("cus_dodo_ava", last4="4242")
    paused = fake.add_subscription(
        "cus_dodo_ava", product_name="Sync", status="paused", payment_method_id=card, created_days_ago=60
    )
    fake.subscriptions[paused]["paused_at"] = fake.subscriptions[paused]["previous_billing_date"]
    client = _signed_in(dodo_app, "cus_demo_ava")
    page = client.get(f"/portal/subscriptions/{paused}")
    assert page.status_code == 200
    mailer = get_state(dodo_app).mailer
    assert isinstance(mailer, MemoryMailer)
    mailer.clear()
    done = client.post(
        f"/portal/subscriptions/{paused}/unpause", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert done.status_code == 303
    get_state(dodo_app).wait_for_background_tasks()
    assert fake.subscriptions[paused]["status"] == "active"
    answered = datetime.fromisoformat(fake.subscriptions[paused]["next_billing_date"].replace("Z", "+00:00"))
    predicted = answered + (fake.now - (answered - timedelta(days=30)))
    sent = [m for m in mailer.outbox if "active again" in m.subject]
    assert len(sent) == 1, [m.subject for m in mailer.outbox]
    assert f"It renews on {format_date(answered, 'en', 'UTC')}" in sent[0].text
    assert format_date(predicted, "en", "UTC") not in sent[0].text


# -- trials and open one-off payments ---------------------------------------------------------


def test_a_subscription_made_with_a_trial_is_trialing_until_its_first_billing_date(
    fake: FakeDodo, billing: DodoBilling
) -> None:
    fake.add_customer("cus_t", "t@example.com", "T")
    trial = fake.add_subscription("cus_t", amount=1200, created_days_ago=2, trial_period_days=14)
    found = billing.get_subscription("cus_t", trial)
    assert found is not None and found.status is SubscriptionStatus.TRIALING
    created = fake.subscriptions[trial]["created_at"]
    assert found.current_period_start == datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert found.current_period_end == found.current_period_start + timedelta(days=14)
    # Billed once: its next billing date moved past the trial, so it is active.
    billed = fake.add_subscription("cus_t", amount=1200, created_days_ago=40, trial_period_days=14)
    fake.subscriptions[billed]["next_billing_date"] = fake.subscriptions[trial]["next_billing_date"]
    after = billing.get_subscription("cus_t", billed)
    assert after is not None and after.status is SubscriptionStatus.ACTIVE
    # A trial's subscription that went on hold is on hold, not trialing.
    held = fake.add_subscription("cus_t", status="on_hold", created_days_ago=1, trial_period_days=14)
    held_found = billing.get_subscription("cus_t", held)
    assert held_found is not None and held_found.status is SubscriptionStatus.ON_HOLD


def test_an_open_one_off_payment_is_open_and_paid_at_dodo_not_from_the_portal(
    dodo_app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    trial = fake.add_subscription(
        "cus_dodo_chen", product_name="Desktop", amount=1200, created_days_ago=1, trial_period_days=14
    )
    open_id = fake.add_payment("cus_dodo_chen", amount=14900, status="requires_payment_method")
    void_id = fake.add_payment("cus_dodo_chen", amount=500, status="failed", days_ago=3)
    client = _signed_in(dodo_app, "cus_demo_chen")
    with dodo_app.app_context():
        invoices = {
            i.id: i
            for i in get_state(dodo_app).storage.list_invoices("cus_demo_chen", page=1, per_page=10).items
        }
    assert invoices[open_id].status is InvoiceStatus.OPEN and invoices[open_id].subscription_id is None
    assert invoices[void_id].status is InvoiceStatus.VOID
    # Dodo takes a one-off payment only at its own checkout page: no Pay button.
    assert not get_state(dodo_app).capabilities.invoice_lock
    listed = client.get("/portal/invoices")
    assert listed.status_code == 200 and "Open" in listed.text
    assert f"/portal/invoices/{open_id}/pay" not in listed.text
    page = client.get(f"/portal/invoices/{open_id}")
    assert page.status_code == 200 and "Pay this invoice" not in page.text
    refused = client.get(f"/portal/invoices/{open_id}/pay")
    assert "cannot be paid here" in refused.text and 'name="payment_method"' not in refused.text
    assert "Trial ends on" in client.get(f"/portal/subscriptions/{trial}").text


def test_a_trial_cancelled_at_its_end_runs_to_its_first_billing_date(
    fake: FakeDodo, billing: DodoBilling
) -> None:
    fake.add_customer("cus_t", "t@example.com", "T")
    trial = fake.add_subscription("cus_t", amount=1200, created_days_ago=2, trial_period_days=14)
    ended = billing.cancel_subscription("cus_t", trial, at_period_end=True, now=fake.now)
    assert ended is not None
    assert (ended.status, ended.cancel_at_period_end) == (SubscriptionStatus.TRIALING, True)
    assert fake.subscriptions[trial]["status"] == "active"
