"""Fixtures for the browser tests: a live demo shop, a real SMTP server,
Chromium through Playwright, and an axe-core accessibility check.

Chromium comes from Debian (``/usr/bin/chromium``; Playwright's own browser
downloads are not used). Without it the browser tests skip, except under CI
(``CI=true``), where a missing browser is a failure.

Teardown order matters for a clean ``-W error`` run: the browser closes first
(so its keep-alive connections end), then the HTTP server stops and joins its
request threads, then the portal's mail worker, the database engine and the
SMTP server.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from portal_fixtures import copy_demo_database, free_port, running_in_ci
from werkzeug.serving import ThreadedWSGIServer, make_server

from example_app import create_app
from example_app.demo import load_demo_data
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.state import get_state

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Playwright's default is 30 s; a page of this portal answers in well under one.
DEFAULT_TIMEOUT_MS = 5_000
SECRET_KEY = "browser-test-secret-key-0123456789abcdef0123"
#: axe-core impacts that fail a test ("minor" and "moderate" are reported by
#: axe but left to review).
FAILING_IMPACTS = ("serious", "critical")


# -- SMTP ------------------------------------------------------------------------


class SMTPInbox:
    """aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = 0
        self._changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(
        self, to: str, *, after: int = 0, timeout: float = 10.0, subject: str | None = None
    ) -> EmailMessage:
        """The first message to ``to`` (with ``subject`` in its subject, if
        given) among those received after the first ``after`` ones; waits up
        to ``timeout`` seconds for it. A payment's receipt and its
        confirmation arrive in either order: ``subject`` tells them apart."""

        def find() -> EmailMessage | None:
            for message in self.messages[after:]:
                if to in str(message["To"]) and (subject is None or subject in str(message["Subject"])):
                    return message
            return None

        with self._changed:
            found = self._changed.wait_for(find, timeout=timeout)
        if found is None:
            received = [str(m["To"]) for m in self.messages]
            raise AssertionError(f"no email to {to} within {timeout} s; received: {received}")
        return found


