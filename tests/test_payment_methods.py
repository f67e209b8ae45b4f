"""The payment-method page: changing a subscription's card, reactivating an
``on_hold`` subscription with it, validation beside each field, card data
never echoed, logged or stored, removing saved cards, and scoping."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from babel.support import Translations
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, sign_in, stored_subscription
from sqlalchemy import text

from flask_customer_portal import i18n, signals
from flask_customer_portal.money import Money
from flask_customer_portal.payments import (
    CardDetails,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeResult,
    ChargeSucceeded,
    ChargeUnknown,
    DeclineReason,
    MethodAttached,
    MethodDeclined,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    AuditEvent,
    Invoice,
    InvoiceStatus,
    PaymentMethod,
    Subscription,
    SubscriptionStatus,
)
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
AVA_SUB = "sub_demo_ava_sync"
AVA_PAST_SUB = "sub_demo_ava_desktop"
AVA_VISA = "pm_demo_ava_visa"
BUDI_SUB = "sub_demo_budi_sync"
BUDI_CARD = "pm_demo_budi_card"
BUDI_INVOICE = "inv_demo_budi_sync_03"
#: Budi's open invoice: Rp150.000 plus 11 % tax, in sen.
BUDI_DUE = Money(16_650_000, "IDR")

GOOD = "4242424242424242"
DECLINES = "4000000000000002"
NO_FUNDS = "4000000000009995"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
NEXT_YEAR = str(datetime.now(timezone.utc).year + 1)


@functools.cache
def _indonesian() -> Translations:
    return Translations.load(str(i18n.TRANSLATIONS_DIR), ["id"], domain="customer_portal")


def said_to_budi(message: str, **values: str) -> str:
    """``message`` as Budi reads it: in Indonesian."""
    return _indonesian().gettext(message) % values if values else _indonesian().gettext(message)


def said_to(customer_id: str, message: str) -> str:
    return said_to_budi(message) if customer_id == BUDI else message


def _url(subscription_id: str) -> str:
    return f"/portal/subscriptions/{subscription_id}/payment-method"


# -- helpers -----------------------------------------------------------------------


def _invoice(app: Flask, customer_id: str, invoice_id: str) -> Invoice:
    with app.app_context():
        found = get_state(app).storage.get_invoice(customer_id, invoice_id)
    assert found is not None
    return found


def _methods(app: Flask, customer_id: str) -> list[PaymentMethod]:
    with app.app_context():
        return list(get_state(app).storage.list_payment_methods(customer_id))


def _events(app: Flask, customer_id: str, prefix: str = "payment_method.") -> list[AuditEvent]:
    with app.app_context():
        events = get_state(app).storage.list_events(customer_id)  # type: ignore[attr-defined]
    return [e for e in events if e.action.startswith(prefix)]


def _add_method(app: Flask, customer_id: str, number: str = MASTERCARD, **changes: Any) -> PaymentMethod:
    method = PaymentMethod(
        id=changes.pop("id", f"pm_extra_{customer_id}_{number[-4:]}"),
        customer_id=customer_id,
        brand=changes.pop("brand", "mastercard"),
        last4=number[-4:],
        exp_month=changes.pop("exp_month", 10),
        exp_year=changes.pop("exp_year", datetime.now(timezone.utc).year + 2),
        provider_token=TestPaymentProvider.token_for(number, **changes),
    )
    with app.app_context():
        return get_state(app).storage.add_payment_method(method)


def _card(number: str, *, month: str = "12", year: str = NEXT_YEAR, cvc: str = "123") -> dict[str, str]:
    return {"payment_method": "new", "card_number": number, "exp_month": month, "exp_year": year, "cvc": cvc}


def _post(client: FlaskClient, subscription_id: str, data: dict[str, str], **kwargs: Any) -> Any:
    """Submit the payment-method form as the page renders it (CSRF token and
    the ``intent`` it states), with ``data`` as the customer's input."""
    page = client.get(_url(subscription_id))
    assert page.status_code == 200, page.status_code
    fields = {"csrf_token": csrf_token_from(page.text)}
    intent = re.search(r'name="intent" value="(\w+)"', page.text)
    if intent:
        fields["intent"] = intent.group(1)
    fields.update(data)
    return client.post(_url(subscription_id), data=fields, **kwargs)


def _field_error(html: str, field_id: str) -> str:
    """The message shown beside one field (the ``field`` macro's markup)."""
    match = re.search(rf'<p class="field-message" id="{re.escape(field_id)}-error">([^<]*)</p>', html)
    assert match, f"no error beside {field_id}"
    assert re.search(rf'aria-describedby="[^"]*\b{re.escape(field_id)}-error"', html), (
        f"{field_id} not described"
    )
    return match.group(1)


def _alert(html: str) -> str:
    """The text of the problem said at the top of the page, tags stripped."""
    match = re.search(
        r'<div class="notice payment-problem" role="alert" id="payment-problem">(.*?)</div>', html, re.S
    )
    assert match, "no problem at the top of the page"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def _scrubbed(html: str) -> str:
    """The page without its random parts (CSRF tokens, saved-method ids),
    where digits could turn up by chance."""
    html = re.sub(r'value="[^"]*"(?=[^>]*name="csrf_token")|(?<=name="csrf_token") value="[^"]*"', "", html)
    html = re.sub(r'name="csrf_token"[^>]*>', ">", html)
    return re.sub(r"pm_[0-9a-f]{24}", "pm_", html)


@pytest.fixture
def budi_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, BUDI)
    return client


