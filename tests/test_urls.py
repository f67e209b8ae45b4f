"""Absolute links: from the configured base URL and the app's URL map, in a
request or a command, never from the request's headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import SECRET

from flask_customer_portal import CustomerPortal
from flask_customer_portal.state import get_state
from flask_customer_portal.urls import external_url


def _app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("links")
    app.config.update(
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="https://shop.example.com",
    )
    app.config.update(config)
    SQLAlchemy(app)
    CustomerPortal(app)
    return app


def test_a_link_is_the_base_url_and_the_page_path(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with app.app_context():  # no request, no SERVER_NAME: as in `flask portal renew-due`
        state = get_state()
        assert (
            external_url(state, "subscription", subscription_id="sub_1")
            == "https://shop.example.com/portal/subscriptions/sub_1"
        )
        assert (
            external_url(state, "login_link", business_id="biz_demo", token="a.b-c_d")
            == "https://shop.example.com/portal/login/biz_demo/a.b-c_d"
        )
        assert external_url(state, "invoices", page=2) == "https://shop.example.com/portal/invoices?page=2"


def test_the_request_cannot_steer_a_link(tmp_path: Path) -> None:
    app = _app(tmp_path)
    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/x"}
    with app.test_request_context("/portal/", base_url="http://evil.example/mounted", headers=forged):
        assert (
            external_url(get_state(), "session_link", token="t")
            == "https://shop.example.com/portal/session/t"
        )


def test_a_link_follows_the_prefix_the_blueprint_name_and_a_base_path(tmp_path: Path) -> None:
    app = _app(
        tmp_path,
        CUSTOMER_PORTAL_BASE_URL="https://shop.example.com/store/",
        CUSTOMER_PORTAL_URL_PREFIX="/account",
        CUSTOMER_PORTAL_BLUEPRINT_NAME="customer_portal",
    )
    with app.app_context():
        assert (
            external_url(get_state(), "invoice", invoice_id="inv_1")
            == "https://shop.example.com/store/account/invoices/inv_1"
        )
