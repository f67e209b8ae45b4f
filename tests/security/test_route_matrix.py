"""Every portal route against the attacks that matter, read from the URL map.

A new route is covered the day it is added: the matrix is built from
``app.url_map``, and a route whose URL has a part this file does not know
fails :func:`test_every_route_is_classified` until it is added below.

* signed out → sent to the static login page, nothing changes;
* customer A with customer B's ids → 404 for every method, nothing changes;
* every POST without a valid CSRF token → 400, nothing changes;
* a method the route does not take → 405;
* ids that are not ids (traversal, NUL, 10k characters, markup) → 404.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in
from werkzeug.routing import Rule

from flask_customer_portal.state import get_state
from flask_customer_portal.testing import csrf_token_from

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"

#: Budi's records, used as "someone else's ids" by Ava.
BUDIS_IDS = {
    "subscription_id": "sub_demo_budi_sync",
    "invoice_id": "inv_demo_budi_sync_03",
    "payment_method_id": "pm_demo_budi_card",
    "license_key_id": "lk_demo_budi_sync",
    "instance_id": "lki_demo_budi_laptop",
    # Sessions are made at sign-in (tests/test_sessions.py signs Budi in
    # and tries his real session id); here an id that is not Ava's.
    "session_id": "ses_demo_budi",
    # Budi has none: a credit note is reached only through its own invoice.
    "credit_note_id": "cn_demo_budi",
}

#: Avas's own records, for the CSRF checks (a missing token is refused even
#: on the customer's own records).
AVAS_IDS = {
    "subscription_id": "sub_demo_ava_sync",
    "invoice_id": "inv_demo_ava_sync_01",
    "payment_method_id": "pm_demo_ava_visa",
    "license_key_id": "lk_demo_ava_sync",
    "instance_id": "lki_demo_ava_macbook",
    "session_id": "ses_demo_ava",
    "credit_note_id": "cn_demo_ava",
}

#: Routes that are reached without being signed in: the static link and
#: the one-time links (their tokens are attacked in tests/test_access.py),
#: and logout.
PUBLIC_PARTS = {"business_id", "token"}

ODD_IDS = [
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "x" * 10_000,
    "%C3%BC%E2%80%AE",
    "%3Cscript%3E",
    "1%27%20OR%201%3D1",
]


def _portal_rules(app: Flask) -> list[Rule]:
    return sorted(
        (
            r
            for r in app.url_map.iter_rules()
            if r.endpoint.startswith("portal.") and r.endpoint != "portal.static"
        ),
        key=lambda r: r.rule,
    )


def _customer_rules(app: Flask) -> list[Rule]:
    return [
        r
        for r in _portal_rules(app)
        if not (set(r.arguments) & PUBLIC_PARTS) and r.endpoint != "portal.logout"
    ]


def _methods(rule: Rule) -> set[str]:
    return set(rule.methods or ()) - {"HEAD", "OPTIONS"}


def _url(rule: Rule, values: dict[str, str]) -> str:
    url = rule.rule
    for name in rule.arguments:
        url = url.replace(f"<{name}>", values[name])
    return url


def _snapshot(app: Flask, customer_id: str) -> tuple[Any, ...]:
    """Everything a customer has, as the store returns it."""
    with app.app_context():
        store = get_state(app).storage
        return (
            store.get_customer(customer_id),
            tuple(store.list_subscriptions(customer_id)),
            tuple(store.list_invoices(customer_id, page=1, per_page=1000).items),
            tuple(store.list_payment_methods(customer_id)),
            tuple(store.list_license_keys(customer_id)),
        )


def test_every_route_is_classified(app: Flask) -> None:
    known = set(BUDIS_IDS) | PUBLIC_PARTS
    for rule in _portal_rules(app):
        unknown = set(rule.arguments) - known
        assert not unknown, f"{rule.rule}: add {sorted(unknown)} to this matrix"
    # The contract's pages are all there.
    endpoints = {r.endpoint for r in _portal_rules(app)}
    assert {
        "portal.login",
        "portal.dashboard",
        "portal.invoices",
        "portal.invoice",
        "portal.invoice_pdf",
        "portal.subscriptions",
        "portal.subscription",
        "portal.cancel_subscription",
        "portal.payment_method",
        "portal.license_keys",
        "portal.profile",
        "portal.logout",
    } <= endpoints


def test_signed_out_visitors_are_sent_to_sign_in(app: Flask, client: FlaskClient) -> None:
    before = _snapshot(app, BUDI)
    for rule in _customer_rules(app):
        url = _url(rule, BUDIS_IDS)
        for method in _methods(rule):
            response = client.open(url, method=method, data={})
            if method == "GET":
                assert response.status_code == 302, (method, url, response.status_code)
                assert response.location.endswith("/portal/login/biz_demo"), url
            else:
                # No session, so no CSRF token either: refused before anything.
                assert response.status_code in (302, 400), (method, url, response.status_code)
    assert _snapshot(app, BUDI) == before


def test_another_customers_ids_are_not_found_for_every_method(app: Flask, ava_client: FlaskClient) -> None:
    before = _snapshot(app, BUDI)
    token = csrf_token_from(ava_client.get("/portal/").text)
    checked = 0
    for rule in _customer_rules(app):
        if not rule.arguments:
            continue
        url = _url(rule, BUDIS_IDS)
        for method in _methods(rule):
            data = {
                "csrf_token": token,
                "confirm": "yes",
                "payment_method": "new",
                "subscription_id": BUDIS_IDS["subscription_id"],
            }
            response = ava_client.open(url, method=method, data=data)
            assert response.status_code == 404, (method, url, response.status_code)
            assert "Budi" not in response.get_data(as_text=True)
            checked += 1
    assert checked >= 6
    assert _snapshot(app, BUDI) == before


def test_every_post_needs_a_csrf_token(app: Flask, ava_client: FlaskClient) -> None:
    before = _snapshot(app, AVA)
    posts = 0
    for rule in _customer_rules(app):
        if "POST" not in _methods(rule):
            continue
        url = _url(rule, AVAS_IDS)
        for data in ({}, {"csrf_token": "forged"}):
            response = ava_client.post(url, data={**data, "confirm": "yes", "name": "Mallory"})
            assert response.status_code == 400, (url, data, response.status_code)
        posts += 1
    response = ava_client.post("/portal/logout", data={})
    assert response.status_code == 400
    assert ava_client.get("/portal/").status_code == 200  # still signed in
    assert posts >= 3
    assert _snapshot(app, AVA) == before


def test_methods_a_route_does_not_take_are_refused(app: Flask, ava_client: FlaskClient) -> None:
    for rule in _portal_rules(app):
        values = {**AVAS_IDS, "business_id": "biz_demo", "token": "x"}
        url = _url(rule, values)
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - _methods(rule):
            response = ava_client.open(url, method=method)
            assert response.status_code == 405, (method, url, response.status_code)


@pytest.mark.parametrize("odd", ODD_IDS)
def test_ids_that_are_not_ids_are_not_found(app: Flask, ava_client: FlaskClient, odd: str) -> None:
    before = _snapshot(app, AVA)
    token = csrf_token_from(ava_client.get("/portal/").text)
    for rule in _customer_rules(app):
        for name in rule.arguments:
            url = _url(rule, {**AVAS_IDS, name: odd})
            for method in _methods(rule):
                response = ava_client.open(url, method=method, data={"csrf_token": token, "confirm": "yes"})
                assert response.status_code == 404, (method, url[:80], response.status_code)
    assert _snapshot(app, AVA) == before


def test_a_signed_in_customer_sees_only_their_own_records(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, BUDI)
    for rule in _customer_rules(app):
        if rule.arguments or "GET" not in _methods(rule):
            continue
        body = client.get(rule.rule).get_data()  # bytes: some routes are downloads (ZIP, CSV, ICS)
        for foreign in ("ava@example.com", "Ava ", "sub_demo_ava", "inv_demo_ava", "pm_demo_ava"):
            assert foreign.encode() not in body, (rule.rule, foreign)
