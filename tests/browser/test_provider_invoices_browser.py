"""A Stripe customer's invoices in Chromium, on a phone (375 px) and a
desktop: the invoice list shows a partly refunded invoice as such and a
**Pay** link on the open one-off invoice, whose pay page takes a saved card
and pays it through localstripe. Stripe.js is the stand-in of
``test_stripe_browser.py`` (the new-card option mounts it). axe on each page."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import stripe
from browser_helpers import assert_no_horizontal_scroll
from flask import Flask
from stripe_support import invoice_pays, make_stripe_portal_app
from test_pay_invoice_stripe import _customer, _open_one_off
from test_stripe_browser import FAKE_STRIPE_JS, JS_URL
from werkzeug.serving import ThreadedWSGIServer, make_server

from flask_customer_portal.billing.collect import idempotency_key
from flask_customer_portal.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Where to keep the screenshots, if anywhere.
SHOTS = os.environ.get("PORTAL_SHOTS_DIR")


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


class _Shop:
    def __init__(
        self, app: Flask, url: str, invoice_id: str, refunded_id: str, card_id: str, stripe_url: str
    ) -> None:
        self.app = app
        self.stripe_url = stripe_url
        self.url = url
        self.invoice_id = invoice_id
        self.refunded_id = refunded_id
        self.card_id = card_id

    def magic_path(self) -> str:
        with self.app.app_context():
            link = self.app.extensions["customer_portal"].create_session("dewi").link
        parts = urlsplit(link)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def stripe_shop(
    localstripe: stripe.StripeClient, localstripe_url: str, tmp_path: Path, browser: Any
) -> Iterator[_Shop]:
    customer, card = _customer(localstripe, "dewi@example.com")
    localstripe.v1.customers.update(customer, params={"name": "Dewi Lestari"})
    localstripe.v1.invoice_items.create(
        params={
            "customer": customer,
            "amount": 9900,
            "currency": "usd",
            "description": "Acme Desktop licence",
        }
    )
    refunded = localstripe.v1.invoices.create(params={"customer": customer})
    localstripe.v1.invoices.pay(refunded.id, params={"payment_method": card, "off_session": True})
    charge = localstripe.v1.invoices.retrieve(refunded.id).charge
    localstripe.v1.refunds.create(
        params={"charge": charge if isinstance(charge, str) else charge.id, "amount": 2500}
    )
    invoice_id = _open_one_off(localstripe, customer, 14900)

    holder: dict[str, Flask] = {}

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    assert isinstance(server, ThreadedWSGIServer)
    server.daemon_threads = False
    url = f"http://127.0.0.1:{server.server_port}"
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}", localstripe, {"dewi": customer}, base_url=url, js_url=JS_URL
    )
    app.config["TESTING"] = False
    holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield _Shop(app, url, invoice_id, str(refunded.id), card, localstripe_url)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        state = get_state(app)
        state.wait_for_background_tasks()
        state.shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def _page(browser: Any, shop: _Shop, width: int) -> Any:
    phone = width < 600
    context = browser.new_context(
        base_url=shop.url,
        locale="en-US",
        viewport={"width": width, "height": 800 if phone else 900},
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
    )
    context.set_default_timeout(8_000)
    context.route(
        f"{JS_URL}**", lambda route: route.fulfill(body=FAKE_STRIPE_JS, content_type="application/javascript")
    )
    return context


@pytest.mark.parametrize("width", [375, 1280])
def test_the_stripe_invoice_list_and_paying_a_one_off_invoice(
    browser: Any, stripe_shop: _Shop, axe_check: Any, width: int
) -> None:
    context = _page(browser, stripe_shop, width)
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(stripe_shop.magic_path())
        page.get_by_role("button", name="Open my portal").click()
        page.wait_for_url("**/portal/")

        page.goto("/portal/invoices")
        assert page.get_by_text("Partially refunded").count() == 1
        pay_link = page.get_by_role("link", name=f"Pay invoice {stripe_shop.invoice_id}")
        if pay_link.count() == 0:  # the number is Stripe's own
            pay_link = page.locator(f'a[href="/portal/invoices/{stripe_shop.invoice_id}/pay"]')
        assert pay_link.count() == 1
        if width < 600:
            assert_no_horizontal_scroll(page, width)
        axe_check(page)
        _shot(page, f"stripe-invoices-{width}")

        pay_link.first.click()
        page.wait_for_url(f"**/portal/invoices/{stripe_shop.invoice_id}/pay")
        assert page.get_by_text("$149.00").count() >= 1
        if width < 600:
            assert_no_horizontal_scroll(page, width)
        axe_check(page)
        _shot(page, f"stripe-pay-invoice-{width}")
        page.get_by_label("A new card").check()
        page.locator("#fake-card-number").wait_for()
        axe_check(page)
        _shot(page, f"stripe-pay-invoice-new-card-{width}")

        page.locator(f'input[name="payment_method"][value="{stripe_shop.card_id}"]').check()
        page.get_by_role("button", name="Pay").click()
        page.wait_for_url(f"**/portal/invoices/{stripe_shop.invoice_id}")
        page.get_by_text("is paid").first.wait_for()
        axe_check(page)
        _shot(page, f"stripe-invoice-paid-{width}")
        pays = [
            p
            for p in invoice_pays(stripe_shop.stripe_url, stripe_shop.invoice_id)
            if (p["idempotency_key"] or "").startswith("invoice:")
        ]
        assert [p["idempotency_key"] for p in pays] == [idempotency_key(stripe_shop.invoice_id, 1)]
        assert problems == []
    finally:
        context.close()
