"""Subscriptions in a real browser: the list and a subscription on a phone,
the cancel confirmation (after the reason step), a full cancel-and-keep
round trip, and Budi's subscription in Indonesian, each checked with
axe-core.

The live shop is shared by every browser test, so Ava's subscription is
always left as it was found: active and renewing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.clock import utcnow
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import StateConflict, Subscription

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AVA_SUB = "sub_demo_ava_sync"
BUDI_SUB = "sub_demo_budi_sync"


def _stored(live_server: Any, customer_id: str, subscription_id: str) -> Subscription:
    def read() -> Subscription | None:
        return get_state(live_server.app).storage.get_subscription(customer_id, subscription_id)

    found = live_server.call(read)
    assert isinstance(found, Subscription)
    return found


@pytest.fixture
def ava_subscription_restored(live_server: Any) -> Iterator[Subscription]:
    """Ava's subscription as found; put back (kept) after the test, whatever happened."""
    before = _stored(live_server, "cus_demo_ava", AVA_SUB)
    assert before.cancel_at_period_end is False, "another test left Ava's subscription set to end"
    try:
        yield before
    finally:

        def restore() -> None:
            state = get_state(live_server.app)
            state.wait_for_background_tasks()
            with suppress(StateConflict):  # nothing to undo: it was never set to end
                state.storage.undo_cancellation("cus_demo_ava", AVA_SUB, now=utcnow())

        live_server.call(restore)
        assert _stored(live_server, "cus_demo_ava", AVA_SUB) == before


def test_ava_reads_her_subscriptions_on_a_phone(phone: Any, live_server: Any, axe_check: Any) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    with phone.expect_navigation():
        phone.get_by_role("navigation", name="Portal").get_by_role("link", name="Subscriptions").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Subscriptions")

    current = phone.get_by_role("region", name="Current subscriptions")
    expect(current).to_contain_text("Acme Sync")
    expect(current).to_contain_text("$19.00 / month")
    expect(current).to_contain_text("Renews on")
    expect(current).to_contain_text("Visa •••• 4242")
    past = phone.get_by_role("region", name="Past subscriptions")
    expect(past).to_contain_text("Acme Desktop")
    expect(past).to_contain_text("Ended on")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    with phone.expect_navigation():
        current.get_by_role("link", name="Acme Sync").click()
    assert urlsplit(phone.url).path == f"/portal/subscriptions/{AVA_SUB}"
    expect(phone.get_by_role("heading", level=1)).to_have_text("Acme Sync")
    expect(phone.get_by_role("region", name="Details")).to_contain_text("Pro (monthly)")
    expect(phone.get_by_role("button", name="Cancel subscription")).to_be_visible()
    assert_no_horizontal_scroll(phone)
    axe_check(phone)


def test_the_cancel_confirmation_is_accessible_and_going_back_changes_nothing(
    phone: Any, live_server: Any, axe_check: Any, ava_subscription_restored: Subscription
) -> None:
    open_portal(phone, live_server.magic_link("cus_demo_ava"))
    phone.goto(f"/portal/subscriptions/{AVA_SUB}")
    with phone.expect_navigation():
        phone.get_by_role("button", name="Cancel subscription").click()
    expect(phone.get_by_role("heading", level=1)).to_have_text("Before you cancel Acme Sync")
    phone.get_by_label("It costs too much").check()
    with phone.expect_navigation():
        phone.get_by_role("button", name="Continue").click()

    expect(phone.get_by_role("heading", level=1)).to_have_text("Cancel Acme Sync?")
    expect(phone.locator("main")).to_contain_text("You keep access until then")
    expect(phone.get_by_role("button", name="Yes, cancel")).to_be_visible()
    assert_no_horizontal_scroll(phone)
    axe_check(phone)
    assert _stored(live_server, "cus_demo_ava", AVA_SUB) == ava_subscription_restored

    with phone.expect_navigation():
        phone.get_by_role("link", name="Keep my subscription").click()
    assert urlsplit(phone.url).path == f"/portal/subscriptions/{AVA_SUB}"
    expect(phone.get_by_role("button", name="Cancel subscription")).to_be_visible()
    assert _stored(live_server, "cus_demo_ava", AVA_SUB) == ava_subscription_restored


def test_cancel_then_keep_the_subscription(
    desktop: Any, live_server: Any, axe_check: Any, ava_subscription_restored: Subscription
) -> None:
    page = desktop
    inbox = live_server.inbox
    already_received = len(inbox.messages)
    open_portal(page, live_server.magic_link("cus_demo_ava"))
    page.goto(f"/portal/subscriptions/{AVA_SUB}")
    with page.expect_navigation():
        page.get_by_role("button", name="Cancel subscription").click()
    page.get_by_label("Something else").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Yes, cancel").click()

    assert urlsplit(page.url).path == f"/portal/subscriptions/{AVA_SUB}"
    expect(page.get_by_role("status")).to_contain_text("Your Acme Sync subscription will end on")
    expect(page.locator(".subscription-when")).to_contain_text("Ends on")
    expect(page.get_by_role("button", name="Cancel subscription")).to_have_count(0)
    axe_check(page)
    assert _stored(live_server, "cus_demo_ava", AVA_SUB).cancel_at_period_end is True

    with page.expect_navigation():
        page.get_by_role("button", name="Keep subscription").click()
    expect(page.get_by_role("status")).to_contain_text("Your Acme Sync subscription will continue")
    expect(page.locator(".subscription-when")).to_contain_text("Renews on")
    expect(page.get_by_role("button", name="Cancel subscription")).to_be_visible()
    assert _stored(live_server, "cus_demo_ava", AVA_SUB).cancel_at_period_end is False

    # Both emails arrive (in either order: the portal sends from a worker
    # pool); waiting for them keeps them out of later tests' inbox checks.
    first = inbox.wait_for("ava@example.com", after=already_received)
    second = inbox.wait_for("ava@example.com", after=inbox.messages.index(first) + 1)
    assert {str(first["Subject"]), str(second["Subject"])} == {
        "Your Acme Sync subscription is cancelled",
        "Your Acme Sync subscription will continue",
    }


def test_budis_subscription_in_indonesian(phone: Any, live_server: Any, axe_check: Any) -> None:
    before = _stored(live_server, "cus_demo_budi", BUDI_SUB)
    open_portal(phone, live_server.magic_link("cus_demo_budi"))

    phone.goto("/portal/subscriptions")
    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.get_by_role("heading", level=1)).to_have_text("Langganan")
    expect(phone.locator("main")).to_contain_text("Ditangguhkan")
    assert_no_horizontal_scroll(phone)
    axe_check(phone)

    with phone.expect_navigation():
        phone.locator("main").get_by_role("link", name="Acme Sync").click()
    expect(phone.locator("html")).to_have_attribute("lang", "id")
    expect(phone.get_by_role("heading", level=1)).to_have_text("Acme Sync")
    expect(phone.locator(".panel.attention")).to_contain_text("Bank menolak pembayaran ini.")
    expect(phone.get_by_role("link", name="Perbarui metode pembayaran")).to_be_visible()
    assert_no_horizontal_scroll(phone)
    axe_check(phone)
    assert _stored(live_server, "cus_demo_budi", BUDI_SUB) == before
