"""Mail survives the worker that wrote it: the example shop under gunicorn
on PostgreSQL, its mail server down; the worker that handled the request is
killed with SIGKILL; a mail server comes up, ``flask --app example_app
portal send-mail`` runs: the email arrives exactly once (and a login
link signs in). Loopback only, every wait bounded."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, HTTPRedirectHandler, Request, build_opener

import pytest
from migration_support import scratch_postgres_database
from portal_fixtures import _Collector, free_port
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')

#: The example shop as gunicorn serves it here: every response names the
#: worker process that made it, and a failed attempt is due again soon.
WSGI = """
import os

from example_app import create_app

app = create_app({
    "CUSTOMER_PORTAL_MAIL_BACKOFF_BASE": 0.2,
    "CUSTOMER_PORTAL_MAIL_LEASE": 2.0,
    "MAIL_TIMEOUT": 1.0,
})


@app.after_request
def name_the_worker(response):
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response
"""


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Browser:
    base: str
    jar: CookieJar

    @classmethod
    def new(cls, base: str) -> Browser:
        return cls(base, CookieJar())

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        opener = build_opener(HTTPCookieProcessor(self.jar), _NoRedirect())
        url = path if path.startswith("http") else self.base + path
        body = urlencode(data).encode() if data is not None else None
        try:
            with opener.open(Request(url, data=body), timeout=20) as response:  # noqa: S310 - http on loopback
                return response.status, dict(response.headers), response.read().decode()
        except HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def form(self, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """GET the page, then POST ``fields`` with its CSRF token."""
        status, _headers, page = self.request(path)
        assert status == 200, (path, status)
        match = CSRF.search(page)
        assert match, path
        return self.request(path, {"csrf_token": match.group(1) or match.group(2), **fields})


@dataclass
class Shop:
    base: str
    env: dict[str, str]
    database_url: str
    mail_port: int

    def flask(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "flask"), "--app", "example_app", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def outbox(self) -> list[Any]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(
                    connection.execute(
                        text(
                            "SELECT kind, status, attempts, claimed_until, next_attempt_at, now() AS db_now "
                            "FROM portal_mail_outbox ORDER BY created_at"
                        )
                    )
                )
        finally:
            engine.dispose()

    def wait_until_due(self, kind: str, timeout: float = 20.0) -> None:
        """Until the one pending row of ``kind`` is free for a sender: its
        killed sender's lease (if it had one) ran out, its retry is due."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = [row for row in self.outbox() if row.kind in (kind, "login_request")]
            if rows and all(
                row.status == "pending"
                and (row.claimed_until is None or row.claimed_until < row.db_now)
                and row.next_attempt_at <= row.db_now
                for row in rows
            ):
                return
            time.sleep(0.1)
        raise AssertionError(f"no due {kind} row: {self.outbox()}")


@pytest.fixture
def shop(postgres_url: str, tmp_path: Path) -> Iterator[Shop]:
    (tmp_path / "proof_wsgi.py").write_text(textwrap.dedent(WSGI))
    port, mail_port = free_port(), free_port()  # nothing listens on mail_port yet
    with scratch_postgres_database(postgres_url) as database_url:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SECRET_KEY": "outbox-proof-" + "k" * 40,
            "CUSTOMER_PORTAL_BASE_URL": f"http://127.0.0.1:{port}",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(mail_port),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        }
        shop = Shop(f"http://127.0.0.1:{port}", env, database_url, mail_port)
        loaded = shop.flask("demo-data")
        assert loaded.returncode == 0, loaded.stderr
        log = (tmp_path / "gunicorn.log").open("wb")
        server = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "2",
                "proof_wsgi:app",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            _wait_for(lambda: Browser.new(shop.base).request("/")[0] == 200, 30, server)
            yield shop
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
                server.kill()
                server.wait(timeout=5)
            log.close()


