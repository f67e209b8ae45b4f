"""Abuse limits: login emails that one client cannot use up for an address,
card attaches per customer (card testing), and bounded, rate-limited
exports."""

from __future__ import annotations

import io
import re
import threading
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from html import unescape
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in
from security_support import AVA, BUDI, CHEN

from flask_customer_portal import ratelimit
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Page, PaymentMethod
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

AppFactory = Callable[..., Flask]

AVA_SUB = "sub_demo_ava_sync"
PAYMENT_URL = f"/portal/subscriptions/{AVA_SUB}/payment-method"
NEXT_YEAR = str(datetime.now(timezone.utc).year + 1)

TOO_MANY_CARDS = (
    "You have tried to add too many cards recently, so we cannot take another one now. "
    "Pay with a saved card, or add the card after"
)
CARD_CAP = "You already have 10 saved cards, the most an account can keep. Remove a card you no longer use, then add the new one."


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


def _card_number(n: int) -> str:
    """The ``n``-th Luhn-valid Visa-like number (a card tester's list)."""
    body = f"4111{n:011d}"
    total = 0
    for i, digit in enumerate(reversed(body)):
        d = int(digit)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def _post_card(client: FlaskClient, number: str, url: str = PAYMENT_URL) -> Any:
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    intent = re.search(r'name="intent" value="(\w+)"', page.text)
    return client.post(
        url,
        data={
            "csrf_token": csrf_token_from(page.text),
            "intent": intent.group(1) if intent else "",
            "payment_method": "new",
            "card_number": number,
            "exp_month": "12",
            "exp_year": NEXT_YEAR,
            "cvc": "123",
        },
    )


def _methods(app: Flask, customer_id: str = AVA) -> list[PaymentMethod]:
    with app.app_context():
        return list(get_state(app).storage.list_payment_methods(customer_id))


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


# --- item 6: card testing -------------------------------------------------------------------


def test_item6_sixth_new_card_in_an_hour_gets_429_without_a_provider_call(make_app: AppFactory) -> None:
    payments = TestPaymentProvider()
    shop = make_app(payments=payments)
    ava = _signed_in(shop)
    for n in range(5):
        assert _post_card(ava, _card_number(n)).status_code == 303
    assert payments.calls.count("attach_card") == 5

    for n in range(5, 60):  # the rest of the tester's list
        response = _post_card(ava, _card_number(n))
        assert response.status_code == 429
    assert payments.calls.count("attach_card") == 5
    assert len(_methods(shop)) == 1 + 5
    assert TOO_MANY_CARDS in response.text
    assert 'class="portal-nav"' in response.text  # the portal's own layout
    assert int(response.headers["Retry-After"]) > 3000
    assert _card_number(59) not in response.text
    # A saved card still works.
    page = ava.get(PAYMENT_URL)
    saved = ava.post(
        PAYMENT_URL,
        data={
            "csrf_token": csrf_token_from(page.text),
            "intent": "change",
            "payment_method": "pm_demo_ava_visa",
        },
    )
    assert saved.status_code == 303


def test_item6_eleventh_saved_card_gets_422_by_the_field(make_app: AppFactory) -> None:
    payments = TestPaymentProvider()
    shop = make_app(payments=payments)
    with shop.app_context():
        store = get_state(shop).storage
        for n in range(9):
            store.add_payment_method(
                PaymentMethod(
                    id=f"pm_extra_{n}",
                    customer_id=AVA,
                    brand="visa",
                    last4=f"{n:04d}",
                    exp_month=12,
                    exp_year=int(NEXT_YEAR) + 1,
                    provider_token=TestPaymentProvider.token_for("4242424242424242"),
                )
            )
    assert len(_methods(shop)) == 10
    ava = _signed_in(shop)
    response = _post_card(ava, "4242424242424242")
    assert response.status_code == 422
    assert payments.calls == []
    assert len(_methods(shop)) == 10
    message = re.search(r'<p class="field-message" id="payment_method-error">([^<]*)</p>', response.text)
    assert message is not None
    assert message.group(1).replace("&#39;", "'") == CARD_CAP
    assert "4242424242424242" not in response.text

    page = ava.get(PAYMENT_URL)  # remove one, then the new card goes in
    removed = ava.post(
        "/portal/payment-methods/pm_extra_0/remove",
        data={"csrf_token": csrf_token_from(page.text), "subscription_id": AVA_SUB},
    )
    assert removed.status_code == 303
    assert _post_card(ava, "4242424242424242").status_code == 303
    assert payments.calls == ["attach_card"]


