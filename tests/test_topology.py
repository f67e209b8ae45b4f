"""The reference topology of docs/deployment.rst, brought up on loopback and
put under a short load.

Two gunicorn servers of the example shop (two workers of four threads
each, as two hosts behind one reverse proxy: one trusted proxy, the
client's address in ``X-Forwarded-For``), one PostgreSQL database, one
Redis for the rate limits, a real SMTP server, and ``flask portal worker``
as the only sender of mail (in-process delivery off). The load: page views
on both servers, login emails from distinct clients, fifty simultaneous
reactivations of Budi's ``on_hold`` subscription and a handful of
simultaneous confirmations of one plan change of Ava's. Then: no 5xx
anywhere, one charge per invoice, every email delivered exactly once (by
``Message-ID``, against the outbox), and the login limit held across both
servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from example_app_servers import ExampleServer, example_app_servers
from migration_support import scratch_postgres_database
from portal_fixtures import SMTPServer, plan_confirm_form
from sqlalchemy import create_engine, text
from test_locks_across_servers import Shop, _assert_all_reactivated, _burst, _sign_in
from test_rate_limits_gunicorn import (
    PER_ADDRESS,
    RATE_LIMITED,
    _ask_for_login_email,
    _delivered,
    _load_demo_data,
)

from example_app import create_app
from flask_customer_portal.payments import TestPaymentProvider
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import PaymentMethod

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUDI, BUDI_SUB, BUDI_CARD = "cus_demo_budi", "sub_demo_budi_sync", "pm_topology_budi_4242"
AVA, AVA_SUB = "cus_demo_ava", "sub_demo_ava_sync"
PLAN_URL = f"/portal/subscriptions/{AVA_SUB}/plan"
BUSINESS = "plan_sync_business_monthly"
#: Simultaneous confirmations of one previewed plan change.
PLAN_CONFIRMS = 6
#: Every email must have reached the mail server within this.
MAIL_TIMEOUT = 30.0
PAGES = ("/portal/", "/portal/invoices", f"/portal/subscriptions/{AVA_SUB}", "/portal/profile")


def _settings(database_url: str, redis_url: str, smtp: SMTPServer) -> dict[str, Any]:
    """The settings every process of the shop shares, as the reference
    topology sets them."""
    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": "topology-test-secret-0123456789abcdef0123456789",
        "CUSTOMER_PORTAL_BASE_URL": "http://shop.test",
        "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": redis_url,
        "CUSTOMER_PORTAL_TRUSTED_PROXIES": 1,
        "CUSTOMER_PORTAL_MAIL_IN_PROCESS": False,
        "CUSTOMER_PORTAL_MAIL_POLL_INTERVAL": 0.2,
        **smtp.config(),
    }


@contextmanager
def _mail_worker(app_spec: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``flask --app <app_spec> portal worker``; stopped with SIGTERM (then
    SIGKILL) whatever happens."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "flask"), "--app", app_spec, "portal", "worker"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck worker
                process.kill()
                process.wait()


def _page_views(shop: Shop, servers: list[ExampleServer]) -> list[int]:
    """A signed-in browser on each server reads the portal's pages, and
    anonymous visitors the shop's home and login pages; every status."""
    statuses = []
    for server in servers:
        browser = _sign_in(shop, server, AVA, AVA_SUB)
        for _round in range(3):
            for path in PAGES:
                answer = requests.get(server.url + path, cookies=browser.cookies, timeout=30)
                statuses.append(answer.status_code)
            for path in ("/", "/portal/login/biz_demo"):
                statuses.append(requests.get(server.url + path, timeout=30).status_code)
    return statuses


def _login_emails(smtp: SMTPServer, a: ExampleServer, b: ExampleServer) -> None:
    """Six requests for one address, alternating servers, each from its own
    client: five emails, and the sixth refused wherever it lands (Chen's
    on B, Ava's on A)."""
    for round_, (email, order) in enumerate((("chen@example.com", (a, b)), ("ava@example.com", (b, a)))):
        for n in range(PER_ADDRESS + 1):
            _ask_for_login_email(order[n % 2], email, f"203.0.113.{10 * round_ + n}")
        assert _delivered(smtp, email, PER_ADDRESS) == PER_ADDRESS, email
    refused = [Path(server.log).read_text(errors="replace").count(RATE_LIMITED) for server in (a, b)]
    assert refused == [1, 1]


def _plan_change_burst(shop: Shop, servers: list[ExampleServer]) -> list[int]:
    """One preview of Ava's upgrade, confirmed at once by
    :data:`PLAN_CONFIRMS` signed-in browsers spread over both servers."""
    browsers = [_sign_in(shop, servers[n % len(servers)], AVA, AVA_SUB) for n in range(PLAN_CONFIRMS)]
    preview = requests.post(
        servers[0].url + PLAN_URL,
        data={"csrf_token": browsers[0].csrf_token, "step": "preview", "plan": BUSINESS, "quantity": ""},
        cookies=browsers[0].cookies,
        timeout=30,
    )
    assert preview.status_code == 200, preview.status_code
    form = plan_confirm_form(preview.text)
    barrier = threading.Barrier(PLAN_CONFIRMS, timeout=60)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def confirm(n: int) -> None:
        browser = browsers[n]
        try:
            barrier.wait()
            answer = requests.post(
                servers[n % len(servers)].url + PLAN_URL,
                data={**form, "csrf_token": browser.csrf_token},
                cookies=browser.cookies,
                allow_redirects=False,
                timeout=120,
            )
            statuses.append(answer.status_code)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=confirm, args=(n,)) for n in range(PLAN_CONFIRMS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    if errors:
        raise errors[0]
    return statuses


def _rows(database_url: str, query: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query), params))
    finally:
        engine.dispose()