def _wait_for(ready: Callable[[], bool], timeout: float, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited with status {server.returncode} (see gunicorn.log)")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("gunicorn did not answer in time")


@pytest.fixture
def start_mail_server(shop: Shop) -> Iterator[Callable[[], _Collector]]:
    from aiosmtpd.controller import Controller

    started: list[Controller] = []

    def start() -> _Collector:
        handler = _Collector()
        controller = Controller(handler, hostname="127.0.0.1", port=shop.mail_port)
        controller.start()
        started.append(controller)
        return handler

    yield start
    for controller in started:
        controller.stop()


def _kill(headers: dict[str, str]) -> None:
    """SIGKILL the gunicorn worker that made the response (the master starts another)."""
    os.kill(int(headers["X-Worker-Pid"]), signal.SIGKILL)


def _send_mail(shop: Shop, expected: str) -> None:
    result = shop.flask("portal", "send-mail")
    assert result.stdout.strip() == expected, (result.stdout, result.stderr)


def test_a_login_email_outlives_the_killed_worker_arrives_once_and_signs_in(
    shop: Shop, start_mail_server: Callable[[], _Collector]
) -> None:
    browser = Browser.new(shop.base)
    status, headers, page = browser.form("/portal/login/biz_demo", {"email": "ava@example.com"})
    assert status == 200 and "on its way" in page
    _kill(headers)

    shop.wait_until_due("login_link")
    received = start_mail_server()
    _send_mail(shop, "mail: 1 sent, 0 to retry, 0 failed.")
    [message] = received.messages
    assert message["To"] == "ava@example.com"
    link = re.search(
        r"http://127\.0\.0\.1:\d+/portal/login/biz_demo/\S+", message.get_body(("plain",)).get_content()
    )
    assert link, message

    # The link signs in (on a worker the master started after the kill).
    fresh = Browser.new(shop.base)
    status, headers, _page = fresh.form(link.group(0), {})
    assert status == 303, status
    status, _headers, dashboard = fresh.request("/portal/")
    assert status == 200 and "Ava Thompson" in dashboard

    # Nothing is left to send, and nothing arrived twice.
    _send_mail(shop, "mail: 0 sent, 0 to retry, 0 failed.")
    assert len(received.messages) == 1
    assert [(row.kind, row.status) for row in shop.outbox()] == [("login_link", "sent")]


def test_a_reactivation_confirmation_outlives_the_killed_worker_and_arrives_once(
    shop: Shop, start_mail_server: Callable[[], _Collector]
) -> None:
    made = shop.flask("portal", "create-session", "cus_demo_budi")
    assert made.returncode == 0, made.stderr
    budi = Browser.new(shop.base)
    status, _headers, _page = budi.form(made.stdout.strip(), {})
    assert status == 303

    card = {
        "intent": "reactivate",
        "payment_method": "new",
        "card_number": "4242 4242 4242 4242",
        "exp_month": "12",
        "exp_year": str(time.gmtime().tm_year + 2),
        "cvc": "123",
    }
    status, headers, _page = budi.form("/portal/subscriptions/sub_demo_budi_sync/payment-method", card)
    assert status == 303 and headers["Location"].endswith("/reactivated"), (status, headers)
    _kill(headers)

    shop.wait_until_due("subscription_reactivated")
    received = start_mail_server()
    # The confirmation and the receipt, whose PDF the sending command renders.
    _send_mail(shop, "mail: 2 sent, 0 to retry, 0 failed.")
    [message] = [m for m in received.messages if not list(m.iter_attachments())]
    assert message["To"] == "budi@example.com"
    assert message["Subject"] == "Langganan Acme Sync Anda aktif kembali"  # in Budi's language
    [receipt] = [m for m in received.messages if m is not message]
    assert receipt["Subject"].startswith("Kuitansi untuk faktur")
    assert [p.get_content_type() for p in receipt.iter_attachments()] == ["application/pdf"]
    _send_mail(shop, "mail: 0 sent, 0 to retry, 0 failed.")
    assert len(received.messages) == 2