def test_item6_card_counters_are_per_customer_and_per_app(make_app: AppFactory) -> None:
    shops = [make_app(CUSTOMER_PORTAL_CARD_ATTACH_LIMIT="1 per hour") for _ in range(2)]
    for shop in shops:
        ava = _signed_in(shop)
        assert _post_card(ava, _card_number(1)).status_code == 303
        assert _post_card(ava, _card_number(2)).status_code == 429
    budi = _signed_in(shops[0], BUDI)
    response = _post_card(
        budi, _card_number(3), url="/portal/subscriptions/sub_demo_budi_sync/payment-method"
    )
    assert response.status_code != 429


class _OwnPageProvider(TestPaymentProvider):
    """A provider that takes new cards on its own page (as Dodo does)."""

    accepts_raw_cards = False

    def new_method_page(self, *, subscription_id: str, return_url: str) -> str:
        self.calls.append("new_method_page")
        return f"https://pay.example/method/{subscription_id}"


def test_item6_the_providers_own_card_page_is_limited_too(make_app: AppFactory) -> None:
    payments = _OwnPageProvider()
    shop = make_app(payments=payments, CUSTOMER_PORTAL_CARD_ATTACH_LIMIT="2 per hour")
    ava = _signed_in(shop)

    def choose_new() -> Any:
        page = ava.get(PAYMENT_URL)
        return ava.post(
            PAYMENT_URL,
            data={"csrf_token": csrf_token_from(page.text), "intent": "change", "payment_method": "new"},
        )

    assert choose_new().status_code == 303
    assert choose_new().status_code == 303
    refused = choose_new()
    assert refused.status_code == 429
    assert TOO_MANY_CARDS in refused.text
    assert payments.calls == ["new_method_page", "new_method_page"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CUSTOMER_PORTAL_CARD_ATTACH_LIMIT", 5),
        ("CUSTOMER_PORTAL_CARD_ATTACH_LIMIT", "lots"),
        ("CUSTOMER_PORTAL_MAX_SAVED_CARDS", 0),
        ("CUSTOMER_PORTAL_MAX_SAVED_CARDS", "10"),
        ("CUSTOMER_PORTAL_EXPORT_RATE_LIMIT", "often"),
        ("CUSTOMER_PORTAL_EXPORT_MAX_INVOICES", -1),
        ("CUSTOMER_PORTAL_EXPORT_MAX_INVOICES", True),
    ],
)
def test_item6_item7_bad_limits_stop_the_app(make_app: AppFactory, key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_app(**{key: value})
    assert caught.value.key == key


# --- item 7: exports ---------------------------------------------------------------------------


class _CountingRenderer:
    def __init__(self) -> None:
        self.calls = 0

    def render(self, document: Any) -> bytes:
        self.calls += 1
        return f"%PDF-1.4 {document.invoice.number}".encode()


def _invoice_count(app: Flask, customer_id: str = AVA) -> int:
    with app.app_context():
        return get_state(app).storage.list_invoices(customer_id, page=1, per_page=1).total


def test_item7_zip_over_the_cap_is_refused_with_a_clear_page(make_app: AppFactory) -> None:
    shop = make_app(CUSTOMER_PORTAL_EXPORT_MAX_INVOICES=3, CUSTOMER_PORTAL_SUPPORT_EMAIL="help@shop.test")
    renderer = _CountingRenderer()
    get_state(shop).invoice_renderer = renderer
    ava = _signed_in(shop)
    count = _invoice_count(shop)
    assert count > 3

    response = ava.get("/portal/invoices/export.zip")
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert renderer.calls == 0
    text = response.text
    assert f"You have {count} invoices, more than one ZIP download can hold (3), so no ZIP was made." in text
    assert 'href="/portal/invoices/export.csv"' in text
    assert "help@shop.test" in text
    assert 'class="portal-nav"' in text
    # The billing history says so instead of offering the ZIP.
    history = ava.get("/portal/invoices").text
    assert 'href="/portal/invoices/export.zip"' not in history
    assert "more invoices than one ZIP can hold (3)" in history
    assert 'href="/portal/invoices/export.csv"' in history


def test_item7_zip_at_the_cap_holds_every_invoice(make_app: AppFactory) -> None:
    probe = make_app()
    count = _invoice_count(probe)
    shop = make_app(CUSTOMER_PORTAL_EXPORT_MAX_INVOICES=count)
    get_state(shop).invoice_renderer = _CountingRenderer()
    archive = zipfile.ZipFile(io.BytesIO(_signed_in(shop).get("/portal/invoices/export.zip").data))
    assert len(archive.namelist()) == count
    assert "README.txt" not in archive.namelist()


def test_item7_invoices_beyond_the_cap_while_zipping_are_named_in_a_readme(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invoices that arrive between the count and the archive (or a store
    whose count is short) never make a silently incomplete archive."""
    shop = make_app(CUSTOMER_PORTAL_EXPORT_MAX_INVOICES=3)
    renderer = _CountingRenderer()
    get_state(shop).invoice_renderer = renderer
    ava = _signed_in(shop)
    store = get_state(shop).storage
    monkeypatch.setattr(
        store, "list_invoices", lambda customer_id, *, page, per_page: Page((), page, per_page, 3)
    )
    archive = zipfile.ZipFile(io.BytesIO(ava.get("/portal/invoices/export.zip").data))
    assert archive.testzip() is None
    names = archive.namelist()
    assert len(names) == 4 and names[-1] == "README.txt"
    assert renderer.calls == 3
    assert archive.read("README.txt").decode().startswith("This archive holds only your newest 3 invoices")


def test_item7_exports_are_rate_limited_per_customer(make_app: AppFactory) -> None:
    shop = make_app(CUSTOMER_PORTAL_EXPORT_RATE_LIMIT="2 per hour")
    get_state(shop).invoice_renderer = _CountingRenderer()
    ava = _signed_in(shop)
    for _ in range(2):
        assert ava.get("/portal/invoices/export.zip").status_code == 200
    refused = ava.get("/portal/invoices/export.zip")
    assert refused.status_code == 429
    assert refused.mimetype == "text/html"
    assert "You have downloaded this file too many times recently." in refused.text
    assert 'href="/portal/invoices"' in refused.text
    assert int(refused.headers["Retry-After"]) > 3000
    assert refused.headers["Cache-Control"] == "no-store"
    # Each file has its own allowance; so has each customer.
    for _ in range(2):
        assert ava.get("/portal/invoices/export.csv").status_code == 200
        assert ava.get("/portal/subscriptions/renewals.ics").status_code == 200
    assert ava.get("/portal/invoices/export.csv").status_code == 429
    ics = ava.get("/portal/subscriptions/renewals.ics")
    assert ics.status_code == 429
    assert 'href="/portal/subscriptions"' in ics.text
    assert _signed_in(shop, CHEN).get("/portal/invoices/export.zip").status_code == 200


def test_item7_export_counters_are_per_app(make_app: AppFactory) -> None:
    shops = [make_app(CUSTOMER_PORTAL_EXPORT_RATE_LIMIT="1 per hour") for _ in range(2)]
    for shop in shops:
        ava = _signed_in(shop)
        assert ava.get("/portal/invoices/export.csv").status_code == 200
        assert ava.get("/portal/invoices/export.csv").status_code == 429


def test_item7_zip_is_still_streamed(make_app: AppFactory) -> None:
    """The first bytes leave after one PDF, not after all of them: a
    generator that holds one file at a time."""
    shop = make_app()
    renderer = _CountingRenderer()
    get_state(shop).invoice_renderer = renderer
    ava = _signed_in(shop)
    count = _invoice_count(shop)
    response = ava.get("/portal/invoices/export.zip", buffered=False)
    assert response.status_code == 200
    assert response.is_streamed
    chunks = iter(response.response)
    first = next(chunks)
    assert first.startswith(b"PK")
    assert renderer.calls == 1
    body = first + b"".join(chunks)
    response.close()
    assert renderer.calls == count
    assert len(zipfile.ZipFile(io.BytesIO(body)).namelist()) == count
