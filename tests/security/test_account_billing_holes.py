"""The account-level billing features under attack and careless use: a
promotion code whose charge never went through, and the unpaid renewal of
a subscription that was cancelled while on hold."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import AVA_PLAN_URL, plan_confirm_form, portal_store, sign_in, stored_subscription

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import InvoiceStatus, PromotionCode, SubscriptionStatus
from flask_customer_portal.testing import TestPaymentProvider, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
BUSINESS = "plan_sync_business_monthly"


def _preview_with_code(client: FlaskClient, code: str) -> Any:
    token = csrf_token_from(client.get(AVA_PLAN_URL).text)
    return client.post(
        AVA_PLAN_URL, data={"csrf_token": token, "step": "preview", "plan": BUSINESS, "promotion_code": code}
    )


def _plan_change_invoices(app: Flask) -> list[Any]:
    with app.app_context():
        items = portal_store(app).list_invoices(AVA, page=1, per_page=100).items
    return [i for i in items if "plan change" in (i.description or "")]


# -- a promotion code whose charge never reached the provider ----------------------------


def test_a_code_whose_charge_is_settled_as_never_made_is_given_back(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    """The charge's answer is lost and the provider never saw it: the next
    visit voids the plan change's invoice, and the code's one use (and the
    last of ``max_redemptions``) must come back with it, as after a decline."""
    with shop.app_context():
        portal_store(shop).add_promotion_code(PromotionCode("LASTONE", percent_off=10, max_redemptions=1))
    preview = _preview_with_code(ava, "LASTONE")
    assert preview.status_code == 200, preview.text
    payments.lose_answers(1, charged=False)
    pending = ava.post(AVA_PLAN_URL, data=plan_confirm_form(preview.text))
    assert pending.status_code == 202, pending.status_code
    with shop.app_context():
        assert portal_store(shop).promotion_redeemed(AVA, "LASTONE")
    # The next visit asks the provider, which never saw the charge.
    assert ava.get(f"/portal/subscriptions/{AVA_SUB}").status_code == 200
    [invoice] = _plan_change_invoices(shop)
    assert invoice.status is InvoiceStatus.VOID
    assert not payments.charges
    with shop.app_context():
        store = portal_store(shop)
        assert not store.promotion_redeemed(AVA, "LASTONE")
        assert store.promotion_times_redeemed("LASTONE") == 0
    # And the customer can use it: the preview takes it off again.
    again = _preview_with_code(ava, "LASTONE")
    assert again.status_code == 200 and "Promotion code LASTONE" in again.text


def test_a_code_whose_charge_was_taken_after_all_stays_used(
    shop: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    """The other side: the money was taken though its answer was lost; the
    change is made and the code stays used (once)."""
    with shop.app_context():
        portal_store(shop).add_promotion_code(PromotionCode("LASTONE", percent_off=10, max_redemptions=1))
    preview = _preview_with_code(ava, "LASTONE")
    payments.lose_answers(1, charged=True)
    assert ava.post(AVA_PLAN_URL, data=plan_confirm_form(preview.text)).status_code == 202
    assert ava.get(f"/portal/subscriptions/{AVA_SUB}").status_code == 200
    [invoice] = _plan_change_invoices(shop)
    assert invoice.status is InvoiceStatus.PAID
    assert len(payments.charges) == 1
    with shop.app_context():
        assert portal_store(shop).promotion_times_redeemed("LASTONE") == 1
    assert stored_subscription(shop, AVA, AVA_SUB).plan_id == BUSINESS


# -- the unpaid renewal of a subscription cancelled while on hold ---------------------------

BUDI = "cus_demo_budi"
BUDI_SUB = "sub_demo_budi_sync"


def test_the_unpaid_renewal_of_a_cancelled_subscription_is_not_offered_for_payment(
    shop: Flask, payments: TestPaymentProvider
) -> None:
    """Budi's renewal failed and he ends the subscription now: the confirmation
    says he will not be charged for it again, and the renewal's invoice is
    for a period he will never get. It is not offered for payment (list,
    overview, invoice page) and a POST charges nothing."""
    budi = shop.test_client()
    sign_in(shop, budi, BUDI)
    token = csrf_token_from(budi.get(f"/portal/subscriptions/{BUDI_SUB}").text)
    confirm = budi.post(f"/portal/subscriptions/{BUDI_SUB}/cancel", data={"csrf_token": token})
    # Budi reads the portal in Indonesian: "... and you will not be charged for it again."
    assert "Anda tidak akan ditagih lagi untuk langganan ini" in confirm.text
    assert (
        budi.post(
            f"/portal/subscriptions/{BUDI_SUB}/cancel", data={"csrf_token": token, "confirm": "yes"}
        ).status_code
        == 303
    )
    assert stored_subscription(shop, BUDI, BUDI_SUB).status is SubscriptionStatus.CANCELLED
    with shop.app_context():
        items = portal_store(shop).list_invoices(BUDI, page=1, per_page=100).items
    [renewal] = [i for i in items if i.status is InvoiceStatus.OPEN and i.subscription_id == BUDI_SUB]
    pay = f"/portal/invoices/{renewal.id}/pay"
    for page in ("/portal/", "/portal/invoices", f"/portal/invoices/{renewal.id}"):
        assert f'href="{pay}"' not in budi.get(page).text, page
    year = str(datetime.now(timezone.utc).year + 3)
    answer = budi.post(
        pay,
        data={
            "csrf_token": token,
            "payment_method": "new",
            "card_number": "4242424242424242",
            "exp_month": "12",
            "exp_year": year,
            "cvc": "123",
            "amount_due": f"{renewal.total} {renewal.currency}",
        },
    )
    assert answer.status_code == 409, answer.status_code
    # "This invoice is for a subscription that has ended, ... Nothing was charged."
    assert "langganan yang sudah berakhir" in answer.text and "Tidak ada yang ditagih" in answer.text
    assert payments.calls.count("charge") == 0


# -- a one-off invoice whose payment answer was lost, and a customer who does as told ------------

DEWI = "cus_demo_dewi"
ONBOARDING = "inv_demo_dewi_onboarding"


def test_a_lost_payment_answer_is_settled_when_the_customer_checks_back(
    shop: Flask, payments: TestPaymentProvider, mailer: Any
) -> None:
    """The bank took the money but its answer was lost: the customer is told
    "Do not pay again: check back in a few minutes", and does just that.
    Checking back (the invoice's page) asks the provider and records the
    payment, with its receipt; nothing is charged again."""
    dewi = shop.test_client()
    sign_in(shop, dewi, DEWI)
    pay = f"/portal/invoices/{ONBOARDING}/pay"
    token = csrf_token_from(dewi.get(pay).text)
    payments.lose_answers(1, charged=True)
    pending = dewi.post(pay, data={"csrf_token": token, "payment_method": "pm_demo_dewi_visa"})
    assert pending.status_code == 202 and "Do not pay again" in pending.text
    page = dewi.get(f"/portal/invoices/{ONBOARDING}")
    assert page.status_code == 200
    with shop.app_context():
        invoice = portal_store(shop).get_invoice(DEWI, ONBOARDING)
    assert invoice is not None and invoice.status is InvoiceStatus.PAID
    assert f'href="{pay}"' not in page.text
    assert payments.calls.count("charge") == 1 and len(payments.charges) == 1
    get_state(shop).wait_for_background_tasks()
    assert len([m for m in mailer.outbox if m.subject.startswith("Receipt for invoice")]) == 1
    # Checking back again changes nothing more.
    dewi.get(f"/portal/invoices/{ONBOARDING}")
    assert payments.calls.count("charge") == 1


def test_checking_back_while_the_bank_still_has_no_answer_changes_nothing(
    shop: Flask, payments: TestPaymentProvider
) -> None:
    dewi = shop.test_client()
    sign_in(shop, dewi, DEWI)
    pay = f"/portal/invoices/{ONBOARDING}/pay"
    token = csrf_token_from(dewi.get(pay).text)
    payments.lose_answers(1, charged=False)
    assert (
        dewi.post(pay, data={"csrf_token": token, "payment_method": "pm_demo_dewi_visa"}).status_code == 202
    )
    assert dewi.get(f"/portal/invoices/{ONBOARDING}").status_code == 200
    with shop.app_context():
        invoice = portal_store(shop).get_invoice(DEWI, ONBOARDING)
    # The provider never saw it: no money moved, the invoice is open to pay.
    assert invoice is not None and invoice.status is InvoiceStatus.OPEN
    assert payments.calls.count("charge") == 1 and payments.charges == []
    assert f'href="{pay}"' in dewi.get(f"/portal/invoices/{ONBOARDING}").text
