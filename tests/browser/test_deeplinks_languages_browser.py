"""Deep links and languages in a real browser, on a phone: a deep link that
lands on its task and goes back to the shop when it is done, the language
picker before sign-in, and the whole portal right to left (a pseudo-locale
built for the test) with no sideways scrolling — each with axe-core."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from rtl_pseudo_locale import PSEUDO_LOCALE, build_rtl_catalogue, pseudo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE_WIDTH = 360


def _deep_link(server: Any, customer_id: str, **kwargs: Any) -> str:
    return str(
        server.call(
            lambda: server.app.extensions["customer_portal"].create_session(customer_id, **kwargs).link
        )
    )


def _open(page: Any, link: str) -> None:
    response = page.goto(link)
    assert response is not None and response.status == 200
    with page.expect_navigation():
        page.get_by_role("button", name="Open my portal").click()


def _assert_no_sideways_scroll(page: Any) -> None:
    """Neither to the right (left to right) nor to the left (right to left)."""
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    outside = page.evaluate(
        """(width) => [...document.querySelectorAll('body *')]
            .filter(el => { const r = el.getBoundingClientRect();
                            return r.width > 0 && (r.left < -0.5 || r.right > width + 0.5)
                                   && getComputedStyle(el).position !== 'absolute'; })
            .slice(0, 5)
            .map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''))""",
        PHONE_WIDTH,
    )
    # scrollWidth counts overflow on either side (to the left in right to
    # left); the elements outside are named to find the culprit.
    assert scroll_width <= PHONE_WIDTH, (scroll_width, outside)


def test_an_invoices_deep_link_lands_on_invoices_with_the_way_back(
    phone: Any, live_server: Any, axe_check: Any
) -> None:
    shop = f"{live_server.url}/"
    _open(phone, _deep_link(live_server, "cus_demo_ava", flow="invoices", return_url=shop))
    assert urlsplit(phone.url).path == "/portal/invoices"
    back = phone.get_by_role("link", name="Back to Acme Software")
    expect(back).to_have_attribute("href", shop)
    _assert_no_sideways_scroll(phone)
    axe_check(phone)
    with phone.expect_navigation():
        back.click()
    assert phone.url == shop


def test_changing_the_card_from_a_deep_link_returns_to_the_shop(
    configured_phone: Any, axe_check: Any
) -> None:
    with configured_phone() as (page, server):
        shop = f"{server.url}/"
        link = _deep_link(
            server,
            "cus_demo_ava",
            flow="payment_method_update",
            subscription_id="sub_demo_ava_sync",
            return_url=shop,
        )
        _open(page, link)
        assert urlsplit(page.url).path == "/portal/subscriptions/sub_demo_ava_sync/payment-method"
        expect(page.get_by_role("link", name="Back to Acme Software")).to_be_visible()
        _assert_no_sideways_scroll(page)
        axe_check(page)

        page.locator('label[for="payment-method-new"]').click()
        page.locator("#card_number").fill("4242 4242 4242 4242")
        page.locator("#exp_month").fill("12")
        page.locator("#exp_year").fill(str(datetime.now(timezone.utc).year + 2))
        page.locator("#cvc").fill("123")
        with page.expect_navigation():
            page.locator(".payment-form button[type=submit]").click()
        assert page.url == shop


def test_a_visitor_picks_a_language_on_the_login_page(phone: Any, live_server: Any, axe_check: Any) -> None:
    phone.goto(f"{live_server.url}/portal/login/biz_demo")
    expect(phone.locator("html")).to_have_attribute("lang", "en")
    picker = phone.get_by_label("Language")
    expect(picker.locator("option[lang=id]")).to_have_text("Indonesia")
    _assert_no_sideways_scroll(phone)
    axe_check(phone)
    picker.select_option("id")
    with phone.expect_navigation():
        phone.get_by_role("button", name="Change language").click()
    assert urlsplit(phone.url).path == "/portal/login/biz_demo"
    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.locator("#portal-language")).to_have_value("id")
    _assert_no_sideways_scroll(phone)
    axe_check(phone)


def test_the_portal_right_to_left_on_a_phone(configured_phone: Any, tmp_path: Path, axe_check: Any) -> None:
    translations = build_rtl_catalogue(tmp_path / "translations")
    with configured_phone(
        CUSTOMER_PORTAL_LANGUAGES=("en", "id", PSEUDO_LOCALE),
        CUSTOMER_PORTAL_TRANSLATION_DIRECTORIES=[str(translations)],
    ) as (page, server):
        _open(page, _deep_link(server, "cus_demo_ava"))
        page.get_by_label("Language").select_option(PSEUDO_LOCALE)
        with page.expect_navigation():
            page.get_by_role("button", name="Change language").click()

        html = page.locator("html")
        expect(html).to_have_attribute("dir", "rtl")
        expect(html).to_have_attribute("lang", PSEUDO_LOCALE)
        expect(page.get_by_role("navigation").get_by_role("link", name=pseudo("Overview"))).to_be_visible()
        # Right to left for real: the brand starts at the right edge, the nav runs leftwards.
        brand = page.locator(".portal-brand").bounding_box()
        assert brand is not None and brand["x"] + brand["width"] > PHONE_WIDTH - 40
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
        _assert_no_sideways_scroll(page)
        axe_check(page)

        for path in ("/portal/invoices", "/portal/subscriptions/sub_demo_ava_sync/payment-method"):
            page.goto(f"{server.url}{path}")
            expect(page.locator("html")).to_have_attribute("dir", "rtl")
            _assert_no_sideways_scroll(page)
            axe_check(page)
