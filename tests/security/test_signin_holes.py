"""Sign-in holes: a link that moves a signed-in customer into someone
else's account, and link tokens in access logs."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, current_user, login_user
from portal_fixtures import sign_in
from security_support import AVA, CHEN, NEW_EMAIL, customer, issue, link_path

from flask_customer_portal.extension import get_state
from flask_customer_portal.storage import LinkPurpose
from flask_customer_portal.testing import csrf_token_from

AppFactory = Callable[..., Flask]

# --- item 10: a link names its account and asks before replacing another ----------------


def _rename(app: Flask, customer_id: str, name: str) -> None:
    with app.app_context():
        assert get_state(app).storage.update_profile(customer_id, name=name, phone=None) is not None


def _signed_in_email(client: FlaskClient) -> str | None:
    """The address in the portal's header, or ``None`` when signed out."""
    page = client.get("/portal/profile")
    if page.status_code != 200:
        return None
    start = page.text.index('class="portal-who">') + len('class="portal-who">')
    return page.text[start : page.text.index("<", start)]


def test_item10_the_link_page_names_the_account_it_opens(shop: Flask) -> None:
    # Chen calls himself "Ava Thompson" and sends Ava his own links.
    _rename(shop, CHEN, "Ava Thompson")
    for purpose in (LinkPurpose.SESSION_LINK, LinkPurpose.LOGIN_LINK):
        page = shop.test_client().get(link_path(purpose, issue(shop, purpose, CHEN)))
        assert page.status_code == 200
        assert "chen@example.com" in page.text
        assert "If this is not your email address, do not continue" in page.text
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"


def test_item10_a_link_does_not_replace_another_signed_in_customer_without_a_yes(
    shop: Flask, ava: FlaskClient
) -> None:
    _rename(shop, CHEN, "Ava Thompson")
    path = link_path(LinkPurpose.SESSION_LINK, issue(shop, LinkPurpose.SESSION_LINK, CHEN))

    page = ava.get(path)
    assert page.status_code == 200
    assert "You are signed in here as ava@example.com." in page.text
    assert "This link is for another account: chen@example.com." in page.text
    assert 'name="switch_account"' in page.text

    # The plain button's POST (no switch_account) changes nothing and uses nothing up.
    refused = ava.post(path, data={"csrf_token": csrf_token_from(page.text)})
    assert refused.status_code == 409
    assert "You are signed in here as ava@example.com." in refused.text
    assert _signed_in_email(ava) == "ava@example.com"
    assert (
        ava.post(path, data={"csrf_token": csrf_token_from(page.text), "switch_account": ""}).status_code
        == 409
    )
    assert _signed_in_email(ava) == "ava@example.com"

    # Ava's own link, while she is signed in, needs no question.
    own = link_path(LinkPurpose.SESSION_LINK, issue(shop, LinkPurpose.SESSION_LINK, AVA))
    own_page = ava.get(own)
    assert "You are signed in here" not in own_page.text and 'name="switch_account"' not in own_page.text
    assert ava.post(own, data={"csrf_token": csrf_token_from(own_page.text)}).status_code == 303
    assert _signed_in_email(ava) == "ava@example.com"

    # With the explicit yes, the unused link still works.
    page = ava.get(path)
    switched = ava.post(path, data={"csrf_token": csrf_token_from(page.text), "switch_account": "y"})
    assert switched.status_code == 303
    assert _signed_in_email(ava) == "chen@example.com"


class _Staff(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def test_item10_a_switch_clears_the_portal_keys_and_rotates_the_csrf_token(make_app: AppFactory) -> None:
    app = make_app()
    LoginManager(app).user_loader(_Staff)

    @app.post("/staff/login")
    def staff_login() -> str:
        login_user(_Staff("staff-1"))
        return "ok"

    @app.get("/staff/me")
    def staff_me() -> str:
        return str(current_user.get_id()) if current_user.is_authenticated else "anonymous"

    client = app.test_client()
    client.post("/staff/login")
    sign_in(app, client, AVA)
    path = link_path(LinkPurpose.SESSION_LINK, issue(app, LinkPurpose.SESSION_LINK, CHEN))
    link_page = client.get(path)
    old_csrf = csrf_token_from(link_page.text)
    with client.session_transaction() as session:
        old_sid = session["_customer_portal_sid"]
        old_raw_csrf = session["csrf_token"]
        # What Ava's visit left behind: a deep link's flow and way back, a notice.
        session["_customer_portal_flow"] = {"flow": "invoices", "subscription_id": None}
        session["_customer_portal_return_url"] = "http://shop.test/account"
        session["_customer_portal_notice"] = "Your card was saved."
        session["_customer_portal_language"] = "en"
        session["cart"] = ["sku-1"]  # the host's own key

    response = client.post(path, data={"csrf_token": old_csrf, "switch_account": "y"})
    assert response.status_code == 303

    with client.session_transaction() as session:
        portal_keys = sorted(key for key in session if key.startswith("_customer_portal_"))
        assert portal_keys == ["_customer_portal_language", "_customer_portal_sid"]
        assert session["_customer_portal_sid"] != old_sid
        assert session.get("csrf_token") != old_raw_csrf
        assert session["cart"] == ["sku-1"]
        assert session["_user_id"] == "staff-1"
    # The CSRF token of the page before the switch is worthless now.
    assert client.post("/portal/logout", data={"csrf_token": old_csrf}).status_code == 400
    assert _signed_in_email(client) == "chen@example.com"
    assert client.get("/staff/me").text == "staff-1"


def test_item10_an_email_change_link_of_another_account_asks_before_switching(
    shop: Flask, ava: FlaskClient
) -> None:
    path = link_path(LinkPurpose.EMAIL_CHANGE, issue(shop, LinkPurpose.EMAIL_CHANGE, CHEN))
    page = ava.get(path)
    assert page.status_code == 200
    assert "You are signed in here as ava@example.com." in page.text
    assert f"This link is for another account: the one that asked to use {NEW_EMAIL}." in page.text
    assert "chen@example.com" not in page.text  # the new address may be a stranger's

    refused = ava.post(path, data={"csrf_token": csrf_token_from(page.text)})
    assert refused.status_code == 409
    assert customer(shop, CHEN).email == "chen@example.com"
    assert _signed_in_email(ava) == "ava@example.com"

    confirmed = ava.post(path, data={"csrf_token": csrf_token_from(page.text), "switch_account": "y"})
    assert confirmed.status_code == 303
    assert customer(shop, CHEN).email == NEW_EMAIL
    assert _signed_in_email(ava) == NEW_EMAIL