@pytest.fixture
def received() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Every payment-method signal the portal sends during the test."""
    caught: dict[str, list[dict[str, Any]]] = {"changed": [], "removed": [], "reactivated": [], "failed": []}

    def recorder(name: str) -> Any:
        def record(sender: Any, **kwargs: Any) -> None:
            caught[name].append(kwargs)

        return record

    receivers = {
        "changed": (signals.payment_method_changed, recorder("changed")),
        "removed": (signals.payment_method_removed, recorder("removed")),
        "reactivated": (signals.reactivation_succeeded, recorder("reactivated")),
        "failed": (signals.reactivation_failed, recorder("failed")),
    }
    for signal, receiver in receivers.values():
        signal.connect(receiver)
    try:
        yield caught
    finally:
        for signal, receiver in receivers.values():
            signal.disconnect(receiver)


def _app_with(tmp_path: Path, payments: Any, mailer: MemoryMailer | None = None, **config: Any) -> Flask:
    return make_portal_app(
        f"sqlite:///{tmp_path / 'other.db'}", mailer=mailer or MemoryMailer(), payments=payments, **config
    )


@pytest.fixture
def cleanup() -> Iterator[list[Flask]]:
    apps: list[Flask] = []
    yield apps
    for app in apps:
        get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


# -- the page ------------------------------------------------------------------------


def test_budi_sees_why_his_subscription_is_on_hold_and_what_is_due(budi_client: FlaskClient) -> None:
    page = budi_client.get(_url(BUDI_SUB))
    assert page.status_code == 200
    html = page.text
    assert '<html lang="id" dir="ltr">' in html
    assert "Acme Sync" in html and "Pro (bulanan)" in html
    assert "badge-on_hold" in html
    assert "Bank menolak pembayaran ini." in html  # hold_reason, in Indonesian
    assert "Rp166.500" in html  # the open invoice with tax, not the bare price
    assert f'href="/portal/invoices/{BUDI_INVOICE}"' in html
    assert "Visa •••• 0002" in html
    assert said_to_budi("Pay %(amount)s and reactivate", amount="Rp166.500") in html
    # The form is open at once, and the card that failed is not chosen for him.
    assert "<details" not in html and "<summary" not in html
    assert f'value="{BUDI_CARD}"' in html
    assert not re.search(rf'value="{BUDI_CARD}"\s+checked', html)
    assert 'value="new"' in html
    assert 'name="intent" value="reactivate"' in html
    # Test mode: the raw card fields and the test cards to use.
    for name in ("card_number", "exp_month", "exp_year", "cvc"):
        assert f'name="{name}"' in html
    assert "4242&nbsp;4242&nbsp;4242&nbsp;4242" in html
    assert "4000&nbsp;0000&nbsp;0000&nbsp;9995" in html
    # Saved cards are managed on the account's page.
    assert "/remove" not in html
    assert 'href="/portal/payment-methods"' in html


def test_ava_sees_her_card_and_the_form_to_change_it(ava_client: FlaskClient) -> None:
    page = ava_client.get(_url(AVA_SUB))
    assert page.status_code == 200
    html = page.text
    assert "Payment method for Acme Sync" in html
    assert "Visa •••• 4242" in html
    assert "expires 12/" in html
    # One form, open: no Edit toggle to open or collapse it.
    assert "<details" not in html and "<summary" not in html and ">Edit<" not in html
    assert re.search(rf'value="{AVA_VISA}"\s+checked', html)  # her working card is the choice
    # The new card's fields are one group: number, then expiry and security code side by side.
    group = html[html.index('<fieldset class="payment-new-card">') : html.index('id="cvc-hint"')]
    assert group.index('name="card_number"') < group.index('class="payment-card-row"')
    row = group[group.index('class="payment-card-row"') :]
    assert row.index('name="exp_month"') < row.index('name="exp_year"') < row.index('name="cvc"')
    assert "Confirm change" in html
    assert "and reactivate" not in html
    assert 'name="intent" value="change"' in html
    assert "Amount due" not in html


def test_signed_out_visitors_go_to_the_login_page(client: FlaskClient) -> None:
    for path in (_url(BUDI_SUB), f"/portal/subscriptions/{BUDI_SUB}/reactivated"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/portal/login/biz_demo")


def test_a_cancelled_subscription_offers_no_change(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get(_url(AVA_PAST_SUB))
    assert page.status_code == 200
    assert "This subscription is cancelled, so its payment method cannot be changed." in page.text
    assert "Confirm change" not in page.text
    assert 'name="payment_method"' not in page.text

    response = ava_client.post(
        _url(AVA_PAST_SUB),
        data={"csrf_token": csrf_token_from(page.text), "payment_method": AVA_VISA},
    )
    assert response.status_code == 409
    assert "cannot be changed" in response.text
    assert _events(app, AVA) == []


# -- test cards through the form --------------------------------------------------------


def test_a_good_card_reactivates_budi(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = _post(budi_client, BUDI_SUB, _card("4242 4242 4242 4242"))
    assert response.status_code == 303
    assert response.headers["Location"] == f"/portal/subscriptions/{BUDI_SUB}/reactivated"

    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.hold_reason is None
    assert subscription.payment_method is not None
    assert subscription.payment_method.last4 == "4242"
    assert _invoice(app, BUDI, BUDI_INVOICE).status is InvoiceStatus.PAID
    assert payments.charges == [(f"invoice:{BUDI_INVOICE}:attempt:1", BUDI_DUE)]


@pytest.mark.parametrize(
    ("number", "message"),
    [
        pytest.param("4000 0000 0000 0002", "Bank menolak pembayaran ini.", id="generic-decline"),
        pytest.param("4000-0000-0000-9995", "Saldo kartu tidak mencukupi.", id="insufficient-funds"),
    ],
)
def test_a_declining_card_is_refused_once_at_the_top(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider, number: str, message: str
) -> None:
    response = _post(budi_client, BUDI_SUB, _card(number))
    assert response.status_code == 422
    alert = _alert(response.text)
    assert said_to_budi("The card was not added. Nothing was charged.") in alert
    assert message in alert
    assert response.text.count(message) == 1  # not again beside the field or the hold reason
    assert 'id="card_number-error"' not in response.text
    # Nothing saved, nothing charged, the subscription as it was.
    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ON_HOLD
    assert subscription.payment_method is not None and subscription.payment_method.id == BUDI_CARD
    assert _invoice(app, BUDI, BUDI_INVOICE).status is InvoiceStatus.OPEN
    assert [m.id for m in _methods(app, BUDI)] == [BUDI_CARD]
    assert payments.calls == ["attach_card"]
    assert payments.charges == []


def test_a_declining_card_on_an_active_subscription_changes_nothing(
    app: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = _post(ava_client, AVA_SUB, _card(NO_FUNDS))
    assert response.status_code == 422
    assert _alert(response.text) == (
        "The card was not added. Nothing was charged. The card has insufficient funds."
    )
    subscription = stored_subscription(app, AVA, AVA_SUB)
    assert subscription.payment_method is not None and subscription.payment_method.id == AVA_VISA
    assert [m.id for m in _methods(app, AVA)] == [AVA_VISA]
    assert _events(app, AVA) == []


# -- validation beside each field ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        pytest.param(_card("4242 4242 4242 4241"), "card_number", "Check the card number.", id="luhn"),
        pytest.param(
            _card("4242 4242 abcd"),
            "card_number",
            "Enter the card number as printed on the card: 12 to 19 digits.",
            id="not-digits",
        ),
        pytest.param(
            _card("42424242424"),
            "card_number",
            "Enter the card number as printed on the card: 12 to 19 digits.",
            id="too-short",
        ),
        pytest.param(_card(""), "card_number", "Enter the card number.", id="no-number"),
        pytest.param(_card(GOOD, year="2020"), "exp_year", "The card has expired.", id="expired-last-year"),
        pytest.param(
            _card(GOOD, month="13"),
            "exp_month",
            "Enter the month the card expires, from 1 to 12.",
            id="month-13",
        ),
        pytest.param(
            _card(GOOD, month="0"),
            "exp_month",
            "Enter the month the card expires, from 1 to 12.",
            id="month-0",
        ),
        pytest.param(
            _card(GOOD, month="May"),
            "exp_month",
            "Enter the month the card expires, from 1 to 12.",
            id="month-word",
        ),
        pytest.param(
            _card(GOOD, year="202"), "exp_year", "Enter the year the card expires, like", id="year-3-digits"
        ),
        pytest.param(
            _card(GOOD, year="2999"), "exp_year", "Enter the year the card expires, like", id="year-far"
        ),
        pytest.param(
            _card(GOOD, cvc="12"),
            "cvc",
            "Enter the 3-digit security code from the back of the card.",
            id="cvc-short",
        ),
        pytest.param(
            _card(GOOD, cvc="1234"),
            "cvc",
            "Enter the 3-digit security code from the back of the card.",
            id="cvc-long",
        ),
        pytest.param(
            _card(AMEX, cvc="123"),
            "cvc",
            "Enter the 4-digit security code from the front of the card.",
            id="amex-cvc",
        ),
        pytest.param({"card_number": GOOD}, "payment_method", "Choose a card to pay with.", id="no-choice"),
        pytest.param(
            {"payment_method": BUDI_CARD},
            "payment_method",
            "Choose one of your saved cards, or a new card.",
            id="another-customers-method",
        ),
        pytest.param(
            {"payment_method": "pm_nobody\x00<script>"},
            "payment_method",
            "Choose one of your saved cards, or a new card.",
            id="odd-id",
        ),
    ],
)
def test_bad_input_is_shown_beside_its_field(
    app: Flask,
    ava_client: FlaskClient,
    payments: TestPaymentProvider,
    data: dict[str, str],
    field: str,
    message: str,
) -> None:
    before = stored_subscription(app, AVA, AVA_SUB)
    response = _post(ava_client, AVA_SUB, data)
    assert response.status_code == 422
    assert _field_error(response.text, field).startswith(message)
    assert "Please correct the fields marked below. Nothing was charged." in response.text
    assert "<script>" not in response.text
    assert payments.calls == []
    assert stored_subscription(app, AVA, AVA_SUB) == before
    assert _methods(app, AVA) == [before.payment_method]
    assert _events(app, AVA) == []


def test_an_expiry_earlier_this_year_is_shown_beside_the_month(app: Flask, client: FlaskClient) -> None:
    with time_machine.travel(datetime(2031, 6, 15, 12, tzinfo=timezone.utc), tick=False):
        sign_in(app, client, AVA)
        expired = _post(client, AVA_SUB, _card(GOOD, month="5", year="2031"))
        assert expired.status_code == 422
        assert _field_error(expired.text, "exp_month") == "The card has expired."
        # A card is good to the end of its month; "31" is 2031.
        assert _post(client, AVA_SUB, _card(GOOD, month="6", year="31")).status_code == 303
    method = stored_subscription(app, AVA, AVA_SUB).payment_method
    assert method is not None and (method.exp_month, method.exp_year) == (6, 2031)


def test_fields_keep_the_expiry_but_never_the_number_or_code(ava_client: FlaskClient) -> None:
    response = _post(ava_client, AVA_SUB, _card("4242 4242 4242 4241", month="7", year="2033", cvc="8531"))
    assert response.status_code == 422
    assert re.search(r'id="exp_month"[^>]*value="7"', response.text)
    assert re.search(r'id="exp_year"[^>]*value="2033"', response.text)
    assert re.search(r'id="card_number"[^>]*value=""', response.text)
    assert re.search(r'id="cvc"[^>]*value=""', response.text)
    # "A new card" stays chosen.
    assert re.search(r'value="new"\s+checked', response.text)
    # A card number typed into the wrong box is not shown back either.
    wrong_box = _post(ava_client, AVA_SUB, _card("", year="4242424242424241"))
    assert "4242424242424241" not in wrong_box.text


def test_an_expired_saved_card_cannot_be_chosen(app: Flask, ava_client: FlaskClient) -> None:
    old = _add_method(app, AVA, exp_month=1, exp_year=2020)
    page = ava_client.get(_url(AVA_SUB))
    assert "badge-expired" in page.text
    response = _post(ava_client, AVA_SUB, {"payment_method": old.id})
    assert response.status_code == 422
    assert _field_error(response.text, "payment_method") == "That card has expired. Choose another card."
    assert stored_subscription(app, AVA, AVA_SUB).payment_method == _methods(app, AVA)[-1]


# -- card data is never echoed, logged or stored -----------------------------------------


class RaisesOnCharge(TestPaymentProvider):
    """The provider's API is down while charging."""

    def charge(self, **kwargs: Any) -> ChargeResult:
        self.calls.append("charge")
        raise ConnectionError("payment provider unreachable")


