"""The sessions page, signing devices out, and the account activity history."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import time_machine
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from portal_fixtures import make_portal_app, portal_store, sign_in
from sqlalchemy import select

from flask_customer_portal import signals
from flask_customer_portal.activity import KNOWN_ACTIONS, describe_event
from flask_customer_portal.auth import issue_link
from flask_customer_portal.contrib.sqla import metadata
from flask_customer_portal.i18n import TRANSLATIONS_DIR
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent, ChargeAttemptStatus, LinkPurpose, PortalSessionRecord
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

if TYPE_CHECKING:
    from conftest import QueryCounter

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
PACKAGE = Path(__file__).resolve().parent.parent / "flask_customer_portal"


def _has_indonesian(msgid: str) -> bool:
    with (TRANSLATIONS_DIR / "id" / "LC_MESSAGES" / "customer_portal.po").open("rb") as po_file:
        message = read_po(po_file).get(msgid)
    return bool(message is not None and message.string)


needs_indonesian = pytest.mark.skipif(
    not _has_indonesian("Account activity"),
    reason="the Indonesian catalogue does not have the account activity strings",
)


def _browser(app: Flask, customer_id: str = AVA, user_agent: str = FIREFOX_WINDOWS) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    sign_in(app, client, customer_id)
    return client


def _live(app: Flask, customer_id: str = AVA) -> list[PortalSessionRecord]:
    with app.app_context():
        state = get_state(app)
        return list(
            state.storage.list_customer_sessions(
                customer_id,
                datetime.now(timezone.utc),
                idle_timeout=timedelta(seconds=state.config.session_idle_timeout),
                max_age=timedelta(seconds=state.config.session_max_age),
            )
        )


def _events(app: Flask, customer_id: str = AVA) -> list[AuditEvent]:
    with app.app_context():
        return list(portal_store(app).list_events(customer_id))


def _is_signed_in(client: FlaskClient) -> bool:
    response = client.get("/portal/")
    return response.status_code == 200


def _token(client: FlaskClient, path: str = "/portal/sessions") -> str:
    return csrf_token_from(client.get(path).text)


@contextmanager
def _caught(signal: Any) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    signal.connect(receiver)
    try:
        yield calls
    finally:
        signal.disconnect(receiver)


def _sessions_table(app: Flask) -> list[tuple[Any, ...]]:
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(select(metadata.tables["portal_sessions"]))]


# --- the sessions page ------------------------------------------------------------


def test_lists_live_sessions_with_device_and_this_device_marked(app: Flask) -> None:
    phone = _browser(app, user_agent=SAFARI_IPHONE)
    laptop = _browser(app, user_agent=FIREFOX_WINDOWS)
    _browser(app, BUDI, user_agent="Mozilla/5.0 (Linux; Android 14) Chrome/124.0 Mobile Safari/537.36")

    page = laptop.get("/portal/sessions")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Firefox on Windows" in html
    assert "Safari on iOS" in html
    assert "Android" not in html  # Budi's phone is Budi's
    assert html.count("This device") == 1
    current = html.index("Firefox on Windows")
    assert html.index("This device") > current  # the badge sits with the laptop's card
    # One button per other device, none for this one, and never an internal id.
    assert html.count("Sign out this device") == 1
    for record in _live(app):
        assert record.id not in html
    assert "Approximate location" not in html  # no locator configured
    assert phone.get("/portal/sessions").get_data(as_text=True).count("This device") == 1


def test_idle_expired_and_too_old_sessions_are_not_listed(app: Flask) -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        _browser(app, user_agent=SAFARI_IPHONE)  # then left alone
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        laptop = _browser(app, user_agent=FIREFOX_WINDOWS)
        assert "Safari on iOS" in laptop.get("/portal/sessions").text
    with time_machine.travel(start + timedelta(minutes=31), tick=False):
        html = laptop.get("/portal/sessions").text
        assert "Firefox on Windows" in html
        assert "Safari on iOS" not in html  # idle for 31 minutes: dead
    # The laptop stays active but reaches the 12-hour maximum age.
    moment = start + timedelta(minutes=20)
    while moment < start + timedelta(hours=12, minutes=20):
        moment += timedelta(minutes=25)
        with time_machine.travel(moment, tick=False):
            response = laptop.get("/portal/sessions")
    assert response.status_code == 302  # signed out, so nothing to list
    assert _live(app) == []


def test_sessions_page_query_count_does_not_grow_with_sessions(
    app: Flask, count_queries: Callable[..., QueryCounter]
) -> None:
    laptop = _browser(app)
    counts = []
    for extra in (1, 8):
        for _ in range(extra):
            _browser(app, user_agent=SAFARI_IPHONE)
        with app.app_context(), count_queries() as queries:
            assert laptop.get("/portal/sessions").status_code == 200
        counts.append(queries.count)
    assert counts[0] == counts[1], counts
    assert counts[0] <= 4, counts


def test_signed_out_visitors_go_to_the_login_page(client: FlaskClient) -> None:
    for path in ("/portal/sessions", "/portal/activity"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.location.endswith("/portal/login/biz_demo")


# --- signing one device out ----------------------------------------------------------


def test_sign_out_another_device(app: Flask) -> None:
    phone = _browser(app, user_agent=SAFARI_IPHONE)
    laptop = _browser(app, user_agent=FIREFOX_WINDOWS)
    (phone_record,) = [r for r in _live(app) if r.user_agent == SAFARI_IPHONE]
    assert phone_record.public_id

    with _caught(signals.session_revoked) as revoked:
        response = laptop.post(
            f"/portal/sessions/{phone_record.public_id}/sign-out", data={"csrf_token": _token(laptop)}
        )
    assert response.status_code == 303
    assert response.location.endswith("/portal/sessions")
    page = laptop.get("/portal/sessions").text
    assert "That device is signed out." in page
    assert "Safari on iOS" not in page
    assert not _is_signed_in(phone)
    assert _is_signed_in(laptop)
    assert len(revoked) == 1
    assert revoked[0]["customer"].id == AVA
    assert revoked[0]["session"].public_id == phone_record.public_id
    assert revoked[0]["session"].revoked_at is not None
    event = _events(app)[-1]
    assert (event.action, event.actor, event.subject_id) == (
        "session.revoked",
        "customer",
        phone_record.public_id,
    )


def test_another_customers_session_is_not_found(app: Flask) -> None:
    budi = _browser(app, BUDI)
    ava = _browser(app, AVA)
    (budi_record,) = _live(app, BUDI)
    assert budi_record.public_id
    events_before = _events(app, BUDI), _events(app, AVA)

    response = ava.post(
        f"/portal/sessions/{budi_record.public_id}/sign-out", data={"csrf_token": _token(ava)}
    )
    assert response.status_code == 404
    assert "Budi" not in response.get_data(as_text=True)
    assert _is_signed_in(budi)
    assert _live(app, BUDI) == [budi_record]
    assert (_events(app, BUDI), _events(app, AVA)) == events_before


@pytest.mark.parametrize("session_id", ["pub_nobody", "x" * 300])
def test_unknown_session_is_not_found(ava_client: FlaskClient, session_id: str) -> None:
    response = ava_client.post(
        f"/portal/sessions/{session_id}/sign-out", data={"csrf_token": _token(ava_client)}
    )
    assert response.status_code == 404


def test_a_dead_session_cannot_be_signed_out_again(app: Flask) -> None:
    phone = _browser(app, user_agent=SAFARI_IPHONE)
    laptop = _browser(app)
    (phone_record,) = [r for r in _live(app) if r.user_agent == SAFARI_IPHONE]
    phone.post("/portal/logout", data={"csrf_token": _token(phone, "/portal/")})
    response = laptop.post(
        f"/portal/sessions/{phone_record.public_id}/sign-out", data={"csrf_token": _token(laptop)}
    )
    assert response.status_code == 404
    assert "session.revoked" not in [e.action for e in _events(app)]


@pytest.mark.parametrize("data", [{}, {"csrf_token": "forged"}])
def test_signing_a_device_out_needs_a_csrf_token(app: Flask, data: dict[str, str]) -> None:
    phone = _browser(app, user_agent=SAFARI_IPHONE)
    laptop = _browser(app)
    (phone_record,) = [r for r in _live(app) if r.user_agent == SAFARI_IPHONE]
    response = laptop.post(f"/portal/sessions/{phone_record.public_id}/sign-out", data=data)
    assert response.status_code == 400
    assert _is_signed_in(phone)
    assert _is_signed_in(laptop)


def test_signing_this_device_out_from_the_list_signs_out(app: Flask) -> None:
    laptop = _browser(app)
    (record,) = _live(app)
    with _caught(signals.signed_out) as signed_out:
        response = laptop.post(
            f"/portal/sessions/{record.public_id}/sign-out", data={"csrf_token": _token(laptop)}
        )
    assert response.status_code == 303
    assert response.location.endswith("/portal/login/biz_demo")
    assert "You signed out on this device." in laptop.get(response.location).text
    assert not _is_signed_in(laptop)
    assert len(signed_out) == 1
    assert _events(app)[-1].action == "session.signed_out"


def test_get_does_not_sign_anything_out(app: Flask) -> None:
    laptop = _browser(app)
    (record,) = _live(app)
    assert laptop.get(f"/portal/sessions/{record.public_id}/sign-out").status_code == 405
    assert laptop.get("/portal/sessions/sign-out-everywhere").status_code == 405
    assert _is_signed_in(laptop)


# --- sign out everywhere ------------------------------------------------------------


def test_sign_out_everywhere_ends_every_session_and_old_links(app: Flask, mailer: MemoryMailer) -> None:
    with app.app_context():
        state = get_state(app)
        customer = state.storage.get_customer(AVA)
        assert customer is not None
        old_link = app.extensions["customer_portal"].create_session(AVA).link
        old_login_token, _ = issue_link(state, LinkPurpose.LOGIN_LINK, customer, max_age=900)
    phone = _browser(app, user_agent=SAFARI_IPHONE)
    tablet = _browser(
        app, user_agent="Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) Version/17.4 Safari/604.1"
    )
    laptop = _browser(app)
    budi = _browser(app, BUDI)

    with _caught(signals.signed_out_everywhere) as everywhere, _caught(signals.signed_out) as signed_out:
        response = laptop.post("/portal/sessions/sign-out-everywhere", data={"csrf_token": _token(laptop)})
    assert response.status_code == 303
    assert response.location.endswith("/portal/login/biz_demo")
    login_page = laptop.get(response.location)
    assert login_page.status_code == 200
    assert "You are signed out on every device" in login_page.text

    for client in (phone, tablet, laptop):
        assert not _is_signed_in(client)
    assert _is_signed_in(budi)
    assert _live(app) == []
    assert len(everywhere) == 1
    assert everywhere[0]["customer"].id == AVA
    assert everywhere[0]["sessions"] == 3
    assert [c["customer"].id for c in signed_out] == [AVA]
    event = _events(app)[-1]
    assert (event.action, event.actor) == ("session.signed_out_everywhere", "customer")

    # Links sent before now are dead; a new one works.
    fresh = app.test_client()
    assert fresh.get(old_link.removeprefix("http://shop.test")).status_code == 410
    assert fresh.get(f"/portal/login/biz_demo/{old_login_token}").status_code == 410
    sign_in(app, fresh, AVA)
    assert _is_signed_in(fresh)


@pytest.mark.parametrize("data", [{}, {"csrf_token": "forged"}])
def test_sign_out_everywhere_needs_a_csrf_token(app: Flask, data: dict[str, str]) -> None:
    phone = _browser(app, user_agent=SAFARI_IPHONE)
    laptop = _browser(app)
    before = _events(app)
    assert laptop.post("/portal/sessions/sign-out-everywhere", data=data).status_code == 400
    assert _is_signed_in(phone)
    assert _is_signed_in(laptop)
    assert _events(app) == before


def test_sign_out_everywhere_page_explains_what_it_does(ava_client: FlaskClient) -> None:
    html = ava_client.get("/portal/sessions").text
    assert "Sign out on all devices" in html
    assert "including this one" in html
    assert 'action="/portal/sessions/sign-out-everywhere"' in html


# --- where a session was signed in from ------------------------------------------------


def test_without_a_locator_the_ip_address_is_not_stored(app: Flask) -> None:
    laptop = app.test_client()
    sign_in(app, laptop, AVA)
    (row,) = _sessions_table(app)
    assert "127.0.0.1" not in repr(row)
    (record,) = _live(app)
    assert record.location is None


def test_with_a_locator_only_its_answer_is_stored(tmp_path: Path) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}", CUSTOMER_PORTAL_TRUSTED_PROXIES=1)
    asked: list[str] = []

    @app.extensions["customer_portal"].session_locator
    def locate(ip: str) -> str | None:
        asked.append(ip)
        return "  Jakarta,\n Indonesia  "

    laptop = app.test_client()
    laptop.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
    sign_in(app, laptop, AVA)
    assert asked == ["203.0.113.9"]
    (record,) = _live(app)
    assert record.location == "Jakarta, Indonesia"
    assert "203.0.113.9" not in repr(_sessions_table(app))
    assert "203.0.113.9" not in repr(_events(app))
    html = laptop.get("/portal/sessions").text
    assert "Approximate location" in html
    assert "Jakarta, Indonesia" in html


def test_a_failing_locator_does_not_stop_the_sign_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}")

    @app.extensions["customer_portal"].session_locator
    def locate(ip: str) -> str | None:
        raise LookupError(f"no city for {ip}")

    laptop = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_customer_portal"):
        sign_in(app, laptop, AVA)
    assert _is_signed_in(laptop)
    (record,) = _live(app)
    assert record.location is None
    assert "LookupError" in caplog.text
    assert "127.0.0.1" not in caplog.text
    assert "Unknown" in laptop.get("/portal/sessions").text


# --- the activity history --------------------------------------------------------------


def _record(app: Flask, *events: AuditEvent) -> None:
    with app.app_context():
        for event in events:
            get_state(app).storage.record_event(event)


def test_activity_shows_sentences_actors_and_links(app: Flask) -> None:
    ava = _browser(app)
    at = datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc)
    _record(
        app,
        AuditEvent(AVA, "payment_method.added", at, details={"brand": "visa", "last4": "4242"}),
        AuditEvent(
            AVA,
            "invoice.paid",
            at,
            subject_id="inv_demo_ava_sync_01",
            provider_reference="ch_secret_ref",
            actor="system",
        ),
        AuditEvent(AVA, "session_link.created", at, actor="staff:alice@example.com"),
        AuditEvent(
            AVA,
            "profile.email_change_requested",
            at,
            details={"new_email": "ava.new@example.org", "token_hash": "deadbeefcafe"},
        ),
        AuditEvent(AVA, "merchant.custom_thing", at, details={"secret": "s3cr3t"}),
    )
    html = ava.get("/portal/activity").text
    assert "Payment method Visa •••• 4242 was added." in html
    assert "An invoice was paid." in html
    assert 'href="/portal/invoices/inv_demo_ava_sync_01"' in html
    assert "A sign-in link to the portal was made." in html
    assert "Your account was updated." in html  # an action the portal does not know
    assert ">Support<" in html and ">Automatic<" in html and ">You<" in html
    for internal in (
        "ch_secret_ref",
        "staff:alice",
        "deadbeefcafe",
        "s3cr3t",
        "merchant.custom_thing",
        "invoice.paid",
        "session.signed_in",
    ):
        assert internal not in html, internal
    # In Ava's time zone (Los Angeles), not UTC.
    assert "Mar 5, 2026, 3:30\u202fPM PST" in html


@needs_indonesian
def test_activity_is_in_the_customers_language_and_time_zone(app: Flask) -> None:
    budi = _browser(app, BUDI)
    at = datetime(2026, 3, 5, 23, 30, tzinfo=timezone.utc)
    _record(
        app,
        AuditEvent(
            BUDI,
            "subscription.cancelled",
            at,
            subject_id="sub_demo_budi_sync",
            details={"at_period_end": "true"},
        ),
    )
    html = budi.get("/portal/activity").text
    assert "Aktivitas akun" in html
    assert "Langganan diatur untuk berakhir di akhir periode penagihannya." in html
    assert "Anda" in html
    assert "6 Mar 2026" in html  # 06:30 in Jakarta, the next day


def test_activity_pages_and_query_count(tmp_path: Path, count_queries: Callable[..., QueryCounter]) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}", CUSTOMER_PORTAL_ACTIVITY_PER_PAGE=5)
    ava = _browser(app)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    signing_in = len(_events(app))  # the link was made, then used
    _record(
        app,
        *(
            AuditEvent(AVA, "invoice.issued", start + timedelta(days=n), subject_id=f"inv_{n}")
            for n in range(11)
        ),
    )
    assert len(_events(app)) == signing_in + 11 == 13

    first = ava.get("/portal/activity").text
    assert "Page 1 of 3" in first
    assert 'href="/portal/activity?page=2"' in first
    assert 'rel="next"' in first
    last = ava.get("/portal/activity?page=3").text
    assert last.count("<tr>") == 1 + 3  # header + the three oldest
    assert 'rel="prev"' in last
    for bad in ("4", "0", "-1", "x", "1.5"):
        assert ava.get(f"/portal/activity?page={bad}").status_code == 404, bad

    counts = []
    for page in (1, 3):
        with app.app_context(), count_queries() as queries:
            assert ava.get(f"/portal/activity?page={page}").status_code == 200
        counts.append(queries.count)
    _record(app, *(AuditEvent(AVA, "invoice.paid", start, subject_id=f"inv_{n}") for n in range(30)))
    with app.app_context(), count_queries() as queries:
        assert ava.get("/portal/activity").status_code == 200
    counts.append(queries.count)
    assert len(set(counts)) == 1, counts
    assert counts[0] <= 4, counts


def test_activity_of_a_new_customer_is_one_sign_in(app: Flask) -> None:
    chen = _browser(app, "cus_demo_chen")
    html = chen.get("/portal/activity").text
    assert "Signed in with a link from the merchant." in html
    assert "Page 1 of" not in html


@pytest.mark.parametrize(
    ("action", "details", "sentence"),
    [
        ("session.signed_in", {"method": "login_link"}, "Signed in with a link sent by email."),
        ("session.signed_in", {"method": "email_change"}, "Signed in by confirming a new email address."),
        ("session.signed_in", {"method": "something_new"}, "Signed in to the portal."),
        ("subscription.cancelled", {"at_period_end": "false"}, "A subscription was cancelled."),
        ("subscription.paused", {"months": "1"}, "A subscription was paused for 1 month."),
        ("subscription.paused", {"months": "3"}, "A subscription was paused for 3 months."),
        ("subscription.paused", {"months": "lots"}, "A subscription was paused."),
        (
            "payment_method.removed",
            {"brand": "mastercard", "last4": "4444"},
            "Payment method Mastercard •••• 4444 was removed.",
        ),
        (
            "payment_method.default_changed",
            {"brand": "visa", "last4": "4242", "previous_payment_method_id": "pm_1"},
            "Visa •••• 4242 became your default payment method.",
        ),
        ("payment_method.default_changed", {}, "Your default payment method was changed."),
        # A card number where last4 should be is not printed.
        (
            "payment_method.added",
            {"brand": "visa", "last4": "4242424242424242"},
            "A payment method was added.",
        ),
        ("subscription.something_new", {}, "A subscription changed."),
        ("", {}, "Your account was updated."),
    ],
)
def test_sentences_read_only_allowed_details(
    app: Flask, action: str, details: dict[str, str], sentence: str
) -> None:
    event = AuditEvent(AVA, action, datetime(2026, 3, 5, tzinfo=timezone.utc), details=details)
    with app.test_request_context(), force_locale("en"):
        assert describe_event(event).sentence == sentence


def test_subject_links_only_to_pages_that_exist(app: Flask) -> None:
    at = datetime(2026, 3, 5, tzinfo=timezone.utc)
    deactivated = AuditEvent(
        AVA, "license_key.instance_deactivated", at, subject_id="lki_1", details={"license_key_id": "lk_1"}
    )
    renewed = AuditEvent(AVA, "subscription.renewed", at, subject_id="sub_1", actor="system")
    signed_in = AuditEvent(AVA, "session.signed_in", at, subject_id="sub_1")
    with app.test_request_context(), force_locale("en"):
        endpoints = app.view_functions
        link = describe_event(renewed, endpoints).link
        assert link is not None
        assert (link.endpoint, link.values, link.label) == (
            "portal.subscription",
            {"subscription_id": "sub_1"},
            "View subscription",
        )
        assert describe_event(renewed).link is None  # no endpoints given: nothing linked
        assert describe_event(renewed, {}).link is None  # the page does not exist
        assert describe_event(signed_in, endpoints).link is None  # sessions have no page
        if "portal.license_key" in endpoints:
            key_link = describe_event(deactivated, endpoints).link
            assert key_link is not None
            assert key_link.values == {"license_key_id": "lk_1"}


def _actions_in_the_code() -> set[str]:
    """Every audit action the package writes: ``action="…"`` and the
    charging module's ``_event(…, "…")``."""
    actions: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        actions |= set(re.findall(r'action\s*=\s*"([a-z_]+\.[a-z_]+)"', text))
        actions |= set(re.findall(r'_event\(\s*[\w.]+,\s*"([a-z_]+\.[a-z_]+)"', text))
        if 'f"charge.{attempt.status}"' in text:
            actions |= {f"charge.{status}" for status in ChargeAttemptStatus}
    return actions


