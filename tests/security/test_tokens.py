"""Attacks on the one-time links: session links, login links sent by email
and email-change confirmations.

tests/test_access.py and tests/test_profile.py already prove: a session or
login link works once when opened again by GET; GET never uses a link up;
a POST without CSRF uses nothing; the last three characters changed,
truncated, garbage and 5,000-character tokens are refused (session and
email-change links); a login-link token is no session link; an
email-change token is no sign-in link and a session token changes no email;
session and login links five seconds either side of their age limit;
an email-change link two minutes either side; a key moved to
``SECRET_KEY_FALLBACKS`` keeps session links working and a dropped key does
not; a session link of another business or of live mode; a token naming
another customer with a real token id; old session, login and
email-change links dying with an email change.

This file adds what they leave open, for all three purposes, each with the
whole database compared before and after the refusal:

* a used link replayed with a valid POST, also re-spelt (base64 padding
  bits);
* one character changed in the payload, in the timestamp and in the
  signature; a payload rewritten to name another customer;
* the full matrix of a token of one purpose at another purpose's URL;
* the age limit to the second: one second before works, at the limit and
  one second after are refused;
* key rotation for every purpose, and a key nobody configured;
* live-mode and other-business tokens at the login and email-change URLs;
* a token whose customer's ``auth_version`` moved on while the address
  stayed the same;
* a token correctly signed with the real key but never issued (a leaked
  key alone mints no links), and a database that holds no usable link.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import SECRET
from security_support import (
    AVA,
    LINK_LANDINGS,
    NEW_EMAIL,
    customer,
    db_dump,
    issue,
    link_path,
    press,
)

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import LinkPurpose, LinkRecord
from flask_customer_portal.testing import csrf_token_from
from flask_customer_portal.tokens import LinkSigner, hash_token_id

PURPOSES = list(LinkPurpose)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _ids(purpose: LinkPurpose) -> str:
    return purpose.value


def _use(client: FlaskClient, purpose: LinkPurpose, token: str) -> Any:
    """Open the link and press its button, as the customer does."""
    path = link_path(purpose, token)
    page = client.get(path)
    assert page.status_code == 200, (purpose, page.status_code)
    return client.post(path, data={"csrf_token": csrf_token_from(page.text)})


def _assert_used(response: Any, purpose: LinkPurpose) -> None:
    assert response.status_code == 303, response.status_code
    assert response.headers["Location"] == LINK_LANDINGS[purpose]


def _assert_refused(app: Flask, purpose: LinkPurpose, token: str, status: int, before: Any) -> None:
    """GET and a POST with a valid CSRF token both refuse the token with
    ``status``, sign nobody in and write nothing."""
    client = app.test_client()
    path = link_path(purpose, token)
    page = client.get(path)
    assert page.status_code == status, (purpose, "GET", page.status_code)
    assert "Traceback" not in page.text
    response = press(client, path)
    assert response.status_code == status, (purpose, "POST", response.status_code)
    assert client.get("/portal/").status_code == 302  # nobody signed in
    assert db_dump(app) == before


def _flip(text: str, index: int) -> str:
    """``text`` with one base64url character replaced by another whose high
    bit differs, so the decoded bytes differ too."""
    old = text[index]
    new = _ALPHABET[_ALPHABET.index(old) ^ 32]
    return text[:index] + new + text[index + 1 :]


def _parts(token: str) -> tuple[str, str, str]:
    payload, timestamp, signature = token.rsplit(".", 2)
    return payload, timestamp, signature


def _decode_payload(payload: str) -> dict[str, Any]:
    compressed = payload.startswith(".")
    raw = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload.lstrip(".")) % 4))
    data: dict[str, Any] = json.loads(zlib.decompress(raw) if compressed else raw)
    return data


def _encode_payload(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _signed_elsewhere(app: Flask, signer: LinkSigner, purpose: LinkPurpose, max_age: int = 3600) -> str:
    """A token made by ``signer`` for Ava, with its server-side record in
    ``app``'s database: the only difference from a real link is what
    ``signer`` was configured with."""
    state = get_state(app)
    with app.app_context():
        ava = state.storage.get_customer(AVA)
        assert ava is not None
        token, token_id = signer.make(
            purpose, ava, new_email=NEW_EMAIL if purpose is LinkPurpose.EMAIL_CHANGE else None
        )
        now = datetime.now(timezone.utc)
        state.storage.create_link(
            LinkRecord(
                token_hash=hash_token_id(token_id),
                purpose=purpose,
                customer_id=AVA,
                created_at=now,
                expires_at=now + timedelta(seconds=max_age),
            )
        )
    return token


# --- replay -------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_used_link_replayed_with_a_valid_post_changes_nothing(shop: Flask, purpose: LinkPurpose) -> None:
    token = issue(shop, purpose)
    _assert_used(_use(shop.test_client(), purpose, token), purpose)
    before = db_dump(shop)
    _assert_refused(shop, purpose, token, 410, before)


@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_used_link_respelt_is_still_used(shop: Flask, purpose: LinkPurpose) -> None:
    # The last character of a base64 signature carries bits nobody reads:
    # the same signature can be written several ways. What is used up is
    # the token id inside, so another spelling is the same used link.
    token = issue(shop, purpose)
    payload, timestamp, signature = _parts(token)
    last = _ALPHABET.index(signature[-1])
    respelt = f"{payload}.{timestamp}.{signature[:-1]}{_ALPHABET[last ^ 1]}"
    assert respelt != token
    _assert_used(_use(shop.test_client(), purpose, token), purpose)
    before = db_dump(shop)
    client = shop.test_client()
    path = link_path(purpose, respelt)
    assert client.get(path).status_code in (404, 410)
    assert press(client, path).status_code in (404, 410)
    assert client.get("/portal/").status_code == 302
    assert db_dump(shop) == before


# --- tampering ------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["payload", "timestamp", "signature", "other_customer"])
@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_tampered_token_is_not_valid(shop: Flask, purpose: LinkPurpose, part: str) -> None:
    token = issue(shop, purpose)
    payload, timestamp, signature = _parts(token)
    if part == "payload":
        bad = f"{_flip(payload, len(payload) // 2)}.{timestamp}.{signature}"
    elif part == "timestamp":
        bad = f"{payload}.{_flip(timestamp, 1)}.{signature}"
    elif part == "signature":
        bad = f"{payload}.{timestamp}.{_flip(signature, 0)}"
    else:
        data = _decode_payload(payload)
        assert data["c"] == AVA
        data["c"] = "cus_demo_budi"
        bad = f"{_encode_payload(data)}.{timestamp}.{signature}"
    assert bad != token
    before = db_dump(shop)
    _assert_refused(shop, purpose, bad, 404, before)
    # The real token was not burnt by the attempts.
    _assert_used(_use(shop.test_client(), purpose, token), purpose)


# --- salt confusion -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("made_for", "used_at"),
    [(a, b) for a in PURPOSES for b in PURPOSES if a is not b],
    ids=lambda p: p.value,
)
def test_a_token_works_only_for_its_own_purpose(
    shop: Flask, made_for: LinkPurpose, used_at: LinkPurpose
) -> None:
    token = issue(shop, made_for)
    before = db_dump(shop)
    _assert_refused(shop, used_at, token, 404, before)
    assert customer(shop).email == "ava@example.com"
    _assert_used(_use(shop.test_client(), made_for, token), made_for)


# --- the age limit, to the second ------------------------------------------------------


_MAX_AGE_KEY = {
    LinkPurpose.SESSION_LINK: "CUSTOMER_PORTAL_SESSION_LINK_MAX_AGE",
    LinkPurpose.LOGIN_LINK: "CUSTOMER_PORTAL_LOGIN_LINK_MAX_AGE",
    LinkPurpose.EMAIL_CHANGE: "CUSTOMER_PORTAL_EMAIL_CHANGE_MAX_AGE",
}


@pytest.mark.parametrize("offset", [-1, 0, 1])
@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_expiry_to_the_second(shop: Flask, purpose: LinkPurpose, offset: int) -> None:
    max_age = int(shop.config[_MAX_AGE_KEY[purpose]])
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False):
        token = issue(shop, purpose)
    with time_machine.travel(start + timedelta(seconds=max_age + offset), tick=False):
        if offset < 0:
            _assert_used(_use(shop.test_client(), purpose, token), purpose)
            return
        # ``expires_at`` is the first moment the link no longer works.
        before = db_dump(shop)
        _assert_refused(shop, purpose, token, 410, before)
        assert "expired" in shop.test_client().get(link_path(purpose, token)).text


# --- keys -------------------------------------------------------------------------------


@pytest.fixture
def rotated_app(make_app: Callable[..., Flask]) -> Flask:
    """The portal after a key rotation: a new key, the old one as fallback."""
    return make_app(SECRET_KEY="new-" + SECRET, SECRET_KEY_FALLBACKS=["old-" + SECRET])


@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_link_signed_with_the_fallback_key_still_works(rotated_app: Flask, purpose: LinkPurpose) -> None:
    old = LinkSigner(["old-" + SECRET], mode="test", business_id="biz_demo")
    token = _signed_elsewhere(rotated_app, old, purpose)
    _assert_used(_use(rotated_app.test_client(), purpose, token), purpose)


@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_link_signed_with_an_unknown_key_is_not_valid(rotated_app: Flask, purpose: LinkPurpose) -> None:
    unknown = LinkSigner(["someone-elses-" + SECRET], mode="test", business_id="biz_demo")
    token = _signed_elsewhere(rotated_app, unknown, purpose)
    before = db_dump(rotated_app)
    _assert_refused(rotated_app, purpose, token, 404, before)
    assert customer(rotated_app).email == "ava@example.com"


@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_leaked_key_alone_mints_no_links(shop: Flask, purpose: LinkPurpose) -> None:
    # Correctly signed with the shop's own key, but never issued: there is no
    # server-side record of its token id.
    signer = LinkSigner([SECRET], mode="test", business_id="biz_demo")
    with shop.app_context():
        found = get_state(shop).storage.get_customer(AVA)
    assert found is not None
    token, _ = signer.make(
        purpose, found, new_email=NEW_EMAIL if purpose is LinkPurpose.EMAIL_CHANGE else None
    )
    before = db_dump(shop)
    _assert_refused(shop, purpose, token, 404, before)


def test_the_database_holds_no_usable_link(shop: Flask) -> None:
    tokens = [issue(shop, purpose) for purpose in PURPOSES]
    dump = repr(db_dump(shop))
    for token in tokens:
        payload, _, signature = _parts(token)
        token_id = _decode_payload(payload)["j"]
        assert token not in dump
        assert signature not in dump
        assert token_id not in dump
        assert hash_token_id(token_id) in dump


# --- mode and business -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "business_id", "status"),
    [("live", "biz_demo", 400), ("test", "biz_other", 404), ("live", "biz_other", 404)],
)
@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_token_of_another_mode_or_business_is_refused(
    shop: Flask, purpose: LinkPurpose, mode: str, business_id: str, status: int
) -> None:
    # Same key, same customer id, a server-side record: only the mode or
    # the business differs.
    signer = LinkSigner([SECRET], mode=mode, business_id=business_id)
    token = _signed_elsewhere(shop, signer, purpose)
    before = db_dump(shop)
    _assert_refused(shop, purpose, token, status, before)
    if status == 400:
        assert "another environment" in shop.test_client().get(link_path(purpose, token)).text


def test_the_login_link_url_names_the_business(shop: Flask) -> None:
    token = issue(shop, LinkPurpose.LOGIN_LINK)
    before = db_dump(shop)
    client = shop.test_client()
    assert client.get(f"/portal/login/biz_other/{token}").status_code == 404
    assert press(client, f"/portal/login/biz_other/{token}").status_code == 404
    assert db_dump(shop) == before
    _assert_used(_use(client, LinkPurpose.LOGIN_LINK, token), LinkPurpose.LOGIN_LINK)


# --- the customer moved on ---------------------------------------------------------------


@pytest.mark.parametrize("purpose", PURPOSES, ids=_ids)
def test_a_token_made_before_the_auth_version_moved_on_is_refused(
    shop: Flask, ava: FlaskClient, purpose: LinkPurpose
) -> None:
    token = issue(shop, purpose)
    version = customer(shop).auth_version
    # Same address, next version: only the auth version tells the token is old.
    with shop.app_context():
        moved = get_state(shop).storage.change_email(AVA, "ava@example.com", auth_version=version)
    assert moved is not None
    assert moved.auth_version == version + 1
    assert ava.get("/portal/").status_code == 302  # her session ended with it
    before = db_dump(shop)
    _assert_refused(shop, purpose, token, 410, before)
    assert customer(shop) == moved
