"""The cancellation flow, a retention offer and a pause in a real browser on
a phone, each page checked with axe-core.

These tests change Ava's subscription and the shop's settings, so they run
on a shop of their own (``own_live_server``), never the shared one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal
from playwright.sync_api import expect

from flask_customer_portal.offers import CancellationReason, DiscountOffer, PauseOffer, RetentionOffer
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer, Subscription, SubscriptionStatus

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AVA_SUB = "sub_demo_ava_sync"


def _stored(server: Any) -> Subscription:
    found = server.call(lambda: get_state(server.app).storage.get_subscription("cus_demo_ava", AVA_SUB))
    assert isinstance(found, Subscription)
    return found


def _shop_allows_pausing(server: Any) -> None:
    """The merchant's settings: pausing for up to three months, and an
    offer for customers who only need a break or find it too expensive."""
    state = get_state(server.app)
    state.config = replace(state.config, allow_pause=True, max_pause_months=3)

    def offer(
        customer: Customer, subscription: Subscription, reason: CancellationReason
    ) -> RetentionOffer | None:
        if reason.code == "temporary":
            return PauseOffer(months=2)
        if reason.code == "too_expensive":
            return DiscountOffer(percent=20, renewals=3)
        return None

    state.hooks.retention_offer = offer


def test_reason_then_a_pause_offer_then_resume_on_a_phone(
    own_phone: Any, own_live_server: Any, axe_check: Any
) -> None:
    page = own_phone
    server = own_live_server
    _shop_allows_pausing(server)
    open_portal(page, server.magic_link("cus_demo_ava"))
    page.goto(f"/portal/subscriptions/{AVA_SUB}")
    expect(page.get_by_role("region", name="Pause subscription")).to_be_visible()
    axe_check(page)

    with page.expect_navigation():
        page.get_by_role("button", name="Cancel subscription").click()
    assert urlsplit(page.url).path == f"/portal/subscriptions/{AVA_SUB}/cancel/reason"
    expect(page.get_by_role("heading", level=1)).to_have_text("Before you cancel Acme Sync")
    assert_no_horizontal_scroll(page)
    axe_check(page)

    # Continue without a reason: the message is next to the question.
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()
    expect(page.locator("#reason-error")).to_have_text("Choose the reason that fits best.")
    axe_check(page)

    page.get_by_label("I only need a break for a while").check()
    page.get_by_label("Anything else you would like to tell us? (optional)").fill("Back after the summer")
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Cancel Acme Sync?")
    offer = page.get_by_role("region", name="Take a break instead?")
    expect(offer).to_contain_text("Pause your subscription for 2 months instead of cancelling.")
    expect(page.get_by_role("button", name="Yes, cancel")).to_be_visible()
    assert_no_horizontal_scroll(page)
    axe_check(page)
    assert _stored(server).status is SubscriptionStatus.ACTIVE

    with page.expect_navigation():
        offer.get_by_role("button", name="Pause for 2 months").click()
    assert urlsplit(page.url).path == f"/portal/subscriptions/{AVA_SUB}"
    expect(page.get_by_role("status")).to_contain_text("Your Acme Sync subscription is paused.")
    expect(page.locator(".subscription-when")).to_contain_text("Paused until")
    axe_check(page)
    assert _stored(server).status is SubscriptionStatus.PAUSED

    with page.expect_navigation():
        page.get_by_role("button", name="Resume now").click()
    expect(page.get_by_role("status")).to_contain_text("Your Acme Sync subscription is active again.")
    expect(page.locator(".subscription-when")).to_contain_text("Renews on")
    assert _stored(server).status is SubscriptionStatus.ACTIVE


def test_a_discount_offer_and_a_pause_from_the_subscription_page(
    own_phone: Any, own_live_server: Any, axe_check: Any
) -> None:
    page = own_phone
    server = own_live_server
    _shop_allows_pausing(server)
    open_portal(page, server.magic_link("cus_demo_ava"))
    page.goto(f"/portal/subscriptions/{AVA_SUB}/cancel/reason")
    page.get_by_label("It costs too much").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Continue").click()
    offer = page.get_by_role("region", name="Stay for less?")
    expect(offer).to_contain_text("Stay and get 20% off 3 renewals.")
    expect(offer).to_contain_text("You pay $15.20 instead of $19.00.")
    axe_check(page)
    with page.expect_navigation():
        offer.get_by_role("button", name="Accept 20% off").click()
    expect(page.get_by_role("status")).to_contain_text("Your next renewals are 20% off.")
    stored = _stored(server)
    assert (stored.discount_percent, stored.discount_renewals) == (20, 3)

    pause = page.get_by_role("region", name="Pause subscription")
    pause.get_by_label("Pause for").select_option("3")
    with page.expect_navigation():
        pause.get_by_role("button", name="Pause subscription").click()
    expect(page.get_by_role("status")).to_contain_text("It starts again on")
    assert_no_horizontal_scroll(page)
    axe_check(page)
    assert _stored(server).status is SubscriptionStatus.PAUSED
