"""Changing plan on a phone: choose, preview, confirm; accessible pages.

The upgrade charges Ava's card and changes her plan, so it runs on a shop
of its own; the shared shop is only looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AVA = "cus_demo_ava"
SUB = "sub_demo_ava_sync"


def test_upgrading_on_a_phone(own_phone: Any, own_live_server: Any, axe_check: Callable[[Any], Any]) -> None:
    page = own_phone
    open_portal(page, own_live_server.magic_link(AVA))
    page.goto(f"/portal/subscriptions/{SUB}")
    with page.expect_navigation():
        page.get_by_role("link", name="Change plan").click()
    assert urlsplit(page.url).path == f"/portal/subscriptions/{SUB}/plan"
    assert page.get_by_role("heading", name="Change plan", level=1).is_visible()
    axe_check(page)
    assert_no_horizontal_scroll(page)

    # A seat plan without a valid number of seats: the message is next to the field.
    page.get_by_role("radio", name="Team (monthly)").check()
    page.get_by_role("spinbutton", name="Seats").fill("1")
    with page.expect_navigation():
        page.get_by_role("button", name="See the price").click()
    assert page.get_by_text("Enter a number of seats from 2 to 50.").is_visible()
    assert page.get_by_role("spinbutton", name="Seats").get_attribute("aria-invalid") == "true"
    axe_check(page)

    page.get_by_role("radio", name="Business (monthly)").check()
    with page.expect_navigation():
        page.get_by_role("button", name="See the price").click()
    assert page.get_by_role("heading", name="Change to Business (monthly)?").is_visible()
    assert page.get_by_role("rowheader", name="Due now").is_visible()
    axe_check(page)
    assert_no_horizontal_scroll(page)

    confirm = page.get_by_role("button", name="Confirm and pay")
    mails_before = len(own_live_server.inbox.messages)
    with page.expect_navigation():
        confirm.click()
    assert urlsplit(page.url).path == f"/portal/subscriptions/{SUB}"
    assert page.get_by_text("You are now on Business (monthly).").is_visible()
    message = own_live_server.inbox.wait_for(
        "ava@example.com", after=mails_before, subject="Business (monthly)"
    )
    assert "Business (monthly)" in str(message["Subject"])


def test_a_scheduled_downgrade_shows_on_the_subscription_and_can_be_withdrawn(
    own_phone: Any, own_live_server: Any, axe_check: Callable[[Any], Any]
) -> None:
    page = own_phone
    open_portal(page, own_live_server.magic_link(AVA))
    page.goto(f"/portal/subscriptions/{SUB}/plan?plan=plan_sync_basic_monthly")
    with page.expect_navigation():
        page.get_by_role("button", name="See the price").click()
    assert page.get_by_text("Nothing is charged now").is_visible()
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm change").click()
    assert page.get_by_role("heading", name="Plan change on").is_visible()
    axe_check(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Cancel plan change").click()
    assert page.get_by_text("You stay on Pro (monthly).").is_visible()
