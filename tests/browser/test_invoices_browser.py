"""Billing history in a real browser, on a phone: the list, paging, one
invoice and its PDF, in English and in Indonesian, with axe-core checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import open_portal
from playwright.sync_api import expect

from flask_customer_portal.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE_WIDTH = 360


def _assert_fits_the_phone(page: Any) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= PHONE_WIDTH, f"the page scrolls sideways: {scroll_width} > {PHONE_WIDTH}"


def _assert_pdf(page: Any, link: Any) -> None:
    """The link answers with a PDF download (fetched with the page's cookies)."""
    response = page.request.get(link.get_attribute("href"))
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"].startswith("attachment; filename=invoice-")
    assert response.body().startswith(b"%PDF-")


@pytest.fixture
def ten_invoices_a_page(live_server: Any) -> Iterator[None]:
    """Ava's history spans two pages (the shared shop is put back after)."""
    state = get_state(live_server.app)
    original = state.config
    state.config = replace(original, invoices_per_page=10)
    try:
        yield
    finally:
        state.config = original


def test_billing_history_on_a_phone(
    phone: Any, live_server: Any, axe_check: Any, ten_invoices_a_page: None
) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    with phone.expect_navigation():
        phone.get_by_role("navigation", name="Portal").get_by_role("link", name="Billing history").click()

    expect(phone.get_by_role("heading", level=1)).to_have_text("Billing history")
    rows = phone.locator("table.invoice-list tbody tr")
    expect(rows).to_have_count(10)
    # Compact rows: date, number, amount and status, and nothing overflows.
    expect(rows.first.locator("td[data-label=Amount]")).to_be_visible()
    expect(rows.first.locator("td[data-label=Description]")).to_be_hidden()
    expect(phone.locator("table.invoice-list thead")).not_to_be_in_viewport()
    _assert_fits_the_phone(phone)
    pages = phone.get_by_role("navigation", name="Billing history pages")
    expect(pages.locator("[aria-current=page]")).to_have_text("1")
    axe_check(phone)

    with phone.expect_navigation():
        pages.get_by_role("link", name="Next").click()
    assert urlsplit(phone.url).query == "page=2"
    expect(pages.locator("[aria-current=page]")).to_have_text("2")
    expect(rows.first).to_be_visible()
    _assert_fits_the_phone(phone)
    # The row's PDF link is left out on a phone (the invoice's page has one),
    # but it is still the same download.
    _assert_pdf(phone, rows.first.locator("a[type='application/pdf']"))
    axe_check(phone)

    number = rows.first.locator("th a").inner_text()
    with phone.expect_navigation():
        rows.first.get_by_role("link", name=number, exact=True).click()
    expect(phone.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
    expect(phone.locator(".invoice-totals")).to_contain_text("Total")
    expect(phone.locator(".invoice-payment")).to_contain_text("Visa •••• 4242")
    _assert_fits_the_phone(phone)
    _assert_pdf(phone, phone.get_by_role("link", name="Download PDF"))
    axe_check(phone)


def test_billing_history_on_a_phone_in_indonesian(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_budi"))
    with phone.expect_navigation():
        phone.get_by_role("link", name="Riwayat Penagihan").click()

    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.get_by_role("heading", level=1)).to_have_text("Riwayat Penagihan")
    rows = phone.locator("table.invoice-list tbody tr")
    expect(rows.first).to_contain_text("Rp166.500")
    expect(rows.first.locator("td[data-label='Tanggal terbit']")).to_be_visible()
    _assert_fits_the_phone(phone)
    axe_check(phone)

    with phone.expect_navigation():
        rows.first.locator("th a").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Faktur INV-\d+$"))
    expect(phone.locator(".invoice-totals")).to_contain_text("Pajak")
    expect(phone.locator(".invoice-totals")).to_contain_text("Rp16.500")
    expect(phone.locator(".invoice-parties")).to_contain_text("Ditagihkan kepada")
    _assert_fits_the_phone(phone)
    _assert_pdf(phone, phone.locator("a.button[href$='/pdf']"))
    axe_check(phone)
