"""The payment-method page with Stripe Elements, in Chromium at phone width.

The portal runs on the Stripe adapter against a scripted Stripe account
(``ScriptedStripe``: Ava's subscription is ``past_due`` with an open
invoice). Stripe.js is replaced, at the browser's network layer, by a small
stand-in with the same surface (``Stripe(key).elements().create("card")``,
``mount``, ``on``, ``createPaymentMethod``), because the real one needs
Stripe's servers. What is real: the portal's page, its Content-Security-Policy,
``portal-stripe.js``, the form post and everything on the server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from stripe_support import RecordedStripe, ScriptedStripe, make_stripe_portal_app, stripe_client
from werkzeug.serving import ThreadedWSGIServer, make_server

from flask_customer_portal.state import get_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JS_URL = "https://js.stripe.com/v3/"

#: Stands in for Stripe.js: draws one input in the mount point and turns
#: its content into a PaymentMethod id, as Elements does.
FAKE_STRIPE_JS = """
window.Stripe = function (key) {
  window.__stripeKey = key;
  return {
    elements: function () {
      return {
        create: function (type) {
          var input = document.createElement("input");
          input.id = "fake-card-number";
          input.setAttribute("aria-label", "Card number");
          var handlers = {};
          return {
            mount: function (element) { element.appendChild(input); },
            on: function (name, handler) { handlers[name] = handler; },
            value: function () { return input.value; }
          };
        }
      };
    },
    createPaymentMethod: function (options) {
      var number = document.getElementById("fake-card-number").value;
      if (number === "4000000000000002") {
        return Promise.resolve({ error: { message: "Your card was declined." } });
      }
      return Promise.resolve({ paymentMethod: { id: "pm_new" } });
    }
  };
};
"""


class _LiveStripePortal:
    def __init__(self, app: Flask, url: str) -> None:
        self.app = app
        self.url = url

    def magic_path(self, customer_id: str) -> str:
        with self.app.app_context():
            link = self.app.extensions["customer_portal"].create_session(customer_id).link
        parts = urlsplit(link)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.fixture
def scripted_stripe() -> Iterator[ScriptedStripe]:
    with RecordedStripe() as server:
        yield ScriptedStripe(server)


@pytest.fixture
def stripe_portal(
    scripted_stripe: ScriptedStripe, tmp_path: Path, browser: Any
) -> Iterator[_LiveStripePortal]:
    app_holder: dict[str, Flask] = {}

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        return app_holder["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    assert isinstance(server, ThreadedWSGIServer)
    server.daemon_threads = False
    url = f"http://127.0.0.1:{server.server_port}"
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        stripe_client(scripted_stripe.server.url),
        {"ava": "cus_R"},
        base_url=url,
        js_url=JS_URL,
    )
    app.config["TESTING"] = False
    app_holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield _LiveStripePortal(app, url)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        state = get_state(app)
        state.wait_for_background_tasks()
        state.shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def stripe_phone(browser: Any, stripe_portal: _LiveStripePortal) -> Iterator[Any]:
    context = browser.new_context(
        base_url=stripe_portal.url,
        locale="en-US",
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    context.set_default_timeout(5_000)
    context.route(
        f"{JS_URL}**", lambda route: route.fulfill(body=FAKE_STRIPE_JS, content_type="application/javascript")
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def _open_payment_page(page: Any, portal: _LiveStripePortal) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(portal.magic_path("ava"))
    page.get_by_role("button", name="Open my portal").click()
    page.wait_for_url("**/portal/**")
    page.goto("/portal/subscriptions/sub_R/payment-method")
    return problems


def test_a_new_card_from_elements_pays_the_arrears(
    stripe_phone: Any,
    stripe_portal: _LiveStripePortal,
    scripted_stripe: ScriptedStripe,
    axe_check: Any,
) -> None:
    page = stripe_phone
    problems = _open_payment_page(page, stripe_portal)
    page.get_by_label("A new card").check()
    page.locator("#fake-card-number").wait_for()  # Elements mounted under the page's own CSP
    assert page.evaluate("window.__stripeKey") == "pk_test_portal"
    assert axe_check(page) == []
    page.locator("#fake-card-number").fill("4242424242424242")
    with page.expect_request("**/portal/subscriptions/sub_R/payment-method") as posted:
        page.get_by_role("button", name="Pay").click()
    form = parse_qs(posted.value.post_data or "")
    assert form["payment_token"] == ["pm_new"]
    assert not {"card_number", "cvc", "exp_month", "exp_year"} & set(form)
    page.wait_for_url("**/portal/subscriptions/sub_R/reactivated")
    assert scripted_stripe.subscription["status"] == "active"
    assert [p.params["payment_method"] for p in scripted_stripe.pays()] == ["pm_new"]
    assert problems == []


def test_a_card_elements_refuses_is_shown_and_nothing_is_sent(
    stripe_phone: Any, stripe_portal: _LiveStripePortal, scripted_stripe: ScriptedStripe
) -> None:
    page = stripe_phone
    _open_payment_page(page, stripe_portal)
    page.get_by_label("A new card").check()
    page.locator("#fake-card-number").wait_for()
    page.locator("#fake-card-number").fill("4000000000000002")
    page.get_by_role("button", name="Pay").click()
    page.get_by_role("alert").filter(has_text="Your card was declined.").wait_for()
    assert page.url.endswith("/portal/subscriptions/sub_R/payment-method")
    assert scripted_stripe.server.sent("POST", "/v1/payment_methods/pm_new/attach") == []
    assert scripted_stripe.pays() == []
