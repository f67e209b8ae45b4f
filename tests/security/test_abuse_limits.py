"""Abuse limits: login emails that one client cannot use up for an address."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from html import unescape
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in
from security_support import AVA, CHEN

from flask_customer_portal import ratelimit
from flask_customer_portal.extension import get_state
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AppFactory = Callable[..., Flask]


# --- helpers ----------------------------------------------------------------------------------


def _from(app: Flask, address: str) -> FlaskClient:
    """A browser at ``address`` (the portal trusts no proxy: the connection's address counts)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _ask_for_link(app: Flask, client: FlaskClient, email: str) -> Any:
    page = client.get("/portal/login/biz_demo")
    response = client.post(
        "/portal/login/biz_demo", data={"email": email, "csrf_token": csrf_token_from(page.text)}
    )
    get_state(app).wait_for_background_tasks()
    return response


def _mails_to(mailer: MemoryMailer, address: str) -> int:
    return len([m for m in mailer.outbox if m.to == address])


def _scrub(html: str) -> str:
    return re.sub(r'value="[^"]+"', 'value=""', html)


def _field_value(html: str, name: str) -> str:
    match = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', html)
    assert match, f"no {name} field"
    value = re.search(r'\bvalue="([^"]*)"', match.group(0))
    return unescape(value.group(1)) if value else ""


def _signed_in(app: Flask, customer_id: str = AVA) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


# --- item 5: one client cannot use up an address's login emails --------------------------------


def test_item5_a_limited_client_cannot_use_up_an_address(make_app: AppFactory) -> None:
    """The scenario of the report, exactly: 30 junk requests from one client,
    then 5 for Ava from that (already limited) client; Ava, asking from
    another IP address, still gets her email."""
    mailer = MemoryMailer()
    shop = make_app(mailer=mailer)
    attacker = _from(shop, "203.0.113.7")
    for n in range(30):
        assert _ask_for_link(shop, attacker, f"junk{n}@example.net").status_code == 200
    for _ in range(5):
        assert _ask_for_link(shop, attacker, "ava@example.com").status_code == 200
    assert mailer.outbox == []

    assert _ask_for_link(shop, _from(shop, "198.51.100.20"), "ava@example.com").status_code == 200
    assert _mails_to(mailer, "ava@example.com") == 1


def test_item5_one_client_gets_at_most_part_of_an_address(make_app: AppFactory) -> None:
    """Not limited itself, one client gets 3 of the address's 5 emails an
    hour; the owner gets the rest, and the address never gets more than 5."""
    mailer = MemoryMailer()
    shop = make_app(mailer=mailer)
    attacker = _from(shop, "203.0.113.7")
    for _ in range(10):
        _ask_for_link(shop, attacker, "ava@example.com")
    assert _mails_to(mailer, "ava@example.com") == 3

    ava = _from(shop, "198.51.100.20")
    for _ in range(2):
        _ask_for_link(shop, ava, "ava@example.com")
    assert _mails_to(mailer, "ava@example.com") == 5
    for n in range(3):  # the documented ceiling still holds, whoever asks
        _ask_for_link(shop, _from(shop, f"192.0.2.{n}"), "ava@example.com")
    assert _mails_to(mailer, "ava@example.com") == 5


def test_item5_ipv6_addresses_of_one_network_are_one_client(make_app: AppFactory) -> None:
    mailer = MemoryMailer()
    shop = make_app(mailer=mailer)
    for n in range(1, 8):  # one line's /64 holds billions of addresses
        _ask_for_link(shop, _from(shop, f"2001:db8:1:2::{n:x}"), "ava@example.com")
    assert _mails_to(mailer, "ava@example.com") == 3
    _ask_for_link(shop, _from(shop, "2001:db8:9:9::1"), "ava@example.com")
    assert _mails_to(mailer, "ava@example.com") == 4
    key = ratelimit.client_key
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert key("::ffff:192.0.2.1") == "192.0.2.1"
    assert key("192.0.2.1") == "192.0.2.1"


def test_item5_refused_requests_get_the_same_page(make_app: AppFactory) -> None:
    """Sent, refused for the client, or refused for the pair: the same page,
    so the limits tell nobody whether an address is a customer's."""
    mailer = MemoryMailer()
    shop = make_app(mailer=mailer)
    sent = _ask_for_link(shop, _from(shop, "198.51.100.20"), "ava@example.com")
    pair = _from(shop, "203.0.113.8")
    for _ in range(3):
        _ask_for_link(shop, pair, "budi@example.com")
    refused_for_pair = _ask_for_link(shop, pair, "budi@example.com")
    limited = _from(shop, "203.0.113.7")
    for n in range(30):
        _ask_for_link(shop, limited, f"junk{n}@example.net")
    refused_for_client = _ask_for_link(shop, limited, "nobody@example.com")
    assert _mails_to(mailer, "budi@example.com") == 3
    pages = {
        _scrub(r.text)
        .replace("ava@example.com", "X")
        .replace("budi@example.com", "X")
        .replace("nobody@example.com", "X")
        for r in (sent, refused_for_pair, refused_for_client)
    }
    assert len(pages) == 1
    assert {sent.status_code, refused_for_pair.status_code, refused_for_client.status_code} == {200}


def test_item5_concurrent_requests_from_a_limited_client_cost_the_address_nothing() -> None:
    limits = ratelimit.LoginRateLimits(
        per_address="5 per hour", per_client="30 per hour", storage_uri="memory://", namespace="t"
    )
    for n in range(30):
        assert limits.hit(email=f"junk{n}@example.net", client="203.0.113.7")
    go = threading.Barrier(20)
    answers: list[bool] = []

    def ask() -> None:
        go.wait()
        answers.append(limits.hit(email="ava@example.com", client="203.0.113.7"))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [False] * 20
    # Ava's allowance is whole: five from five other places all pass.
    assert all(limits.hit(email="AVA@example.com", client=f"198.51.100.{n}") for n in range(5))
    assert not limits.hit(email="ava@example.com", client="198.51.100.99")


def test_item5_an_email_change_cannot_use_up_an_address_either(make_app: AppFactory) -> None:
    """The profile form counts on the same counters: a signed-in customer
    asking to move to someone else's address gets part of its allowance."""
    mailer = MemoryMailer()
    shop = make_app(mailer=mailer)
    chen = _signed_in(shop, CHEN)
    chen.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    for _ in range(5):
        page = chen.get("/portal/profile")
        values = {name: _field_value(page.text, name) for name in ("name", "phone")}
        chen.post(
            "/portal/profile",
            data={"csrf_token": csrf_token_from(page.text), "email": "ava@example.com", **values},
        )
    assert _mails_to(mailer, "ava@example.com") == 3
    _ask_for_link(shop, _from(shop, "198.51.100.20"), "ava@example.com")
    assert _mails_to(mailer, "ava@example.com") == 4
