"""The payment-method page in a real browser, on a phone, in Indonesian:
a declining test card explained once at the top, then a good card
that reactivates the subscription and lands on the confirmation page — each
state checked with axe-core.

The shared live shop keeps Budi on hold for the other browser tests, so
Budi pays on a shop of this test's own (``own_live_server``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    Invoice,
    InvoiceStatus,
    Subscription,
    SubscriptionStatus,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BUDI_SUB = "sub_demo_budi_sync"


class Budi:
    customer_id = "cus_demo_budi"
    email = "budi@example.com"
    subscription_id = BUDI_SUB
    invoice_id = "inv_demo_budi_sync_03"


def _stored(live_server: Any, customer_id: str, subscription_id: str) -> Subscription:
    found = live_server.call(
        lambda: get_state(live_server.app).storage.get_subscription(customer_id, subscription_id)
    )
    assert isinstance(found, Subscription)
    return found


def _invoice_status(live_server: Any, customer_id: str, invoice_id: str) -> InvoiceStatus:
    found = live_server.call(lambda: get_state(live_server.app).storage.get_invoice(customer_id, invoice_id))
    assert isinstance(found, Invoice)
    return found.status


def test_budis_payment_page_in_indonesian(phone: Any, live_server: Any, axe_check: Any) -> None:
    before = _stored(live_server, "cus_demo_budi", BUDI_SUB)
    open_portal(phone, live_server.magic_link("cus_demo_budi"))
    phone.goto(f"/portal/subscriptions/{BUDI_SUB}/payment-method")
    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.locator(".badge-on_hold")).to_have_text("Ditangguhkan")
    expect(phone.locator("main")).to_contain_text("Rp166.500")
    # The card whose renewal failed is listed, not chosen for him.
    expect(phone.locator("#payment-method-1")).not_to_be_checked()
    assert_no_horizontal_scroll(phone)
    axe_check(phone)
    assert _stored(live_server, "cus_demo_budi", BUDI_SUB) == before


def test_budi_pays_with_a_declined_card_then_a_good_one_on_a_phone(
    own_phone: Any, own_live_server: Any, axe_check: Any
) -> None:
    """Budi, on a shop of this test's own: his payment would take the
    on-hold state away from the other browser tests."""
    phone, live_server = own_phone, own_live_server
    made = Budi
    mails_before = len(live_server.inbox.messages)
    open_portal(phone, live_server.magic_link(made.customer_id))
    # The overview sends the customer to fix the payment.
    with phone.expect_navigation():
        phone.locator(f'a[href="/portal/subscriptions/{made.subscription_id}/payment-method"]').first.click()
    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.locator("main")).to_contain_text("Rp166.500")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    # The card fields show once "a new card" is chosen (CSS only, no script).
    card_number = phone.locator("#card_number")
    expect(card_number).to_be_hidden()
    phone.locator('label[for="payment-method-new"]').click()
    expect(card_number).to_be_visible()
    year = str(datetime.now(timezone.utc).year + 2)

    card_number.fill("4000 0000 0000 0002")
    phone.locator("#exp_month").fill("12")
    phone.locator("#exp_year").fill(year)
    phone.locator("#cvc").fill("123")
    with phone.expect_navigation():
        phone.locator(".payment-form button[type=submit]").click()

    # Declined: said once, at the top; the number is not shown back.
    alert = phone.locator("#payment-problem")
    expect(alert).to_contain_text("Tidak ada yang ditagih.")
    expect(alert).to_contain_text("Bank menolak pembayaran ini.")
    expect(phone.locator("#card_number-error")).to_have_count(0)
    expect(card_number).to_have_value("")
    expect(phone.locator("#payment-method-new")).to_be_checked()
    expect(phone.get_by_role("alert").first).to_be_visible()
    assert _stored(live_server, made.customer_id, made.subscription_id).status is SubscriptionStatus.ON_HOLD
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    card_number.fill("4242 4242 4242 4242")
    phone.locator("#exp_month").fill("12")
    phone.locator("#exp_year").fill(year)
    phone.locator("#cvc").fill("123")
    with phone.expect_navigation():
        phone.locator(".payment-form button[type=submit]").click()

    assert urlsplit(phone.url).path == f"/portal/subscriptions/{made.subscription_id}/reactivated"
    expect(phone.get_by_role("heading", level=1)).to_be_visible()
    expect(phone.locator("main")).to_contain_text("Rp166.500")
    expect(phone.locator("main")).to_contain_text("Visa •••• 4242")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    subscription = _stored(live_server, made.customer_id, made.subscription_id)
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert _invoice_status(live_server, made.customer_id, made.invoice_id) is InvoiceStatus.PAID
    email = live_server.inbox.wait_for(made.email, after=mails_before, subject="aktif kembali")
    assert email["Subject"] == "Langganan Acme Sync Anda aktif kembali"

    # Reloading the confirmation page pays nothing again.
    phone.reload()
    assert urlsplit(phone.url).path == f"/portal/subscriptions/{made.subscription_id}/reactivated"
    assert _stored(live_server, made.customer_id, made.subscription_id) == subscription
