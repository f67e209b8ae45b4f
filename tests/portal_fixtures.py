"""Fixtures for tests of the portal's pages: an app with the demo data."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from example_app.demo import load_demo_data
from flask_customer_portal import CustomerPortal
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.extension import PortalState, get_state
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

BASE_URL = "http://shop.test"
SECRET = "test-secret-key-0123456789abcdef0123456789"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def running_in_ci() -> bool:
    """Under CI a missing PostgreSQL or Chromium fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def make_portal_app(
    db_url: str,
    *,
    mailer: Any = None,
    payments: Any = None,
    demo_data: bool = True,
    wrap_storage: Callable[[SQLAlchemyStorage], Any] | None = None,
    before_portal: Callable[[Flask], None] | None = None,
    **config: Any,
) -> Flask:
    """The demo shop on ``db_url``. ``wrap_storage`` builds the portal's
    storage around the SQLAlchemy store (a composite, a store lacking some
    members); the tables and the demo data go into the SQLAlchemy store.
    ``before_portal`` sets the app up further before the portal is
    registered (a host's own blueprints, extensions)."""
    app = Flask("portal_test_app")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=db_url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
        CUSTOMER_PORTAL_PHONE_DEFAULT_REGION="ID",
    )
    app.config.update(config)
    db = SQLAlchemy()
    db.init_app(app)
    if before_portal is not None:
        before_portal(app)
    if wrap_storage is None:  # the store the extension makes for the app's Flask-SQLAlchemy
        CustomerPortal(app, mailer=mailer, payments=payments)
        with app.app_context():
            made = get_state(app).storage
        assert isinstance(made, SQLAlchemyStorage)
        store = made
    else:
        store = SQLAlchemyStorage(db)
        CustomerPortal(app, mailer=mailer, payments=payments, storage=wrap_storage(store))
    with app.app_context():
        store.create_all()
        if demo_data:
            load_demo_data(store)
    return app


@pytest.fixture
def mailer() -> MemoryMailer:
    return MemoryMailer()


@pytest.fixture
def payments() -> TestPaymentProvider:
    return TestPaymentProvider()


@pytest.fixture
def app(tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider) -> Iterator[Flask]:
    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}", mailer=mailer, payments=payments)
    yield app
    state = get_state(app)
    state.shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def state(app: Flask) -> PortalState:
    return get_state(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def open_link(client: FlaskClient, link: str, **kwargs: Any) -> Any:
    """GET a link, then press its "Open my portal" button."""
    page = client.get(path_of(link))
    assert page.status_code == 200, page.status_code
    return client.post(path_of(link), data={"csrf_token": csrf_token_from(page.text)}, **kwargs)


def sign_in(app: Flask, client: FlaskClient, customer_id: str = "cus_demo_ava") -> None:
    with app.app_context():
        link = get_state(app).portal.create_session(customer_id).link
    response = open_link(client, link)
    assert response.status_code == 303, response.status_code


@pytest.fixture
def ava_client(app: Flask, client: FlaskClient) -> FlaskClient:
    sign_in(app, client, "cus_demo_ava")
    return client


class _Collector:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        from email import message_from_bytes, policy

        self.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 Message accepted for delivery"


class SMTPServer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it gets."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.handler = _Collector()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port())

    @property
    def messages(self) -> list[Any]:
        return self.handler.messages

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def config(self) -> dict[str, Any]:
        return {
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": self.port,
            "MAIL_DEFAULT_SENDER": "billing@shop.test",
        }


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


def compile_catalogues() -> None:
    """``pybabel compile`` for each ``.po`` whose ``.mo`` is missing or stale,
    so that a bare ``pytest`` works on a fresh checkout."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    from flask_customer_portal import i18n

    for po_path in sorted(i18n.TRANSLATIONS_DIR.glob("*/LC_MESSAGES/customer_portal.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file)
        # Write aside and rename: a test run in another process never reads half a file.
        partial = mo_path.with_name(f".{mo_path.name}.{os.getpid()}.partial")
        with partial.open("wb") as mo_file:
            write_mo(mo_file, catalog)
        os.replace(partial, mo_path)
    # Flask-Babel caches loaded catalogues per process; drop a cached "none".
    i18n.domain.cache.clear()


@pytest.fixture(scope="session", autouse=True)
def compiled_translations() -> None:
    compile_catalogues()