def _all_mail_delivered(database_url: str, smtp: SMTPServer) -> list[Any]:
    """The outbox once no email waits and the mail server has as many as
    it holds (or :data:`MAIL_TIMEOUT` passed), and a second more for any
    that should not come."""
    deadline = time.monotonic() + MAIL_TIMEOUT
    while time.monotonic() < deadline:
        rows = _rows(database_url, "SELECT id, kind, status, headers FROM portal_mail_outbox")
        if all(row.status == "sent" for row in rows) and len(smtp.messages) >= len(rows):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    return _rows(database_url, "SELECT id, kind, status, headers FROM portal_mail_outbox")


def test_the_reference_topology_under_load(
    postgres_url: str, redis_url: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    with scratch_postgres_database(postgres_url) as database_url:
        settings = _settings(database_url, redis_url, smtp_server)
        _load_demo_data(settings)
        app_spec = f"example_app:create_app({settings!r})"
        shop = Shop({}, create_app(dict(settings)))
        # The session's Redis is shared with other tests of the same shop:
        # counters start empty here, and are left empty for them.
        get_state(shop.app).rate_limits.reset()
        try:
            with shop.app.app_context():
                # Budi's saved card declines; he pays his arrears with a working one.
                get_state(shop.app).storage.add_payment_method(
                    PaymentMethod(
                        id=BUDI_CARD,
                        customer_id=BUDI,
                        brand="visa",
                        last4="4242",
                        exp_month=12,
                        exp_year=2099,
                        provider_token=TestPaymentProvider.token_for("4242424242424242"),
                    )
                )
            started_at = datetime.now(timezone.utc)
            with (
                example_app_servers({}, tmp_path, app=app_spec) as servers,
                _mail_worker(app_spec, tmp_path / "worker.log") as worker,
            ):
                a, b = servers
                began = time.monotonic()
                views = _page_views(shop, servers)
                _login_emails(smtp_server, a, b)
                answers, _took = _burst(shop, servers, BUDI, BUDI_SUB, BUDI_CARD)
                confirms = _plan_change_burst(shop, servers)
                outbox = _all_mail_delivered(database_url, smtp_server)
                print(f"\nreference topology: load and delivery in {time.monotonic() - began:.1f} s")
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-4000:]

            # No 5xx anywhere, nothing failed in a worker or in the mail worker.
            assert views and all(status == 200 for status in views), Counter(views)
            _assert_all_reactivated(answers, BUDI_SUB, servers)
            assert confirms == [303] * PLAN_CONFIRMS, confirms  # one changes, the others find it done
            assert worker.returncode == 0  # SIGTERM: stopped after the email it was sending
            assert "Traceback" not in (tmp_path / "worker.log").read_text(errors="replace")

            # One charge per invoice: Budi's arrears once, Ava's upgrade once.
            attempts = _rows(
                database_url,
                "SELECT a.invoice_id, a.customer_id, a.status, i.status AS invoice_status "
                "FROM portal_charge_attempts a JOIN portal_invoices i ON i.id = a.invoice_id "
                "WHERE a.created_at >= :t ORDER BY a.customer_id",
                t=started_at,
            )
            assert [(row.customer_id, row.status, row.invoice_status) for row in attempts] == [
                (AVA, "succeeded", "paid"),
                (BUDI, "succeeded", "paid"),
            ]
            events = _rows(
                database_url,
                "SELECT customer_id, action FROM portal_audit_events WHERE occurred_at >= :t",
                t=started_at,
            )
            actions = Counter((row.customer_id, row.action) for row in events)
            assert actions[(BUDI, "charge.succeeded")] == 1
            assert actions[(BUDI, "subscription.reactivated")] == 1
            assert actions[(AVA, "subscription.plan_changed")] == 1
            [plan] = _rows(database_url, "SELECT plan_id FROM portal_subscriptions WHERE id = :s", s=AVA_SUB)
            assert plan.plan_id == BUSINESS

            # Every email delivered once: the Message-IDs the mail server
            # got are the outbox's, each exactly once.
            assert outbox and all(row.status == "sent" for row in outbox), outbox
            written = Counter(
                (row.headers if isinstance(row.headers, dict) else json.loads(row.headers))["Message-ID"]
                for row in outbox
            )
            received = Counter(message["Message-ID"] for message in smtp_server.messages)
            assert received == written
            assert set(received.values()) == {1}
            kinds = Counter(row.kind for row in outbox)
            assert kinds["login_link"] == 2 * PER_ADDRESS
            assert kinds["subscription_reactivated"] == 1
            assert [a.failures(), b.failures()] == [[], []]
        finally:
            get_state(shop.app).rate_limits.reset()
            shop.close()
