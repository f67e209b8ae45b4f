"""Sign-in holes: a link that moves a signed-in customer into someone
else's account, and link tokens in access logs."""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, current_user, login_user
from portal_fixtures import free_port, running_in_ci, sign_in
from security_support import AVA, CHEN, NEW_EMAIL, customer, issue, link_path
from werkzeug.serving import make_server

from flask_customer_portal import ConfigurationError, extension
from flask_customer_portal.log_redaction import install_log_redaction, link_token_filter
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import LinkPurpose
from flask_customer_portal.testing import csrf_token_from

AppFactory = Callable[..., Flask]

# --- item 10: a link names its account and asks before replacing another ----------------


def _rename(app: Flask, customer_id: str, name: str) -> None:
    with app.app_context():
        assert get_state(app).storage.update_profile(customer_id, name=name, phone=None) is not None


def _signed_in_email(client: FlaskClient) -> str | None:
    """The address in the portal's header, or ``None`` when signed out."""
    page = client.get("/portal/profile")
    if page.status_code != 200:
        return None
    start = page.text.index('class="portal-who">') + len('class="portal-who">')
    return page.text[start : page.text.index("<", start)]


def test_item10_the_link_page_names_the_account_it_opens(shop: Flask) -> None:
    # Chen calls himself "Ava Thompson" and sends Ava his own links.
    _rename(shop, CHEN, "Ava Thompson")
    for purpose in (LinkPurpose.SESSION_LINK, LinkPurpose.LOGIN_LINK):
        page = shop.test_client().get(link_path(purpose, issue(shop, purpose, CHEN)))
        assert page.status_code == 200
        assert "chen@example.com" in page.text
        assert "If this is not your email address, do not continue" in page.text
        assert page.headers["Cache-Control"] == "no-store"
        assert page.headers["Referrer-Policy"] == "no-referrer"


def test_item10_a_link_does_not_replace_another_signed_in_customer_without_a_yes(
    shop: Flask, ava: FlaskClient
) -> None:
    _rename(shop, CHEN, "Ava Thompson")
    path = link_path(LinkPurpose.SESSION_LINK, issue(shop, LinkPurpose.SESSION_LINK, CHEN))

    page = ava.get(path)
    assert page.status_code == 200
    assert "You are signed in here as ava@example.com." in page.text
    assert "This link is for another account: chen@example.com." in page.text
    assert 'name="switch_account"' in page.text

    # The plain button's POST (no switch_account) changes nothing and uses nothing up.
    refused = ava.post(path, data={"csrf_token": csrf_token_from(page.text)})
    assert refused.status_code == 409
    assert "You are signed in here as ava@example.com." in refused.text
    assert _signed_in_email(ava) == "ava@example.com"
    assert (
        ava.post(path, data={"csrf_token": csrf_token_from(page.text), "switch_account": ""}).status_code
        == 409
    )
    assert _signed_in_email(ava) == "ava@example.com"

    # Ava's own link, while she is signed in, needs no question.
    own = link_path(LinkPurpose.SESSION_LINK, issue(shop, LinkPurpose.SESSION_LINK, AVA))
    own_page = ava.get(own)
    assert "You are signed in here" not in own_page.text and 'name="switch_account"' not in own_page.text
    assert ava.post(own, data={"csrf_token": csrf_token_from(own_page.text)}).status_code == 303
    assert _signed_in_email(ava) == "ava@example.com"

    # With the explicit yes, the unused link still works.
    page = ava.get(path)
    switched = ava.post(path, data={"csrf_token": csrf_token_from(page.text), "switch_account": "y"})
    assert switched.status_code == 303
    assert _signed_in_email(ava) == "chen@example.com"


