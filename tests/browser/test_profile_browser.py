"""Licence keys and the profile in a real browser, on a phone: revealing and
copying a key (with and without JavaScript), an invalid phone number
explained next to its field, and Budi's profile in Indonesian — each with
an axe-core accessibility check.

Email changes are not made here: the live server is shared by every browser
test, and Ava's and Budi's addresses must stay as they are
(``tests/test_profile.py`` covers email changes end to end).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AVA_SYNC_KEY = "ACME-SYNC-7K3Q-M9VX-2HPD-4RTA"


def _customer(live_server: Any, customer_id: str) -> Customer:
    def load() -> Customer | None:
        return get_state(live_server.app).storage.get_customer(customer_id)

    customer = live_server.call(load)
    assert customer is not None
    return customer  # type: ignore[no-any-return]


@pytest.fixture
def ava_profile_restored(live_server: Any) -> Iterator[Customer]:
    """Ava's saved name and phone, put back after the test."""
    before = _customer(live_server, "cus_demo_ava")
    yield before
    live_server.call(
        lambda: get_state(live_server.app).storage.update_profile(
            before.id, name=before.name, phone=before.phone
        )
    )
    assert _customer(live_server, "cus_demo_ava") == before


# -- licence keys ------------------------------------------------------------------


def test_reveal_and_copy_a_licence_key_on_a_phone(phone: Any, live_server: Any, axe_check: Any) -> None:
    phone.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    with phone.expect_navigation():
        phone.get_by_role("navigation", name="Portal").get_by_role("link", name="Licence keys").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Licence keys")

    keys = phone.locator("li.license-key")
    expect(keys).to_have_count(2)
    sync = keys.filter(has=phone.get_by_role("heading", name="Acme Sync"))
    expect(sync.locator(".license-key-masked")).to_have_text("ACME-••••-4RTA")
    expect(sync).to_contain_text("2 of 5")
    expect(sync).to_contain_text("Never expires")
    full_key = sync.get_by_label("Licence key for Acme Sync")
    expect(full_key).to_be_hidden()
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    expect(sync.locator("summary .when-closed")).to_have_text("Show key")
    expect(sync.locator("summary .when-open")).to_be_hidden()
    sync.locator("summary").click()
    expect(full_key).to_be_visible()
    # Open, the same control hides the key again.
    expect(sync.locator("summary .when-open")).to_have_text("Hide key")
    expect(sync.locator("summary .when-open")).to_be_visible()
    expect(sync.locator("summary .when-closed")).to_be_hidden()
    expect(full_key).to_have_value(AVA_SYNC_KEY)
    expect(full_key).to_have_attribute("readonly", "")

    copy = sync.get_by_role("button", name="Copy key for Acme Sync")
    expect(copy).to_be_visible()  # the script enabled it
    copy.click()
    # Seen, not only announced: the button says so for a moment …
    expect(sync.locator("button[data-copy-target]")).to_have_text("Copied")
    status = sync.get_by_role("status")
    expect(status).to_have_text("Copied Acme Sync key to the clipboard.")
    # … and the message stays on screen next to it.
    expect(status).to_be_visible()
    expect(sync.get_by_role("button", name="Copy key for Acme Sync")).to_be_visible(timeout=5_000)
    assert phone.evaluate("navigator.clipboard.readText()") == AVA_SYNC_KEY
    assert_no_horizontal_scroll(phone)
    axe_check(phone)


def test_licence_keys_work_without_javascript(browser: Any, live_server: Any) -> None:
    context = browser.new_context(
        base_url=live_server.url,
        locale="en-US",
        java_script_enabled=False,
        viewport={"width": 360, "height": 740},
    )
    context.set_default_timeout(5_000)
    try:
        page = context.new_page()
        open_portal(page, live_server.magic_link("cus_demo_ava"))
        page.goto("/portal/license-keys")
        sync = page.locator("li.license-key").filter(has=page.get_by_role("heading", name="Acme Sync"))
        # No script: no Copy button that would do nothing …
        expect(sync.get_by_role("button", name="Copy key for Acme Sync")).to_be_hidden()
        # … but the key can be revealed and selected to copy by hand.
        sync.get_by_text("Show key").click()
        field = sync.get_by_label("Licence key for Acme Sync")
        expect(field).to_be_visible()
        field.select_text()
        selected = page.evaluate(
            "(() => { const el = document.activeElement;"
            " return el.value.substring(el.selectionStart, el.selectionEnd); })()"
        )
        assert selected == AVA_SYNC_KEY
    finally:
        context.close()


# -- the profile -------------------------------------------------------------------


def test_invalid_phone_is_explained_next_to_the_field(
    phone: Any, live_server: Any, axe_check: Any, ava_profile_restored: Customer
) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    phone.goto("/portal/profile")
    expect(phone.get_by_role("heading", level=1)).to_have_text("Profile")
    expect(phone.get_by_label("Phone number")).to_have_value("+1 415-555-0123")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    phone.get_by_label("Name").fill("Ava T.")
    phone.get_by_label("Phone number").fill("0812 34")
    with phone.expect_navigation() as navigation:
        phone.get_by_role("button", name="Save changes").click()
    assert navigation.value.status == 422

    field = phone.get_by_label("Phone number")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_value("0812 34")  # what was typed is still there
    expect(phone.get_by_label("Name")).to_have_value("Ava T.")
    expect(phone.locator("#phone-error")).to_have_text("Enter a valid phone number, like +62 812-345-678.")
    expect(field).to_have_accessible_description(
        "Optional. For example: +62 812-345-678 Enter a valid phone number, like +62 812-345-678."
    )
    expect(phone.get_by_role("alert")).to_contain_text("Nothing was saved.")
    assert _customer(live_server, "cus_demo_ava") == ava_profile_restored
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    # Corrected, it is saved (and put back by the fixture afterwards).
    field.fill("0812-3456-7890")
    with phone.expect_navigation():
        phone.get_by_role("button", name="Save changes").click()
    assert urlsplit(phone.url).path == "/portal/profile"
    expect(phone.get_by_role("status")).to_have_text("Your profile was saved.")
    expect(phone.get_by_label("Phone number")).to_have_value("+62 812-3456-7890")
    saved = _customer(live_server, "cus_demo_ava")
    assert (saved.name, saved.phone, saved.email) == ("Ava T.", "+6281234567890", "ava@example.com")


def test_budi_profile_in_indonesian(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_budi"))
    phone.goto("/portal/profile")
    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.get_by_role("heading", level=1)).to_have_text("Profil")
    expect(phone.locator("#name")).to_have_value("Budi Santoso")
    expect(phone.locator("#phone")).to_have_value("+62 812-3456-7890")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    phone.goto("/portal/license-keys")
    expect(phone.locator("li.license-key")).to_have_count(1)
    expect(phone.locator(".license-key-masked")).to_have_text("ACME-••••-6GTL")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)
