"""The example shop's staff area in Chromium: a staff member shares a portal
invite, the customer opens it in the same browser, and both stay signed in
as themselves.

The tests use their own customer (``cus_browser_dewi``) and the demo staff
account, so the demo customers other browser tests rely on are untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from example_app.staff import DEMO_STAFF_EMAIL, DEMO_STAFF_PASSWORD, ensure_demo_staff
from flask_customer_portal import Customer
from flask_customer_portal.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: As in conftest.py: a page of this app answers in well under a second.
TIMEOUT_MS = 5_000

CUSTOMER_ID = "cus_browser_dewi"
CUSTOMER_NAME = "Dewi Lestari"
CUSTOMER_EMAIL = "dewi.staff-browser@example.com"


@pytest.fixture
def staff_setup(live_server: Any) -> Any:
    """The demo staff account and a customer of these tests' own."""

    def setup() -> None:
        ensure_demo_staff()
        store = get_state(live_server.app).storage
        if store.get_customer(CUSTOMER_ID) is None:
            store.add_customer(  # type: ignore[attr-defined]
                Customer(
                    id=CUSTOMER_ID,
                    email=CUSTOMER_EMAIL,
                    name=CUSTOMER_NAME,
                    locale="en",
                    timezone="Asia/Jakarta",
                )
            )

    live_server.call(setup)
    return live_server


def _path(page: Any) -> str:
    return urlsplit(page.url).path


def _staff_sign_in(page: Any) -> None:
    response = page.goto("/admin/")
    assert response is not None
    assert _path(page) == "/admin/login", page.url
    expect(page.get_by_role("heading", level=1)).to_have_text("Staff sign-in")
    page.get_by_label("Email address").fill(DEMO_STAFF_EMAIL)
    page.get_by_label("Password").fill(DEMO_STAFF_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert _path(page) == "/admin/", page.url


def _open_customer(page: Any) -> None:
    page.get_by_label("Search by name, email or customer id").fill("staff-browser")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    expect(page.locator("table.staff-customers tbody tr")).to_have_count(1)
    with page.expect_navigation():
        page.get_by_role("link", name=CUSTOMER_NAME).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(CUSTOMER_NAME)


def test_staff_shares_an_invite_and_both_keep_their_sign_in(
    desktop: Any, staff_setup: Any, axe_check: Any
) -> None:
    page = desktop
    context = page.context
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=staff_setup.url)

    page.goto("/admin/")
    expect(page.locator(".test-mode-banner")).to_be_visible()
    axe_check(page)
    _staff_sign_in(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Customers")
    expect(page.locator(".test-mode-banner")).to_be_visible()
    axe_check(page)

    _open_customer(page)
    expect(page.locator(".test-mode-banner")).to_be_visible()
    expect(page.get_by_label("Static link")).to_have_value(f"{staff_setup.url}/portal/login/biz_demo")
    expect(page.locator("#personal-link")).to_have_count(0)  # made only on request
    axe_check(page)

    # Share invite: a POST makes the link, shown as read-only text with a Copy button.
    with page.expect_navigation():
        page.get_by_role("button", name="Make a personal link").click()
    field = page.get_by_label(f"Personal link for {CUSTOMER_NAME}")
    expect(field).to_have_attribute("readonly", "")
    link = field.input_value()
    assert link.startswith(f"{staff_setup.url}/portal/session/"), link
    expect(page.locator(".staff-expiry time")).to_contain_text("UTC")
    copy = page.get_by_role("button", name="Copy the personal link")
    expect(copy).to_be_visible()
    copy.click()
    expect(page.locator("#staff-copy-status")).to_have_text("Copied the personal link.")
    assert page.evaluate("navigator.clipboard.readText()") == link
    axe_check(page)

    # The customer opens it in another tab of the same browser.
    portal = context.new_page()
    portal.set_default_timeout(TIMEOUT_MS)
    response = portal.goto(link)
    assert response is not None
    assert response.status == 200
    with portal.expect_navigation():
        portal.get_by_role("button", name="Open my portal").click()
    assert _path(portal) == "/portal/", portal.url
    expect(portal.locator("main h1")).to_contain_text("Dewi")
    expect(portal.locator(".portal-who")).to_have_text(CUSTOMER_EMAIL)

    # The staff tab is still the staff member's, and sees the customer's new
    # session. (Loaded again, not re-posted: the customer's sign-in in this
    # browser rotated the CSRF token the tab's forms carried.)
    page.goto(f"/admin/customers/{CUSTOMER_ID}")
    expect(page.locator(".portal-who")).to_contain_text(DEMO_STAFF_EMAIL)
    sessions = page.locator("table.staff-sessions tbody tr")
    expect(sessions.first).to_contain_text("Active")

    # Email it to the customer.
    already_received = len(staff_setup.inbox.messages)
    with page.expect_navigation():
        page.get_by_role("button", name="Email it to the customer").click()
    expect(page.get_by_role("status").filter(has_text="Emailed a new portal link")).to_contain_text(
        CUSTOMER_EMAIL
    )
    message = staff_setup.inbox.wait_for(CUSTOMER_EMAIL, after=already_received)
    assert message["Subject"] == "Acme Software invites you to your customer portal"

    # Signing out of the staff area leaves the customer signed in.
    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="Sign out").click()
    assert _path(page) == "/admin/login", page.url
    portal.reload()
    assert _path(portal) == "/portal/", portal.url
    expect(portal.locator("main h1")).to_contain_text("Dewi")

    # The customer's session does not open the staff area.
    portal.goto("/admin/customers/cus_demo_ava")
    assert _path(portal) == "/admin/login", portal.url

    # And signing out of the portal leaves a new staff sign-in alone.
    _staff_sign_in(page)
    portal.goto("/portal/")
    with portal.expect_navigation():
        portal.locator("header").get_by_role("button", name="Sign out").click()
    page.reload()
    assert _path(page) == "/admin/", page.url
    expect(page.locator(".portal-who")).to_contain_text(DEMO_STAFF_EMAIL)


@pytest.fixture
def phone_without_js(browser: Any, staff_setup: Any) -> Iterator[Any]:
    context = browser.new_context(
        base_url=staff_setup.url,
        locale="en-US",
        viewport={"width": 360, "height": 740},
        java_script_enabled=False,
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_links_can_be_copied_by_hand_without_javascript(phone_without_js: Any) -> None:
    page = phone_without_js
    _staff_sign_in(page)
    _open_customer(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Make a personal link").click()
    field = page.get_by_label(f"Personal link for {CUSTOMER_NAME}")
    expect(field).to_be_visible()
    expect(field).to_have_attribute("readonly", "")
    expect(page.get_by_role("button", name="Copy the personal link")).to_be_hidden()
    # The whole link is selectable text.
    field.click()
    page.keyboard.press("Control+A")
    selected = page.evaluate(
        "() => { const el = document.getElementById('personal-link');"
        " return el.value.substring(el.selectionStart, el.selectionEnd); }"
    )
    assert selected.startswith("http") and "/portal/session/" in selected
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 360, scroll_width
    # (axe needs JavaScript; the same page with it is checked above.)
