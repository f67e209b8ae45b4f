"""The profile: name and phone saved at once, a new email address only after
a link sent to it is confirmed; bad input never loses the saved profile."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import time_machine
from blinker import Signal
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from portal_fixtures import SMTPServer, free_port, make_portal_app, open_link, path_of, portal_store, sign_in

from flask_customer_portal import signals
from flask_customer_portal.auth import issue_link
from flask_customer_portal.forms.profile import ProfileError, clean_name, clean_phone
from flask_customer_portal.mail import Message
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer, LinkPurpose, MailStatus
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
CHEN = "cus_demo_chen"
CONFIRM_LINK = re.compile(r"http://shop\.test/portal/profile/email/[A-Za-z0-9_.\-]+")


# -- helpers -----------------------------------------------------------------------


def _customer(app: Flask, customer_id: str = AVA) -> Customer:
    with app.app_context():
        customer = get_state(app).storage.get_customer(customer_id)
    assert customer is not None
    return customer


def _events(app: Flask, customer_id: str = AVA) -> list[str]:
    with app.app_context():
        store: Any = get_state(app).storage
        return [event.action for event in store.list_events(customer_id)]


def _field_value(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', html)
    assert match, f"no {name} field"
    value = re.search(r'\bvalue="([^"]*)"', match.group(0))
    return unescape(value.group(1)) if value else ""


def _field_error(html: str, name: str) -> str | None:
    match = re.search(rf'<p class="field-message" id="{name}-error">(.*?)</p>', html, flags=re.S)
    return unescape(match.group(1)) if match else None


def _submit(client: FlaskClient, **changes: str) -> Any:
    """Submit the profile form as the browser would: the shown values,
    with ``changes`` typed over them."""
    page = client.get("/portal/profile")
    assert page.status_code == 200, page.status_code
    data = {
        "csrf_token": csrf_token_from(page.text),
        "name": _field_value(page.text, "name"),
        "email": _field_value(page.text, "email"),
        "phone": _field_value(page.text, "phone"),
    }
    data.update(changes)
    response = client.post("/portal/profile", data=data)
    # Emails are delivered after the response, from the outbox.
    get_state(client.application).wait_for_background_tasks()
    return response


@contextmanager
def _recorded(signal: Signal, app: Flask) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        assert sender is app
        calls.append(kwargs)

    with signal.connected_to(receiver, sender=app):
        yield calls


def _notice(client: FlaskClient) -> str:
    html = client.get("/portal/profile").text
    match = re.search(r'<div class="notice" role="status">(.*?)</div>', html, flags=re.S)
    assert match, "no notice on the page"
    return unescape(match.group(1))


def _confirm_link(messages: list[Message]) -> str:
    links = [m.group(0) for message in messages for m in CONFIRM_LINK.finditer(message.text)]
    assert len(links) == 1, links
    return links[0]


# -- showing and saving ----------------------------------------------------------


def test_the_profile_shows_the_saved_details(ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/profile")
    assert page.status_code == 200
    html = page.text
    assert _field_value(html, "name") == "Ava Thompson"
    assert _field_value(html, "email") == "ava@example.com"
    # E.164 in the database, international format on the page.
    assert _field_value(html, "phone") == "+1 415-555-0123"
    for name, label in (("name", "Name"), ("email", "Email address"), ("phone", "Phone number")):
        assert f'<label class="field-label" for="{name}">{label}</label>' in html
    assert 'autocomplete="tel"' in html
    assert "For example: +62 812-345-678" in html  # the demo's default region is ID
    assert '<a href="/portal/profile" aria-current="page">Profile</a>' in html


def test_save_name_and_phone(app: Flask, ava_client: FlaskClient, mailer: MemoryMailer) -> None:
    with _recorded(signals.profile_updated, app) as updates:
        response = _submit(ava_client, name="  Ava T. Smith  ", phone="0812 3456 7890")
    assert response.status_code == 303
    assert response.headers["Location"] == "/portal/profile"
    saved = _customer(app)
    assert saved.name == "Ava T. Smith"
    assert saved.phone == "+6281234567890"  # no "+": read as a number of the default region, ID
    assert saved.email == "ava@example.com"
    assert saved.auth_version == 1
    assert len(updates) == 1
    assert updates[0]["changed"] == ("name", "phone")
    assert updates[0]["customer"] == saved
    assert _events(app)[-1] == "profile.updated"
    assert mailer.outbox == []  # no email change, no mail
    page = ava_client.get("/portal/profile").text
    assert "Your profile was saved." in page
    assert _field_value(page, "phone") == "+62 812-3456-7890"
    assert "Your profile was saved." not in ava_client.get("/portal/profile").text  # shown once


@pytest.mark.parametrize(
    "typed",
    [
        "0812-3456-7890",
        "0812 3456 7890",
        "(0812) 3456-7890",
        "+62 812 3456 7890",
        "+62-812-3456-7890",
        "081234567890",
    ],
)
def test_indonesian_numbers_in_every_usual_spelling(app: Flask, client: FlaskClient, typed: str) -> None:
    sign_in(app, client, CHEN)
    assert _customer(app, CHEN).phone is None
    assert _submit(client, phone=typed).status_code == 303
    assert _customer(app, CHEN).phone == "+6281234567890"


def test_budi_saves_his_unchanged_profile(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, BUDI)
    page = client.get("/portal/profile").text
    assert '<html lang="id" dir="ltr">' in page
    assert _field_value(page, "phone") == "+62 812-3456-7890"
    before = _customer(app, BUDI)
    with _recorded(signals.profile_updated, app) as updates:
        assert _submit(client).status_code == 303
    assert _customer(app, BUDI) == before
    assert updates == []
    assert "profile.updated" not in _events(app, BUDI)


def test_nothing_changed_says_so(app: Flask, ava_client: FlaskClient) -> None:
    before = _customer(app)
    assert _submit(ava_client).status_code == 303
    assert _customer(app) == before
    assert _notice(ava_client) == "There were no changes to save."


def test_the_phone_can_be_removed(app: Flask, ava_client: FlaskClient) -> None:
    with _recorded(signals.profile_updated, app) as updates:
        assert _submit(ava_client, phone="   ").status_code == 303
    assert _customer(app).phone is None
    assert updates[0]["changed"] == ("phone",)
    assert _field_value(ava_client.get("/portal/profile").text, "phone") == ""


def test_a_request_without_the_phone_field_keeps_the_number(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/profile").text
    response = ava_client.post(
        "/portal/profile",
        data={"csrf_token": csrf_token_from(page), "name": "Ava Thompson", "email": "ava@example.com"},
    )
    assert response.status_code == 303
    assert _customer(app).phone == "+14155550123"


def test_a_unicode_name_is_saved_normalised(app: Flask, ava_client: FlaskClient) -> None:
    # "e" + combining acute accent becomes one "é" (NFC).
    assert _submit(ava_client, name="Zoe\u0301 陈伟 Łukasz O'Brien 👩‍💻").status_code == 303
    assert _customer(app).name == "Zoé 陈伟 Łukasz O'Brien 👩‍💻"


# -- errors next to the field --------------------------------------------------------


def test_invalid_email_is_explained_next_to_the_field(app: Flask, ava_client: FlaskClient) -> None:
    before = _customer(app)
    response = _submit(ava_client, name="New Name", email="ava@@example", phone="0812 3456 7890")
    assert response.status_code == 422
    html = response.text
    assert _field_error(html, "email") == "Enter a valid email address, like name@example.com."
    assert re.search(r'<input[^>]*aria-describedby="email-hint email-error"[^>]*aria-invalid="true"', html)
    assert _field_error(html, "name") is None
    assert _field_error(html, "phone") is None
    assert "Nothing was saved." in html
    # What the customer typed is still there to correct …
    assert _field_value(html, "name") == "New Name"
    assert _field_value(html, "email") == "ava@@example"
    assert _field_value(html, "phone") == "0812 3456 7890"
    # … and nothing of it was saved.
    assert _customer(app) == before
    assert "profile.updated" not in _events(app)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("12", "Enter a valid phone number, like +62 812-345-678."),
        ("0812 3456 7890 ext. 12", "Enter a valid phone number, like +62 812-345-678."),
        ("call me maybe", "Enter a valid phone number, like +62 812-345-678."),
        ("+99 123 456", "Enter a valid phone number, like +62 812-345-678."),
        ("1" * 41, "That phone number is too long."),
    ],
)
def test_invalid_phone_is_explained_next_to_the_field(
    app: Flask, ava_client: FlaskClient, typed: str, message: str
) -> None:
    before = _customer(app)
    response = _submit(ava_client, phone=typed)
    assert response.status_code == 422
    assert _field_error(response.text, "phone") == message
    assert _field_value(response.text, "phone") == typed
    assert _customer(app) == before


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter your name."),
        ("   \t ", "Enter your name."),
        ("x" * 201, "Your name can be at most 200 characters long."),
        ("Ava\x00Thompson", "Remove the invisible control characters from your name."),
        ("Ava\nThompson", "Remove the invisible control characters from your name."),
        ("Ava \u202enosmohT", "Remove the invisible control characters from your name."),
        ("<b>Ava</b>", "Your name cannot contain the characters < or >."),
    ],
)
def test_invalid_name_is_explained_next_to_the_field(
    app: Flask, ava_client: FlaskClient, typed: str, message: str
) -> None:
    before = _customer(app)
    response = _submit(ava_client, name=typed)
    assert response.status_code == 422
    assert _field_error(response.text, "name") == message
    assert _customer(app) == before


BAD_INPUT = {
    "10,000 characters": "a" * 10_000,
    "10,000 non-ASCII characters": "é" * 10_000,
    "NUL bytes": "\x00\x00ava\x00",
    "markup": "<script>alert(1)</script>",
    "markup in an address": "<script>alert(1)</script>@example.com",
    "emoji": "☎️🙂",
}


@pytest.mark.parametrize("field", ["name", "email", "phone"])
@pytest.mark.parametrize("kind", list(BAD_INPUT))
def test_bad_input_is_refused_with_a_message_and_changes_nothing(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer, field: str, kind: str
) -> None:
    value = BAD_INPUT[kind]
    if field == "name" and kind == "emoji":
        value = value * 100  # emoji in a name are fine, only not 300 of them
    before = _customer(app)
    response = _submit(ava_client, **{field: value})
    assert response.status_code == 422, (field, kind)
    assert _field_error(response.text, field), (field, kind)
    assert "<script>alert(1)" not in response.text  # shown back escaped, if at all
    assert "\x00" not in response.text
    assert _customer(app) == before
    assert mailer.outbox == []


def test_missing_csrf_token_is_refused_and_changes_nothing(app: Flask, ava_client: FlaskClient) -> None:
    before = _customer(app)
    data = {"name": "Mallory", "email": "mallory@example.net", "phone": "+6281234567890"}
    assert ava_client.post("/portal/profile", data=data).status_code == 400
    assert ava_client.post("/portal/profile", data={**data, "csrf_token": "forged"}).status_code == 400
    assert _customer(app) == before
    page = ava_client.post("/portal/profile", data=data)
    assert "This form expired. Please try again." in page.text


def test_signed_out_visitors_cannot_see_or_change_a_profile(app: Flask, client: FlaskClient) -> None:
    before = _customer(app)
    response = client.get("/portal/profile")
    assert response.status_code == 302
    assert response.headers["Location"] == "/portal/login/biz_demo"
    response = client.post("/portal/profile", data={"name": "X", "email": "x@example.com"})
    assert response.status_code == 302
    assert _customer(app) == before


def test_the_page_shows_only_the_customers_own_data(app: Flask, ava_client: FlaskClient) -> None:
    html = ava_client.get("/portal/profile").text
    budi = _customer(app, BUDI)
    assert budi.name not in html
    assert budi.email not in html
    assert "812-3456-7890" not in html


# -- the property: any text, never a 500, never a lost profile ----------------------

_NASTY = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "<script>alert(1)</script>",
        "a" * 10_000,
        "0812 3456 7890",
        "+14155550123",
        "ava@example.com",
        "AVA@EXAMPLE.COM",
        "budi@example.com",
        "\u202e",
        "'; DROP TABLE portal_customers; --",
        "%(name)s {{ 7*7 }}",
    ]
)
_ANY_TEXT = st.one_of(st.text(), st.text(min_size=190, max_size=260), _NASTY)
# Plausible values too, so that many examples get saved, not only refused.
_NAMES = st.one_of(
    _ANY_TEXT, st.text(st.characters(categories=["L", "M", "Zs", "Pd"]), min_size=1, max_size=80)
)
_EMAILS = st.one_of(_ANY_TEXT, st.just("ava@example.com"), st.emails())
_PHONES = st.one_of(
    _ANY_TEXT,
    st.just(""),
    st.from_regex(r"0812[ -]?[0-9]{4}[ -]?[0-9]{3,4}", fullmatch=True),
    st.from_regex(r"\+1 ?[2-9][0-9]{2} ?[2-9][0-9]{2} ?[0-9]{4}", fullmatch=True),
)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=_NAMES, email=_EMAILS, phone=_PHONES)
def test_any_input_is_saved_cleanly_or_refused_without_a_trace(
    app: Flask, ava_client: FlaskClient, name: str, email: str, phone: str
) -> None:
    token = csrf_token_from(ava_client.get("/portal/profile").text)
    before = _customer(app)
    response = ava_client.post(
        "/portal/profile", data={"csrf_token": token, "name": name, "email": email, "phone": phone}
    )
    assert response.status_code in (303, 422), response.status_code
    event(f"status {response.status_code}")
    after = _customer(app)
    assert after.email == before.email  # only a confirmed link changes the email
    assert after.auth_version == before.auth_version
    if response.status_code == 422:
        assert after == before
        assert re.search(r'<p class="field-message" id="(name|email|phone)-error">', response.text)
        return
    assert after.name == clean_name(name)
    assert after.phone == clean_phone(phone, region="ID", current=before.phone)


def test_clean_phone_without_a_default_region_needs_the_country_code() -> None:
    assert clean_phone("+62 812 3456 7890", region=None) == "+6281234567890"
    with pytest.raises(ProfileError):
        clean_phone("0812 3456 7890", region=None)


def test_a_saved_number_is_accepted_back_even_if_no_longer_valid() -> None:
    # Numbering plans change; a number saved by the merchant years ago must
    # not make the customer's unrelated name change fail.
    assert clean_phone("+62 12345", region="ID", current="+6212345") == "+6212345"
    with pytest.raises(ProfileError):
        clean_phone("+62 12345", region="ID", current=None)


# -- changing the email address ------------------------------------------------------


@pytest.fixture
def smtp_app(db_url: str, smtp_server: SMTPServer) -> Iterator[Flask]:
    """The portal on each database backend, sending mail through a real SMTP server."""
    app = make_portal_app(db_url, **smtp_server.config())
    yield app
    get_state(app).shutdown()
    with app.app_context():
        storage: Any = get_state(app).storage
        storage.drop_all()
        app.extensions["sqlalchemy"].engine.dispose()


def _mail_to(smtp_server: SMTPServer, address: str) -> list[Any]:
    return [m for m in smtp_server.messages if m["To"] == address]


def _text_of(message: Any) -> str:
    return str(message.get_body(("plain",)).get_content())


def test_email_change_end_to_end_through_smtp(smtp_app: Flask, smtp_server: SMTPServer) -> None:
    app = smtp_app
    state = get_state(app)
    # Ava is signed in on two devices, and has unused links from before.
    laptop, phone = app.test_client(), app.test_client()
    sign_in(app, laptop, AVA)
    sign_in(app, phone, AVA)
    with app.app_context():
        ava = _customer(app)
        old_session_link = app.extensions["customer_portal"].create_session(AVA).link
        login_token, _ = issue_link(state, LinkPurpose.LOGIN_LINK, ava, max_age=900)
    old_login_link = f"http://shop.test/portal/login/biz_demo/{login_token}"

    # An earlier request she did not follow up on.
    assert _submit(laptop, email="ava.typo@example.net").status_code == 303
    earlier_link = CONFIRM_LINK.findall(_text_of(_mail_to(smtp_server, "ava.typo@example.net")[0]))[0]

    with (
        _recorded(signals.email_change_requested, app) as requested,
        _recorded(signals.email_changed, app) as changed,
    ):
        response = _submit(laptop, email=" Ava.New@Example.ORG ")
        assert response.status_code == 303
        assert _notice(laptop) == (
            "We sent a link to Ava.New@example.org. Your email address changes when you open it and confirm."
        )
        # Not changed yet.
        assert _customer(app).email == "ava@example.com"
        assert requested[-1]["new_email"] == "Ava.New@example.org"
        assert requested[-1]["customer"].id == AVA

        # The link went to the new address, a notice to the current one.
        (confirmation,) = _mail_to(smtp_server, "Ava.New@example.org")
        assert confirmation["Subject"] == "Confirm your new email address for Acme Software"
        assert confirmation["From"] == "billing@shop.test"
        link = CONFIRM_LINK.findall(_text_of(confirmation))
        assert len(link) == 1
        confirm_link = link[0]
        html = confirmation.get_body(("html",)).get_content()
        assert confirm_link in html
        assert "Ava Thompson" not in _text_of(confirmation)  # the new address may be a stranger's
        notices = _mail_to(smtp_server, "ava@example.com")
        assert len(notices) == 2  # one per request
        assert notices[-1]["Subject"] == "Someone asked to change your email address at Acme Software"
        notice_text = _text_of(notices[-1])
        assert "Ava.New@example.org" in notice_text
        assert "Hello Ava Thompson," in notice_text
        assert "If this was not you" in notice_text
        assert confirm_link not in notice_text  # the old address cannot confirm for the new one
        assert "/portal/profile/email/" not in notice_text

        # A mail scanner, then the customer on another device, open the link:
        # nothing is used up by looking.
        other_device = app.test_client()
        for _ in range(3):
            page = other_device.get(path_of(confirm_link))
            assert page.status_code == 200
            assert "Confirm new email" in page.text
            assert "Ava.New@example.org" in page.text
            assert "ava@example.com" not in page.text  # nor the old address shown to the new one
        assert _customer(app).email == "ava@example.com"
        assert laptop.get("/portal/").status_code == 200

        response = other_device.post(path_of(confirm_link), data={"csrf_token": csrf_token_from(page.text)})
        assert response.status_code == 303
        assert response.headers["Location"] == "/portal/profile"

    updated = _customer(app)
    assert updated.email == "Ava.New@example.org"
    assert updated.auth_version == ava.auth_version + 1
    assert changed == [{"customer": updated, "old_email": "ava@example.com"}]
    events = _events(app)
    assert events.count("profile.email_change_requested") == 2
    assert "profile.email_changed" in events
    assert events[-1] == "session.signed_in"

    # The device that confirmed is signed in, with the new address.
    profile = other_device.get("/portal/profile")
    assert profile.status_code == 200
    assert "Your email address is now Ava.New@example.org." in profile.text
    assert _field_value(profile.text, "email") == "Ava.New@example.org"
    # Every earlier session is over …
    for client in (laptop, phone):
        response = client.get("/portal/")
        assert response.status_code == 302
        assert response.headers["Location"] == "/portal/login/biz_demo"
    # … and so is every earlier link: sign-in links, and the other confirmation.
    for old_link in (old_session_link, old_login_link, earlier_link):
        page = app.test_client().get(path_of(old_link))
        assert page.status_code == 410, old_link
        assert "already used" in page.text
    assert _customer(app).email == "Ava.New@example.org"
    # The confirmation link works once.
    again = app.test_client()
    assert again.get(path_of(confirm_link)).status_code == 410
    assert again.post(path_of(confirm_link), data={}).status_code == 410

    # The old address hears that the change happened (the notice is
    # delivered after the answer: wait for it).
    state.wait_for_background_tasks()
    notices = _mail_to(smtp_server, "ava@example.com")
    assert notices[-1]["Subject"] == "Your email address at Acme Software was changed"
    assert "Ava.New@example.org" in _text_of(notices[-1])
    # And she can sign in with the new address.
    with app.app_context():
        assert state.storage.find_customer_by_email("ava.new@example.org") == updated
        assert state.storage.find_customer_by_email("ava@example.com") is None


@pytest.fixture
def requested_link(app: Flask, ava_client: FlaskClient, mailer: MemoryMailer) -> str:
    """Ava asked to change her email to ava.new@example.org; the link sent."""
    assert _submit(ava_client, email="ava.new@example.org").status_code == 303
    return _confirm_link([m for m in mailer.outbox if m.to == "ava.new@example.org"])


def test_changing_only_the_case_is_not_a_change(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer
) -> None:
    assert _submit(ava_client, email="AVA@example.COM").status_code == 303
    assert mailer.outbox == []
    assert _customer(app).email == "ava@example.com"
    assert _notice(ava_client) == "There were no changes to save."


def test_name_is_saved_and_email_link_sent_in_one_submit(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer
) -> None:
    assert _submit(ava_client, name="Ava Smith", email="ava.smith@example.org").status_code == 303
    assert _customer(app).name == "Ava Smith"
    assert _customer(app).email == "ava@example.com"
    assert [m.to for m in mailer.outbox] == ["ava.smith@example.org", "ava@example.com"]
    assert _notice(ava_client).startswith("Your profile was saved. We sent a link to ava.smith@example.org.")


def test_post_without_csrf_uses_nothing(app: Flask, requested_link: str) -> None:
    client = app.test_client()
    assert client.post(path_of(requested_link), data={}).status_code == 400
    assert _customer(app).email == "ava@example.com"
    assert open_link(client, requested_link).status_code == 303
    assert _customer(app).email == "ava.new@example.org"


def test_expired_link_is_refused(app: Flask, requested_link: str) -> None:
    client = app.test_client()
    now = datetime.now(timezone.utc)
    with time_machine.travel(now + timedelta(hours=23, minutes=58), tick=False):
        assert client.get(path_of(requested_link)).status_code == 200  # still good just before
    with time_machine.travel(now + timedelta(hours=24, minutes=1), tick=False):
        page = client.get(path_of(requested_link))
        assert page.status_code == 410
        assert "This link has expired" in page.text
        assert "Your email address has not changed." in page.text
        assert "Confirm new email" not in page.text
        assert client.post(path_of(requested_link), data={}).status_code == 410
    assert _customer(app).email == "ava@example.com"


def test_expiry_follows_the_configuration(tmp_path: Path) -> None:
    mailer = MemoryMailer()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'e.db'}", mailer=mailer, CUSTOMER_PORTAL_EMAIL_CHANGE_MAX_AGE=600
    )
    client = app.test_client()
    sign_in(app, client, AVA)
    now = datetime.now(timezone.utc)
    assert _submit(client, email="ava.new@example.org").status_code == 303
    link = _confirm_link(mailer.outbox)
    with time_machine.travel(now + timedelta(minutes=11), tick=False):
        assert app.test_client().get(path_of(link)).status_code == 410
    get_state(app).shutdown()


@pytest.mark.parametrize("mutation", ["flip", "truncate", "garbage", "huge"])
def test_tampered_link_is_refused(app: Flask, requested_link: str, mutation: str) -> None:
    prefix, token = requested_link.rsplit("/", 1)
    bad = {
        "flip": token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"),
        "truncate": token[: len(token) // 2],
        "garbage": "not-a-token",
        "huge": "x" * 5000,
    }[mutation]
    client = app.test_client()
    page = client.get(path_of(f"{prefix}/{bad}"))
    assert page.status_code == 404
    assert "This link is not valid" in page.text
    assert client.post(path_of(f"{prefix}/{bad}"), data={}).status_code == 404
    assert _customer(app).email == "ava@example.com"
    assert open_link(client, requested_link).status_code == 303  # the real one still works


def test_purposes_do_not_mix(app: Flask, requested_link: str) -> None:
    token = requested_link.rsplit("/", 1)[1]
    client = app.test_client()
    # An email change link is no sign-in link …
    assert client.get(f"/portal/session/{token}").status_code == 404
    assert client.get(f"/portal/login/biz_demo/{token}").status_code == 404
    assert client.get("/portal/").status_code == 302
    # … and a sign-in link changes no email.
    with app.app_context():
        session_token = app.extensions["customer_portal"].create_session(AVA).link.rsplit("/", 1)[1]
    assert client.get(f"/portal/profile/email/{session_token}").status_code == 404
    assert client.post(f"/portal/profile/email/{session_token}", data={}).status_code == 404
    assert _customer(app).email == "ava@example.com"


def test_a_link_without_a_new_address_is_not_valid(app: Flask, client: FlaskClient) -> None:
    state = get_state(app)
    with app.app_context():
        token, _ = issue_link(state, LinkPurpose.EMAIL_CHANGE, _customer(app), max_age=600)
    assert client.get(f"/portal/profile/email/{token}").status_code == 404


def test_an_address_another_customer_has_is_refused_politely(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer
) -> None:
    # At request time the answer is the same as for any address: whether
    # budi@example.com is a customer is not the visitor's business.
    assert _submit(ava_client, email="budi@example.com").status_code == 303
    assert _notice(ava_client).startswith("We sent a link to budi@example.com.")
    link = _confirm_link([m for m in mailer.outbox if m.to == "budi@example.com"])
    with _recorded(signals.email_changed, app) as changed:
        client = app.test_client()
        page = client.get(path_of(link))
        response = client.post(path_of(link), data={"csrf_token": csrf_token_from(page.text)})
    assert response.status_code == 409
    assert "This email address cannot be used" in response.text
    assert "Ava" not in response.text
    assert "ava@example.com" not in response.text
    assert changed == []
    assert _customer(app).email == "ava@example.com"
    assert _customer(app, BUDI).email == "budi@example.com"
    assert "profile.email_change_refused" in _events(app)
    assert client.get("/portal/").status_code == 302  # nobody was signed in
    assert ava_client.get("/portal/").status_code == 200  # and nobody signed out


def test_a_mail_server_that_is_down_delays_the_email_change_link_but_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'down.db'}", MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=2
    )
    client = app.test_client()
    sign_in(app, client, AVA)
    with _recorded(signals.email_change_requested, app) as requested:
        response = _submit(client, name="Ava Smith", email="ava.new@example.org")
    # The request stands: the link and both emails are in the outbox,
    # waiting for the mail server.
    assert response.status_code == 303
    assert _customer(app).name == "Ava Smith"
    assert len(requested) == 1
    assert "profile.email_change_requested" in _events(app)
    with app.app_context():
        pending = portal_store(app).list_mail(status=MailStatus.PENDING)
    assert sorted(m.kind for m in pending) == ["email_change", "email_change_notice"]
    assert all(m.attempts == 1 and "Connection refused" in (m.last_error or "") for m in pending)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/profile/email/" not in logged  # never the link
    assert all("/profile/email/" not in (m.last_error or "") for m in pending)
    get_state(app).shutdown()


def test_email_change_requests_are_rate_limited(
    app: Flask, ava_client: FlaskClient, mailer: MemoryMailer
) -> None:
    # From several networks: one client alone gets only part of an address's allowance.
    for n in range(5):
        ava_client.environ_base["REMOTE_ADDR"] = f"10.0.0.{n}"
        assert _submit(ava_client, email="ava.new@example.org").status_code == 303
    ava_client.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    response = _submit(ava_client, email="ava.new@example.org")
    assert response.status_code == 422
    assert _field_error(response.text, "email") == (
        "Too many emails were sent to this address. Please try again later."
    )
    assert len([m for m in mailer.outbox if m.to == "ava.new@example.org"]) == 5


def test_mail_is_in_the_customers_language(app: Flask, client: FlaskClient, mailer: MemoryMailer) -> None:
    sign_in(app, client, BUDI)
    assert _submit(client, email="budi.baru@example.co.id").status_code == 303
    confirmation, notice = mailer.outbox
    assert confirmation.to == "budi.baru@example.co.id"
    assert notice.to == "budi@example.com"
    for message in (confirmation, notice):
        assert '<html lang="id" dir="ltr">' in message.html


def test_the_problem_page_points_a_signed_in_customer_to_the_profile(
    app: Flask, ava_client: FlaskClient, requested_link: str
) -> None:
    assert open_link(app.test_client(), requested_link).status_code == 303
    page = ava_client.get(path_of(requested_link))  # her session ended with the change
    assert page.status_code == 410
    assert 'href="/portal/login/biz_demo"' in page.text
    sign_in(app, ava_client, AVA)
    page = ava_client.get(path_of(requested_link))
    assert page.status_code == 410
    assert 'href="/portal/profile"' in page.text
