"""Rate limits held across servers: two gunicorn servers of the example
shop, two sync workers each, on two loopback ports, over one PostgreSQL
database and one Redis server, as two hosts behind a proxy would run.

The login page answers the same whether an email goes out or not (it must
not tell who is a customer), so what is counted is what a real SMTP server
receives. Each request comes from its own client address, given the way a
proxy gives it (``X-Forwarded-For``, one trusted proxy), so that only the
limit under test can refuse it. With ``memory://`` counters the same
requests all get their email: the proof can fail.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, Request, build_opener

import pytest
from portal_fixtures import SMTPServer, free_port
from sqlalchemy import create_engine, make_url, text

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/portal/login/biz_demo"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')
#: Bounds: each server must answer within this, each request too.
STARTUP_SECONDS = 90
REQUEST_SECONDS = 30
#: gunicorn's sync workers per server: several processes behind each port.
WORKERS = 2
PER_ADDRESS = 5  # the default CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS, "5 per hour"
PER_CLIENT = 4
RATE_LIMITED = "Customer portal login emails rate limited"


@contextmanager
def _own_database(server_url: str) -> Iterator[str]:
    """A database of this module's own on the session's PostgreSQL server."""
    server = make_url(server_url)
    name = f"{server.database}_limits"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            force = " WITH (FORCE)" if connection.dialect.server_version_info >= (13,) else ""
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
    finally:
        admin.dispose()


def _settings(database_url: str, smtp: SMTPServer, storage_uri: str) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "limits-test-secret-0123456789abcdef0123456789",
        "CUSTOMER_PORTAL_BASE_URL": "http://shop.test",
        "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": storage_uri,
        "CUSTOMER_PORTAL_TRUSTED_PROXIES": 1,
        "CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_CLIENT": f"{PER_CLIENT} per hour",
        **smtp.config(),
    }


def _load_demo_data(settings: dict[str, Any]) -> None:
    """The example shop's tables and demo customers, as
    ``flask --app example_app demo-data`` makes them."""
    from example_app import create_app, db
    from flask_customer_portal.state import get_state

    app = create_app(dict(settings))
    result = app.test_cli_runner().invoke(args=["demo-data"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        db.engine.dispose()
    get_state(app).shutdown()


def _get(port: int, path: str, timeout: float = 2) -> int:
    try:
        with build_opener().open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as page:
            return int(page.status)
    except OSError:
        return 0


class Server:
    """A gunicorn server of the example shop; its log is read back."""

    def __init__(self, name: str, port: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.name, self.port, self.process, self._log = name, port, process, log

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def rate_limited(self) -> int:
        return self.log().count(RATE_LIMITED)


@contextmanager
def _gunicorn(name: str, settings: dict[str, Any]) -> Iterator[Server]:
    """``gunicorn 'example_app:create_app({...})'`` on a free loopback port,
    stopped (SIGTERM, then SIGKILL) at the end."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(WORKERS), "--worker-class", "sync",
        "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--log-level", "warning",
        f"example_app:create_app({settings!r})",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMER_PORTAL_", "MAIL_"))}
    with tempfile.NamedTemporaryFile(prefix=f"gunicorn-{name}-", suffix=".log") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        server = Server(name, port, process, log)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while _get(port, LOGIN) != 200:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn {name} did not start:\n{server.log()[-4000:]}")
                time.sleep(0.2)
            yield server
        except BaseException:
            sys.stderr.write(server.log()[-4000:])
            raise
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _ask_for_login_email(server: Server, email: str, client: str) -> None:
    """The static login page, filled in and sent by a browser at ``client``."""
    opener = build_opener(HTTPCookieProcessor(CookieJar()))
    opener.addheaders = [("X-Forwarded-For", client)]
    url = f"http://127.0.0.1:{server.port}{LOGIN}"
    with opener.open(url, timeout=REQUEST_SECONDS) as page:
        match = _CSRF.search(page.read().decode())
    assert match is not None
    form = urlencode({"email": email, "csrf_token": match.group(1) or match.group(2)}).encode()
    with opener.open(Request(url, data=form, method="POST"), timeout=REQUEST_SECONDS) as sent:
        # Sent or refused, the same page: nothing tells who is a customer.
        assert sent.status == 200
        assert "Check your email" in sent.read().decode()


def _delivered(smtp: SMTPServer, email: str, at_least: int, settle: float = 1.5) -> int:
    """How many login emails ``email`` got: once ``at_least`` arrived (or
    20 s passed), and ``settle`` more seconds for any that should not."""
    deadline = time.monotonic() + 20
    while _count(smtp, email) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)
    return _count(smtp, email)


def _count(smtp: SMTPServer, email: str) -> int:
    return sum(1 for message in list(smtp.messages) if message["To"] == email)


@pytest.fixture(scope="module")
def database(postgres_url: str) -> Iterator[str]:
    with _own_database(postgres_url) as url:
        yield url


def test_the_sixth_login_email_is_refused_whichever_server_gets_it(
    database: str, redis_url: str, smtp_server: SMTPServer
) -> None:
    settings = _settings(database, smtp_server, redis_url)
    _load_demo_data(settings)
    with ExitStack() as stack:
        a = stack.enter_context(_gunicorn("a", settings))
        b = stack.enter_context(_gunicorn("b", settings))

        # Per address: A, B, A, B, A, then the sixth on B; for Budi the
        # other way round. Every request from its own client.
        for round_, (email, order) in enumerate((("ava@example.com", (a, b)), ("budi@example.com", (b, a)))):
            for n in range(PER_ADDRESS + 1):
                _ask_for_login_email(order[n % 2], email, f"203.0.113.{10 * round_ + n}")
            assert _delivered(smtp_server, email, PER_ADDRESS) == PER_ADDRESS
        # Ava's sixth went to B, Budi's to A: each server refused one.
        assert (a.rate_limited(), b.rate_limited()) == (1, 1)

        # Per client: one client's requests spread over both servers use
        # one allowance; the next request from it is refused on either.
        client = "198.51.100.7"
        for n in range(PER_CLIENT - 1):
            _ask_for_login_email((a, b)[n % 2], f"nobody{n}@example.com", client)
        _ask_for_login_email(b, "chen@example.com", client)  # the last one it may ask for
        assert _delivered(smtp_server, "chen@example.com", 1) == 1
        _ask_for_login_email(a, "chen@example.com", client)
        _ask_for_login_email(b, "chen@example.com", client)
        assert _delivered(smtp_server, "chen@example.com", 1) == 1
        assert (a.rate_limited(), b.rate_limited()) == (2, 2)
        # Another client is not held back by that one.
        _ask_for_login_email(a, "chen@example.com", "198.51.100.8")
        assert _delivered(smtp_server, "chen@example.com", 2) == 2


def test_with_counters_in_each_process_the_same_requests_all_get_their_email(
    database: str, smtp_server: SMTPServer
) -> None:
    """The control: memory:// (one set of counters per worker process), the
    same alternation: every server and worker sees fewer than five, and all
    six emails go out. The proof above would fail on it."""
    settings = _settings(database, smtp_server, "memory://")
    _load_demo_data(settings)
    with _gunicorn("a", settings) as a, _gunicorn("b", settings) as b:
        for n in range(PER_ADDRESS + 1):
            _ask_for_login_email((a, b)[n % 2], "ava@example.com", f"203.0.113.{200 + n}")
        assert _delivered(smtp_server, "ava@example.com", PER_ADDRESS + 1) == PER_ADDRESS + 1
        assert (a.rate_limited(), b.rate_limited()) == (0, 0)