@pytest.fixture(scope="session")
def smtp_inbox() -> Iterator[SMTPInbox]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; its received messages."""
    inbox = SMTPInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.port = controller.port
    try:
        yield inbox
    finally:
        controller.stop()


# -- the live shop -----------------------------------------------------------------


class _LateApp:
    """WSGI app that is set after the server is bound, so the portal's base
    URL can name the port the OS chose (no free-port race)."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class LiveServer:
    url: str
    app: Flask
    inbox: SMTPInbox
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def magic_link(self, customer_id: str) -> str:
        """A fresh dynamic link, as the merchant's code would make it."""
        with self._lock, self.app.app_context():
            return self.app.extensions["customer_portal"].create_session(customer_id).link

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` inside the app's context (test-side setup)."""
        with self._lock, self.app.app_context():
            return func()


@contextmanager
def _serve_shop(db_path: Path, smtp_inbox: SMTPInbox, **config: Any) -> Iterator[LiveServer]:
    """The demo shop with the demo customers, served on 127.0.0.1 from a
    thread, on the SQLite file ``db_path``, sending mail to ``smtp_inbox``;
    ``config`` adds to or overrides the app's configuration."""
    copy_demo_database(db_path)  # the demo customers, without loading them again
    late_app = _LateApp()
    server = make_server("127.0.0.1", 0, late_app, threaded=True)
    assert isinstance(server, ThreadedWSGIServer)
    # Join request threads on server_close() instead of abandoning them.
    server.daemon_threads = False
    url = f"http://127.0.0.1:{server.server_port}"
    app = create_app(
        {
            "SECRET_KEY": SECRET_KEY,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
            "CUSTOMER_PORTAL_BASE_URL": url,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_inbox.port,
            "MAIL_TIMEOUT": 5.0,
            **config,
        }
    )
    state = get_state(app)
    with app.app_context():
        assert isinstance(state.storage, SQLAlchemyStorage)
        assert load_demo_data(state.storage) == ()  # copied in already
    late_app.app = app
    thread = threading.Thread(
        target=server.serve_forever, name="browser-test-server", kwargs={"poll_interval": 0.05}
    )
    thread.start()
    try:
        yield LiveServer(url=url, app=app, inbox=smtp_inbox)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        state.wait_for_background_tasks()
        state.shutdown()
        with app.app_context():
            for engine in app.extensions["sqlalchemy"].engines.values():
                engine.dispose()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, smtp_inbox: SMTPInbox) -> Iterator[LiveServer]:
    """The demo shop, shared by the whole session: tests that change data
    put it back, or use :func:`own_live_server`."""
    with _serve_shop(tmp_path_factory.mktemp("browser") / "shop.db", smtp_inbox) as server:
        yield server


@pytest.fixture
def own_live_server(tmp_path: Path, smtp_inbox: SMTPInbox, browser: Any) -> Iterator[LiveServer]:
    """A demo shop of the test's own, with fresh demo data, for tests that
    change what others rely on (Budi paying his arrears). Depends on
    ``browser`` so that it stops after the pages that use it are closed."""
    with _serve_shop(tmp_path / "own-shop.db", smtp_inbox) as server:
        yield server


@pytest.fixture
def own_phone(browser: Any, own_live_server: LiveServer) -> Iterator[Any]:
    """Like :func:`phone`, on :func:`own_live_server`."""
    with _phone_page(browser, own_live_server) as page:
        yield page


@pytest.fixture
def configured_phone(browser: Any, tmp_path: Path, smtp_inbox: SMTPInbox) -> Callable[..., Any]:
    """``with configured_phone(**config) as (page, server)``: a phone page on
    a demo shop of the test's own with extra configuration (more languages,
    other limits)."""

    @contextmanager
    def serve(**config: Any) -> Iterator[tuple[Any, LiveServer]]:
        with (
            _serve_shop(tmp_path / "configured-shop.db", smtp_inbox, **config) as server,
            _phone_page(browser, server) as page,
        ):
            yield page, server

    return serve


# -- the browser -------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's Chromium; skips the browser tests without it (fails in CI)."""
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if running_in_ci():
            pytest.fail(f"CI must run the browser tests: {reason}", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_executable: Path, live_server: LiveServer) -> Iterator[Any]:
    """Chromium, headless. Depends on ``live_server`` only so that it is
    closed before the server stops (and drops its keep-alive connections)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(chromium_executable), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _new_context(browser: Any, live_server: LiveServer, **options: Any) -> Any:
    context = browser.new_context(base_url=live_server.url, locale="en-US", **options)
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    context.set_default_navigation_timeout(DEFAULT_TIMEOUT_MS)
    return context


@contextmanager
def _phone_page(browser: Any, server: LiveServer) -> Iterator[Any]:
    context = _new_context(
        browser,
        server,
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def phone(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A page in a fresh phone-sized context (360 by 740 CSS pixels, touch, device scale 2)."""
    with _phone_page(browser, live_server) as page:
        yield page


@pytest.fixture
def desktop(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A page in a fresh desktop-sized context (1280 by 800)."""
    context = _new_context(browser, live_server, viewport={"width": 1280, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()


# -- accessibility -----------------------------------------------------------------


def format_violations(violations: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for violation in violations:
        lines.append(f"[{violation['impact']}] {violation['id']}: {violation['help']}")
        lines.append(f"    {violation['helpUrl']}")
        for node in violation["nodes"]:
            lines.append(f"    - {', '.join(str(t) for t in node['target'])}")
            lines.append(f"      {node.get('html', '').strip()[:200]}")
            summary = node.get("failureSummary")
            if summary:
                lines.extend(f"      {line.strip()}" for line in summary.splitlines() if line.strip())
    return "\n".join(lines)


@pytest.fixture(scope="session")
def axe_check() -> Callable[[Any], list[dict[str, Any]]]:
    """``axe_check(page)``: run axe-core on the page as it is now; fail on
    "serious" or "critical" violations, printing them readably. Returns all
    violations (also the minor ones) for callers that want to look."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()

    def check(page: Any) -> list[dict[str, Any]]:
        results = axe.run(page)
        violations: list[dict[str, Any]] = results.response["violations"]
        failing = [v for v in violations if v.get("impact") in FAILING_IMPACTS]
        others = [v for v in violations if v.get("impact") not in FAILING_IMPACTS]
        if others:
            print(f"axe on {page.url} (not failing):\n{format_violations(others)}")
        if failing:
            pytest.fail(
                f"axe found {len(failing)} serious/critical accessibility violation(s) on {page.url}:\n"
                + format_violations(failing),
                pytrace=False,
            )
        return violations

    return check