def test_every_action_in_the_code_has_its_own_sentence() -> None:
    actions = _actions_in_the_code()
    assert {"session.signed_in", "invoice.paid", "charge.declined", "session.revoked"} <= actions
    assert actions - KNOWN_ACTIONS == set()


def _sentences(app: Flask, locale: str) -> dict[str, str]:
    at = datetime(2026, 3, 5, tzinfo=timezone.utc)
    with app.test_request_context(), force_locale(locale):
        return {action: describe_event(AuditEvent(AVA, action, at)).sentence for action in KNOWN_ACTIONS}


def test_every_known_action_reads_as_a_sentence(app: Flask) -> None:
    for action, sentence in _sentences(app, "en").items():
        assert sentence.endswith("."), (action, sentence)
        assert action not in sentence


@needs_indonesian
def test_every_known_action_is_translated(app: Flask) -> None:
    english = _sentences(app, "en")
    indonesian = _sentences(app, "id")
    assert [action for action in KNOWN_ACTIONS if indonesian[action] == english[action]] == []
    assert all(sentence.endswith(".") for sentence in indonesian.values())


def test_security_section_on_the_profile_page(ava_client: FlaskClient) -> None:
    html = ava_client.get("/portal/profile").text
    assert 'href="/portal/sessions"' in html
    assert 'href="/portal/activity"' in html
    sessions = ava_client.get("/portal/sessions").text
    # The profile tab stays marked as the current section.
    assert re.search(r'href="/portal/profile"\s+aria-current="true"', sessions)
