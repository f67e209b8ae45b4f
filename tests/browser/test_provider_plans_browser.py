"""Changing plan over Dodo Payments in Chromium, on a 375 px phone and a
1280 px desktop: the choose page, Dodo's preview (axe, no sideways scroll)
and the confirmation, with the portal on the Dodo back end against the fake
Dodo server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from browser_helpers import assert_no_horizontal_scroll
from fake_dodo import FakeDodo, shared_fake_dodo
from flask import Flask
from test_dodo import seed
from test_plans_dodo import NAMES, PLANS, PRICES, _app
from werkzeug.serving import ThreadedWSGIServer, make_server

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Where to keep screenshots of each step, if anywhere (``PORTAL_SHOTS=dir``).
SHOTS = os.environ.get("PORTAL_SHOTS", "")


class _Live:
    def __init__(self, app: Flask, url: str, sub: str) -> None:
        self.app, self.url, self.sub = app, url, sub

    def magic_path(self) -> str:
        with self.app.app_context():
            link = self.app.extensions["customer_portal"].create_session("cus_demo_ava").link
        parts = urlsplit(link)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def fake() -> FakeDodo:
    fake = shared_fake_dodo()
    fake.product_prices.update(PRICES)
    fake.product_names.update(NAMES)
    return fake


@pytest.fixture
def dodo_portal(fake: FakeDodo, tmp_path: Path, browser: Any) -> Iterator[_Live]:
    scenario = seed(fake)
    app, db, local = _app(tmp_path / "portal.db", fake, "dodo_plans_browser")
    app.config["TESTING"] = False
    server = make_server("127.0.0.1", 0, app, threaded=True)
    assert isinstance(server, ThreadedWSGIServer)
    server.daemon_threads = False
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["CUSTOMER_PORTAL_BASE_URL"] = url
    with app.app_context():
        local.create_all()
        local.add_customer(Customer(id="cus_demo_ava", email="ava@example.com", name="Ava Tan", locale="en"))
        for plan in PLANS:
            local.add_plan(plan)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield _Live(app, url, scenario.ava_sub)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        state = get_state(app)
        state.wait_for_background_tasks()
        state.shutdown()
        with app.app_context():
            db.engine.dispose()


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


@pytest.mark.parametrize("width", [375, 1280])
def test_changing_plan_over_dodo(
    browser: Any, dodo_portal: _Live, fake: FakeDodo, axe_check: Any, width: int
) -> None:
    context = browser.new_context(
        base_url=dodo_portal.url,
        locale="en-US",
        viewport={"width": width, "height": 800},
        is_mobile=width < 600,
        has_touch=width < 600,
    )
    context.set_default_timeout(5_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(dodo_portal.magic_path())
        page.get_by_role("button", name="Open my portal").click()
        page.wait_for_url("**/portal/**")
        page.goto(f"/portal/subscriptions/{dodo_portal.sub}")
        page.get_by_role("link", name="Change plan").click()
        page.get_by_label("Pro Plus").check()
        assert axe_check(page) == []
        _shot(page, f"choose-{width}.png")
        page.get_by_role("button", name="See the price").click()
        page.get_by_role("heading", name="Change to Pro Plus?").wait_for()
        assert axe_check(page) == []
        if width < 600:
            assert_no_horizontal_scroll(page, width)
        _shot(page, f"preview-{width}.png")
        due = fake._plan_preview(
            fake.subscriptions[dodo_portal.sub], {"product_id": "pdt_pro_plus", "quantity": 1}
        )
        amount = due["immediate_charge"]["summary"]["total_amount"]
        button = page.get_by_role("button", name=f"Confirm and pay ${amount / 100:.2f}")
        button.click()
        page.wait_for_url(f"**/portal/subscriptions/{dodo_portal.sub}")
        page.get_by_text("You are now on Pro Plus.").first.wait_for()
        _shot(page, f"done-{width}.png")
        assert fake.subscriptions[dodo_portal.sub]["product_id"] == "pdt_pro_plus"
        assert len(fake.calls("POST", f"/subscriptions/{dodo_portal.sub}/change-plan")) == 1
        assert problems == []
    finally:
        context.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_changing_plan_over_dodo_with_a_discount_code(
    browser: Any, dodo_portal: _Live, fake: FakeDodo, axe_check: Any, width: int
) -> None:
    """A code Dodo refuses is answered next to the field; a good one is in
    Dodo's preview and in the change; the subscription page has no field."""
    fake.add_discount("WELCOME10", amount=1000, subscription_cycles=3)
    fake.add_discount("LITEONLY", amount=2000, restricted_to=("pdt_lite",))
    context = browser.new_context(
        base_url=dodo_portal.url,
        locale="en-US",
        viewport={"width": width, "height": 800},
        is_mobile=width < 600,
        has_touch=width < 600,
    )
    context.set_default_timeout(5_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(dodo_portal.magic_path())
        page.get_by_role("button", name="Open my portal").click()
        page.wait_for_url("**/portal/**")
        page.goto(f"/portal/subscriptions/{dodo_portal.sub}")
        assert page.get_by_role("textbox", name="Promotion code").count() == 0
        page.get_by_role("link", name="Change plan").click()
        page.get_by_label("Pro Plus").check()
        page.get_by_role("textbox", name="Promotion code").fill("liteonly")
        page.get_by_role("button", name="See the price").click()
        page.get_by_text("This code is not valid. Check it and try again.").first.wait_for()
        assert axe_check(page) == []
        _shot(page, f"code-refused-{width}.png")
        page.get_by_label("Pro Plus").check()
        page.get_by_role("textbox", name="Promotion code").fill("welcome10")
        page.get_by_role("button", name="See the price").click()
        page.get_by_role("heading", name="Change to Pro Plus?").wait_for()
        assert page.get_by_role("rowheader", name="Promotion code WELCOME10").is_visible()
        assert axe_check(page) == []
        if width < 600:
            assert_no_horizontal_scroll(page, width)
        _shot(page, f"code-preview-{width}.png")
        due = fake._plan_preview(
            fake.subscriptions[dodo_portal.sub],
            {"product_id": "pdt_pro_plus", "quantity": 1, "discount_codes": ["WELCOME10"]},
        )
        amount = due["immediate_charge"]["summary"]["total_amount"]
        page.get_by_role("button", name=f"Confirm and pay ${amount / 100:.2f}").click()
        page.wait_for_url(f"**/portal/subscriptions/{dodo_portal.sub}")
        page.get_by_text("You are now on Pro Plus.").first.wait_for()
        _shot(page, f"code-done-{width}.png")
        changes = fake.calls("POST", f"/subscriptions/{dodo_portal.sub}/change-plan")
        assert len(changes) == 1 and changes[0][3]["discount_codes"] == ["WELCOME10"]
        assert [d["code"] for d in fake.subscriptions[dodo_portal.sub]["discounts"]] == ["WELCOME10"]
        assert problems == []
    finally:
        context.close()
