"""Where Ava is signed in, on a phone: signing her laptop out from the
sessions page, reading her account activity, then signing out everywhere —
with axe-core checks on each page.

Runs on a shop of its own (``own_live_server``): signing out everywhere
moves Ava's ``auth_version`` on, which would end other tests' sessions and
links on the shared server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"


@pytest.fixture
def laptop(browser: Any, own_live_server: Any) -> Iterator[Any]:
    """A second browser of Ava's: a desktop Firefox on Windows."""
    context = browser.new_context(
        base_url=own_live_server.url,
        locale="en-US",
        user_agent=FIREFOX_WINDOWS,
        viewport={"width": 1280, "height": 800},
    )
    context.set_default_timeout(5_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _path(page: Any) -> str:
    return str(urlsplit(page.url).path)


def test_sign_out_a_device_read_activity_and_sign_out_everywhere(
    own_phone: Any, laptop: Any, own_live_server: Any, axe_check: Any
) -> None:
    phone = own_phone
    old_link = own_live_server.magic_link("cus_demo_ava")  # made before "sign out everywhere"
    open_portal(laptop, own_live_server.magic_link("cus_demo_ava"))
    open_portal(phone, own_live_server.magic_link("cus_demo_ava"))

    # Profile → Security → where you are signed in.
    with phone.expect_navigation():
        phone.get_by_role("navigation", name="Portal").get_by_role("link", name="Profile").click()
    security = phone.get_by_role("region", name="Security")
    with phone.expect_navigation():
        security.get_by_role("link", name="Where you are signed in").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Where you are signed in")
    cards = phone.locator(".session-list > li")
    expect(cards).to_have_count(2)
    laptop_card = cards.filter(has=phone.get_by_role("heading", name="Firefox on Windows"))
    expect(laptop_card).to_have_count(1)
    this_device = cards.filter(has=phone.get_by_text("This device", exact=True))
    expect(this_device).to_have_count(1)
    expect(this_device.get_by_role("button")).to_have_count(0)  # the header's "Sign out" is for this one
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    # Sign the laptop out.
    with phone.expect_navigation():
        laptop_card.get_by_role("button", name="Sign out this device").click()
    expect(phone.get_by_role("status")).to_contain_text("That device is signed out.")
    expect(cards).to_have_count(1)
    laptop.reload()
    assert _path(laptop) == "/portal/login/biz_demo", laptop.url

    # The activity page tells what happened, newest first.
    with phone.expect_navigation():
        phone.get_by_role("link", name="See your account activity").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Account activity")
    first_row = phone.locator(".activity-list tbody tr").first
    expect(first_row).to_contain_text("Another device was signed out.")
    expect(first_row).to_contain_text("You")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    # Sign out everywhere: the laptop (signed in again), this phone and old links.
    open_portal(laptop, own_live_server.magic_link("cus_demo_ava"))
    with phone.expect_navigation():
        phone.get_by_role("link", name="See where you are signed in").click()
    with phone.expect_navigation():
        phone.get_by_role("button", name="Sign out on all devices").click()
    assert _path(phone) == "/portal/login/biz_demo", phone.url
    expect(phone.get_by_role("status")).to_contain_text("You are signed out on every device")
    axe_check(phone)
    laptop.reload()
    assert _path(laptop) == "/portal/login/biz_demo", laptop.url
    response = phone.goto(old_link)
    assert response is not None
    assert response.status == 410
    # A new link still works.
    open_portal(phone, own_live_server.magic_link("cus_demo_ava"))
