"""Paying an open invoice, its receipt, "Email me this invoice" and the
choice of when a cancellation ends, in a real browser at 375 and 1280 px,
with axe-core checks. Screenshots go to ``$PORTAL_SCREENSHOTS`` when set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import factories
import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import InvoiceStatus

pytestmark = [pytest.mark.browser, pytest.mark.slow]

INVOICE = "inv_browser_oneoff"
POLICY = "Cancel now and we refund the unused days within 5 working days."


def _shot(page: Any, name: str) -> None:
    folder = os.environ.get("PORTAL_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for width in (375, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 375, "height": 800})


def _open_invoice(server: Any) -> None:
    def add() -> None:
        get_state(server.app).storage.add_invoice(  # type: ignore[attr-defined]
            factories.invoice(
                INVOICE,
                "cus_demo_ava",
                status=InvoiceStatus.OPEN,
                number="INV-ONEOFF-1",
                description="Onboarding workshop",
                subtotal=15000,
                total=15000,
            )
        )

    server.call(add)


def test_paying_an_open_invoice_on_a_phone(configured_phone: Any, axe_check: Any) -> None:
    with configured_phone(
        CUSTOMER_PORTAL_CANCEL_MODES=("period_end", "immediately"), CUSTOMER_PORTAL_REFUND_POLICY=POLICY
    ) as (page, server):
        page.set_viewport_size({"width": 375, "height": 800})
        _open_invoice(server)
        open_portal(page, server.magic_link("cus_demo_ava"))
        # The overview says what needs paying.
        attention = page.get_by_role("region", name="Invoice INV-ONEOFF-1 is not paid yet")
        expect(attention).to_be_visible()
        assert_no_horizontal_scroll(page, 375)
        axe_check(page)
        _shot(page, "dashboard")

        with page.expect_navigation():
            page.get_by_role("link", name="Billing history").first.click()
        expect(page.get_by_role("link", name="Pay invoice INV-ONEOFF-1")).to_be_visible()
        assert_no_horizontal_scroll(page, 375)
        _shot(page, "invoices")

        with page.expect_navigation():
            page.get_by_role("link", name="INV-ONEOFF-1", exact=True).click()
        expect(page.get_by_role("link", name="Pay this invoice")).to_be_visible()
        expect(page.get_by_role("button", name="Email me this invoice")).to_be_visible()
        assert_no_horizontal_scroll(page, 375)
        axe_check(page)
        _shot(page, "invoice-open")

        with page.expect_navigation():
            page.get_by_role("link", name="Pay this invoice").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Pay invoice INV-ONEOFF-1")
        expect(page.get_by_role("radio", name="Visa •••• 4242", exact=False)).to_be_checked()
        assert_no_horizontal_scroll(page, 375)
        axe_check(page)
        _shot(page, "pay-invoice")

        # A new card that declines: said once, nothing charged.
        page.get_by_role("radio", name="A new card").check()
        page.get_by_label("Card number").fill("4000 0000 0000 0002")
        page.get_by_label("Expiry month").fill("12")
        page.get_by_label("Expiry year").fill("2040")
        page.get_by_label("Security code (CVC)").fill("123")
        with page.expect_navigation():
            page.get_by_role("button", name="Pay $150.00").click()
        expect(page.get_by_role("alert")).to_contain_text("Nothing was charged")
        assert_no_horizontal_scroll(page, 375)
        axe_check(page)
        _shot(page, "pay-invoice-declined")

        before = len(server.inbox.messages)
        page.get_by_role("radio", name="Visa •••• 4242", exact=False).check()
        with page.expect_navigation():
            page.get_by_role("button", name="Pay $150.00").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Invoice INV-ONEOFF-1")
        expect(page.locator("body")).to_contain_text("Thank you: invoice INV-ONEOFF-1 is paid.")
        expect(page.get_by_role("link", name="Pay this invoice")).to_have_count(0)
        _shot(page, "invoice-paid")
        receipt = server.inbox.wait_for("ava@example.com", after=before, subject="Receipt")
        assert receipt["Subject"] == "Receipt for invoice INV-ONEOFF-1"
        [pdf] = list(receipt.iter_attachments())
        assert pdf.get_content_type() == "application/pdf"

        # Email me this invoice.
        before = len(server.inbox.messages)
        with page.expect_navigation():
            page.get_by_role("button", name="Email me this invoice").click()
        expect(page.locator("body")).to_contain_text(
            "We are sending invoice INV-ONEOFF-1 to ava@example.com."
        )
        copy = server.inbox.wait_for("ava@example.com", after=before, subject="Invoice INV-ONEOFF-1")
        assert copy["Subject"] == "Invoice INV-ONEOFF-1"

        # Cancelling: the customer chooses when, told what each means.
        with page.expect_navigation():
            page.goto(server.url + "/portal/subscriptions/sub_demo_ava_sync")
        with page.expect_navigation():
            page.get_by_role("button", name="Cancel subscription").click()
        page.get_by_role("radio").first.check()
        with page.expect_navigation():
            page.get_by_role("button", name="Continue").click()
        group = page.get_by_role("group", name="When should it end?")
        expect(group).to_be_visible()
        expect(page.locator("body")).to_contain_text(POLICY)
        assert_no_horizontal_scroll(page, 375)
        axe_check(page)
        _shot(page, "cancel-choice")
        with page.expect_navigation():
            page.get_by_role("button", name="Yes, cancel").click()
        expect(page.get_by_role("alert")).to_contain_text("Choose when the subscription ends.")
        _shot(page, "cancel-choice-missing")
        group.get_by_role("radio", name="Now").check()
        with page.expect_navigation():
            page.get_by_role("button", name="Yes, cancel").click()
        expect(page.locator("body")).to_contain_text("subscription is cancelled")
