"""The portal in a real browser: the access flows end to end, on a phone and
on a desktop, with axe-core accessibility checks.

Set ``PORTAL_SCREENSHOTS=/some/dir`` to keep screenshots of the phone
dashboards (``portal-phone.png``, ``portal-phone-id.png``) for a look.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.auth import issue_link
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import LinkPurpose

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOGIN_PATH = "/portal/login/biz_demo"


def _screenshot(page: Any, name: str) -> None:
    directory = os.environ.get("PORTAL_SCREENSHOTS")
    if directory:
        page.screenshot(path=str(Path(directory) / name), full_page=True)


# -- 1. the dashboard on a phone -------------------------------------------------


def test_dashboard_on_a_phone(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))

    expect(phone.locator("html")).to_have_attribute("lang", "en")
    expect(phone.locator("main h1")).to_contain_text("Ava")
    expect(phone.locator(".test-mode-banner")).to_be_visible()
    expect(phone.locator(".test-mode-banner")).to_contain_text("Test mode")
    assert_no_horizontal_scroll(phone)
    _screenshot(phone, "portal-phone.png")
    axe_check(phone)


def test_dashboard_on_a_phone_in_indonesian(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_budi"))

    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.locator("main h1")).to_contain_text("Budi")
    expect(phone.locator(".test-mode-banner")).to_be_visible()
    # His subscription is on hold after a failed payment: that comes first,
    # before the summary cards, with the way to fix it.
    first_section = phone.locator("main section").first
    expect(first_section).to_have_class(re.compile(r"\battention\b"))
    expect(first_section).to_contain_text("Acme Sync")
    expect(first_section.get_by_role("link", name="Perbarui metode pembayaran")).to_be_visible()
    assert_no_horizontal_scroll(phone)
    _screenshot(phone, "portal-phone-id.png")
    axe_check(phone)


# -- 2. the static link and the emailed login link -------------------------------


def test_email_login_flow(desktop: Any, live_server: Any, axe_check: Any) -> None:
    page = desktop
    response = page.goto(LOGIN_PATH)
    assert response is not None
    assert response.status == 200
    expect(page.get_by_role("heading", level=1)).to_contain_text("Sign in")
    axe_check(page)

    already_received = len(live_server.inbox.messages)
    page.get_by_label("Email address").fill("ava@example.com")
    with page.expect_navigation():
        page.get_by_role("button", name="Email me a sign-in link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    expect(page.get_by_role("status")).to_contain_text("ava@example.com")

    message = live_server.inbox.wait_for("ava@example.com", after=already_received)
    text = message.get_body(preferencelist=("plain",)).get_content()
    links = re.findall(re.escape(live_server.url) + r"/portal/login/biz_demo/[^\s<>\"]+", text)
    assert links, f"no login link in the email:\n{text}"
    link = links[0]
    html = message.get_body(preferencelist=("html",)).get_content()
    assert link in html.replace("&amp;", "&")

    open_portal(page, link)
    expect(page.locator("main h1")).to_contain_text("Ava")

    with page.expect_navigation():
        page.locator("header").get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed out")

    page.goto("/portal/")
    assert urlsplit(page.url).path == LOGIN_PATH, page.url

    response = page.goto(link)
    assert response is not None
    assert response.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("This link was already used")
    expect(page.get_by_role("button", name="Open my portal")).to_have_count(0)
    axe_check(page)


# -- 3. links that cannot be used ------------------------------------------------


def _expired_link(live_server: Any) -> str:
    def make() -> str:
        state = get_state(live_server.app)
        customer = state.storage.get_customer("cus_demo_chen")
        assert customer is not None
        token, _ = issue_link(state, LinkPurpose.SESSION_LINK, customer, max_age=-60)
        return f"{state.config.portal_url}/session/{token}"

    link: str = live_server.call(make)
    return link


@pytest.mark.parametrize(
    ("kind", "status", "heading"),
    [
        ("garbage", 404, "This link is not valid"),
        ("expired", 410, "This link has expired"),
    ],
)
def test_unusable_link_explains_and_offers_a_new_one(
    phone: Any, live_server: Any, axe_check: Any, kind: str, status: int, heading: str
) -> None:
    link = _expired_link(live_server) if kind == "expired" else "/portal/session/not-a-real-token"
    response = phone.goto(link)
    assert response is not None
    assert response.status == status

    expect(phone.get_by_role("heading", level=1)).to_have_text(heading)
    expect(phone.get_by_role("button", name="Open my portal")).to_have_count(0)
    form = phone.locator(f"main form[action='{LOGIN_PATH}']")
    expect(form.get_by_label("Email address")).to_be_visible()
    expect(form.get_by_role("button", name="Email me a sign-in link")).to_be_visible()
    assert_no_horizontal_scroll(phone)
    axe_check(phone)


# -- 4. keyboard -----------------------------------------------------------------


def test_skip_link_is_first_and_moves_focus_to_main(desktop: Any, live_server: Any) -> None:
    page = desktop
    open_portal(page, live_server.magic_link("cus_demo_ava"))

    page.keyboard.press("Tab")
    focused = page.evaluate(
        "({cls: document.activeElement.className, href: document.activeElement.getAttribute('href'),"
        " text: document.activeElement.textContent.trim()})"
    )
    assert focused == {"cls": "skip-link", "href": "#portal-main", "text": "Skip to content"}, focused
    # Hidden until focused, then on screen.
    box = page.locator(".skip-link").bounding_box()
    assert box is not None
    assert box["x"] >= 0, box
    assert box["y"] >= 0, box
    assert box["width"] > 0, box

    page.keyboard.press("Enter")
    expect(page.locator("main#portal-main")).to_be_focused()
    # The next Tab goes on from the start of the main content (into it, or
    # past it when it has nothing focusable), never back to the header.
    page.keyboard.press("Tab")
    after_main_start = page.evaluate(
        """() => {
            const main = document.getElementById('portal-main');
            const el = document.activeElement;
            const following = main.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING;
            return main.contains(el) || following !== 0;
        }"""
    )
    assert after_main_start, page.evaluate("document.activeElement.outerHTML")
