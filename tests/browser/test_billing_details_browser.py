"""Billing details in a real browser, on a phone: a wrong VAT number
explained next to its field, the details saved, then added to an open
invoice issued without any, and shown on that invoice (a paid one stays as
it was issued) — each page checked by axe.

Ava's billing details and invoices change here, so the test runs on a shop
of its own (``own_live_server``), never on the shared one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Invoice, InvoiceStatus

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAID_INVOICE = "inv_demo_ava_sync_01"
INVOICE = "inv_browser_ava_open"


def _add_open_invoice(server: Any) -> None:
    """An open invoice of Ava's, issued before she saved billing details."""

    def add() -> None:
        store = get_state(server.app).storage
        store.add_invoice(
            Invoice(
                id=INVOICE,
                number=store.next_invoice_number(),
                customer_id="cus_demo_ava",
                status=InvoiceStatus.OPEN,
                currency="USD",
                subtotal=900,
                tax=0,
                total=900,
                issued_at=datetime.now(timezone.utc),
                description="Acme Sync",
            )
        )

    server.call(add)


def test_billing_details_on_a_phone(own_phone: Any, own_live_server: Any, axe_check: Any) -> None:
    page = own_phone
    _add_open_invoice(own_live_server)
    open_portal(page, own_live_server.magic_link("cus_demo_ava"))
    with page.expect_navigation():
        page.get_by_role("navigation", name="Portal").get_by_role("link", name="Profile").click()
    with page.expect_navigation():
        page.get_by_role("link", name="Edit billing details").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Billing details")
    assert_no_horizontal_scroll(page)
    axe_check(page)

    page.get_by_label("Name or company name").fill("Acme Analytics GmbH")
    page.get_by_label("Street address").fill("Friedrichstraße 123")
    page.get_by_label("City").fill("Berlin")
    page.get_by_label("Postal code").fill("10117")
    page.get_by_label("Country").select_option("DE")
    page.get_by_label("Tax ID", exact=True).fill("DE 136 695 977")
    with page.expect_navigation():
        page.get_by_role("button", name="Save billing details").click()

    tax_id = page.get_by_label("Tax ID", exact=True)
    expect(page.locator("#tax_id-error")).to_have_text(
        "This EU VAT number is not valid. Check it for typing mistakes."
    )
    expect(tax_id).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Street address")).to_have_value("Friedrichstraße 123")
    expect(page.get_by_label("Country")).to_have_value("DE")
    assert_no_horizontal_scroll(page)
    axe_check(page)

    tax_id.fill("DE 136 695 976")
    with page.expect_navigation():
        page.get_by_role("button", name="Save billing details").click()
    expect(page.get_by_role("status")).to_contain_text("Your billing details were saved.")
    expect(page.get_by_label("Tax ID", exact=True)).to_have_value("DE136695976")

    # A paid invoice is final: it stays as it was issued.
    page.goto(f"/portal/invoices/{PAID_INVOICE}")
    expect(page.get_by_role("link", name="Add billing details to this invoice")).to_have_count(0)

    page.goto(f"/portal/invoices/{INVOICE}")
    with page.expect_navigation():
        page.get_by_role("link", name="Add billing details to this invoice").click()
    expect(page.locator(".billing-address")).to_contain_text("VAT DE136695976")
    assert_no_horizontal_scroll(page)
    axe_check(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Add to invoice").click()

    expect(page.get_by_role("status")).to_contain_text("now shows your billing details")
    bill_to = page.get_by_role("region", name="Bill to")
    expect(bill_to).to_contain_text("Acme Analytics GmbH")
    expect(bill_to).to_contain_text("10117 Berlin")
    expect(bill_to).to_contain_text("Germany")
    expect(page.get_by_role("link", name="Add billing details to this invoice")).to_have_count(0)
    assert_no_horizontal_scroll(page)
    axe_check(page)

    page.goto(f"/portal/invoices/{INVOICE}/billing-details")
    expect(page.get_by_role("main")).to_contain_text("cannot be changed")
    expect(page.get_by_role("button", name="Add to invoice")).to_have_count(0)
    axe_check(page)
