"""Every portal form against any text: NUL bytes, 10,000 characters,
unicode of every kind, markup, format strings, invalid UTF-8.

The properties, for each form: the answer is never a 5xx; it is a 2xx, a
3xx or a 4xx; and when it is a 4xx, the customer's saved records (read
through the storage API) are exactly what they were before. The login form
is held to more: a 4xx leaves every row of every portal table as it was
and sends no mail. Each property runs on one app per test and compares
before and after every example, so examples may build on each other (a
card added by one is there for the next) without weakening the check.
The later forms are in :mod:`test_forms_property_more`, which also fails
when a POST endpoint has no property test.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from portal_fixtures import sign_in
from security_support import AVA, BUDI, db_dump, records

from flask_customer_portal.state import get_state
from flask_customer_portal.storage import PaymentMethod
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

#: Hypothesis drives each form with hundreds of inputs: left out of `make check`.
pytestmark = pytest.mark.slow

AVA_SUB = "sub_demo_ava_sync"
BUDI_SUB = "sub_demo_budi_sync"
NEXT_YEAR = str(datetime.now(timezone.utc).year + 1)

PROPERTY = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_NASTY = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "ava@example.com\x00@evil.example",
        "x" * 10_000,
        "9" * 5000,  # more digits than int() takes
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "\u202e\u2066",
        "\ufeff",
        "'; DROP TABLE portal_customers; --",
        "%(name)s {{ 7*7 }} {0} %s",
        "../../etc/passwd",
        "\r\nBcc: victim@example.com",
        "\uff14\uff12" * 8,  # fullwidth digits
        "\u0664\u0662" * 8,  # Arabic-Indic digits
        "\U0001d7d2\U0001d7d0" * 8,  # mathematical digits
        "🙂" * 300,
        "\uff21\uff36\uff21\uff20example\uff0ecom",  # fullwidth @ and .
        "ava@exa\u200bmple.com",
    ]
)
ANY_TEXT = st.one_of(st.text(), st.text(min_size=200, max_size=400), _NASTY)


def _csrf(real: str, fuzzed: str | None) -> str:
    return real if fuzzed is None else fuzzed


#: ``None`` means "the page's real CSRF token"; most examples send it, the
#: others any text (a middle value: Hypothesis favours the ends of a range).
CSRF = st.tuples(st.integers(0, 9), ANY_TEXT).map(lambda drawn: drawn[1] if drawn[0] == 5 else None)


def forms(valid: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """Form data: every field any text, every field plausible, or every
    field plausible but one."""
    everything_fuzzed = st.fixed_dictionaries(
        {name: st.one_of(ANY_TEXT, good) for name, good in valid.items()}
    )

    def one_fuzzed(name: str) -> st.SearchStrategy[dict[str, str]]:
        return st.fixed_dictionaries({**valid, name: ANY_TEXT})

    return st.one_of(everything_fuzzed, st.fixed_dictionaries(valid), *(one_fuzzed(name) for name in valid))


def _assert_answer(response: Any, *, record: bool = True) -> int:
    status = int(response.status_code)
    assert 200 <= status < 500, status
    assert "Traceback" not in response.get_data(as_text=True)
    if record:
        event(f"status {status}")
    return status


# --- the static login page -------------------------------------------------------------


@PROPERTY
@given(
    email=st.one_of(ANY_TEXT, st.emails(), st.just("ava@example.com"), st.just("BUDI@example.com")), csrf=CSRF
)
def test_login_email(shop: Flask, mailer: MemoryMailer, email: str, csrf: str | None) -> None:
    client = shop.test_client()
    real = csrf_token_from(client.get("/portal/login/biz_demo").text)
    state = get_state(shop)
    state.wait_for_background_tasks()
    before, sent = db_dump(shop), len(mailer.outbox)
    response = client.post("/portal/login/biz_demo", data={"email": email, "csrf_token": _csrf(real, csrf)})
    state.wait_for_background_tasks()
    status = _assert_answer(response)
    if status >= 400:
        assert db_dump(shop) == before
        assert len(mailer.outbox) == sent
    else:
        assert status == 200
        assert "on its way" in response.text


# --- the profile ------------------------------------------------------------------------


@PROPERTY
@given(
    name=st.one_of(ANY_TEXT, st.just("Ava Thompson")),
    email=st.one_of(ANY_TEXT, st.just("ava@example.com"), st.emails()),
    phone=st.one_of(ANY_TEXT, st.just("+14155550123"), st.just("0812 3456 7890")),
    csrf=CSRF,
)
def test_profile(
    shop: Flask, ava: FlaskClient, mailer: MemoryMailer, name: str, email: str, phone: str, csrf: str | None
) -> None:
    real = csrf_token_from(ava.get("/portal/profile").text)
    before, sent = records(shop, AVA), len(mailer.outbox)
    response = ava.post(
        "/portal/profile",
        data={"name": name, "email": email, "phone": phone, "csrf_token": _csrf(real, csrf)},
    )
    status = _assert_answer(response)
    if status >= 400:
        assert records(shop, AVA) == before
        assert len(mailer.outbox) == sent
    # Only a confirmed link changes the address, whatever was typed.
    assert records(shop, AVA)[0].email == before[0].email


# --- forms that only confirm (cancel, keep, remove a card) ----------------------------------

EXTRA_CARD = "pm_extra_ava_mastercard"
CONFIRM_FORMS = [
    pytest.param(f"/portal/subscriptions/{AVA_SUB}/cancel", id="cancel"),
    pytest.param(f"/portal/subscriptions/{AVA_SUB}/resume", id="keep"),
    pytest.param(f"/portal/payment-methods/{EXTRA_CARD}/remove", id="remove-card"),
]


def _ready_to(app: Flask, client: FlaskClient, path: str, token: str) -> None:
    """Put Ava's records where the form can do its job, so that every
    example can succeed: a subscription to cancel, one set to end to keep,
    a card nobody uses to remove."""
    with app.app_context():
        store = get_state(app).storage
        subscription = store.get_subscription(AVA, AVA_SUB)
        assert subscription is not None
        if path.endswith("/cancel") and subscription.cancel_at_period_end:
            assert (
                client.post(f"/portal/subscriptions/{AVA_SUB}/resume", data={"csrf_token": token}).status_code
                == 303
            )
        elif path.endswith("/resume") and not subscription.cancel_at_period_end:
            cancel = {"csrf_token": token, "confirm": "yes"}
            assert client.post(f"/portal/subscriptions/{AVA_SUB}/cancel", data=cancel).status_code == 303
        elif path.endswith("/remove") and store.get_payment_method(AVA, EXTRA_CARD) is None:
            store.add_payment_method(
                PaymentMethod(
                    id=EXTRA_CARD,
                    customer_id=AVA,
                    brand="mastercard",
                    last4="4444",
                    exp_month=10,
                    exp_year=int(NEXT_YEAR) + 2,
                    provider_token=TestPaymentProvider.token_for("5555555555554444"),
                )
            )


@pytest.mark.parametrize("path", CONFIRM_FORMS)
@PROPERTY
@given(
    confirm=st.one_of(ANY_TEXT, st.just("yes")),
    subscription_id=st.one_of(ANY_TEXT, st.just(AVA_SUB), st.just(BUDI_SUB)),
    csrf=CSRF,
)
def test_confirm_forms(
    shop: Flask, ava: FlaskClient, path: str, confirm: str, subscription_id: str, csrf: str | None
) -> None:
    real = csrf_token_from(ava.get("/portal/").text)
    _ready_to(shop, ava, path, real)
    before = (records(shop, AVA), records(shop, BUDI))
    response = ava.post(
        path, data={"confirm": confirm, "subscription_id": subscription_id, "csrf_token": _csrf(real, csrf)}
    )
    status = _assert_answer(response)
    if status >= 400:
        assert (records(shop, AVA), records(shop, BUDI)) == before
    if status == 303:
        # Back to a portal page: never to a place named by the form.
        assert response.headers["Location"].startswith("/portal/")
    assert records(shop, BUDI) == before[1]  # never another customer's


# --- the payment method ---------------------------------------------------------------------


def _digits_in(html: str) -> str:
    """The page without CSRF tokens, where long digit runs could be chance."""
    return re.sub(r'value="[^"]*"', 'value=""', html)


_PAYMENT = forms(
    {
        "payment_method": st.sampled_from(["new", "pm_demo_ava_visa", "pm_demo_budi_card"]),
        "card_number": st.one_of(
            st.sampled_from(
                ["4242424242424242", "4242 4242 4242 4242", "4000000000000002", "4000000000009995"]
            ),
            st.from_regex(r"4[0-9]{15}", fullmatch=True),
        ),
        "exp_month": st.integers(1, 12).map(str),
        "exp_year": st.sampled_from([NEXT_YEAR, NEXT_YEAR[2:], str(int(NEXT_YEAR) + 5)]),
        "cvc": st.from_regex(r"[0-9]{3}", fullmatch=True),
        "payment_token": st.just(""),
    }
)


@pytest.mark.parametrize(
    ("customer_id", "subscription_id"),
    [pytest.param(AVA, AVA_SUB, id="active"), pytest.param(BUDI, BUDI_SUB, id="on-hold")],
)
@PROPERTY
@given(data=_PAYMENT, intent=st.one_of(st.none(), st.none(), ANY_TEXT), csrf=CSRF)
def test_payment_method(
    shop: Flask,
    customer_id: str,
    subscription_id: str,
    data: dict[str, str],
    intent: str | None,
    csrf: str | None,
) -> None:
    client = _signed_in(shop, customer_id)
    url = f"/portal/subscriptions/{subscription_id}/payment-method"
    page = client.get(url)
    assert page.status_code == 200
    shown_intent = re.search(r'name="intent" value="(\w+)"', page.text)
    before = (records(shop, AVA), records(shop, BUDI))
    response = client.post(
        url,
        data={
            **data,
            "intent": intent if intent is not None else (shown_intent.group(1) if shown_intent else ""),
            "csrf_token": _csrf(csrf_token_from(page.text), csrf),
        },
    )
    status = _assert_answer(response)
    if status >= 400:
        assert (records(shop, AVA), records(shop, BUDI)) == before
    other = BUDI if customer_id == AVA else AVA
    assert records(shop, other) == before[1 if other == BUDI else 0]
    # A card number is never shown back, whatever happened.
    number = re.sub(r"[\s-]", "", data["card_number"])
    if len(number) >= 12 and number.isascii() and number.isdigit():
        assert number not in _digits_in(response.get_data(as_text=True))


_CLIENTS: dict[tuple[int, str], FlaskClient] = {}


def _signed_in(app: Flask, customer_id: str) -> FlaskClient:
    """One signed-in browser per app and customer, for every example."""
    key = (id(app), customer_id)
    client = _CLIENTS.get(key)
    if client is None or client.application is not app:
        client = app.test_client()
        sign_in(app, client, customer_id)
        _CLIENTS.clear()
        _CLIENTS[key] = client
    return client


# --- bytes that are not UTF-8 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        pytest.param("/portal/login/biz_demo", ["email"], id="login"),
        pytest.param("/portal/profile", ["name", "email", "phone"], id="profile"),
        pytest.param(f"/portal/subscriptions/{AVA_SUB}/cancel", ["confirm"], id="cancel"),
        pytest.param(
            f"/portal/subscriptions/{AVA_SUB}/payment-method",
            ["payment_method", "card_number", "exp_month", "exp_year", "cvc"],
            id="payment-method",
        ),
        pytest.param(
            "/portal/profile/billing",
            ["name", "line1", "line2", "city", "region", "postal_code", "country", "tax_id_scheme", "tax_id"],
            id="billing-details",
        ),
        pytest.param(
            f"/portal/subscriptions/{AVA_SUB}/cancel/reason", ["reason", "reason_text"], id="reason"
        ),
        pytest.param(f"/portal/subscriptions/{AVA_SUB}/cancel/offer", ["reason", "reason_text"], id="offer"),
        pytest.param(
            f"/portal/subscriptions/{AVA_SUB}/plan", ["step", "plan", "quantity", "quote"], id="plan"
        ),
        pytest.param("/portal/language", ["language", "next"], id="language"),
        # Pausing is off in this shop: test_forms_property_more sends these to a shop that pauses.
    ],
)
def test_invalid_utf8_in_every_field(shop: Flask, ava: FlaskClient, path: str, fields: list[str]) -> None:
    token = csrf_token_from(ava.get("/portal/").text)
    before = db_dump(shop)
    for bad in ("%FF%FE", "%C0%AF", "%ED%A0%80", "%00%FF"):
        body = "&".join([f"csrf_token={token}", *(f"{name}={bad}" for name in fields)])
        response = ava.post(path, data=body, content_type="application/x-www-form-urlencoded")
        status = _assert_answer(response, record=False)
        assert status >= 400 or path.endswith("/cancel"), (path, bad, status)
        get_state(shop).wait_for_background_tasks()
        assert db_dump(shop) == before
