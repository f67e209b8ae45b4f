"""Fixtures for tests of the portal's pages: an app with the demo data.

The demo data is loaded once per test process (and per day: its dates are
relative to today) into a SQLite file, and each app on a fresh SQLite file
starts from a copy of it: a test gets a shop of its own in milliseconds
instead of loading the demo data again. Apps also share compiled templates
(:class:`SharedTemplateCache`) and skip fsync on SQLite.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from jinja2 import BytecodeCache, Environment
from jinja2.bccache import Bucket
from sqlalchemy import event, make_url

from example_app.demo import load_demo_data
from flask_customer_portal import CustomerPortal
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage, metadata
from flask_customer_portal.state import PortalState, get_state
from flask_customer_portal.storage import Subscription
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


class SharedTemplateCache(BytecodeCache):
    """Compiled templates shared by the apps of one test process: each new
    app would otherwise compile every template again.

    A template's code depends on its source (Jinja checks a checksum) and on
    how its environment compiles (extensions, syntax, autoescaping, the
    filters and tests it knows); both are part of the key, so two apps only
    share code that each would have compiled the same way.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _compiled_by(environment: Environment, name: str) -> str:
        autoescape = environment.autoescape
        settings = (
            sorted(environment.extensions),
            environment.block_start_string,
            environment.block_end_string,
            environment.variable_start_string,
            environment.variable_end_string,
            environment.comment_start_string,
            environment.comment_end_string,
            environment.line_statement_prefix,
            environment.line_comment_prefix,
            environment.trim_blocks,
            environment.lstrip_blocks,
            environment.newline_sequence,
            environment.keep_trailing_newline,
            environment.optimized,
            environment.is_async,
            getattr(environment, "newstyle_gettext", None),
            autoescape(name) if callable(autoescape) else autoescape,
            getattr(environment.finalize, "__qualname__", environment.finalize),
            sorted(environment.filters),
            sorted(environment.tests),
        )
        return hashlib.sha1(repr(settings).encode(), usedforsecurity=False).hexdigest()

    def get_bucket(self, environment: Environment, name: str, filename: str | None, source: str) -> Bucket:
        key = f"{self.get_cache_key(name, filename)}-{self._compiled_by(environment, name)}"
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code


TEMPLATES = SharedTemplateCache()


def _no_fsync(dbapi_connection: Any, connection_record: Any) -> None:
    """A throwaway test database need not survive a power cut."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.close()


def _sqlite_file(db_url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for other databases, memory and URI
    forms)."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.query or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


class _DemoDatabases:
    """SQLite files with the portal's tables and the demo data, one per UTC
    day (the demo's dates are relative to today), made once per process."""

    def __init__(self) -> None:
        self._files: dict[date, Path] = {}
        self._directory: Path | None = None
        self._lock = threading.Lock()

    def _made_in(self) -> Path:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="portal-demo-"))
            atexit.register(shutil.rmtree, self._directory, ignore_errors=True)
        return self._directory

    def copy_to(self, path: Path) -> None:
        """Write a fresh copy of today's demo database to ``path``."""
        now = datetime.now(timezone.utc)
        with self._lock:
            made = self._files.get(now.date())
            if made is None:
                made = self._made_in() / f"demo-{now.date().isoformat()}.sqlite3"
                partial = made.with_suffix(".partial")
                app = _portal_app(f"sqlite:///{partial}", demo_data=False)
                with app.app_context():
                    store = get_state(app).storage
                    assert isinstance(store, SQLAlchemyStorage)
                    load_demo_data(store, now=now)
                close_app(app)
                os.replace(partial, made)
                self._files[now.date()] = made
        shutil.copyfile(made, path)


DEMO_DATABASES = _DemoDatabases()


def copy_demo_database(path: Path) -> None:
    """Start the SQLite file ``path`` as a copy of today's demo database (the
    portal's tables and the demo customers), unless it exists already: for
    apps that :func:`make_portal_app` does not build (the example shop)."""
    if not path.exists():
        DEMO_DATABASES.copy_to(path)


def close_app(app: Flask) -> None:
    """Stop the portal's background work and close the database connections."""
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].session.remove()
        for engine in app.extensions["sqlalchemy"].engines.values():
            engine.dispose()


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
    registered (a host's own blueprints, extensions).

    On a SQLite file that does not exist yet, the tables and the demo data
    come as a copy of :data:`DEMO_DATABASES`' file of the day; elsewhere
    (PostgreSQL, an existing file, portal tables on a bind of their own)
    they are created and loaded."""
    path = _sqlite_file(db_url)
    on_a_bind = "SQLALCHEMY_BINDS" in config or "bind_key" in metadata.info
    copied = demo_data and path is not None and not path.exists() and not on_a_bind
    if copied:
        assert path is not None
        DEMO_DATABASES.copy_to(path)
    return _portal_app(
        db_url,
        mailer=mailer,
        payments=payments,
        demo_data=demo_data and not copied,
        wrap_storage=wrap_storage,
        before_portal=before_portal,
        **config,
    )


def _portal_app(
    db_url: str,
    *,
    mailer: Any = None,
    payments: Any = None,
    demo_data: bool = True,
    wrap_storage: Callable[[SQLAlchemyStorage], Any] | None = None,
    before_portal: Callable[[Flask], None] | None = None,
    **config: Any,
) -> Flask:
    """:func:`make_portal_app` that loads the demo data itself when asked."""
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
    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _no_fsync)
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
    app.jinja_env.bytecode_cache = TEMPLATES
    return app


def portal_store(app: Flask) -> SQLAlchemyStorage:
    """The SQLAlchemy store of a portal app (call inside its app context)."""
    store = get_state(app).storage
    assert isinstance(store, SQLAlchemyStorage)
    return store


def stored_subscription(app: Flask, customer_id: str, subscription_id: str) -> Subscription:
    """The customer's subscription as the portal's storage has it now."""
    with app.app_context():
        found = get_state(app).storage.get_subscription(customer_id, subscription_id)
    assert found is not None
    return found


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
    close_app(app)


@pytest.fixture
def state(app: Flask) -> PortalState:
    return get_state(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


#: Ava's subscription's plan page in the demo data.
AVA_PLAN_URL = "/portal/subscriptions/sub_demo_ava_sync/plan"


def plan_preview(client: FlaskClient, plan: str, quantity: str = "", url: str = AVA_PLAN_URL) -> Any:
    """Post the plan page's preview step for ``plan`` (and seats)."""
    token = csrf_token_from(client.get(url).text)
    return client.post(url, data={"csrf_token": token, "step": "preview", "plan": plan, "quantity": quantity})


def plan_confirm_form(page: str) -> dict[str, str]:
    """The hidden fields of the preview's confirmation form."""
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page))
    assert fields["step"] == "confirm"
    return fields


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
        link = app.extensions["customer_portal"].create_session(customer_id).link
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
