"""A promotion code at a plan change, and a trial's page, on a 375 px phone:
the code's field, its refusal next to it, its line in the preview; the
trial's end and first charge. Accessible (axe), no sideways scrolling.

Screenshots at 375 and 1280 px go to ``$PORTAL_SHOTS`` when it is set."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal

from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import PromotionCode, Subscription, SubscriptionStatus

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AVA = "cus_demo_ava"
SUB = "sub_demo_ava_sync"
CHEN = "cus_demo_chen"
TRIAL = "sub_trial_chen_browser"
PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}


def _shot(page: Any, name: str) -> None:
    folder = os.environ.get("PORTAL_SHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    for label, size in (("375", PHONE), ("1280", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(Path(folder) / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(PHONE)


def test_a_promotion_code_on_a_phone(
    own_phone: Any, own_live_server: Any, axe_check: Callable[[Any], Any]
) -> None:
    own_live_server.call(
        lambda: get_state().storage.add_promotion_code(PromotionCode("WELCOME10", percent_off=10))
    )
    page = own_phone
    page.set_viewport_size(PHONE)
    open_portal(page, own_live_server.magic_link(AVA))
    page.goto(f"/portal/subscriptions/{SUB}/plan?plan=plan_sync_business_monthly")
    field = page.get_by_role("textbox", name="Promotion code")
    assert field.is_visible()
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)

    field.fill("NOTACODE")
    with page.expect_navigation():
        page.get_by_role("button", name="See the price").click()
    assert page.get_by_text("This code is not valid. Check it and try again.").is_visible()
    field = page.get_by_role("textbox", name="Promotion code")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.input_value() == "NOTACODE"
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    _shot(page, "change-plan-code-refused")

    page.get_by_role("radio", name="Business (monthly)").check()
    field.fill("welcome10")
    with page.expect_navigation():
        page.get_by_role("button", name="See the price").click()
    assert page.get_by_role("rowheader", name="Promotion code WELCOME10").is_visible()
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    _shot(page, "change-plan-preview-with-code")
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm and pay").click()
    assert page.get_by_text("You are now on Business (monthly).").is_visible()
    assert own_live_server.call(lambda: get_state().storage.promotion_redeemed(AVA, "WELCOME10"))


def test_a_trial_on_a_phone(own_phone: Any, own_live_server: Any, axe_check: Callable[[Any], Any]) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    own_live_server.call(
        lambda: get_state().storage.add_subscription(
            Subscription(
                id=TRIAL,
                customer_id=CHEN,
                product_name="Acme Sync",
                plan_name="Pro (monthly)",
                price=Money(1900, "USD"),
                interval="month",
                interval_count=1,
                status=SubscriptionStatus.TRIALING,
                current_period_start=now - timedelta(days=4),
                current_period_end=now + timedelta(days=10),
                created_at=now - timedelta(days=4),
            )
        )
    )
    page = own_phone
    page.set_viewport_size(PHONE)
    open_portal(page, own_live_server.magic_link(CHEN))
    page.goto(f"/portal/subscriptions/{TRIAL}")
    assert page.get_by_role("heading", name="Free trial until").is_visible()
    assert page.get_by_text("$19.00 is charged").is_visible()
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    _shot(page, "subscription-trial")
    page.goto("/portal/subscriptions")
    assert page.get_by_text("Trial ends on").first.is_visible()
    axe_check(page)
    _shot(page, "subscriptions-trial")


def test_a_promotion_code_on_the_subscription_page_on_a_phone(
    own_phone: Any, own_live_server: Any, axe_check: Callable[[Any], Any]
) -> None:
    own_live_server.call(
        lambda: get_state().storage.add_promotion_code(PromotionCode("WELCOME10", percent_off=10))
    )
    page = own_phone
    page.set_viewport_size(PHONE)
    open_portal(page, own_live_server.magic_link(AVA))
    page.goto(f"/portal/subscriptions/{SUB}")
    assert page.get_by_role("heading", name="Have a promotion code?").is_visible()
    field = page.get_by_role("textbox", name="Promotion code")
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    _shot(page, "subscription-code-form")

    field.fill("NOTACODE")
    with page.expect_navigation():
        page.get_by_role("button", name="Add code").click()
    assert page.get_by_text("This code is not valid. Check it and try again.").is_visible()
    field = page.get_by_role("textbox", name="Promotion code")
    assert field.get_attribute("aria-invalid") == "true" and field.input_value() == "NOTACODE"
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    _shot(page, "subscription-code-refused")

    field.fill("welcome10")
    with page.expect_navigation():
        page.get_by_role("button", name="Add code").click()
    assert page.get_by_text("Promotion code WELCOME10 added.").is_visible()
    assert page.get_by_role("rowheader", name="Discount: 10% off your next renewal").is_visible()
    assert page.get_by_text("This subscription already has a discount.").is_visible()
    assert page.get_by_role("textbox", name="Promotion code").count() == 0
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    _shot(page, "subscription-code-added")
    assert own_live_server.call(lambda: get_state().storage.promotion_redeemed(AVA, "WELCOME10"))
