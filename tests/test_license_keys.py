"""Licence keys: every key of the signed-in customer, masked, ready to copy."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import LicenseKey, LicenseKeyStatus
from flask_customer_portal.views.license_keys import mask_key

AVA_KEYS = ("ACME-SYNC-7K3Q-M9VX-2HPD-4RTA", "ACME-DESK-Q8WN-5ZLC-E6JB-1MYF")
BUDI_KEY = "ACME-SYNC-B4DI-8XQE-3NWS-6GTL"


def _cards(html: str) -> list[str]:
    return re.findall(r'<li class="card license-key">(.*?)</li>', html, flags=re.S)


def _copy_field_values(html: str) -> list[str]:
    return [
        unescape(v) for v in re.findall(r'class="field-input license-key-full"[^>]*value="([^"]*)"', html)
    ]


def test_ava_sees_her_two_keys_masked_with_the_full_key_to_copy(ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/license-keys")
    assert page.status_code == 200
    html = page.text
    cards = _cards(html)
    assert len(cards) == 2
    # Newest purchase first: the monthly Sync plan, then the yearly Desktop one.
    sync, desktop = cards
    assert "Acme Sync" in sync
    assert "ACME-••••-4RTA" in sync
    assert "Active" in sync
    assert "2 of 5" in sync
    assert "Never expires" in sync
    assert "Acme Desktop" in desktop
    assert "ACME-••••-1MYF" in desktop
    assert "Expired" in desktop
    assert "1 of 1" in desktop
    assert "Never expires" not in desktop
    # The full key is there, in a read-only field inside a <details>, so it
    # can be revealed and copied without JavaScript.
    assert _copy_field_values(html) == list(AVA_KEYS)
    for card, key in zip(cards, AVA_KEYS, strict=True):
        details = re.search(r"<details[^>]*>(.*?)</details>", card, flags=re.S)
        assert details, card
        # Its summary says what it does: "Show key" while closed, "Hide key" while open.
        assert (
            '<summary><span class="when-closed">Show key</span><span class="when-open">Hide key</span>'
            in (details.group(1))
        )
        assert f'value="{key}" readonly' in details.group(1)
        # Outside the details only the masked form is shown.
        outside = card.replace(details.group(0), "")
        assert key not in outside
    # A Copy button for each key, hidden until the script enables it.
    assert len(re.findall(r"<button type=\"button\"[^>]*\bhidden\b[^>]*data-copy-target=", html)) == 2
    # Each key has its own visible live region next to its Copy button.
    for index in (1, 2):
        assert f'<p class="license-copy-feedback" id="license-key-{index}-copied" role="status"' in html
        assert f'data-copy-status="license-key-{index}-copied"' in html
    assert 'data-copied-label="Copied"' in html


def test_the_copy_script_is_loaded_from_the_portal_and_served(ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/license-keys")
    assert '<script src="/portal/static/portal-copy.js" defer></script>' in page.text
    assert "<script>" not in page.text  # the CSP forbids inline scripts
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    script = ava_client.get("/portal/static/portal-copy.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]
    assert "data-copy-target" in script.text
    script.close()


def test_ava_sees_nothing_of_budi(ava_client: FlaskClient) -> None:
    html = ava_client.get("/portal/license-keys").text
    assert BUDI_KEY not in html
    assert "B4DI" not in html
    assert "6GTL" not in html
    assert "Budi" not in html


def test_budi_sees_his_one_key_in_indonesian(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_budi")
    page = client.get("/portal/license-keys")
    assert page.status_code == 200
    html = page.text
    assert '<html lang="id" dir="ltr">' in html
    assert "<title>Kunci Lisensi" in html
    cards = _cards(html)
    assert len(cards) == 1
    assert "Acme Sync" in cards[0]
    assert "ACME-••••-6GTL" in cards[0]
    assert "Aktif" in cards[0]
    assert _copy_field_values(html) == [BUDI_KEY]
    for key in AVA_KEYS:
        assert key not in html


def test_chen_without_purchases_sees_an_empty_state(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_chen")
    page = client.get("/portal/license-keys")
    assert page.status_code == 200
    assert "No licence keys" in page.text
    assert "Keys for software you buy will be listed here." in page.text
    assert _cards(page.text) == []
    assert "portal-copy.js" in page.text  # harmless: it finds no buttons


def test_unlimited_activations_and_expiry_date(app: Flask, client: FlaskClient) -> None:
    state = get_state(app)
    with app.app_context():
        store = state.storage
        assert isinstance(store, SQLAlchemyStorage)
        store.add_license_key(
            LicenseKey(
                id="lk_chen_site",
                customer_id="cus_demo_chen",
                key="SITEKEY-0123456789-ABCDEF",
                product_name="Acme Site <Pro>",
                status=LicenseKeyStatus.INACTIVE,
                activations=3,
                activation_limit=None,
                expires_at=datetime(2031, 3, 15, 20, 0, tzinfo=timezone.utc),
                created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
            )
        )
    sign_in(app, client, "cus_demo_chen")
    html = client.get("/portal/license-keys").text
    (card,) = _cards(html)
    assert "3 (no limit)" in card
    assert "Inactive" in card
    assert "March 16, 2031" in card  # already the 16th in Chen's time zone, Asia/Singapore
    assert "Acme Site &lt;Pro&gt;" in card  # escaped, never markup
    assert "Acme Site <Pro>" not in html
    assert "SITEKEY-••••-CDEF" in card


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/portal/license-keys")
    assert response.status_code == 302
    assert response.headers["Location"] == "/portal/login/biz_demo"


def test_the_page_is_read_only(ava_client: FlaskClient) -> None:
    assert ava_client.post("/portal/license-keys").status_code == 405


def test_the_page_is_in_the_navigation(ava_client: FlaskClient) -> None:
    html = ava_client.get("/portal/license-keys").text
    assert '<a href="/portal/license-keys" aria-current="page">Licence keys</a>' in html


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        ("ACME-SYNC-7K3Q-M9VX-2HPD-4RTA", "ACME-••••-4RTA"),
        ("ABCDEFGHIJKLMNOPQRSTUVWX", "ABCD••••UVWX"),
        # A first group longer than a third of the key would show too much.
        ("ABCDEFGHIJKLMNOP-QRST", "ABCD••••QRST"),
        ("SHORTKEY-1", "••••-1"),
        ("ABC", "••••"),
        ("  ACME-SYNC-7K3Q-M9VX-2HPD-4RTA \n", "ACME-••••-4RTA"),
    ],
)
def test_mask_key(key: str, masked: str) -> None:
    assert mask_key(key) == masked


@pytest.mark.parametrize(
    "key", ["ACME-SYNC-7K3Q-M9VX-2HPD-4RTA", "0123456789ABCDEF0123456789ABCDEF", "X" * 12, "a-b-c-d-e-f-g"]
)
def test_mask_key_shows_at_most_a_third_plus_the_last_four(key: str) -> None:
    visible = mask_key(key).replace("••••", "").replace("-", "")
    assert len(visible) <= max(6, len(key) // 3 + 4)
    assert key not in mask_key(key)
