"""What the customer did stays visible, on a 375 px phone: choosing a plan
(the current plan marked, seats only for a per-seat plan, the yearly
saving, the preview's table), a paused subscription on the overview, and
the way back to the merchant on every page. Each page checked with axe and
for sideways scrolling."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AVA_SUB = "sub_demo_ava_sync"
PHONE = {"width": 375, "height": 740}


def test_choosing_a_plan_on_a_phone(phone: Any, live_server: Any, axe_check: Any) -> None:
    phone.set_viewport_size(PHONE)
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    phone.goto(f"/portal/subscriptions/{AVA_SUB}/plan")
    choices = phone.get_by_role("group", name="Choose a plan")
    current = choices.locator("li", has_text="Current plan")
    expect(current).to_contain_text("Pro (monthly)")
    # The current plan is there to compare with, not to choose.
    expect(current.get_by_role("radio")).to_have_count(0)
    expect(choices.get_by_role("radio")).to_have_count(4)
    expect(choices.locator("li", has_text="Pro (yearly)")).to_contain_text(
        "Save $38.00 a year compared with paying monthly"
    )
    # Seats only once a per-seat plan is chosen.
    seats = phone.get_by_label("Seats", exact=True)
    expect(seats).to_be_hidden()
    choices.get_by_label("Team (monthly)").check()
    expect(seats).to_be_visible()
    assert_no_horizontal_scroll(phone, 375)
    axe_check(phone)
    choices.get_by_label("Business (monthly)").check()
    expect(seats).to_be_hidden()

    with phone.expect_navigation():
        phone.get_by_role("button", name="See the price").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Change to Business (monthly)?")
    table = phone.get_by_role("table", name="What you pay now")
    expect(table).to_contain_text("Due now")
    # The preview's table lines up with the facts above it, caption on top.
    facts = phone.locator("dl.subscription-facts").bounding_box()
    box = table.bounding_box()
    caption = table.locator("caption").bounding_box()
    assert facts is not None and box is not None and caption is not None
    assert abs(box["x"] - facts["x"]) < 1 and abs(box["width"] - facts["width"]) < 1
    assert abs(caption["x"] - box["x"]) < 1 and caption["y"] <= box["y"] + 1
    assert_no_horizontal_scroll(phone, 375)
    axe_check(phone)


def test_a_paused_subscription_on_the_overview(own_phone: Any, own_live_server: Any, axe_check: Any) -> None:
    page = own_phone
    page.set_viewport_size(PHONE)
    open_portal(page, own_live_server.magic_link("cus_demo_ava"))
    page.goto(f"/portal/subscriptions/{AVA_SUB}")
    choice = page.get_by_label("Pause for")
    # The day it starts again is shown before pausing.
    label = choice.locator("option:checked").text_content()
    assert label is not None and label.startswith("1 month, until ")
    resumes = label.removeprefix("1 month, until ")
    next_invoice = page.get_by_role("region", name="Next invoice")
    expect(next_invoice).to_contain_text("you will be charged $19.00")
    assert_no_horizontal_scroll(page, 375)
    axe_check(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Pause subscription").click()
    page.goto("/portal/")
    card = page.get_by_role("region", name="Subscriptions")
    expect(card).to_contain_text(f"Acme Sync is paused until {resumes}")
    assert_no_horizontal_scroll(page, 375)
    axe_check(page)


def test_the_way_back_to_the_merchant_is_on_every_page(configured_phone: Any, axe_check: Any) -> None:
    with configured_phone(
        CUSTOMER_PORTAL_RETURN_URL="http://shop.example/account",
        CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS=["shop.example"],
    ) as (page, server):
        page.set_viewport_size(PHONE)
        page.goto("/portal/login/biz_demo")
        back = page.get_by_role("link", name="Back to Acme Software")
        expect(back).to_have_attribute("href", "http://shop.example/account")
        open_portal(page, server.magic_link("cus_demo_ava"))
        for path in (
            "/portal/",
            "/portal/invoices",
            f"/portal/subscriptions/{AVA_SUB}",
            "/portal/license-keys",
        ):
            page.goto(path)
            assert urlsplit(page.url).path == path
            expect(page.get_by_role("link", name="Back to Acme Software")).to_have_count(1)
            expect(back).to_have_attribute("href", "http://shop.example/account")
            assert_no_horizontal_scroll(page, 375)
        axe_check(page)
