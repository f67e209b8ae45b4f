"""Pages changed by closing holes in the account-level billing features, on
a 375 px phone: a trial's two ways to end where the merchant allows both,
and the refusal to pay the renewal of a subscription cancelled while on
hold. Accessible (axe), no sideways scrolling.

Screenshots at 375 and 1280 px go to ``$PORTAL_SHOTS`` when it is set."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import assert_no_horizontal_scroll, open_portal

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import InvoiceStatus, SubscriptionStatus

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DEWI = "cus_demo_dewi"
DEWI_TRIAL = "sub_demo_dewi_desktop"
BUDI = "cus_demo_budi"
BUDI_SUB = "sub_demo_budi_sync"
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


def test_a_trial_offers_both_ways_to_end(configured_phone: Any, axe_check: Callable[[Any], Any]) -> None:
    with configured_phone(
        CUSTOMER_PORTAL_CANCEL_MODES=("period_end", "immediately"),
        CUSTOMER_PORTAL_REFUND_POLICY="Cancel now and we refund the unused days within 5 working days.",
    ) as (page, server):
        page.set_viewport_size(PHONE)
        open_portal(page, server.magic_link(DEWI))
        page.goto(f"/portal/subscriptions/{DEWI_TRIAL}")
        with page.expect_navigation():
            page.get_by_role("button", name="Cancel subscription").first.click()
        page.locator('input[name="reason"]').first.check()
        with page.expect_navigation():
            page.get_by_role("button", name="Continue").click()
        trial_end = page.get_by_role("radio", name="At the end of the free trial")
        assert trial_end.is_visible()
        assert page.get_by_role("radio", name="Now").is_visible()
        axe_check(page)
        assert_no_horizontal_scroll(page, 375)
        _shot(page, "cancel-trial-choice")
        page.get_by_role("radio", name="Now").check()
        with page.expect_navigation():
            page.get_by_role("button", name="Yes, cancel").click()
        status = server.call(lambda: get_state().storage.get_subscription(DEWI, DEWI_TRIAL).status)
        assert status is SubscriptionStatus.CANCELLED


def test_the_renewal_of_a_subscription_cancelled_on_hold_is_not_paid(
    own_phone: Any, own_live_server: Any, axe_check: Callable[[Any], Any]
) -> None:
    page = own_phone
    page.set_viewport_size(PHONE)
    open_portal(page, own_live_server.magic_link(BUDI))
    page.goto(f"/portal/subscriptions/{BUDI_SUB}")
    with page.expect_navigation():
        page.get_by_role("button", name="Batalkan langganan").first.click()
    page.locator('input[name="reason"]').first.check()
    with page.expect_navigation():
        page.get_by_role("button", name="Lanjutkan").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Ya, batalkan").click()

    def renewal() -> str:
        items = get_state().storage.list_invoices(BUDI, page=1, per_page=100).items
        return next(i.id for i in items if i.status is InvoiceStatus.OPEN and i.subscription_id == BUDI_SUB)

    invoice_id = own_live_server.call(renewal)
    page.goto(f"/portal/invoices/{invoice_id}/pay")
    assert page.get_by_text("Faktur ini untuk langganan yang sudah berakhir").is_visible()
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    _shot(page, "pay-ended-subscription-renewal")