def _stored_text(app: Flask) -> str:
    """Every row of every table, as text."""
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        with engine.connect() as connection:
            tables = connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars()
            dump: list[str] = []
            for table in list(tables):
                dump.extend(repr(tuple(row)) for row in connection.execute(text(f'SELECT * FROM "{table}"')))
    return "\n".join(dump)


@pytest.mark.parametrize(
    ("customer", "subscription_id", "number", "flow"),
    [
        pytest.param(AVA, AVA_SUB, MASTERCARD, "invalid", id="validation-error"),
        pytest.param(BUDI, BUDI_SUB, DECLINES, "declined", id="generic-decline"),
        pytest.param(BUDI, BUDI_SUB, NO_FUNDS, "declined", id="insufficient-funds"),
        pytest.param(BUDI, BUDI_SUB, GOOD, "reactivated", id="reactivated"),
        pytest.param(AVA, AVA_SUB, MASTERCARD, "changed", id="changed"),
        pytest.param(BUDI, BUDI_SUB, GOOD, "provider-error", id="provider-error"),
    ],
)
def test_card_number_and_code_are_never_echoed_logged_or_stored(
    tmp_path: Path,
    cleanup: list[Flask],
    caplog: pytest.LogCaptureFixture,
    customer: str,
    subscription_id: str,
    number: str,
    flow: str,
) -> None:
    provider = RaisesOnCharge() if flow == "provider-error" else TestPaymentProvider()
    app = _app_with(tmp_path, provider)
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, customer)
    typed = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    cvc = "913"
    caplog.set_level(logging.DEBUG)

    month = "13" if flow == "invalid" else "11"
    response = _post(client, subscription_id, _card(typed, month=month, cvc=cvc))
    expected = {"invalid": 422, "declined": 422, "reactivated": 303, "changed": 303, "provider-error": 502}
    assert response.status_code == expected[flow]
    bodies = [response.text]
    if response.status_code == 303:
        bodies.append(client.get(response.headers["Location"]).text)
    if flow == "provider-error":
        assert (
            said_to(customer, "We could not reach the payment processor. Nothing was charged. Try again.")
            in response.text
        )
    get_state(app).wait_for_background_tasks()

    for body in bodies:
        page = _scrubbed(body)
        assert number not in page and typed not in page
        assert cvc not in page
        assert f'value="{cvc}"' not in body
    for record in caplog.records:
        logged = record.getMessage() + repr(record.args) + (record.exc_text or "")
        assert number not in logged and typed not in logged, record.getMessage()
        assert cvc not in logged, record.getMessage()
    for message in get_state(app).mailer.outbox:  # type: ignore[attr-defined]
        assert number not in message.text + message.html
    stored = _stored_text(app)
    assert number not in stored and typed not in stored


