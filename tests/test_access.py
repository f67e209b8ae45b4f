"""Access: dynamic links, the static email login, the customer session."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, current_user, login_user
from portal_fixtures import SECRET, make_portal_app, open_link, path_of, sign_in

from flask_customer_portal import CustomerNotFound, signals
from flask_customer_portal.mail import Message
from flask_customer_portal.state import PortalState, get_state
from flask_customer_portal.storage import LinkPurpose
from flask_customer_portal.testing import MemoryMailer, csrf_token_from
from flask_customer_portal.tokens import LinkSigner


def _link(app: Flask, customer_id: str = "cus_demo_ava", **kwargs: object) -> str:
    with app.app_context():
        return app.extensions["customer_portal"].create_session(customer_id, **kwargs).link  # type: ignore[arg-type]


def _login_link_from(mailer: MemoryMailer) -> str:
    assert mailer.outbox, "no email was sent"
    match = re.search(r"http://shop\.test/portal/login/biz_demo/\S+", mailer.outbox[-1].text)
    assert match
    return match.group(0)


# --- dynamic links ---------------------------------------------------------


def test_create_session_returns_an_absolute_expiring_link(app: Flask) -> None:
    before = datetime.now(timezone.utc)
    with app.app_context():
        session = app.extensions["customer_portal"].create_session("cus_demo_ava")
    assert session.customer_id == "cus_demo_ava"
    assert session.link.startswith("http://shop.test/portal/session/")
    assert session.expires_at.tzinfo is not None
    assert (
        timedelta(hours=24) - timedelta(seconds=5)
        <= session.expires_at - before
        <= timedelta(hours=24, seconds=5)
    )


def test_create_session_for_unknown_customer_raises(app: Flask) -> None:
    with app.app_context(), pytest.raises(CustomerNotFound, match="cus_nobody"):
        app.extensions["customer_portal"].create_session("cus_nobody")


def test_link_ignores_the_request_host_header(app: Flask) -> None:
    with app.test_request_context("/", headers={"Host": "evil.example"}):
        link = app.extensions["customer_portal"].create_session("cus_demo_ava").link
    assert link.startswith("http://shop.test/")


def test_get_never_uses_the_link_and_post_signs_in(app: Flask, client: FlaskClient) -> None:
    link = _link(app)
    for _ in range(3):  # a mail scanner may fetch it many times
        page = client.get(path_of(link))
        assert page.status_code == 200
        assert "Open my portal" in page.text
    assert client.get("/portal/").status_code == 302
    response = client.post(path_of(link), data={"csrf_token": csrf_token_from(page.text)})
    assert response.status_code == 303
    assert response.headers["Location"] == "/portal/"
    dashboard = client.get("/portal/")
    assert dashboard.status_code == 200
    assert "Ava Thompson" in dashboard.text


def test_a_link_works_once(app: Flask, client: FlaskClient) -> None:
    link = _link(app)
    assert open_link(client, link).status_code == 303
    other = app.test_client()
    page = other.get(path_of(link))
    assert page.status_code == 410
    assert "already used" in page.text
    assert 'name="email"' in page.text  # offers a new link right there


def test_post_without_csrf_is_refused_and_uses_nothing(app: Flask, client: FlaskClient) -> None:
    link = _link(app)
    client.get(path_of(link))
    assert client.post(path_of(link), data={}).status_code == 400
    assert open_link(client, link).status_code == 303


@pytest.mark.parametrize("mutation", ["flip", "truncate", "garbage", "huge"])
def test_tampered_links_show_a_clear_page(app: Flask, client: FlaskClient, mutation: str) -> None:
    link = _link(app)
    prefix, token = link.rsplit("/", 1)
    bad = {
        "flip": token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"),
        "truncate": token[: len(token) // 2],
        "garbage": "not-a-token",
        "huge": "x" * 5000,
    }[mutation]
    page = client.get(path_of(f"{prefix}/{bad}"))
    assert page.status_code == 404
    assert "not valid" in page.text
    assert client.post(path_of(f"{prefix}/{bad}"), data={}).status_code in (400, 404)


def test_login_link_token_does_not_work_as_session_link(
    app: Flask, client: FlaskClient, mailer: MemoryMailer
) -> None:
    state = get_state(app)
    with app.app_context():
        customer = state.storage.get_customer("cus_demo_ava")
        assert customer is not None
        from flask_customer_portal.auth import issue_link

        token, _ = issue_link(state, LinkPurpose.LOGIN_LINK, customer, max_age=900)
    assert client.get(f"/portal/session/{token}").status_code == 404
    assert client.get(f"/portal/login/biz_demo/{token}").status_code == 200


def test_link_of_another_business_or_mode(tmp_path: Path, app: Flask, client: FlaskClient) -> None:
    other = make_portal_app(
        f"sqlite:///{tmp_path / 'other.db'}", CUSTOMER_PORTAL_BUSINESS_ID="biz_other", demo_data=True
    )
    token = _link(other).rsplit("/", 1)[1]
    assert client.get(f"/portal/session/{token}").status_code == 404
    signer = LinkSigner([SECRET], mode="live", business_id="biz_demo")
    with app.app_context():
        customer = get_state(app).storage.get_customer("cus_demo_ava")
    assert customer is not None
    live_token, _ = signer.make(LinkPurpose.SESSION_LINK, customer)
    page = client.get(f"/portal/session/{live_token}")
    assert page.status_code == 400
    assert "another environment" in page.text
    get_state(other).shutdown()


def test_token_for_customer_a_cannot_sign_in_b(app: Flask, client: FlaskClient) -> None:
    # A validly signed token naming Budi, with the token id of Ava's link.
    link = _link(app, "cus_demo_ava")
    state = get_state(app)
    payload = state.signer.read(LinkPurpose.SESSION_LINK, link.rsplit("/", 1)[1], max_age=60)
    forged = state.signer._serializers[LinkPurpose.SESSION_LINK].dumps(
        {"c": "cus_demo_budi", "j": payload.token_id, "m": "test", "b": "biz_demo", "e": "x", "v": 1}
    )
    assert client.get(f"/portal/session/{forged}").status_code == 404


@pytest.mark.parametrize(("offset", "status"), [(-5, 200), (5, 410)])
def test_session_link_expiry_edge(app: Flask, client: FlaskClient, offset: int, status: int) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        link = _link(app)
    with time_machine.travel(start + timedelta(hours=24, seconds=offset), tick=False):
        page = client.get(path_of(link))
        assert page.status_code == status
        if status == 410:
            assert "expired" in page.text


@pytest.mark.parametrize(("offset", "status"), [(-5, 303), (5, 410)])
def test_login_link_expiry_edge(
    app: Flask, client: FlaskClient, mailer: MemoryMailer, offset: int, status: int
) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        _request_login_email(app, client, "ava@example.com")
        link = _login_link_from(mailer)
        page = client.get(path_of(link))
    with time_machine.travel(start + timedelta(minutes=15, seconds=offset), tick=False):
        response = client.post(path_of(link), data={"csrf_token": csrf_token_from(page.text)})
        assert response.status_code == status


def test_key_rotation_keeps_links_working(tmp_path: Path) -> None:
    old = make_portal_app(f"sqlite:///{tmp_path / 'r.db'}", SECRET_KEY="old-" + SECRET)
    link = _link(old)
    get_state(old).shutdown()
    rotated = make_portal_app(
        f"sqlite:///{tmp_path / 'r.db'}", SECRET_KEY="new-" + SECRET, SECRET_KEY_FALLBACKS=["old-" + SECRET]
    )
    assert open_link(rotated.test_client(), link).status_code == 303
    get_state(rotated).shutdown()
    old_unused = _link(old)
    dropped = make_portal_app(f"sqlite:///{tmp_path / 'r.db'}", SECRET_KEY="new-" + SECRET)
    assert dropped.test_client().get(path_of(old_unused)).status_code == 404
    assert dropped.test_client().get(path_of(_link(dropped))).status_code == 200
    get_state(dropped).shutdown()


@pytest.mark.parametrize(
    ("return_url", "ok"),
    [
        ("http://shop.test/account", True),
        ("https://evil.example/", False),
        ("//evil.example/", False),
        ("javascript:alert(1)", False),
        ("http://shop.test@evil.example/", False),
        ("http://evil.example\\@shop.test/", False),
        ("http://shop.test/\r\nSet-Cookie: x=1", False),
    ],
)
def test_return_url_allow_list(app: Flask, client: FlaskClient, return_url: str, ok: bool) -> None:
    if not ok:
        with app.app_context(), pytest.raises(ValueError, match="return_url"):
            app.extensions["customer_portal"].create_session("cus_demo_ava", return_url=return_url)
        return
    open_link(client, _link(app, return_url=return_url))
    page = client.get("/portal/")
    assert f'href="{return_url}"' in page.text
    assert "Back to Acme Software" in page.text


def test_signals_for_link_and_sign_in(app: Flask, client: FlaskClient) -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    def record(name: str):  # type: ignore[no-untyped-def]
        def receiver(sender: Flask, **extra: object) -> None:
            assert sender is app
            seen.append((name, extra))

        return receiver

    receivers = {name: record(name) for name in ("session_created", "link_used", "signed_in", "signed_out")}
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver, app)
    try:
        sign_in(app, client)
        page = client.get("/portal/")
        client.post("/portal/logout", data={"csrf_token": csrf_token_from(page.text)})
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver, app)
    assert [name for name, _ in seen] == ["session_created", "link_used", "signed_in", "signed_out"]
    assert seen[2][1]["method"] == "session_link"


# --- the customer session ------------------------------------------------------


def test_logout_revokes_the_server_side_session(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/")
    cookie = ava_client.get_cookie("session")
    assert cookie is not None
    saved = cookie.value
    response = ava_client.post("/portal/logout", data={"csrf_token": csrf_token_from(page.text)})
    assert response.status_code == 200
    assert "signed out" in response.text
    assert ava_client.get("/portal/").status_code == 302
    # Replaying the cookie from before the logout must not sign anyone in.
    attacker = app.test_client()
    attacker.set_cookie("session", saved)
    assert attacker.get("/portal/").status_code == 302


def test_logout_is_post_only_with_csrf(ava_client: FlaskClient) -> None:
    assert ava_client.get("/portal/logout").status_code == 405
    assert ava_client.post("/portal/logout", data={}).status_code == 400
    assert ava_client.get("/portal/").status_code == 200


def test_idle_and_absolute_timeouts(app: Flask) -> None:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
    client = app.test_client()
    with time_machine.travel(start, tick=False):
        sign_in(app, client)
    # Activity every 29 minutes keeps the session alive...
    moment = start
    for _ in range(5):
        moment += timedelta(minutes=29)
        with time_machine.travel(moment, tick=False):
            assert client.get("/portal/").status_code == 200
    # ...31 idle minutes end it.
    with time_machine.travel(moment + timedelta(minutes=31), tick=False):
        assert client.get("/portal/").status_code == 302

    client = app.test_client()
    with time_machine.travel(start, tick=False):
        sign_in(app, client)
    moment = start
    while moment + timedelta(minutes=25) < start + timedelta(hours=12):
        moment += timedelta(minutes=25)
        with time_machine.travel(moment, tick=False):
            assert client.get("/portal/").status_code == 200
    with time_machine.travel(start + timedelta(hours=12, minutes=1), tick=False):
        assert client.get("/portal/").status_code == 302


def test_sign_out_everywhere_kills_sessions_and_links(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client)
    pending = _link(app)
    state = get_state(app)
    with app.app_context():
        from flask_customer_portal.clock import utcnow

        assert state.storage.revoke_customer_sessions("cus_demo_ava", utcnow()) == 1
    assert client.get("/portal/").status_code == 302
    assert open_link(app.test_client(), pending).status_code == 303  # links outlive a plain revoke


def test_session_cookie_is_httponly_and_lax(app: Flask, client: FlaskClient) -> None:
    link = _link(app)
    page = client.get(path_of(link))
    response = client.post(path_of(link), data={"csrf_token": csrf_token_from(page.text)})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


# --- the static link -----------------------------------------------------------


def _request_login_email(app: Flask, client: FlaskClient, email: str, **headers: str):  # type: ignore[no-untyped-def]
    page = client.get("/portal/login/biz_demo")
    response = client.post(
        "/portal/login/biz_demo",
        data={"email": email, "csrf_token": csrf_token_from(page.text)},
        headers=headers,
    )
    get_state(app).wait_for_background_tasks()
    return response


def test_static_link_page(client: FlaskClient) -> None:
    page = client.get("/portal/login/biz_demo")
    assert page.status_code == 200
    assert 'name="email"' in page.text
    assert client.get("/portal/login/biz_other").status_code == 404
    assert client.post("/portal/login/biz_other", data={"email": "ava@example.com"}).status_code == 404


def test_known_email_gets_a_one_time_login_link(
    app: Flask, client: FlaskClient, mailer: MemoryMailer
) -> None:
    response = _request_login_email(app, client, "AVA@Example.com")
    assert response.status_code == 200
    assert len(mailer.outbox) == 1
    message = mailer.outbox[0]
    assert message.to == "ava@example.com"
    assert "Acme Software" in message.subject
    link = _login_link_from(mailer)
    assert link in message.html
    fresh = app.test_client()
    assert open_link(fresh, link).status_code == 303
    assert "Ava Thompson" in fresh.get("/portal/").text
    assert app.test_client().get(path_of(link)).status_code == 410


def test_unknown_email_gets_the_same_page_and_no_mail(app: Flask, mailer: MemoryMailer) -> None:
    known = _request_login_email(app, app.test_client(), "ava@example.com")
    unknown = _request_login_email(app, app.test_client(), "nobody@example.com")
    assert known.status_code == unknown.status_code == 200

    def scrub(html: str) -> str:
        html = re.sub(r'value="[^"]+"', 'value=""', html)
        return html.replace("ava@example.com", "X").replace("nobody@example.com", "X")

    assert scrub(known.text) == scrub(unknown.text)
    assert [m.to for m in mailer.outbox] == ["ava@example.com"]


@pytest.mark.parametrize(
    "email", ["", "not-an-email", "a@b", "x" * 300 + "@example.com", "ava@example.com\r\nBcc: x@y.z"]
)
def test_bad_email_input_gets_a_message_by_the_field(
    app: Flask, client: FlaskClient, mailer: MemoryMailer, email: str
) -> None:
    response = _request_login_email(app, client, email)
    assert response.status_code == 422
    assert 'class="field-message"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert mailer.outbox == []


def test_login_form_without_csrf_is_refused(app: Flask, client: FlaskClient, mailer: MemoryMailer) -> None:
    response = client.post("/portal/login/biz_demo", data={"email": "ava@example.com"})
    assert response.status_code == 400
    get_state(app).wait_for_background_tasks()
    assert mailer.outbox == []


def test_login_emails_are_rate_limited_per_address(app: Flask, mailer: MemoryMailer) -> None:
    for n in range(7):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{n}"  # seven different clients
        response = _request_login_email(app, client, "ava@example.com")
        assert response.status_code == 200
        assert "a sign-in link is on its way" in response.text
    assert len(mailer.outbox) == 5


def test_login_emails_are_rate_limited_per_client(app: Flask, mailer: MemoryMailer) -> None:
    client = app.test_client()
    for n in range(32):
        _request_login_email(app, client, f"someone{n}@example.com")
    _request_login_email(app, client, "budi@example.com")
    assert mailer.outbox == []  # over the per-client limit: no mail, same page


def test_forwarded_for_is_believed_only_behind_trusted_proxies(tmp_path: Path) -> None:
    mailer = MemoryMailer()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'p.db'}",
        mailer=mailer,
        CUSTOMER_PORTAL_TRUSTED_PROXIES=1,
        CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_CLIENT="2 per hour",
    )
    for n in range(3):
        _request_login_email(app, app.test_client(), "budi@example.com", **{"X-Forwarded-For": f"1.2.3.{n}"})
    assert len(mailer.outbox) == 3  # three different clients
    for _ in range(3):
        _request_login_email(app, app.test_client(), "chen@example.com", **{"X-Forwarded-For": "9.9.9.9"})
    assert len(mailer.outbox) == 5
    get_state(app).shutdown()


def test_rate_limits_are_per_app(tmp_path: Path) -> None:
    mailers = [MemoryMailer(), MemoryMailer()]
    apps = [
        make_portal_app(
            f"sqlite:///{tmp_path / f'{n}.db'}",
            mailer=mailers[n],
            CUSTOMER_PORTAL_LOGIN_RATE_LIMIT_PER_ADDRESS="1 per hour",
        )
        for n in range(2)
    ]
    for app in apps:
        _request_login_email(app, app.test_client(), "ava@example.com")
        _request_login_email(app, app.test_client(), "ava@example.com")
    assert [len(m.outbox) for m in mailers] == [1, 1]
    for app in apps:
        get_state(app).shutdown()


def test_a_signed_in_customer_visiting_the_static_link_goes_to_the_portal(ava_client: FlaskClient) -> None:
    response = ava_client.get("/portal/login/biz_demo")
    assert response.status_code == 302
    assert response.headers["Location"] == "/portal/"


# --- coexistence with the host's Flask-Login users -----------------------------------


class _Staff(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def test_host_flask_login_user_is_untouched(tmp_path: Path) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'h.db'}")
    login_manager = LoginManager(app)
    login_manager.user_loader(_Staff)

    @app.post("/staff/login")
    def staff_login() -> str:
        login_user(_Staff("staff-1"))
        return "ok"

    @app.get("/staff/me")
    def staff_me() -> str:
        return str(current_user.get_id()) if current_user.is_authenticated else "anonymous"

    client = app.test_client()
    client.post("/staff/login")
    assert client.get("/staff/me").text == "staff-1"
    # The staff user is not a portal customer...
    assert client.get("/portal/").status_code == 302
    # ...a customer can sign in alongside, and signing out of the portal
    # leaves the staff session alone.
    sign_in(app, client, "cus_demo_budi")
    page = client.get("/portal/")
    assert "Budi Santoso" in page.text
    assert client.get("/staff/me").text == "staff-1"
    client.post("/portal/logout", data={"csrf_token": csrf_token_from(page.text)})
    assert client.get("/staff/me").text == "staff-1"
    assert client.get("/portal/").status_code == 302
    get_state(app).shutdown()


def test_customer_loader_maps_host_users(tmp_path: Path) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'l.db'}")
    login_manager = LoginManager(app)
    login_manager.user_loader(_Staff)
    state: PortalState = get_state(app)

    @app.extensions["customer_portal"].customer_loader
    def load() -> str | None:
        return "cus_demo_chen" if current_user.is_authenticated else None

    @app.post("/login")
    def host_login() -> str:
        login_user(_Staff("u1"))
        return "ok"

    client = app.test_client()
    assert client.get("/portal/").status_code == 302
    client.post("/login")
    page = client.get("/portal/")
    assert page.status_code == 200
    assert "Chen Wei" in page.text
    state.hooks.customer_loader = None
    get_state(app).shutdown()


# --- headers ----------------------------------------------------------------------


def test_security_headers_on_every_portal_response(app: Flask, ava_client: FlaskClient) -> None:
    paths = [
        "/portal/",
        "/portal/login/biz_demo",
        "/portal/session/bad",
        "/portal/login/biz_demo/bad",
        "/portal/nope",
    ]
    paths += [
        str(rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("portal.") and not rule.arguments
    ]
    for path in paths:
        response = ava_client.get(path)
        assert response.status_code < 500, path
        assert response.headers["Cache-Control"] == "no-store", path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], path


class _SlowMailer(MemoryMailer):
    def send(self, message: Message) -> None:
        time.sleep(0.6)
        super().send(message)


def test_response_time_does_not_depend_on_whether_the_address_is_known(tmp_path: Path) -> None:
    # Mail goes out from a background worker: a slow SMTP server cannot make
    # the answer for a customer's address slower than for anyone else's.
    mailer = _SlowMailer()
    app = make_portal_app(f"sqlite:///{tmp_path / 't.db'}", mailer=mailer)
    client = app.test_client()
    token = csrf_token_from(client.get("/portal/login/biz_demo").text)
    timings = {}
    for email in ("ava@example.com", "nobody@example.com"):
        start = time.perf_counter()
        response = client.post("/portal/login/biz_demo", data={"email": email, "csrf_token": token})
        timings[email] = time.perf_counter() - start
        assert response.status_code == 200
    assert max(timings.values()) < 0.4, timings
    get_state(app).wait_for_background_tasks()
    assert [m.to for m in mailer.outbox] == ["ava@example.com"]
    get_state(app).shutdown()
