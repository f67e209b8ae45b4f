"""What the portal does to the host app outside its own pages: only what it
says at start-up, nothing with CUSTOMER_PORTAL_SET_HOST_DEFAULTS off, and
under another blueprint name when the host already has a ``portal``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask_babel import Babel
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import BASE_URL, SECRET, make_portal_app, open_link, path_of
from werkzeug.routing import Rule

from flask_customer_portal import ConfigurationError, CustomerPortal
from flask_customer_portal.state import get_state

LOGGER = "flask_customer_portal"


def _bare_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("host_app")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'host.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        **config,
    )
    SQLAlchemy(app)
    return app


def _start_up_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and "app-wide" in r.getMessage()]


# --- app-wide settings ------------------------------------------------------


def test_app_wide_settings_the_portal_fills_in_are_named_in_one_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _bare_app(tmp_path)
    assert app.config["SESSION_COOKIE_SAMESITE"] is None
    with caplog.at_level(logging.INFO, logger=LOGGER):
        CustomerPortal(app)
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert "babel" in app.extensions
    (line,) = _start_up_lines(caplog)
    assert "SESSION_COOKIE_SAMESITE" in line
    assert "Flask-Babel" in line
    assert "CUSTOMER_PORTAL_SET_HOST_DEFAULTS" in line
    (record,) = [r for r in caplog.records if "app-wide" in r.getMessage()]
    assert record.levelno == logging.INFO


def test_settings_the_host_chose_are_kept_and_not_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _bare_app(tmp_path, SESSION_COOKIE_SAMESITE="Strict")
    Babel(app)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        CustomerPortal(app)
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Strict"
    assert _start_up_lines(caplog) == []


def test_with_host_defaults_off_nothing_app_wide_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _bare_app(tmp_path, CUSTOMER_PORTAL_SET_HOST_DEFAULTS=False)
    Babel(app)
    before = dict(app.config)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        CustomerPortal(app)
    assert app.config["SESSION_COOKIE_SAMESITE"] is None
    changed = {
        k for k in app.config if not k.startswith("CUSTOMER_PORTAL_") and app.config[k] != before.get(k)
    }
    assert changed == set()
    assert _start_up_lines(caplog) == []
    with app.app_context():
        get_state(app).storage.create_all()  # type: ignore[attr-defined]
    assert app.test_client().get("/portal/login/biz_demo").status_code == 200


def test_with_host_defaults_off_flask_babel_must_be_there(tmp_path: Path) -> None:
    app = _bare_app(tmp_path, CUSTOMER_PORTAL_SET_HOST_DEFAULTS=False)
    with pytest.raises(ConfigurationError, match=r"CUSTOMER_PORTAL_SET_HOST_DEFAULTS.*Babel"):
        CustomerPortal(app)
    assert "babel" not in app.extensions


def test_host_defaults_setting_must_be_a_bool(tmp_path: Path) -> None:
    app = _bare_app(tmp_path, CUSTOMER_PORTAL_SET_HOST_DEFAULTS="no")
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_SET_HOST_DEFAULTS"):
        CustomerPortal(app)


# --- the blueprint's name ---------------------------------------------------------

OTHER_NAME = "customer_portal"
OTHER_PREFIX = "/account"

#: Ava's records, to fill in every page's URL.
AVAS_VALUES = {
    "business_id": "biz_demo",
    "subscription_id": "sub_demo_ava_sync",
    "invoice_id": "inv_demo_ava_sync_01",
    "payment_method_id": "pm_demo_ava_visa",
    "license_key_id": "lk_demo_ava_sync",
    "instance_id": "lki_demo_ava_macbook",
    "session_id": "ses_demo_ava",
    "credit_note_id": "cn_demo_ava",  # none: a 404 under either name
    "token": "not-a-token",
}


def _host_with_its_own_portal(db_url: str, **config: Any) -> Flask:
    """The demo shop's portal in an app that registered a ``portal``
    blueprint of its own first."""
    own = Blueprint("portal", __name__)

    @own.get("/")
    def index() -> str:
        return "the host's own portal"

    def build(app: Flask) -> None:
        app.register_blueprint(own, url_prefix="/portal")

    return make_portal_app(db_url, before_portal=build, **config)


@pytest.fixture
def renamed(tmp_path: Path) -> Iterator[Flask]:
    app = _host_with_its_own_portal(
        f"sqlite:///{tmp_path / 'renamed.db'}",
        CUSTOMER_PORTAL_BLUEPRINT_NAME=OTHER_NAME,
        CUSTOMER_PORTAL_URL_PREFIX=OTHER_PREFIX,
    )
    yield app
    get_state(app).shutdown()


@pytest.fixture
def default(tmp_path: Path) -> Iterator[Flask]:
    app = make_portal_app(f"sqlite:///{tmp_path / 'default.db'}")
    yield app
    get_state(app).shutdown()


def test_a_host_portal_blueprint_needs_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"CUSTOMER_PORTAL_BLUEPRINT_NAME.*already has a blueprint"):
        _host_with_its_own_portal(f"sqlite:///{tmp_path / 'clash.db'}")


@pytest.mark.parametrize("name", ["", "a.b", "9lives", "has space", 42])
def test_the_blueprint_name_is_checked(tmp_path: Path, name: object) -> None:
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_BLUEPRINT_NAME"):
        make_portal_app(
            f"sqlite:///{tmp_path / 'bad.db'}", demo_data=False, CUSTOMER_PORTAL_BLUEPRINT_NAME=name
        )


def test_the_default_name_is_portal(default: Flask) -> None:
    endpoints = {rule.endpoint for rule in default.url_map.iter_rules()}
    assert {"portal.login", "portal.dashboard", "portal.invoice_pdf", "portal.logout"} <= endpoints


def _pages(app: Flask, name: str) -> list[Rule]:
    return sorted(
        (
            rule
            for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith(f"{name}.")
            and rule.endpoint != f"{name}.static"
            and "GET" in (rule.methods or ())
        ),
        key=lambda rule: rule.endpoint,
    )


def _url(rule: Rule) -> str:
    url = rule.rule
    for argument in rule.arguments:
        url = url.replace(f"<{argument}>", AVAS_VALUES[argument])
    return url


def _walk(app: Flask, name: str) -> dict[str, int]:
    """Sign Ava in and open every GET page of the portal; each page's
    status by its name within the blueprint."""
    client = app.test_client()
    with app.app_context():
        link = app.extensions["customer_portal"].create_session("cus_demo_ava").link
    assert open_link(client, link).status_code == 303
    statuses: dict[str, int] = {}
    for rule in _pages(app, name):
        response = client.get(_url(rule))
        statuses[rule.endpoint.split(".", 1)[1]] = response.status_code
        if name != "portal" and response.mimetype == "text/html":
            # Nothing points into the host's own ``/portal`` blueprint.
            for target in re.findall(r'(?:href|action|src)="(/[^"]*)"', response.text):
                assert not target.startswith("/portal/"), (rule.endpoint, target)
    return statuses


def test_every_page_works_under_another_name(renamed: Flask, default: Flask) -> None:
    pages = _walk(renamed, OTHER_NAME)
    assert pages == _walk(default, "portal")
    assert 500 not in pages.values()
    assert {"dashboard", "invoices", "invoice", "invoice_pdf", "subscriptions", "profile"} <= set(pages)
    for page in ("dashboard", "invoices", "invoice", "subscriptions", "subscription", "profile", "sessions"):
        assert pages[page] == 200, page
    # The host's own blueprint is untouched.
    assert renamed.test_client().get("/portal/").text == "the host's own portal"


def test_links_and_forms_follow_the_name(renamed: Flask) -> None:
    client = renamed.test_client()
    with renamed.app_context():
        link = renamed.extensions["customer_portal"].create_session("cus_demo_ava").link
    assert path_of(link).startswith(f"{OTHER_PREFIX}/session/")
    response = open_link(client, link)
    assert response.headers["Location"].startswith(OTHER_PREFIX)
    page = client.get(f"{OTHER_PREFIX}/")
    assert page.status_code == 200
    for path in ("/invoices", "/subscriptions", "/license-keys", "/profile", "/logout", "/static/portal.css"):
        assert f'"{OTHER_PREFIX}{path}' in page.text, path
    assert 'aria-current="page"' in page.text  # the navigation knows the current page
    assert page.headers["Content-Security-Policy"]  # the portal's headers still apply
    invoice = client.get(f"{OTHER_PREFIX}/invoices/inv_demo_ava_sync_01")
    assert 'aria-current="true"' in invoice.text  # … and the section of a sub-page
    # Signed out, a portal page sends the visitor to the portal's own login page.
    logout = client.post(f"{OTHER_PREFIX}/logout", data={"csrf_token": _csrf(page.text)})
    assert logout.status_code == 200
    assert f'"{OTHER_PREFIX}/login/biz_demo"' in logout.text
    assert (
        client.get(f"{OTHER_PREFIX}/invoices").headers["Location"].endswith(f"{OTHER_PREFIX}/login/biz_demo")
    )


def _csrf(html: str) -> str:
    from flask_customer_portal.testing import csrf_token_from

    return csrf_token_from(html)
