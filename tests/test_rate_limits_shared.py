"""Rate limits in a shared store: a real Redis server (``tests/redis_server.py``).

The client's address as Werkzeug's ``ProxyFix`` makes it, counters that
every app of one business shares and no other app sees, and a store that
fails: the portal refuses (503, nothing sent) instead of letting requests
through uncounted or answering 500.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app
from redis_server import RedisServer, redis_or_skip
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_customer_portal.ratelimit import (
    REDIS_TIMEOUT,
    LoginRateLimits,
    RateLimitUnavailable,
    client_ip,
    open_storage,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

LOGIN = "/portal/login/biz_demo"


def _ask_for_login_email(app: Flask, client: FlaskClient, email: str, **headers: str) -> Any:
    page = client.get(LOGIN)
    response = client.post(
        LOGIN, data={"email": email, "csrf_token": csrf_token_from(page.text)}, headers=headers
    )
    get_state(app).wait_for_background_tasks()
    return response


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[Flask]]:
    made: list[Flask] = []
    yield made
    for app in made:
        get_state(app).shutdown()


# -- the client's address --------------------------------------------------------


FORWARDED = [
    None,
    "",
    "203.0.113.7",
    "198.51.100.1, 203.0.113.7",
    "forged, 198.51.100.1 ,203.0.113.7",
    " , ,",
    "2001:db8::1, 203.0.113.7",
]


@pytest.mark.parametrize("trusted", [0, 1, 2, 3])
@pytest.mark.parametrize("forwarded", FORWARDED)
def test_the_client_address_is_the_one_proxyfix_gives(trusted: int, forwarded: str | None) -> None:
    app = Flask("proxied")
    seen: dict[str, str | None] = {}

    @app.get("/")
    def index() -> str:
        seen["portal"] = client_ip(request, trusted)
        seen["host"] = request.remote_addr
        return ""

    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    environ = {"REMOTE_ADDR": "192.0.2.10"}
    app.test_client().get("/", headers=headers, environ_base=environ)
    # The host's app, unwrapped, still sees the connection's address.
    assert seen["host"] == "192.0.2.10"
    portal = seen["portal"]

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted)  # type: ignore[method-assign]
    app.test_client().get("/", headers=headers, environ_base=environ)
    assert portal == (seen["host"] or "unknown")


def test_a_host_wrapped_in_proxyfix_gets_the_same_address() -> None:
    app = Flask("wrapped")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    seen: list[str] = []

    @app.get("/")
    def index() -> str:
        seen.extend([client_ip(request, 0), client_ip(request, 1)])
        return ""

    app.test_client().get("/", headers={"X-Forwarded-For": "forged, 203.0.113.7"})
    assert seen == ["203.0.113.7", "203.0.113.7"]


# -- one store for every app of a business ---------------------------------------


def test_apps_of_one_business_share_a_redis_and_no_other_app_does(
    tmp_path: Path, redis_url: str, apps: list[Flask]
) -> None:
    """Two apps of one business are two workers or hosts: one allowance.
    Another business, or the same business in test mode next to live mode,
    counts apart, and each app's reset forgets only its own counters."""
    mailers = [MemoryMailer() for _ in range(3)]
    settings = {
        "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": redis_url,
        "CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS": "3 per hour",
        "CUSTOMER_PORTAL_TRUSTED_PROXIES": 1,
    }
    first, second = (
        make_portal_app(f"sqlite:///{tmp_path / f'{n}.db'}", mailer=mailers[n], **settings) for n in range(2)
    )
    apps.extend([first, second])
    for app in (first, second):
        get_state(app).rate_limits.reset()
    for n in range(6):
        app = (first, second)[n % 2]
        # A new client each time: only the address's own allowance counts.
        _ask_for_login_email(app, app.test_client(), "ava@example.com", **{"X-Forwarded-For": f"1.2.3.{n}"})
    assert [len(mailer.outbox) for mailer in mailers[:2]] == [2, 1]

    other = make_portal_app(
        f"sqlite:///{tmp_path / 'other.db'}",
        mailer=mailers[2],
        CUSTOMER_PORTAL_BUSINESS_ID="biz_other",
        **settings,
    )
    apps.append(other)
    counted = get_state(other).rate_limits
    # biz_demo used up ava's allowance; biz_other's is whole.
    assert [counted.hit(email="ava@example.com", client=f"5.6.7.{n}") for n in range(4)] == [True] * 3 + [
        False
    ]
    get_state(other).rate_limits.reset()
    assert get_state(other).rate_limits.hit(email="ava@example.com", client="9.9.9.9")
    # biz_demo's counters survived biz_other's reset.
    _ask_for_login_email(first, first.test_client(), "ava@example.com", **{"X-Forwarded-For": "1.2.3.99"})
    assert len(mailers[0].outbox) == 2


