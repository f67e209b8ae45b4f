"""A promotion code applied over Stripe, in Chromium at 375 px and 1280 px:
the subscription page names the discount and "Next invoice" takes it off.

The portal runs on the Stripe adapter against recorded Stripe responses
(``DiscountedStripe`` of ``test_stripe_discounts``: Ava's yearly
subscription, two seats at €15.00, and Stripe's codes)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll
from flask import Flask
from stripe_support import RecordedStripe, ScriptedStripe, make_stripe_portal_app, stripe_client
from test_plans_stripe import PLANS
from test_stripe_discounts import DiscountedStripe
from werkzeug.serving import ThreadedWSGIServer, make_server

from flask_customer_portal.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Where screenshots go when ``PORTAL_SHOTS`` names a directory.
SHOTS = os.environ.get("PORTAL_SHOTS")


@pytest.fixture
def portal(tmp_path: Path, browser: Any) -> Iterator[tuple[Flask, str, DiscountedStripe]]:
    with RecordedStripe() as server:
        stripe = DiscountedStripe(ScriptedStripe(server))
        holder: dict[str, Flask] = {}
        wsgi_server = make_server(
            "127.0.0.1", 0, lambda environ, start: holder["app"](environ, start), threaded=True
        )
        assert isinstance(wsgi_server, ThreadedWSGIServer)
        url = f"http://127.0.0.1:{wsgi_server.server_port}"
        app = make_stripe_portal_app(
            f"sqlite:///{tmp_path / 'portal.db'}", stripe_client(server.url), {"ava": "cus_R"}, base_url=url
        )
        app.config["TESTING"] = False
        with app.app_context():
            for plan in PLANS:
                get_state(app).storage.local.add_plan(plan)  # type: ignore[attr-defined]
        holder["app"] = app
        thread = threading.Thread(target=wsgi_server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            yield app, url, stripe
        finally:
            wsgi_server.shutdown()
            thread.join(timeout=10)
            wsgi_server.server_close()
            state = get_state(app)
            state.wait_for_background_tasks()
            state.shutdown()
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()


def _signed_in_page(browser: Any, app: Flask, url: str, width: int) -> Any:
    context = browser.new_context(base_url=url, locale="en-US", viewport={"width": width, "height": 900})
    context.set_default_timeout(5_000)
    page = context.new_page()
    with app.app_context():
        link = urlsplit(app.extensions["customer_portal"].create_session("ava").link)
    page.goto(link.path + (f"?{link.query}" if link.query else ""))
    page.get_by_role("button", name="Open my portal").click()
    page.wait_for_url("**/portal/**")
    return page


def test_a_code_applied_over_stripe_shows_on_the_page(
    browser: Any, portal: tuple[Flask, str, DiscountedStripe], axe_check: Any
) -> None:
    app, url, stripe = portal
    page = _signed_in_page(browser, app, url, 375)
    page.goto("/portal/subscriptions/sub_R")
    page.get_by_role("textbox", name="Promotion code").fill("WELCOME10")
    page.get_by_role("button", name="Add code").click()
    page.get_by_text("Promotion code WELCOME10 added.").wait_for()
    page.goto("/portal/subscriptions/sub_R")
    invoice = page.locator("section[aria-labelledby=next-invoice-title]")
    assert "you will be charged €27.00" in invoice.inner_text()
    assert "10% off your next renewal" in invoice.inner_text()
    assert stripe.applied == ["promo_WELCOME10"]
    axe_check(page)
    assert_no_horizontal_scroll(page, 375)
    wide = _signed_in_page(browser, app, url, 1280)
    wide.goto("/portal/subscriptions/sub_R")
    assert "you will be charged €27.00" in wide.locator("#next-invoice-title + p").inner_text()
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/subscription-375.png", full_page=True)
        wide.screenshot(path=f"{SHOTS}/subscription-1280.png", full_page=True)
    page.context.close()
    wide.context.close()
