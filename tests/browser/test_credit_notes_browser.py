"""Refunds, credit notes and the tax ID kinds in a real browser: the
invoice page at 375 px and 1280 px with axe-core, the credit note's PDF
from its link, and the billing-details form's list of kinds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import CreditNote, CreditNoteReason, InvoiceLine

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AVA = "cus_demo_ava"
AVA_INVOICE = "inv_demo_ava_sync_14"
#: Where the screenshots go, for a person to look at (none unless set).
SHOTS = os.environ.get("PORTAL_SHOTS_DIR")


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _credit(server: Any) -> CreditNote:
    def add() -> CreditNote:
        store = get_state(server.app).storage
        paid = store.get_invoice(AVA, AVA_INVOICE)
        assert paid is not None
        return store.add_credit_note(
            CreditNote(
                id="cn_browser_1",
                number=store.next_invoice_number("CN-"),
                invoice_id=paid.id,
                customer_id=AVA,
                currency=paid.currency,
                amount=500,
                refunded=300,
                issued_at=paid.issued_at.replace(day=min(paid.issued_at.day + 1, 28)),
                reason=CreditNoteReason.PRODUCT_UNSATISFACTORY,
                memo="Sync was down for two days",
                lines=(InvoiceLine("Two days of Acme Sync Pro", 1, 500, 500),),
            )
        )

    return server.call(add)


@pytest.mark.parametrize("width", [375, 1280])
def test_a_partly_refunded_invoice(browser: Any, own_live_server: Any, axe_check: Any, width: int) -> None:
    note = _credit(own_live_server)
    context = browser.new_context(
        base_url=own_live_server.url, locale="en-US", viewport={"width": width, "height": 900}
    )
    page = context.new_page()
    try:
        open_portal(page, own_live_server.magic_link(AVA))
        page.goto(f"/portal/invoices/{AVA_INVOICE}")
        expect(page.locator(".invoice-facts .badge")).to_have_text("Partially refunded")
        table = page.get_by_role("table", name="Credit notes")
        expect(table).to_be_visible()
        expect(table).to_contain_text("Sync was down for two days")
        expect(table).to_contain_text("Two days of Acme Sync Pro")
        if width < 400:
            assert_no_horizontal_scroll(page, width)
        axe_check(page)
        _shot(page, f"invoice-refunded-{width}")

        link = table.get_by_role("link", name=f"{note.number} (PDF)")
        response = page.request.get(link.get_attribute("href"))
        assert response.status == 200 and response.body().startswith(b"%PDF-")
        assert "credit-note-" in response.headers["content-disposition"]

        page.goto("/portal/invoices")
        expect(page.locator("table.invoice-list")).to_contain_text("Partially refunded")
        _shot(page, f"invoices-{width}")

        page.goto("/portal/profile/billing")
        kinds = page.get_by_label("Kind of tax ID")
        kinds.select_option("us_ein")
        page.get_by_label("Tax ID", exact=True).fill("91-1144442")
        if width < 400:
            assert_no_horizontal_scroll(page, width)
        axe_check(page)
        _shot(page, f"billing-details-{width}")
    finally:
        context.close()
