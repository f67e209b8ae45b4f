"""The payment-methods page and an error page in a real browser at 375 px
and 1280 px: axe-core finds no serious violation, nothing scrolls
sideways; a customer with no card adds one on a phone (number, then expiry
and security code on one row) and makes it the default."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = (375, 1280)


@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}px")
def page(request: pytest.FixtureRequest, browser: Any, live_server: Any) -> Iterator[Any]:
    width = request.param
    context = browser.new_context(
        base_url=live_server.url, locale="en-US", viewport={"width": width, "height": 800}
    )
    context.set_default_timeout(5_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _width(page: Any) -> int:
    return int(page.viewport_size["width"])


def test_avas_payment_methods(page: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(page, live_server.magic_link("cus_demo_ava"))
    page.goto("/portal/payment-methods")
    expect(page.get_by_role("heading", level=1)).to_have_text("Payment methods")
    nav = page.locator('.portal-nav a[href="/portal/payment-methods"]')
    expect(nav).to_have_attribute("aria-current", "page")
    card = page.locator(".account-method").filter(has_text="Visa •••• 4242")
    expect(card.locator(".badge-current")).to_have_text("Default")
    expect(card).to_contain_text("Acme Sync")
    expect(card.get_by_role("button", name="Remove")).to_have_count(0)  # a live subscription uses it
    expect(page.locator("#card_number")).to_be_visible()
    assert_no_horizontal_scroll(page, _width(page))
    axe_check(page)


def test_error_pages(page: Any, live_server: Any, axe_check: Any) -> None:
    response = page.goto("/portal/no-such-page")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(page.get_by_role("link", name="Go to the sign-in page")).to_have_attribute(
        "href", "/portal/login/biz_demo"
    )
    assert_no_horizontal_scroll(page, _width(page))
    axe_check(page)

    open_portal(page, live_server.magic_link("cus_demo_ava"))
    response = page.goto("/portal/logout")
    assert response is not None and response.status == 405
    expect(page.get_by_role("heading", level=1)).to_have_text("That action is not available here")
    back = page.get_by_role("link", name="Back to your portal")
    assert_no_horizontal_scroll(page, _width(page))
    axe_check(page)
    with page.expect_navigation():
        back.click()
    assert urlsplit(page.url).path == "/portal/"


def test_chen_adds_his_first_card_on_a_phone_and_makes_it_the_default(
    browser: Any, own_live_server: Any, axe_check: Any
) -> None:
    """On a shop of this test's own: the new card would show on the shared one."""
    context = browser.new_context(
        base_url=own_live_server.url,
        locale="en-US",
        viewport={"width": 375, "height": 740},
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(5_000)
    phone = context.new_page()
    try:
        open_portal(phone, own_live_server.magic_link("cus_demo_chen"))
        phone.goto("/portal/payment-methods")
        expect(phone.locator("main")).to_contain_text("No saved cards yet")
        # Expiry and security code share one row on a phone.
        tops = {
            round(phone.locator(selector).bounding_box()["y"])
            for selector in ("#exp_month", "#exp_year", "#cvc")
        }
        assert len(tops) == 1, tops
        assert_no_horizontal_scroll(phone, 375)
        axe_check(phone)

        phone.locator("#card_number").fill("4242 4242 4242 4242")
        phone.locator("#exp_month").fill("12")
        phone.locator("#exp_year").fill(str(datetime.now(timezone.utc).year % 100 + 2))
        phone.locator("#cvc").fill("123")
        with phone.expect_navigation():
            phone.get_by_role("button", name="Add card").click()
        expect(phone.get_by_role("status")).to_have_text("Visa •••• 4242 was added to your account.")
        assert_no_horizontal_scroll(phone, 375)
        axe_check(phone)

        with phone.expect_navigation():
            phone.get_by_role("button", name="Make default").click()
        expect(phone.get_by_role("status")).to_have_text("Visa •••• 4242 is now your default card.")
        expect(phone.locator(".account-method .badge-current")).to_have_text("Default")
        assert_no_horizontal_scroll(phone, 375)
        axe_check(phone)
    finally:
        context.close()
    methods = own_live_server.call(
        lambda: get_state(own_live_server.app).storage.list_payment_methods("cus_demo_chen")
    )
    assert [(m.last4, m.is_default) for m in methods] == [("4242", True)]