def test_test_and_live_mode_count_apart(redis_url: str) -> None:
    limits = [
        LoginRateLimits(
            per_address="1 per hour",
            per_client="30 per hour",
            storage_uri=redis_url,
            namespace=f"customer-portal:{mode}:biz_modes",
        )
        for mode in ("test", "live")
    ]
    for each in limits:
        each.reset()
    assert [each.hit(email="ava@example.com", client="1.2.3.4") for each in limits] == [True, True]
    assert [each.hit(email="ava@example.com", client="1.2.3.5") for each in limits] == [False, False]


def test_memory_counters_belong_to_their_app(tmp_path: Path, apps: list[Flask]) -> None:
    first, second = (make_portal_app(f"sqlite:///{tmp_path / f'{n}.db'}") for n in range(2))
    apps.extend([first, second])
    assert get_state(first).rate_limits.storage is not get_state(second).rate_limits.storage


# -- when the store fails -----------------------------------------------------------


def test_redis_waits_at_most_the_portals_timeout_unless_the_uri_says(redis_url: str) -> None:
    own = open_storage(redis_url).storage.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert own["socket_timeout"] == own["socket_connect_timeout"] == REDIS_TIMEOUT
    chosen = open_storage(redis_url + "?socket_timeout=0.5").storage.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert chosen["socket_timeout"] == 0.5


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it may stop."""
    server = redis_or_skip()
    try:
        yield server
    finally:
        server.stop()


def test_a_redis_outage_refuses_login_emails_with_a_503(
    tmp_path: Path, own_redis: RedisServer, apps: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    mailer = MemoryMailer()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'p.db'}", mailer=mailer, CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI=own_redis.url
    )
    apps.append(app)
    client = app.test_client()
    assert _ask_for_login_email(app, client, "ava@example.com").status_code == 200
    assert len(mailer.outbox) == 1

    own_redis.stop()
    for email in ("ava@example.com", "nobody@example.com"):
        started = time.monotonic()
        refused = _ask_for_login_email(app, client, email)
        assert time.monotonic() - started < REDIS_TIMEOUT + 1
        # The same answer for a customer's address and a stranger's.
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "60"
        assert "Temporarily unavailable" in refused.text
        assert "Nothing was sent or changed" in refused.text
    assert len(mailer.outbox) == 1
    assert "rate-limit store unreachable (ConnectionError" in caplog.text
    assert "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI" in caplog.text


def test_a_redis_outage_refuses_an_email_change_and_an_export(
    tmp_path: Path, own_redis: RedisServer, apps: list[Flask]
) -> None:
    from portal_fixtures import sign_in

    mailer = MemoryMailer()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'p.db'}", mailer=mailer, CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI=own_redis.url
    )
    apps.append(app)
    client = app.test_client()
    sign_in(app, client)
    profile = client.get("/portal/profile")
    assert profile.status_code == 200
    own_redis.stop()
    changed = client.post(
        "/portal/profile",
        data={
            "csrf_token": csrf_token_from(profile.text),
            "name": "Someone Else",
            "email": "ava.new@example.com",
            "phone": "",
        },
    )
    assert changed.status_code == 503
    assert mailer.outbox == []
    with app.app_context():
        ava = get_state(app).storage.get_customer("cus_demo_ava")
    assert ava is not None
    assert ava.name != "Someone Else"  # the name is saved only once the link is on its way
    assert ava.email == "ava@example.com"
    assert client.get("/portal/invoices/export.csv").status_code == 503


def test_a_redis_that_stops_answering_is_given_up_on_in_time(tmp_path: Path, apps: list[Flask]) -> None:
    """A server that accepts connections and never answers (a host gone
    quiet behind a firewall): the request is refused after the timeout,
    not held until gunicorn kills the worker."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        app = make_portal_app(
            f"sqlite:///{tmp_path / 'p.db'}",
            CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI=f"redis://127.0.0.1:{listener.getsockname()[1]}/0",
        )
        apps.append(app)
        started = time.monotonic()
        with pytest.raises(RateLimitUnavailable):
            get_state(app).rate_limits.hit(email="ava@example.com", client="1.2.3.4")
        waited = time.monotonic() - started
        assert REDIS_TIMEOUT - 0.1 <= waited < REDIS_TIMEOUT + 1.5
        assert held  # it did connect: the wait was for an answer
    finally:
        listener.close()
        for conn in held:
            conn.close()