# -- Budi's story ------------------------------------------------------------------------------


def test_budi_pays_with_a_new_card_after_his_saved_one_declines(
    app: Flask,
    budi_client: FlaskClient,
    payments: TestPaymentProvider,
    mailer: MemoryMailer,
    received: dict[str, list[dict[str, Any]]],
) -> None:
    declined = _post(budi_client, BUDI_SUB, {"payment_method": BUDI_CARD})
    assert declined.status_code == 422
    # Said once, at the top, naming the card: what happened, that nothing was
    # charged, what to do, and the bank's reason.
    alert = _alert(declined.text)
    assert alert.startswith(
        said_to_budi(
            "%(card)s was declined, so nothing was charged. "
            "Your subscription is still on hold: choose another card or add a new one.",
            card="Visa •••• 0002",
        )
    )
    assert alert.endswith("Bank menolak pembayaran ini.")
    assert declined.text.count("Bank menolak pembayaran ini.") == 1
    assert 'aria-invalid="true"' not in declined.text
    # The card that failed is not chosen again for him.
    assert not re.search(rf'value="{BUDI_CARD}"\s+checked', declined.text)
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD
    assert _invoice(app, BUDI, BUDI_INVOICE).status is InvoiceStatus.OPEN
    assert payments.charges == []
    assert len(received["failed"]) == 1

    paid = _post(budi_client, BUDI_SUB, _card(GOOD))
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"/portal/subscriptions/{BUDI_SUB}/reactivated"

    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.payment_method is not None and subscription.payment_method.last4 == "4242"
    invoice = _invoice(app, BUDI, BUDI_INVOICE)  # the same invoice, now paid
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.payment_method is not None and invoice.payment_method.last4 == "4242"
    assert payments.charges == [(f"invoice:{BUDI_INVOICE}:attempt:2", BUDI_DUE)]
    assert [e.action for e in _events(app, BUDI)] == ["payment_method.added"]
    assert len(received["reactivated"]) == 1
    assert received["changed"][0]["payment_method"].id == subscription.payment_method.id

    get_state(app).wait_for_background_tasks()
    assert len(mailer.outbox) == 2  # the confirmation and the receipt, in either order
    [receipt] = [m for m in mailer.outbox if m.attachments]
    assert [a.content_type for a in receipt.attachments] == ["application/pdf"]
    [email] = [m for m in mailer.outbox if m is not receipt]
    assert email.to == "budi@example.com"
    assert email.subject == "Langganan Acme Sync Anda aktif kembali"
    assert "Terima kasih: kami telah menerima pembayaran Anda sebesar Rp166.500" in email.text

    # The confirmation page only reads: refreshing it pays nothing.
    for _ in range(2):
        confirmation = budi_client.get(paid.headers["Location"])
        assert confirmation.status_code == 200
        assert invoice.number in confirmation.text
        assert f'href="/portal/invoices/{BUDI_INVOICE}"' in confirmation.text
        assert "Rp166.500" in confirmation.text
        assert "Visa •••• 4242" in confirmation.text
    assert len(payments.charges) == 1
    assert len(mailer.outbox) == 2

    # His old card no longer pays for anything: now it can be removed.
    assert f"/portal/payment-methods/{BUDI_CARD}/remove" in budi_client.get("/portal/payment-methods").text
    assert said_to_budi("Confirm change") in budi_client.get(_url(BUDI_SUB)).text


