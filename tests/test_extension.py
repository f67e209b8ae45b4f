"""The extension's life cycle: registration, configuration checks, several apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Blueprint, Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import SECRET, make_portal_app

from flask_customer_portal import ConfigurationError, Customer, CustomerPortal
from flask_customer_portal.mail import LogMailer, SMTPMailer
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from


class _LiveProvider(TestPaymentProvider):
    is_test = False


def _app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("cfg")
    app.config.update(
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="https://shop.example.com",
    )
    app.config.update(config)
    SQLAlchemy(app)
    return app


def test_the_extension_itself_lives_in_app_extensions(tmp_path: Path) -> None:
    app = _app(tmp_path)
    portal = CustomerPortal(app)
    assert app.extensions["customer_portal"] is portal
    state = portal.get_state(app)
    assert state is get_state(app)
    assert state.hooks is portal.hooks
    with app.app_context():
        assert portal.get_state() is state
        assert get_state() is state
    assert "portal" in app.blueprints
    assert app.url_map.bind("x").match("/portal/") == ("portal.dashboard", {})
    assert not hasattr(portal, "app")


def test_registering_twice_raises_a_clear_error(tmp_path: Path) -> None:
    app = _app(tmp_path)
    portal = CustomerPortal(app)
    with pytest.raises(RuntimeError, match="already registered on this app: call init_app once"):
        portal.init_app(app)
    with pytest.raises(RuntimeError, match=r"already registered on this app: use that one \(current_app"):
        CustomerPortal(app)
    assert app.extensions["customer_portal"] is portal


def test_one_extension_serves_several_apps_with_separate_state(tmp_path: Path) -> None:
    portal = CustomerPortal(mailer=MemoryMailer())
    first = _app(tmp_path / "a", CUSTOMER_PORTAL_URL_PREFIX="/portal")
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir(exist_ok=True)
    second = _app(
        tmp_path / "b", CUSTOMER_PORTAL_URL_PREFIX="/account", CUSTOMER_PORTAL_BUSINESS_ID="biz_two"
    )
    portal.init_app(first)
    portal.init_app(second)
    assert first.extensions["customer_portal"] is second.extensions["customer_portal"] is portal
    assert get_state(first) is not get_state(second)
    assert portal.get_state(first) is get_state(first)
    assert get_state(first).rate_limits is not get_state(second).rate_limits
    assert get_state(second).config.static_login_url == "https://shop.example.com/account/login/biz_two"
    assert first.test_client().get("/account/").status_code == 404
    assert second.test_client().get("/portal/").status_code == 404
    with second.app_context():
        assert portal.static_login_url() == "https://shop.example.com/account/login/biz_two"
    with pytest.raises(RuntimeError, match=r"not registered on this app; call portal.init_app\(app\)"):
        portal.get_state(_app(tmp_path / "b"))


_factory_portal = CustomerPortal(mailer=MemoryMailer())


def _create_app(root: Path, base_url: str) -> Flask:
    """An application factory, as in the quickstart: one module-level
    extension, registered on each app the factory makes."""
    root.mkdir(exist_ok=True)
    app = _app(root, CUSTOMER_PORTAL_BASE_URL=base_url, TESTING=True)
    _factory_portal.init_app(app)
    staff = Blueprint("staff", __name__)

    @staff.post("/staff/link/<customer_id>")
    def make_link(customer_id: str) -> str:
        # The documented call: no import of the app's module.
        portal = current_app.extensions["customer_portal"]
        return str(portal.create_session(customer_id).link)

    app.register_blueprint(staff)
    with app.app_context():
        storage = get_state(app).storage
        storage.create_all()  # type: ignore[attr-defined]
        storage.add_customer(Customer(id="cus_123", email="ava@example.com", name="Ava"))  # type: ignore[attr-defined]
    return app


def test_the_documented_call_works_in_each_app_of_a_factory(tmp_path: Path) -> None:
    shop = _create_app(tmp_path / "shop", "https://shop.example.com")
    eu = _create_app(tmp_path / "eu", "https://eu.example.com")
    try:
        for app, base_url in ((shop, "https://shop.example.com"), (eu, "https://eu.example.com")):
            with app.app_context():
                link = current_app.extensions["customer_portal"].create_session("cus_123").link
            assert link.startswith(f"{base_url}/portal/session/")
            client = app.test_client()
            made = client.post("/staff/link/cus_123")
            assert made.status_code == 200
            assert made.text.startswith(f"{base_url}/portal/session/")
            for each in (link, made.text):
                path = urlsplit(each).path
                page = client.get(path)
                opened = client.post(path, data={"csrf_token": csrf_token_from(page.text)})
                assert opened.status_code == 303
    finally:
        for app in (shop, eu):
            get_state(app).shutdown()
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()


def test_get_state_without_registration_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="init_app"):
        get_state(Flask("bare"))


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"CUSTOMER_PORTAL_BUSINESS_ID": None}, "CUSTOMER_PORTAL_BUSINESS_ID"),
        ({"CUSTOMER_PORTAL_BUSINESS_ID": "biz demo/../x"}, "CUSTOMER_PORTAL_BUSINESS_ID"),
        ({"CUSTOMER_PORTAL_BASE_URL": None}, "CUSTOMER_PORTAL_BASE_URL"),
        ({"CUSTOMER_PORTAL_BASE_URL": "shop.example.com"}, "CUSTOMER_PORTAL_BASE_URL"),
        ({"CUSTOMER_PORTAL_BASE_URL": "https://shop.example.com/?a=1"}, "CUSTOMER_PORTAL_BASE_URL"),
        ({"CUSTOMER_PORTAL_MODE": "production"}, "CUSTOMER_PORTAL_MODE"),
        ({"CUSTOMER_PORTAL_URL_PREFIX": "portal/"}, "CUSTOMER_PORTAL_URL_PREFIX"),
        ({"CUSTOMER_PORTAL_SESSION_LINK_MAX_AGE": 0}, "CUSTOMER_PORTAL_SESSION_LINK_MAX_AGE"),
        ({"CUSTOMER_PORTAL_LOGIN_LINK_MAX_AGE": "15m"}, "CUSTOMER_PORTAL_LOGIN_LINK_MAX_AGE"),
        (
            {"CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS": "lots"},
            "CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS",
        ),
        ({"CUSTOMER_PORTAL_DEFAULT_LOCALE": "fi"}, "CUSTOMER_PORTAL_DEFAULT_LOCALE"),
        ({"CUSTOMER_PORTAL_DEFAULT_TIMEZONE": "Mars/Olympus"}, "CUSTOMER_PORTAL_DEFAULT_TIMEZONE"),
        ({"CUSTOMER_PORTAL_TRUSTED_PROXIES": -1}, "CUSTOMER_PORTAL_TRUSTED_PROXIES"),
        ({"CUSTOMER_PORTAL_LANGUAGES": "en"}, "CUSTOMER_PORTAL_LANGUAGES"),
        ({"CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": "nosuch://x"}, "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI"),
        ({"MAIL_SERVER": "smtp.test", "MAIL_USE_TLS": True, "MAIL_USE_SSL": True}, "MAIL_USE_SSL"),
        ({"CUSTOMER_PORTAL_PHONE_DEFAULT_REGION": "indonesia"}, "CUSTOMER_PORTAL_PHONE_DEFAULT_REGION"),
        (
            {"CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS": "shop.example.com"},
            "CUSTOMER_PORTAL_RETURN_URL_ALLOWED_HOSTS",
        ),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, config: dict[str, Any], key: str) -> None:
    app = _app(tmp_path, **config)
    with pytest.raises(ConfigurationError) as info:
        CustomerPortal(app)
    assert info.value.key == key
    assert str(info.value).startswith(key)
    assert "customer_portal" not in app.extensions


_LIVE = {
    "CUSTOMER_PORTAL_MODE": "live",
    "SECRET_KEY": "k" * 16 + "0123456789abcdef0123",
    "SESSION_COOKIE_SECURE": True,
    "MAIL_SERVER": "smtp.example.com",
    "CUSTOMER_PORTAL_SINGLE_PROCESS": True,  # memory:// rate limits
}


def test_live_mode_refuses_the_test_provider(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="test payment provider") as info:
        CustomerPortal(_app(tmp_path, **_LIVE), payments=TestPaymentProvider())
    assert info.value.key == "CUSTOMER_PORTAL_MODE"
    with pytest.raises(ConfigurationError, match="real payment provider"):
        CustomerPortal(_app(tmp_path, **_LIVE))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"SECRET_KEY": "changeme"}, "SECRET_KEY"),
        ({"SECRET_KEY": "short-but-not-weak"}, "SECRET_KEY"),
        ({"CUSTOMER_PORTAL_BASE_URL": "http://shop.example.com"}, "CUSTOMER_PORTAL_BASE_URL"),
        ({"MAIL_SERVER": None}, "MAIL_SERVER"),
        ({"SESSION_COOKIE_SECURE": False}, "SESSION_COOKIE_SECURE"),
    ],
)
def test_live_mode_refuses_weak_settings(tmp_path: Path, override: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CustomerPortal(_app(tmp_path, **{**_LIVE, **override}), payments=_LiveProvider())
    assert info.value.key == key


def test_live_mode_starts_with_good_settings(tmp_path: Path) -> None:
    app = _app(tmp_path, **_LIVE)
    CustomerPortal(app, payments=_LiveProvider())
    state = get_state(app)
    assert state.config.is_live
    assert isinstance(state.mailer, SMTPMailer)
    with app.app_context():  # live mode answers 503 until the portal's tables exist
        state.storage.create_all()  # type: ignore[attr-defined]
    response = app.test_client().get("/portal/login/biz_demo")
    assert response.status_code == 200
    assert "Test mode" not in response.text


def test_test_mode_defaults(tmp_path: Path) -> None:
    app = _app(tmp_path)
    CustomerPortal(app)
    state = get_state(app)
    assert isinstance(state.payments, TestPaymentProvider)
    assert isinstance(state.mailer, LogMailer)
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert state.config.url_prefix == "/portal"
    assert state.config.session_link_max_age == 24 * 3600
    assert state.config.login_link_max_age == 15 * 60
    page = app.test_client().get("/portal/login/biz_demo")
    assert "Test mode" in page.text


def test_missing_sqlalchemy_without_storage_is_a_configuration_error() -> None:
    app = Flask("nodb")
    app.config.update(
        SECRET_KEY=SECRET, CUSTOMER_PORTAL_BUSINESS_ID="b", CUSTOMER_PORTAL_BASE_URL="http://x.test"
    )
    with pytest.raises(ConfigurationError, match="storage"):
        CustomerPortal(app)


def test_host_babel_is_kept(tmp_path: Path) -> None:
    from flask_babel import Babel

    app = _app(tmp_path)
    babel = Babel(app, locale_selector=lambda: "en")
    CustomerPortal(app)
    assert app.extensions["babel"].instance is babel


def test_url_prefix_is_configurable(tmp_path: Path) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'p.db'}", CUSTOMER_PORTAL_URL_PREFIX="/account")
    client = app.test_client()
    assert client.get("/account/login/biz_demo").status_code == 200
    assert client.get("/portal/login/biz_demo").status_code == 404
    with app.app_context():
        link = app.extensions["customer_portal"].create_session("cus_demo_chen").link
    assert link.startswith("http://shop.test/account/session/")
    get_state(app).shutdown()
