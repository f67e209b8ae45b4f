"""The example shop's staff area at ``/admin``: Flask-Login staff beside
portal customers, Share invite, and the support view."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from flask_login import current_user
from portal_fixtures import SMTPServer, copy_demo_database, free_port, open_link, path_of, sign_in
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from example_app import create_app, db, storage
from example_app.admin import CUSTOMERS_PER_PAGE
from example_app.demo import load_demo_data
from example_app.staff import DEMO_STAFF_EMAIL, DEMO_STAFF_PASSWORD, Staff, create_staff, ensure_demo_staff
from flask_customer_portal import Customer
from flask_customer_portal.auth import get_current_customer
from flask_customer_portal.clock import utcnow
from flask_customer_portal.contrib.sqla import LinkModel
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

#: Cheap hashing keeps the many sign-ins of these tests fast; one test
#: below signs in with the default (scrypt) hash.
FAST_HASH = "pbkdf2:sha256:1000"
FAILED_LOGIN = "The email address or password is not correct."
ROOT = Path(__file__).resolve().parent.parent


def _make_shop(tmp_path: Path, **config: object) -> Flask:
    copy_demo_database(tmp_path / "shop.db")
    settings = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}",
        "STAFF_PASSWORD_HASH_METHOD": FAST_HASH,
        **config,
    }
    app = create_app(settings)
    with app.app_context():
        load_demo_data(storage())
        ensure_demo_staff()
    return app


def _dispose(app: Flask) -> None:
    get_state(app).shutdown()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Flask]:
    app = _make_shop(tmp_path)
    yield app
    _dispose(app)


@pytest.fixture
def outbox(shop: Flask) -> MemoryMailer:
    mailer = MemoryMailer()
    get_state(shop).mailer = mailer
    return mailer


def staff_sign_in(
    client: FlaskClient, email: str = DEMO_STAFF_EMAIL, password: str = DEMO_STAFF_PASSWORD, next_: str = ""
) -> TestResponse:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login",
        data={"csrf_token": csrf_token_from(page.text), "email": email, "password": password, "next": next_},
    )


@pytest.fixture
def staff(shop: Flask) -> FlaskClient:
    client = shop.test_client()
    assert staff_sign_in(client).status_code == 303
    return client


def _token(client: FlaskClient, path: str = "/admin/customers/cus_demo_ava") -> str:
    return csrf_token_from(client.get(path).text)


def _post(client: FlaskClient, path: str, **data: str) -> TestResponse:
    return client.post(path, data={"csrf_token": _token(client), **data})


def _link_rows(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(LinkModel)) or 0)


def _events(app: Flask, customer_id: str) -> list[AuditEvent]:
    with app.app_context():
        return list(storage().list_events(customer_id))


def _demo_staff_id(app: Flask) -> str:
    with app.app_context():
        return str(db.session.scalars(select(Staff.id).where(Staff.email == DEMO_STAFF_EMAIL)).one())


def _customer_names(html: str) -> list[str]:
    return re.findall(r'<th scope="row" data-label="Name"><a href="/admin/customers/[^"]+">([^<]+)</a>', html)


# -- signing in and out -----------------------------------------------------------


def test_staff_pages_need_a_staff_sign_in(shop: Flask) -> None:
    client = shop.test_client()
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/login?next=/admin/"
    response = client.get("/admin/customers/cus_demo_ava?x=1")
    assert response.headers["Location"] == "/admin/login?next=/admin/customers/cus_demo_ava?x%3D1"
    links = _link_rows(shop)
    token = csrf_token_from(client.get("/admin/login").text)
    response = client.post("/admin/customers/cus_demo_ava/link", data={"csrf_token": token})
    assert response.status_code == 302
    assert _link_rows(shop) == links


def test_staff_sign_in_and_out(shop: Flask) -> None:
    client = shop.test_client()
    page = client.get("/admin/login")
    assert page.status_code == 200
    assert "Staff sign-in" in page.text
    response = staff_sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"
    home = client.get("/admin/")
    assert home.status_code == 200
    assert "Sam Rivera (staff@example.com)" in home.text
    assert client.get("/admin/login").headers["Location"] == "/admin/"  # already signed in

    response = client.post("/admin/logout", data={"csrf_token": csrf_token_from(home.text)})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login"
    assert "You are signed out of the staff area." in client.get("/admin/login").text
    assert client.get("/admin/").status_code == 302


def test_wrong_password_and_unknown_address_get_the_same_answer(shop: Flask) -> None:
    client = shop.test_client()
    wrong = staff_sign_in(client, password="not-the-password")
    unknown = staff_sign_in(client, email="nobody@example.com", password="not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert FAILED_LOGIN in wrong.text
    assert FAILED_LOGIN in unknown.text

    def normalized(response: TestResponse, email: str) -> str:
        return re.sub(r'name="csrf_token"[^>]*>', "", response.text).replace(email, "EMAIL")

    assert normalized(wrong, DEMO_STAFF_EMAIL) == normalized(unknown, "nobody@example.com")
    assert "not-the-password" not in wrong.text
    assert client.get("/admin/").status_code == 302


def test_sign_in_ignores_the_case_of_the_address(shop: Flask) -> None:
    assert staff_sign_in(shop.test_client(), email="  Staff@Example.COM ").status_code == 303


def test_empty_fields_are_422_with_messages(shop: Flask) -> None:
    response = staff_sign_in(shop.test_client(), email="", password="")
    assert response.status_code == 422
    assert "Enter your email address." in response.text
    assert "Enter your password." in response.text
    assert 'aria-invalid="true"' in response.text


@pytest.mark.parametrize(
    ("next_", "location"),
    [
        ("/admin/customers/cus_demo_ava", "/admin/customers/cus_demo_ava"),
        ("/admin/?q=ava", "/admin/?q=ava"),
        ("https://evil.example/admin/", "/admin/"),
        ("//evil.example/admin/", "/admin/"),
        ("/\\evil.example/admin/", "/admin/"),
        ("/portal/", "/admin/"),
        ("/administrator", "/admin/"),
        ("", "/admin/"),
    ],
)
def test_after_sign_in_only_staff_pages_are_followed(shop: Flask, next_: str, location: str) -> None:
    response = staff_sign_in(shop.test_client(), next_=next_)
    assert response.status_code == 303
    assert response.headers["Location"] == location


def test_a_deactivated_account_cannot_sign_in_and_is_signed_out(shop: Flask, staff: FlaskClient) -> None:
    with shop.app_context():
        account = db.session.scalars(select(Staff).where(Staff.email == DEMO_STAFF_EMAIL)).one()
        account.active = False
        db.session.commit()
    assert staff.get("/admin/").status_code == 302
    response = staff_sign_in(shop.test_client())
    assert response.status_code == 401
    assert FAILED_LOGIN in response.text


def test_every_staff_post_needs_the_csrf_token(shop: Flask, staff: FlaskClient, outbox: MemoryMailer) -> None:
    customer = shop.test_client()
    sign_in(shop, customer, "cus_demo_ava")
    links = _link_rows(shop)
    for path in (
        "/admin/customers/cus_demo_ava/link",
        "/admin/customers/cus_demo_ava/invite",
        "/admin/customers/cus_demo_ava/sign-out-everywhere",
        "/admin/logout",
    ):
        for data in ({}, {"csrf_token": "forged"}):
            response = staff.post(path, data=data)
            assert response.status_code == 400, path
            assert response.headers["Cache-Control"] == "no-store"
    assert _link_rows(shop) == links
    assert outbox.outbox == []
    assert customer.get("/portal/").status_code == 200  # still signed in
    assert staff.get("/admin/").status_code == 200  # logout without a token did nothing

    fresh = shop.test_client()
    response = fresh.post("/admin/login", data={"email": DEMO_STAFF_EMAIL, "password": DEMO_STAFF_PASSWORD})
    assert response.status_code == 400
    assert fresh.get("/admin/").status_code == 302


def test_changes_are_post_only(staff: FlaskClient) -> None:
    assert staff.get("/admin/logout").status_code == 405
    assert staff.get("/admin/customers/cus_demo_ava/link").status_code == 405
    assert staff.get("/admin/customers/cus_demo_ava/invite").status_code == 405
    assert staff.get("/admin/customers/cus_demo_ava/sign-out-everywhere").status_code == 405


# -- customers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("", ["Ava Thompson", "Budi Santoso", "Chen Wei", "Dewi Lestari"]),
        ("AVA", ["Ava Thompson"]),
        ("thom", ["Ava Thompson"]),
        ("EXAMPLE.COM", ["Ava Thompson", "Budi Santoso", "Chen Wei", "Dewi Lestari"]),
        ("Budi@Example", ["Budi Santoso"]),
        ("  chen  ", ["Chen Wei"]),
        ("cus_demo_chen", ["Chen Wei"]),
        ("%", []),
        ("_", []),
    ],
)
def test_customer_search(staff: FlaskClient, query: str, names: list[str]) -> None:
    page = staff.get("/admin/", query_string={"q": query})
    assert page.status_code == 200
    assert _customer_names(page.text) == names
    if not names:
        assert "No customer matches" in page.text


def test_customer_list_pages(shop: Flask, staff: FlaskClient) -> None:
    with shop.app_context():
        for n in range(45):
            storage().add_customer(
                Customer(id=f"cus_bulk_{n:02d}", email=f"bulk{n:02d}@example.com", name=f"Zed Bulk {n:02d}")
            )
    first = staff.get("/admin/")
    assert len(_customer_names(first.text)) == CUSTOMERS_PER_PAGE
    assert _customer_names(first.text)[:4] == ["Ava Thompson", "Budi Santoso", "Chen Wei", "Dewi Lestari"]
    assert "49 customers" in first.text
    assert "Page 1 of 3" in first.text
    assert 'href="/admin/?page=2" rel="next"' in first.text
    third = staff.get("/admin/?page=3")
    assert _customer_names(third.text) == [f"Zed Bulk {n:02d}" for n in range(36, 45)]
    assert 'href="/admin/?page=2" rel="prev"' in third.text
    assert 'rel="next"' not in third.text
    assert staff.get("/admin/?page=4").status_code == 404
    assert staff.get("/admin/?page=0").status_code == 404

    # The search is kept from page to page.
    searched = staff.get("/admin/", query_string={"q": "bulk"})
    assert "45 customers matching “bulk”" in searched.text
    assert 'href="/admin/?q=bulk&amp;page=2" rel="next"' in searched.text
    second = staff.get("/admin/?q=bulk&page=3")
    assert _customer_names(second.text) == [f"Zed Bulk {n:02d}" for n in range(40, 45)]


def test_unknown_customer_is_404(staff: FlaskClient) -> None:
    page = staff.get("/admin/customers/cus_nobody")
    assert page.status_code == 404
    assert "There is no such page or customer." in page.text
    assert _post(staff, "/admin/customers/cus_nobody/link").status_code == 404


# -- Share invite -------------------------------------------------------------------------


def test_customer_page_shows_the_static_link_and_makes_no_link_on_get(
    shop: Flask, staff: FlaskClient
) -> None:
    links = _link_rows(shop)
    for _ in range(2):
        page = staff.get("/admin/customers/cus_demo_budi")
        assert page.status_code == 200
    assert _link_rows(shop) == links
    assert "/portal/session/" not in page.text
    assert 'value="http://127.0.0.1:5000/portal/login/biz_demo" readonly' in page.text
    assert "Make a personal link" in page.text
    assert "Email it to the customer" in page.text
    assert "Emails a new personal link to budi@example.com, in Indonesian" in page.text


def test_share_invite_post_makes_a_working_link(shop: Flask, staff: FlaskClient) -> None:
    links = _link_rows(shop)
    response = _post(staff, "/admin/customers/cus_demo_budi/link")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert _link_rows(shop) == links + 1
    match = re.search(
        r'id="personal-link" type="text" value="(http://127\.0\.0\.1:5000/portal/session/[^"]+)" readonly',
        response.text,
    )
    assert match, response.text
    link = match.group(1)
    expiry = re.search(r'<time datetime="([^"]+)">(\d{4}-\d\d-\d\d \d\d:\d\d UTC)</time>', response.text)
    assert expiry
    assert "Make another personal link" in response.text
    assert ("session_link.created", "merchant") in [
        (e.action, e.actor) for e in _events(shop, "cus_demo_budi")
    ]

    # The link is shown once: the customer page does not show it again.
    assert link not in staff.get("/admin/customers/cus_demo_budi").text

    customer = shop.test_client()
    assert open_link(customer, link).status_code == 303
    assert "Budi Santoso" in customer.get("/portal/").text


def test_email_button_sends_the_invite(shop: Flask, staff: FlaskClient, outbox: MemoryMailer) -> None:
    response = _post(staff, "/admin/customers/cus_demo_budi/invite")
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/customers/cus_demo_budi"
    (message,) = outbox.outbox
    assert message.to == "budi@example.com"
    assert message.text.startswith("Halo Budi Santoso,")
    page = staff.get("/admin/customers/cus_demo_budi")
    assert "Emailed a new portal link to budi@example.com. It works once, until" in page.text
    link = re.search(r"http://127\.0\.0\.1:5000/portal/session/\S+", message.text)
    assert link
    assert link.group(0) not in page.text
    actions = [(e.action, e.actor) for e in _events(shop, "cus_demo_budi")]
    assert ("invite.sent", "merchant") in actions
    assert open_link(shop.test_client(), link.group(0)).status_code == 303


def test_email_button_over_smtp(tmp_path: Path, smtp_server: SMTPServer) -> None:
    app = _make_shop(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    try:
        client = app.test_client()
        staff_sign_in(client)
        assert _post(client, "/admin/customers/cus_demo_ava/invite").status_code == 303
    finally:
        _dispose(app)
    (message,) = smtp_server.messages
    assert message["To"] == "ava@example.com"
    assert message["Subject"] == "Acme Software invites you to your customer portal"
    assert message["From"] == "Acme Software <billing@acme.example>"


def test_email_button_says_so_when_the_mail_server_fails(tmp_path: Path) -> None:
    app = _make_shop(tmp_path, MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_TIMEOUT=2.0)
    try:
        client = app.test_client()
        staff_sign_in(client)
        response = _post(client, "/admin/customers/cus_demo_ava/invite")
        assert response.status_code == 502
        assert "The email was not sent" in response.text
        assert "Emailed" not in client.get("/admin/customers/cus_demo_ava").text
        assert "invite.sent" not in [e.action for e in _events(app, "cus_demo_ava")]
    finally:
        _dispose(app)


# -- what every staff page carries ---------------------------------------------------------


def test_test_mode_banner_on_every_staff_page(shop: Flask, staff: FlaskClient) -> None:
    pages = {
        "login": shop.test_client().get("/admin/login"),
        "customers": staff.get("/admin/"),
        "customer": staff.get("/admin/customers/cus_demo_ava"),
        "share": _post(staff, "/admin/customers/cus_demo_ava/link"),
        "not found": staff.get("/admin/customers/cus_nobody"),
    }
    for name, page in pages.items():
        assert '<aside class="test-mode-banner" aria-label="Test mode">' in page.text, name

    state = get_state(shop)
    state.config = replace(state.config, mode="live")
    assert "test-mode-banner" not in staff.get("/admin/").text
    assert "test-mode-banner" not in shop.test_client().get("/admin/login").text


def test_staff_responses_are_never_cached(shop: Flask, staff: FlaskClient) -> None:
    responses = [
        shop.test_client().get("/admin/login"),
        shop.test_client().get("/admin/"),  # the redirect to the sign-in
        staff.get("/admin/"),
        staff.get("/admin/customers/cus_demo_ava"),
        _post(staff, "/admin/customers/cus_demo_ava/link"),
        staff.get("/admin/no-such-page"),
        staff.get("/admin"),
    ]
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store", response.request.path
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Cache-Control" not in shop.test_client().get("/").headers


# -- the support view ------------------------------------------------------------------------


def test_customer_page_lists_portal_sessions_and_recent_actions(shop: Flask, staff: FlaskClient) -> None:
    customer = shop.test_client()
    customer.environ_base["HTTP_USER_AGENT"] = (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36"
    )
    sign_in(shop, customer, "cus_demo_ava")
    page = staff.get("/admin/customers/cus_demo_ava")
    sessions = page.text[page.text.index('id="sessions-title"') : page.text.index('id="events-title"')]
    # The device as a person names it; the raw header never shows.
    assert '<td data-label="Browser">Chrome on macOS</td>' in sessions
    assert "Mozilla" not in sessions and "AppleWebKit" not in sessions
    assert '<span class="badge badge-active">Active</span>' in sessions

    events = page.text[page.text.index('id="events-title"') :]
    actions = re.findall(r'<td data-label="Action"><code>([^<]+)</code>', events)
    assert actions == ["session.signed_in", "session_link.created"]
    assert "method: session_link" in events


def test_recent_actions_are_newest_first_and_limited(shop: Flask, staff: FlaskClient) -> None:
    start = utcnow() - timedelta(days=1)
    with shop.app_context():
        for n in range(30):
            storage().record_event(
                AuditEvent(
                    customer_id="cus_demo_chen",
                    action=f"test.event_{n:02d}",
                    occurred_at=start + timedelta(minutes=n),
                )
            )
    page = staff.get("/admin/customers/cus_demo_chen")
    actions = re.findall(r'<td data-label="Action"><code>([^<]+)</code>', page.text)
    assert actions == [f"test.event_{n:02d}" for n in range(29, 9, -1)]


def test_sign_out_everywhere_signs_the_customer_out(shop: Flask, staff: FlaskClient) -> None:
    laptop, phone = shop.test_client(), shop.test_client()
    sign_in(shop, laptop, "cus_demo_ava")
    sign_in(shop, phone, "cus_demo_ava")
    budi = shop.test_client()
    sign_in(shop, budi, "cus_demo_budi")
    with shop.app_context():
        forwarded = shop.extensions["customer_portal"].create_session("cus_demo_ava").link

    response = _post(staff, "/admin/customers/cus_demo_ava/sign-out-everywhere")
    assert response.status_code == 303
    page = staff.get(response.headers["Location"])
    assert "Signed Ava Thompson out of 2 portal sessions." in page.text
    assert page.text.count('<span class="badge badge-revoked">Signed out</span>') == 2

    for client in (laptop, phone):
        response = client.get("/portal/")
        assert response.status_code == 302
        assert response.headers["Location"] == "/portal/login/biz_demo"
    assert budi.get("/portal/").status_code == 200  # another customer is untouched
    assert staff.get("/admin/").status_code == 200  # and so is the staff member

    (event,) = [e for e in _events(shop, "cus_demo_ava") if e.action == "session.signed_out_everywhere"]
    assert event.actor == "merchant"
    assert event.details == {"staff": DEMO_STAFF_EMAIL, "staff_id": _demo_staff_id(shop)}

    # A link sent before (forwarded, say) no longer works; a new one does.
    stranger = shop.test_client()
    assert stranger.get(path_of(forwarded)).status_code == 410
    with shop.app_context():
        fresh = shop.extensions["customer_portal"].create_session("cus_demo_ava").link
    assert open_link(stranger, fresh).status_code == 303

    again = _post(staff, "/admin/customers/cus_demo_ava/sign-out-everywhere")
    assert "Signed Ava Thompson out of 1 portal session." in staff.get(again.headers["Location"]).text
    assert stranger.get("/portal/").status_code == 302
    third = _post(staff, "/admin/customers/cus_demo_ava/sign-out-everywhere")
    assert "Ava Thompson had no open portal session." in staff.get(third.headers["Location"]).text


# -- staff and customers side by side ----------------------------------------------------------


def test_staff_and_customer_in_one_browser_keep_their_own_sign_ins(shop: Flask) -> None:
    client = shop.test_client()
    sign_in(shop, client, "cus_demo_ava")
    assert staff_sign_in(client).status_code == 303

    portal_page = client.get("/portal/")
    assert portal_page.status_code == 200
    assert "Ava Thompson" in portal_page.text
    assert "staff@example.com" not in portal_page.text
    admin_page = client.get("/admin/")
    assert admin_page.status_code == 200
    assert "Sam Rivera (staff@example.com)" in admin_page.text

    # Signing out of the portal leaves the staff member signed in...
    response = client.post("/portal/logout", data={"csrf_token": csrf_token_from(portal_page.text)})
    assert response.status_code == 200
    assert client.get("/portal/").status_code == 302
    assert "Sam Rivera" in client.get("/admin/").text

    # ...and signing out of the staff area leaves the customer signed in.
    sign_in(shop, client, "cus_demo_ava")
    response = client.post("/admin/logout", data={"csrf_token": _token(client, "/admin/")})
    assert response.status_code == 303
    assert client.get("/admin/").status_code == 302
    assert "Ava Thompson" in client.get("/portal/").text


def test_a_customer_session_never_opens_the_staff_area(shop: Flask) -> None:
    client = shop.test_client()
    sign_in(shop, client, "cus_demo_ava")
    for path in ("/admin/", "/admin/customers/cus_demo_ava"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/login?next=")
    assert client.get("/portal/").status_code == 200


def test_a_staff_member_is_not_a_portal_customer(shop: Flask, staff: FlaskClient) -> None:
    response = staff.get("/portal/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/portal/login/biz_demo"
    assert get_state(shop).hooks.customer_loader is None
    cookie = staff.get_cookie("session")
    assert cookie is not None
    # The same browser (cookie, address and user agent) in a request context.
    with shop.test_request_context(
        "/portal/", environ_base=staff.environ_base, headers={"Cookie": f"session={cookie.value}"}
    ):
        assert current_user.is_authenticated
        assert get_current_customer() is None


# -- the demo account and the CLI ------------------------------------------------------------


def test_demo_data_creates_the_documented_staff_account(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'shop.db'}"})
    try:
        runner = app.test_cli_runner()
        first = runner.invoke(args=["demo-data"])
        assert first.exit_code == 0, first.output
        assert "Loaded demo data" in first.output
        assert f"{DEMO_STAFF_EMAIL}, password {DEMO_STAFF_PASSWORD}" in first.output
        second = runner.invoke(args=["demo-data"])
        assert second.exit_code == 0, second.output
        assert "already loaded" in second.output
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Staff)) == 1
            account = db.session.scalars(select(Staff)).one()
            assert account.password_hash.startswith("scrypt:")  # the default, not the tests' cheap hash
            assert DEMO_STAFF_PASSWORD not in account.password_hash
        assert staff_sign_in(app.test_client()).status_code == 303
    finally:
        _dispose(app)

    makefile = (ROOT / "Makefile").read_text()
    demo_target = makefile[makefile.index("\ndemo:") : makefile.index("\nlint:")]
    assert DEMO_STAFF_EMAIL in demo_target
    assert DEMO_STAFF_PASSWORD in demo_target
    assert "/admin/" in demo_target


def test_no_demo_staff_account_in_live_mode(shop: Flask) -> None:
    state = get_state(shop)
    state.config = replace(state.config, mode="live")
    with shop.app_context():
        db.session.execute(Staff.__table__.delete())
        db.session.commit()
        assert ensure_demo_staff() is None
        assert db.session.scalar(select(func.count()).select_from(Staff)) == 0


def test_create_staff_command(shop: Flask) -> None:
    runner = shop.test_cli_runner()
    result = runner.invoke(
        args=["create-staff", "Ops@Example.com", "--name", "Olu Ops"],
        input="a-long-password\na-long-password\n",
    )
    assert result.exit_code == 0, result.output
    assert "Added staff account ops@example.com." in result.output
    client = shop.test_client()
    assert staff_sign_in(client, email="ops@example.com", password="a-long-password").status_code == 303
    assert "Olu Ops (ops@example.com)" in client.get("/admin/").text

    taken = runner.invoke(args=["create-staff", "ops@example.com", "--password", "another-password"])
    assert taken.exit_code != 0
    assert "already a staff account" in taken.output
    short = runner.invoke(args=["create-staff", "new@example.com", "--password", "short"])
    assert short.exit_code != 0
    assert "at least 8 characters" in short.output
    with shop.app_context(), pytest.raises(ValueError, match="email address"):
        create_staff("not-an-address", "a-long-password", name="X")


def test_portal_pages_do_not_load_the_staff_member(shop: Flask, staff: FlaskClient) -> None:
    sign_in(shop, staff, "cus_demo_ava")
    loaded: list[str] = []
    manager = shop.login_manager  # type: ignore[attr-defined]
    original = manager._user_callback

    def spy(user_id: str) -> object:
        loaded.append(user_id)
        return original(user_id)

    manager._user_callback = spy
    try:
        assert staff.get("/portal/").status_code == 200
        assert loaded == []
        assert staff.get("/admin/").status_code == 200
        assert len(loaded) == 1
    finally:
        manager._user_callback = original


def test_a_timed_out_session_is_listed_as_expired(shop: Flask, staff: FlaskClient) -> None:
    customer = shop.test_client()
    sign_in(shop, customer, "cus_demo_chen")
    with time_machine.travel(utcnow() + timedelta(minutes=31)):
        page = staff.get("/admin/customers/cus_demo_chen")
        assert '<span class="badge badge-expired">Expired</span>' in page.text
        assert "badge-active" not in page.text
        assert customer.get("/portal/").status_code == 302