def test_a_double_submit_charges_once(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    page = budi_client.get(_url(BUDI_SUB))
    form = {"csrf_token": csrf_token_from(page.text), "intent": "reactivate", **_card(GOOD)}
    first = budi_client.post(_url(BUDI_SUB), data=form)
    second = budi_client.post(_url(BUDI_SUB), data=form)
    reactivated = f"/portal/subscriptions/{BUDI_SUB}/reactivated"
    assert (first.status_code, first.headers["Location"]) == (303, reactivated)
    assert (second.status_code, second.headers["Location"]) == (303, reactivated)
    assert len(payments.charges) == 1
    assert payments.calls.count("attach_card") == 1
    assert len(_methods(app, BUDI)) == 2  # his old card and the new one, once


def test_two_requests_that_both_saw_it_on_hold_charge_once(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _post(budi_client, BUDI_SUB, _card(GOOD)).status_code == 303
    new_card = next(m for m in _methods(app, BUDI) if m.last4 == "4242")
    page = budi_client.get(_url(BUDI_SUB))

    # The second request read the subscription before the first one committed.
    storage = get_state(app).storage
    read = storage.get_subscription

    def stale(customer_id: str, subscription_id: str) -> Subscription | None:
        found = read(customer_id, subscription_id)
        return None if found is None else replace(found, status=SubscriptionStatus.ON_HOLD)

    monkeypatch.setattr(storage, "get_subscription", stale)
    second = budi_client.post(
        _url(BUDI_SUB),
        data={
            "csrf_token": csrf_token_from(page.text),
            "intent": "reactivate",
            "payment_method": new_card.id,
        },
    )
    assert second.status_code == 303
    assert second.headers["Location"] == f"/portal/subscriptions/{BUDI_SUB}/reactivated"
    assert len(payments.charges) == 1


def test_a_token_from_the_providers_card_element_reactivates(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    token = TestPaymentProvider.token_for(GOOD)
    response = _post(budi_client, BUDI_SUB, {"payment_method": "new", "payment_token": token})
    assert response.status_code == 303
    assert payments.calls[:2] == ["attach_token", "charge"]
    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.payment_method is not None
    assert subscription.payment_method.provider_token == token


def test_a_new_card_that_declines_the_charge_stays_saved_and_chosen(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    token = TestPaymentProvider.token_for(GOOD, charges_decline=DeclineReason.INSUFFICIENT_FUNDS)
    response = _post(budi_client, BUDI_SUB, {"payment_method": "new", "payment_token": token})
    assert response.status_code == 422
    saved = next(m for m in _methods(app, BUDI) if m.id != BUDI_CARD)
    # Saved, listed, but not chosen: it is the card that just failed.
    assert f'value="{saved.id}"' in response.text
    assert not re.search(rf'value="{saved.id}"\s+checked', response.text)
    assert _alert(response.text).endswith("Saldo kartu tidak mencukupi.")
    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ON_HOLD
    assert subscription.payment_method is not None and subscription.payment_method.id == BUDI_CARD
    assert subscription.hold_reason == "insufficient_funds"
    assert payments.charges == []


def test_a_form_that_said_change_never_pays(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    """The subscription went on hold while the customer looked at the
    "Confirm change" button: nothing is charged until they see the amount."""
    page = budi_client.get(_url(BUDI_SUB))
    response = budi_client.post(
        _url(BUDI_SUB),
        data={"csrf_token": csrf_token_from(page.text), "intent": "change", **_card(GOOD)},
    )
    assert response.status_code == 409
    assert (
        said_to_budi(
            "This subscription's last payment failed in the meantime. Check the amount due, then confirm again."
        )
        in response.text
    )
    assert payments.calls == []
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD


def test_the_confirmation_page_of_a_subscription_on_hold_leads_to_the_payment_page(
    budi_client: FlaskClient,
) -> None:
    response = budi_client.get(f"/portal/subscriptions/{BUDI_SUB}/reactivated")
    assert response.status_code == 303
    assert response.headers["Location"] == _url(BUDI_SUB)


# -- what the provider answers ------------------------------------------------------------------


class Answers(TestPaymentProvider):
    """Attaches like the test provider, answers every charge with ``result``."""

    def __init__(self, result: ChargeResult) -> None:
        super().__init__()
        self.result = result

    def charge(self, **kwargs: Any) -> ChargeResult:
        self.calls.append("charge")
        return self.result


@pytest.mark.parametrize(
    ("result", "status", "message"),
    [
        pytest.param(
            ChargeFailed("upstream 500"),
            502,
            "We could not reach the payment processor. Nothing was charged. Try again.",
            id="failed",
        ),
        pytest.param(
            ChargeUnknown("key"),
            202,
            "We are confirming your payment with the bank. Do not pay again: check back in a few minutes.",
            id="pending",
        ),
        pytest.param(
            ChargeRequiresAction("ch_1", "javascript:alert(1)"),
            502,
            "We could not reach the payment processor. Nothing was charged. Try again.",
            id="requires-action-to-nowhere",
        ),
    ],
)
def test_what_the_customer_sees_when_the_charge_does_not_go_through(
    tmp_path: Path, cleanup: list[Flask], result: ChargeResult, status: int, message: str
) -> None:
    app = _app_with(tmp_path, Answers(result))
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, BUDI)
    response = _post(client, BUDI_SUB, _card(GOOD))
    assert response.status_code == status
    assert said_to_budi(message) in response.text
    assert 'role="alert"' in response.text
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD
    assert _invoice(app, BUDI, BUDI_INVOICE).status is InvoiceStatus.OPEN


def test_the_bank_confirmation_page_is_where_the_customer_goes(tmp_path: Path, cleanup: list[Flask]) -> None:
    app = _app_with(tmp_path, Answers(ChargeRequiresAction("ch_1", "https://bank.example/3ds?c=1")))
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, BUDI)
    response = _post(client, BUDI_SUB, _card(GOOD))
    assert response.status_code == 303
    assert response.headers["Location"] == "https://bank.example/3ds?c=1"


def test_a_provider_that_raises_leaves_budi_on_hold(
    tmp_path: Path, cleanup: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    provider = RaisesOnCharge()
    app = _app_with(tmp_path, provider)
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, BUDI)
    with caplog.at_level(logging.ERROR, logger="flask_customer_portal"):
        response = _post(client, BUDI_SUB, {"payment_method": BUDI_CARD})
    assert response.status_code == 502
    assert (
        said_to_budi("We could not reach the payment processor. Nothing was charged. Try again.")
        in response.text
    )
    assert "Reactivation of subscription sub_demo_budi_sync" in caplog.text
    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ON_HOLD
    assert subscription.hold_reason == "generic_decline"
    assert _invoice(app, BUDI, BUDI_INVOICE).status is InvoiceStatus.OPEN
    assert provider.charges == []


class RaisesOnAttach(TestPaymentProvider):
    def attach_card(self, customer_id: str, card: CardDetails) -> MethodAttached | MethodDeclined:
        raise TimeoutError(f"could not verify {card.number}")


def test_a_provider_that_raises_while_adding_a_card(
    tmp_path: Path, cleanup: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = _app_with(tmp_path, RaisesOnAttach())
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, BUDI)
    with caplog.at_level(logging.DEBUG):
        response = _post(client, BUDI_SUB, _card(GOOD))
    assert response.status_code == 502
    assert (
        said_to_budi("We could not reach the payment processor. Nothing was charged. Try again.")
        in response.text
    )
    assert "TimeoutError" in caplog.text
    assert GOOD not in caplog.text
    assert [m.id for m in _methods(app, BUDI)] == [BUDI_CARD]


# -- an active subscription: change the card -----------------------------------------------------


def test_ava_changes_to_a_new_card_without_a_charge(
    app: Flask,
    ava_client: FlaskClient,
    payments: TestPaymentProvider,
    received: dict[str, list[dict[str, Any]]],
) -> None:
    before = stored_subscription(app, AVA, AVA_SUB)
    response = _post(ava_client, AVA_SUB, _card("5555 5555 5555 4444", month="3", year="2034"))
    assert response.status_code == 303
    assert response.headers["Location"] == f"/portal/subscriptions/{AVA_SUB}"

    after = stored_subscription(app, AVA, AVA_SUB)
    assert after.payment_method is not None
    assert (after.payment_method.brand, after.payment_method.last4) == ("mastercard", "4444")
    assert (after.payment_method.exp_month, after.payment_method.exp_year) == (3, 2034)
    assert after.payment_method.id.startswith("pm_") and len(after.payment_method.id) == 27
    # The same subscription otherwise: no charge, no new period.
    assert replace(after, payment_method=None) == replace(before, payment_method=None)
    assert payments.charges == []
    assert "charge" not in payments.calls
    events = _events(app, AVA)
    assert [e.action for e in events] == ["payment_method.added", "payment_method.changed"]
    assert events[1].details == {
        "payment_method_id": after.payment_method.id,
        "previous_payment_method_id": AVA_VISA,
    }
    assert [(c["subscription"].id, c["payment_method"].id) for c in received["changed"]] == [
        (AVA_SUB, after.payment_method.id)
    ]
    assert received["reactivated"] == []
    notice = ava_client.get(response.headers["Location"])
    assert "Acme Sync is now charged to Mastercard •••• 4444." in notice.text


def test_ava_switches_between_saved_cards(
    app: Flask,
    ava_client: FlaskClient,
    payments: TestPaymentProvider,
    received: dict[str, list[dict[str, Any]]],
) -> None:
    spare = _add_method(app, AVA)
    response = _post(ava_client, AVA_SUB, {"payment_method": spare.id})
    assert response.status_code == 303
    assert stored_subscription(app, AVA, AVA_SUB).payment_method == spare
    assert payments.calls == []
    assert [e.action for e in _events(app, AVA)] == ["payment_method.changed"]
    assert len(received["changed"]) == 1


def test_choosing_the_card_it_already_has_changes_nothing(
    app: Flask, ava_client: FlaskClient, received: dict[str, list[dict[str, Any]]]
) -> None:
    response = _post(ava_client, AVA_SUB, {"payment_method": AVA_VISA})
    assert response.status_code == 303
    assert (
        "Nothing changed: Visa •••• 4242 already pays for this subscription."
        in ava_client.get(response.headers["Location"]).text
    )
    assert _events(app, AVA) == []
    assert received["changed"] == []


# -- live mode and providers without raw cards ------------------------------------------------------


class LiveProvider:
    """A real provider's adapter: tokens from its card element, no raw cards."""

    is_test = False
    accepts_raw_cards = False

    def __init__(self, charge_result: ChargeResult | None = None) -> None:
        self.calls: list[str] = []
        self.charge_result = charge_result

    def attach_card(self, customer_id: str, card: CardDetails) -> MethodAttached | MethodDeclined:
        raise AssertionError("raw card details reached a live provider")

    def attach_token(self, customer_id: str, token: str) -> MethodAttached | MethodDeclined:
        self.calls.append("attach_token")
        return MethodAttached(f"live_{token}", "visa", "1881", 4, 2035)

    def charge(
        self,
        *,
        customer_id: str,
        provider_token: str,
        amount: Money,
        idempotency_key: str,
        invoice_id: str,
        description: str,
    ) -> ChargeResult:
        self.calls.append("charge")
        return self.charge_result or ChargeSucceeded("ch_live_1", amount)

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        return None


def _live_app(tmp_path: Path, provider: LiveProvider) -> Flask:
    return _app_with(
        tmp_path,
        provider,
        CUSTOMER_PORTAL_MODE="live",
        CUSTOMER_PORTAL_BASE_URL="https://shop.test",
        SESSION_COOKIE_SECURE=True,
        CUSTOMER_PORTAL_SINGLE_PROCESS=True,  # memory:// rate limits
    )


def test_live_mode_never_takes_raw_card_numbers(tmp_path: Path, cleanup: list[Flask]) -> None:
    provider = LiveProvider()
    app = _live_app(tmp_path, provider)
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, BUDI)

    page = client.get(_url(BUDI_SUB))
    assert page.status_code == 200
    for name in ("card_number", "exp_month", "exp_year", "cvc"):
        assert f'name="{name}"' not in page.text
    assert (
        said_to_budi(
            "Adding a new card needs the secure card form of our payment provider, which this page does not "
            "show yet. Choose a saved card, or contact us to add one."
        )
        in page.text
    )
    assert "4242" not in page.text  # no test cards

    for data in (
        _card(GOOD),
        {"payment_method": "new", "card_number": GOOD},
        {"payment_method": "new", "cvc": "1"},
    ):
        response = _post(client, BUDI_SUB, data)
        assert response.status_code == 400
    assert provider.calls == []
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD

    missing = _post(client, BUDI_SUB, {"payment_method": "new"})
    assert missing.status_code == 422
    assert _field_error(missing.text, "payment_method") == said_to_budi(
        "Enter the new card in the card form first."
    )

    paid = _post(client, BUDI_SUB, {"payment_method": "new", "payment_token": "tok_from_the_element"})
    assert paid.status_code == 303
    assert provider.calls == ["attach_token", "charge"]
    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.payment_method is not None
    assert subscription.payment_method.provider_token == "live_tok_from_the_element"


def test_a_live_provider_may_only_send_customers_to_https(tmp_path: Path, cleanup: list[Flask]) -> None:
    provider = LiveProvider(ChargeRequiresAction("ch_1", "http://bank.example/3ds"))
    app = _live_app(tmp_path, provider)
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, BUDI)
    response = _post(client, BUDI_SUB, {"payment_method": "new", "payment_token": "tok_1"})
    assert response.status_code == 502
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD


def test_a_test_provider_without_raw_cards_refuses_them_too(tmp_path: Path, cleanup: list[Flask]) -> None:
    class TokensOnly(TestPaymentProvider):
        accepts_raw_cards = False

    provider = TokensOnly()
    app = _app_with(tmp_path, provider)
    cleanup.append(app)
    client = app.test_client()
    sign_in(app, client, AVA)
    assert 'name="card_number"' not in client.get(_url(AVA_SUB)).text
    assert _post(client, AVA_SUB, _card(MASTERCARD)).status_code == 400
    assert provider.calls == []


# -- removing a saved card --------------------------------------------------------------------


def _remove(client: FlaskClient, method_id: str, **data: str) -> Any:
    page = client.get(_url(AVA_SUB))
    return client.post(
        f"/portal/payment-methods/{method_id}/remove",
        data={"csrf_token": csrf_token_from(page.text), "subscription_id": AVA_SUB, **data},
    )


def test_an_unused_card_can_be_removed(
    app: Flask, ava_client: FlaskClient, received: dict[str, list[dict[str, Any]]]
) -> None:
    spare = _add_method(app, AVA)
    page = ava_client.get("/portal/payment-methods")
    # Only the card nothing uses has a Remove button.
    assert f'action="/portal/payment-methods/{spare.id}/remove"' in page.text
    assert f'action="/portal/payment-methods/{AVA_VISA}/remove"' not in page.text

    response = _remove(ava_client, spare.id)
    assert response.status_code == 303
    assert response.headers["Location"] == _url(AVA_SUB)  # the page it was removed from
    assert [m.id for m in _methods(app, AVA)] == [AVA_VISA]
    assert [(e.action, e.subject_id) for e in _events(app, AVA)] == [("payment_method.removed", spare.id)]
    assert [r["payment_method"].id for r in received["removed"]] == [spare.id]
    assert "Mastercard •••• 4444 was removed." in ava_client.get(response.headers["Location"]).text


def test_a_card_in_use_is_not_removed(app: Flask, ava_client: FlaskClient) -> None:
    response = _remove(ava_client, AVA_VISA)
    assert response.status_code == 303
    notice = ava_client.get(response.headers["Location"]).text
    assert "Visa •••• 4242 is used by a subscription, so it cannot be removed." in notice
    assert [m.id for m in _methods(app, AVA)] == [AVA_VISA]
    assert _events(app, AVA) == []


def test_another_customers_card_cannot_be_removed(app: Flask, ava_client: FlaskClient) -> None:
    for method_id in (BUDI_CARD, "pm_nobody", "x" * 300):
        assert _remove(ava_client, method_id).status_code == 404
    assert [m.id for m in _methods(app, BUDI)] == [BUDI_CARD]


def test_removing_needs_a_post_with_a_csrf_token(app: Flask, ava_client: FlaskClient) -> None:
    spare = _add_method(app, AVA)
    assert ava_client.get(f"/portal/payment-methods/{spare.id}/remove").status_code == 405
    response = ava_client.post(
        f"/portal/payment-methods/{spare.id}/remove", data={"subscription_id": AVA_SUB}
    )
    assert response.status_code == 400
    assert spare in _methods(app, AVA)


def test_after_removing_without_a_subscription_the_customer_lands_on_the_list(
    app: Flask, ava_client: FlaskClient
) -> None:
    spare = _add_method(app, AVA)
    response = _remove(ava_client, spare.id, subscription_id=BUDI_SUB)  # not hers: ignored
    assert response.status_code == 303
    assert response.headers["Location"] == "/portal/payment-methods"


# -- CSRF and scoping -----------------------------------------------------------------------------


def test_a_post_without_csrf_token_changes_nothing(
    app: Flask, budi_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    for token in (None, "forged"):
        data = {"intent": "reactivate", **_card(GOOD)}
        if token:
            data["csrf_token"] = token
        response = budi_client.post(_url(BUDI_SUB), data=data)
        assert response.status_code == 400
        assert GOOD not in response.text
    assert payments.calls == []
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD
    assert [m.id for m in _methods(app, BUDI)] == [BUDI_CARD]


def test_ava_cannot_reach_budis_subscription(
    app: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    token = csrf_token_from(ava_client.get(_url(AVA_SUB)).text)
    assert ava_client.get(_url(BUDI_SUB)).status_code == 404
    for data in (_card(GOOD), {"payment_method": AVA_VISA}, {"payment_method": BUDI_CARD}):
        response = ava_client.post(_url(BUDI_SUB), data={"csrf_token": token, "intent": "reactivate", **data})
        assert response.status_code == 404
    assert ava_client.get(f"/portal/subscriptions/{BUDI_SUB}/reactivated").status_code == 404
    assert payments.calls == []
    assert stored_subscription(app, BUDI, BUDI_SUB).status is SubscriptionStatus.ON_HOLD


@pytest.mark.parametrize(
    "odd", ["%00", "x" * 300, "sub%0Ademo", "%E2%80%AE", "..%2F..%2Fetc", "%F0%9F%92%B3"]
)
def test_odd_ids_are_not_found(ava_client: FlaskClient, odd: str) -> None:
    token = csrf_token_from(ava_client.get(_url(AVA_SUB)).text)
    assert ava_client.get(f"/portal/subscriptions/{odd}/payment-method").status_code == 404
    assert ava_client.get(f"/portal/subscriptions/{odd}/reactivated").status_code == 404
    posted = ava_client.post(f"/portal/subscriptions/{odd}/payment-method", data={"csrf_token": token})
    assert posted.status_code == 404
    removed = ava_client.post(f"/portal/payment-methods/{odd}/remove", data={"csrf_token": token})
    assert removed.status_code == 404