class _Staff(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def test_item10_a_switch_clears_the_portal_keys_and_rotates_the_csrf_token(make_app: AppFactory) -> None:
    app = make_app()
    LoginManager(app).user_loader(_Staff)

    @app.post("/staff/login")
    def staff_login() -> str:
        login_user(_Staff("staff-1"))
        return "ok"

    @app.get("/staff/me")
    def staff_me() -> str:
        return str(current_user.get_id()) if current_user.is_authenticated else "anonymous"

    client = app.test_client()
    client.post("/staff/login")
    sign_in(app, client, AVA)
    path = link_path(LinkPurpose.SESSION_LINK, issue(app, LinkPurpose.SESSION_LINK, CHEN))
    link_page = client.get(path)
    old_csrf = csrf_token_from(link_page.text)
    with client.session_transaction() as session:
        old_sid = session["_customer_portal_sid"]
        old_raw_csrf = session["csrf_token"]
        # What Ava's visit left behind: a deep link's flow and way back, a notice.
        session["_customer_portal_flow"] = {"flow": "invoices", "subscription_id": None}
        session["_customer_portal_return_url"] = "http://shop.test/account"
        session["_customer_portal_notice"] = "Your card was saved."
        session["_customer_portal_language"] = "en"
        session["cart"] = ["sku-1"]  # the host's own key

    response = client.post(path, data={"csrf_token": old_csrf, "switch_account": "y"})
    assert response.status_code == 303

    with client.session_transaction() as session:
        portal_keys = sorted(key for key in session if key.startswith("_customer_portal_"))
        assert portal_keys == ["_customer_portal_language", "_customer_portal_sid"]
        assert session["_customer_portal_sid"] != old_sid
        assert session.get("csrf_token") != old_raw_csrf
        assert session["cart"] == ["sku-1"]
        assert session["_user_id"] == "staff-1"
    # The CSRF token of the page before the switch is worthless now.
    assert client.post("/portal/logout", data={"csrf_token": old_csrf}).status_code == 400
    assert _signed_in_email(client) == "chen@example.com"
    assert client.get("/staff/me").text == "staff-1"


def test_item10_an_email_change_link_of_another_account_asks_before_switching(
    shop: Flask, ava: FlaskClient
) -> None:
    path = link_path(LinkPurpose.EMAIL_CHANGE, issue(shop, LinkPurpose.EMAIL_CHANGE, CHEN))
    page = ava.get(path)
    assert page.status_code == 200
    assert "You are signed in here as ava@example.com." in page.text
    assert f"This link is for another account: the one that asked to use {NEW_EMAIL}." in page.text
    assert "chen@example.com" not in page.text  # the new address may be a stranger's

    refused = ava.post(path, data={"csrf_token": csrf_token_from(page.text)})
    assert refused.status_code == 409
    assert customer(shop, CHEN).email == "chen@example.com"
    assert _signed_in_email(ava) == "ava@example.com"

    confirmed = ava.post(path, data={"csrf_token": csrf_token_from(page.text), "switch_account": "y"})
    assert confirmed.status_code == 303
    assert customer(shop, CHEN).email == NEW_EMAIL
    assert _signed_in_email(ava) == NEW_EMAIL


# --- item 11: link tokens stay out of logs ------------------------------------------------


@contextmanager
def _dev_server(app: Flask) -> Iterator[int]:
    """The app on Werkzeug's development server (the one ``flask run``
    uses), on a free loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()


def test_item11_the_development_server_logs_link_requests_without_their_tokens(
    shop: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    session_token = issue(shop, LinkPurpose.SESSION_LINK, AVA)
    login_token = issue(shop, LinkPurpose.LOGIN_LINK, AVA)
    email_token = issue(shop, LinkPurpose.EMAIL_CHANGE, AVA)
    paths = [
        link_path(LinkPurpose.SESSION_LINK, session_token),
        link_path(LinkPurpose.LOGIN_LINK, login_token),
        link_path(LinkPurpose.EMAIL_CHANGE, email_token),
        link_path(LinkPurpose.SESSION_LINK, login_token),  # a token at the wrong URL: 404
        link_path(LinkPurpose.LOGIN_LINK, session_token[:20]),  # half a token
    ]
    caplog.set_level(logging.INFO, logger="werkzeug")
    with _dev_server(shop) as port:
        for path in paths:
            status, headers = _get(port, path)
            assert status in (200, 404), path
            # Link pages and their error pages alike.
            assert headers["referrer-policy"] == "no-referrer", path
            assert headers["cache-control"] == "no-store", path

    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert sum("GET /portal/" in line for line in lines) == len(paths), lines
    for token in (session_token, login_token, email_token, session_token[:20]):
        assert token not in caplog.text
        assert not any(token in line for line in lines)
    assert any("GET /portal/session/[redacted] HTTP/1.1" in line for line in lines), lines
    assert any("GET /portal/login/biz_demo/[redacted] HTTP/1.1" in line for line in lines), lines


def test_item11_the_portal_and_the_app_logger_log_no_token(
    shop: Flask, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.config["PROPAGATE_EXCEPTIONS"] = False  # a 500 is logged, as in production
    token = issue(shop, LinkPurpose.SESSION_LINK, AVA)
    path = link_path(LinkPurpose.SESSION_LINK, token)
    client = shop.test_client()
    page = client.get(path)

    def database_gone(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr("flask_customer_portal.views.access.sign_in", database_gone)
    caplog.set_level(logging.DEBUG)
    assert client.post(path, data={"csrf_token": csrf_token_from(page.text)}).status_code == 500
    logging.getLogger("flask_customer_portal").warning("Odd request to %s", path)

    assert token not in caplog.text
    assert "Exception on /portal/session/[redacted] [POST]" in caplog.text
    assert "Odd request to /portal/session/[redacted]" in caplog.text


def test_item11_the_switch_turns_the_host_wide_filter_off_and_bad_values_fail(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed: list[bool] = []
    real_install = extension.install_log_redaction

    def recording_install(app: Flask, url_prefix: str, *, access_logs: bool) -> None:
        installed.append(access_logs)
        real_install(app, url_prefix, access_logs=access_logs)

    monkeypatch.setattr(extension, "install_log_redaction", recording_install)
    app = make_app(CUSTOMER_PORTAL_REDACT_ACCESS_LOGS=False)
    assert get_state(app).config.redact_access_logs is False
    assert installed == [False]
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_REDACT_ACCESS_LOGS"):
        make_app(CUSTOMER_PORTAL_REDACT_ACCESS_LOGS="false")

    # Off: only the portal's own logger gets the filter; the host's loggers stay as they are.
    host = Flask("host_that_keeps_its_loggers")
    install_log_redaction(host, "/billing", access_logs=False)
    assert link_token_filter not in host.logger.filters
    assert link_token_filter in logging.getLogger("flask_customer_portal").filters
    assert link_token_filter.redact("GET /billing/session/abc.def HTTP/1.1") == (
        "GET /billing/session/[redacted] HTTP/1.1"
    )
    # On: installed once, however many apps.
    make_app()
    make_app()
    for name in ("werkzeug", "gunicorn.access", "flask_customer_portal", "portal_test_app"):
        assert logging.getLogger(name).filters.count(link_token_filter) == 1, name


REPO = Path(__file__).resolve().parents[2]
GUNICORN_RECIPE = REPO / "docs" / "recipes" / "gunicorn_conf.py"


@pytest.mark.parametrize(
    ("setup", "redacted"),
    [
        pytest.param("filter", True, id="filter-installed-by-init_app"),
        pytest.param("recipe", True, id="documented-logger-class"),
        pytest.param("neither", False, id="control"),
    ],
)
@pytest.mark.slow
def test_item11_gunicorn_access_log_holds_no_token(
    make_app: AppFactory, tmp_path: Path, setup: str, redacted: bool
) -> None:
    app = make_app()
    token = issue(app, LinkPurpose.SESSION_LINK, AVA)
    path = link_path(LinkPurpose.SESSION_LINK, token)
    db_url = app.config["SQLALCHEMY_DATABASE_URI"]
    # "filter": the portal's defaults; otherwise the host turned the filter off.
    options = "" if setup == "filter" else ", CUSTOMER_PORTAL_REDACT_ACCESS_LOGS=False"
    access_log = tmp_path / "access.log"
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn",
        *(["-c", str(GUNICORN_RECIPE)] if setup == "recipe" else []),
        "--bind", f"127.0.0.1:{port}", "--workers", "1",
        "--access-logfile", str(access_log),
        f"portal_fixtures:make_portal_app({db_url!r}, demo_data=False{options})",
    ]  # fmt: skip
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("MAIL_", "CUSTOMER_PORTAL_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    with (tmp_path / "gunicorn.log").open("w") as output:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for(port, server, tmp_path / "gunicorn.log")
        assert _get(port, path)[0] == 200
        referer = {"Referer": f"http://shop.test{path}"}
        assert _get(port, "/portal/login/biz_demo", headers=referer)[0] == 200
        assert _get(port, link_path(LinkPurpose.LOGIN_LINK, token))[0] == 404
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)

    log = access_log.read_text()
    assert log.count('"GET /portal/') >= 3, log
    if redacted:
        assert token not in log, log
        assert '"GET /portal/session/[redacted] HTTP/1.1" 200' in log, log
        assert '"http://shop.test/portal/session/[redacted]"' in log, log
    else:
        assert token in log  # the control: the same request, logged as it came


def _wait_for(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _get(port, "/portal/login/biz_demo")[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer within 20 s:\n{log.read_text()[-3000:]}")


def _nginx_recipe() -> str:
    """The ``map`` and ``log_format`` of docs/security.rst, as printed."""
    doc = (REPO / "docs" / "security.rst").read_text(encoding="utf-8")
    block = doc[doc.index(".. code-block:: nginx") :].split("\n\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    recipe = "\n".join(lines)
    return recipe[: recipe.index("server {")]


@pytest.mark.skipif(shutil.which("nginx") is None and not running_in_ci(), reason="nginx is not installed")
def test_item11_the_documented_nginx_log_format_holds_no_token(tmp_path: Path) -> None:
    port = free_port()
    access_log = tmp_path / "access.log"
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"""daemon off;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "error.log"};
events {{}}
http {{
{_nginx_recipe()}
    server {{
        listen 127.0.0.1:{port};
        access_log {access_log} redacted;
        location / {{ return 200 "ok"; }}
    }}
}}
"""
    )
    tokens = ["eyJjIjoiY3VzIn0.aXZ7.c2lnbmF0dXJl", "abc.def.ghi", "tok.en.z"]
    paths = [
        f"/portal/session/{tokens[0]}",
        f"/portal/login/biz_demo/{tokens[1]}?utm=mail",
        f"/portal/profile/email/{tokens[2]}",
        "/portal/login/biz_demo",
        "/portal/sessions",
    ]
    server = subprocess.Popen(
        ["nginx", "-c", str(config), "-p", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _get(port, "/")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"nginx did not start: {(tmp_path / 'error.log').read_text()}")
                time.sleep(0.05)
        for path in paths:
            assert _get(port, path)[0] == 200
    finally:
        server.send_signal(signal.SIGQUIT)  # graceful: the log is flushed
        server.wait(timeout=10)
    log = access_log.read_text()
    assert not any(token in log for token in tokens), log
    assert '"GET /portal/session/[redacted] HTTP/1.1"' in log
    assert '"GET /portal/login/biz_demo/[redacted]?utm=mail HTTP/1.1"' in log
    assert '"GET /portal/profile/email/[redacted] HTTP/1.1"' in log
    assert '"GET /portal/login/biz_demo HTTP/1.1"' in log and '"GET /portal/sessions HTTP/1.1"' in log
