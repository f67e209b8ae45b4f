"""Attacks on the account-level billing features that the portal holds off:
another customer's invoices and credit notes, a payment whose worker dies or
whose provider answers late, errs or never, races for the last use of a
promotion code, hostile text in codes and billing details (down to the
PDFs), forged receipt attachments, and card data in the logs."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import (
    close_app,
    make_portal_app,
    plan_confirm_form,
    portal_store,
    sign_in,
    stored_subscription,
)
from test_dodo import _audit_actions

from flask_customer_portal import signals
from flask_customer_portal.billing.receipts import invoice_document
from flask_customer_portal.outbox.sender import make_attachments
from flask_customer_portal.payments import ChargeResult, TestPaymentProvider
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    BillingDetails,
    InvoiceStatus,
    PromotionCode,
    SubscriptionStatus,
    TaxIdScheme,
)
from flask_customer_portal.tax_ids import SCHEMES, validate_tax_id
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
DEWI = "cus_demo_dewi"
AVA_SUB = "sub_demo_ava_sync"
ONBOARDING = "inv_demo_dewi_onboarding"
DESKTOP = "inv_demo_dewi_desktop"
CREDIT_NOTE = "cn_demo_dewi_desktop"
PAY = f"/portal/invoices/{ONBOARDING}/pay"
DEWI_VISA = "pm_demo_dewi_visa"
BUSINESS = "plan_sync_business_monthly"
INVALID_CODE = "This code is not valid. Check it and try again."


def _client(app: Flask, customer_id: str) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def _status(app: Flask, invoice_id: str = ONBOARDING) -> InvoiceStatus:
    with app.app_context():
        found = get_state(app).storage.get_invoice(DEWI, invoice_id)
    assert found is not None
    return found.status


def _pay(client: FlaskClient, **fields: str) -> Any:
    token = csrf_token_from(client.get(PAY).text)
    return client.post(PAY, data={"csrf_token": token, "payment_method": DEWI_VISA, **fields})


def _charges_of(payments: TestPaymentProvider, invoice_id: str = ONBOARDING) -> list[str]:
    return [key for key, _ in payments.charges if invoice_id in key]


# -- another customer's ids ----------------------------------------------------------------


def test_dewis_invoices_and_credit_notes_are_404s_to_ava_like_unknown_ones(
    shop: Flask, payments: TestPaymentProvider, mailer: MemoryMailer
) -> None:
    ava = _client(shop, AVA)
    token = csrf_token_from(ava.get("/portal/invoices").text)
    pages = [
        ("GET", "/portal/invoices/{id}/pay", ONBOARDING),
        ("POST", "/portal/invoices/{id}/pay", ONBOARDING),
        ("POST", "/portal/invoices/{id}/email", ONBOARDING),
        ("GET", "/portal/invoices/{id}/credit-notes/" + CREDIT_NOTE + "/pdf", DESKTOP),
        ("GET", "/portal/invoices/{id}/billing-details", ONBOARDING),
    ]
    data = {"csrf_token": token, "payment_method": DEWI_VISA}
    for method, path, theirs in pages:
        unknown = "inv_" + "x" * (len(theirs) - 4)  # as long: the bodies compare byte for byte
        answers = [
            ava.open(path.format(id=invoice_id), method=method, data=data if method == "POST" else None)
            for invoice_id in (theirs, unknown)
        ]
        assert [a.status_code for a in answers] == [404, 404], path
        # The page's CSRF tokens carry the second they were made: not the body's content.
        bodies = [re.sub(r'name="csrf_token"[^>]*>', ">", a.text) for a in answers]
        assert bodies[0].replace(theirs, unknown) == bodies[1], path
    # Dewi's credit note through an invoice of Ava's own is no nearer.
    assert ava.get(f"/portal/invoices/inv_demo_ava_sync_01/credit-notes/{CREDIT_NOTE}/pdf").status_code == 404
    assert payments.calls.count("charge") == 0
    assert _status(shop) is InvoiceStatus.OPEN
    get_state(shop).wait_for_background_tasks()
    assert mailer.outbox == []


# -- a worker killed mid-payment, a provider late, failing or silent ------------------------


class _KilledAfterCharging(TestPaymentProvider):
    """Takes the money, then the worker dies before it can record it."""

    def __init__(self) -> None:
        super().__init__()
        self.kill_next = True

    def charge(self, **kwargs: Any) -> ChargeResult:
        result = super().charge(**kwargs)
        if self.kill_next:
            self.kill_next = False
            raise SystemExit("worker killed")
        return result


def test_a_worker_killed_after_the_charge_leaves_it_to_the_next_try_to_record_once(
    make_app: Any, mailer: MemoryMailer
) -> None:
    payments = _KilledAfterCharging()
    shop = make_app(mailer=mailer, payments=payments)
    dewi = _client(shop, DEWI)
    with pytest.raises(SystemExit):
        _pay(dewi)
    # Nothing of the try was committed: the invoice is open, the money taken once.
    assert _status(shop) is InvoiceStatus.OPEN
    assert len(_charges_of(payments)) == 1
    # The next try uses the same idempotency key: the provider answers with
    # the charge it made, and nothing new is taken.
    again = _pay(dewi)
    assert again.status_code == 303, again.text
    assert _status(shop) is InvoiceStatus.PAID
    assert _charges_of(payments) == [f"invoice:{ONBOARDING}:attempt:1"]
    get_state(shop).wait_for_background_tasks()
    assert len([m for m in mailer.outbox if m.subject.startswith("Receipt for invoice")]) == 1


@pytest.mark.parametrize("charged", [True, False])
def test_a_lost_answer_is_reconciled_before_anything_new_is_charged(
    shop: Flask, payments: TestPaymentProvider, charged: bool
) -> None:
    dewi = _client(shop, DEWI)
    payments.lose_answers(1, charged=charged)
    pending = _pay(dewi)
    assert pending.status_code == 202
    assert "Do not pay again" in pending.text
    assert _status(shop) is InvoiceStatus.OPEN
    again = _pay(dewi)
    assert again.status_code == 303, again.text
    assert _status(shop) is InvoiceStatus.PAID
    # Taken once: by the lost charge, or (the provider never saw it) by the retry.
    expected = 1 if charged else 2
    assert _charges_of(payments) == [f"invoice:{ONBOARDING}:attempt:{expected}"]


class _Unreachable(TestPaymentProvider):
    def charge(self, **kwargs: Any) -> ChargeResult:
        raise ConnectionError(f"timed out talking to the bank about {kwargs['provider_token']}")


def test_a_provider_that_raises_charges_nothing_and_the_customer_is_told(
    make_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    shop = make_app(payments=_Unreachable())
    dewi = _client(shop, DEWI)
    with caplog.at_level(logging.DEBUG):
        refused = _pay(dewi)
    assert refused.status_code == 502
    assert "Nothing was charged" in refused.text or "nothing was charged" in refused.text
    assert _status(shop) is InvoiceStatus.OPEN
    # The portal's own words never repeat what the provider said (the
    # traceback, for the operator, is the provider's own).
    assert all("pm_test_" not in record.getMessage() for record in caplog.records)
    assert "pm_test_" not in refused.text


# -- card data in the logs --------------------------------------------------------------------


def test_a_new_card_paying_an_invoice_leaves_no_card_data_in_the_logs(
    shop: Flask, payments: TestPaymentProvider, caplog: pytest.LogCaptureFixture
) -> None:
    dewi = _client(shop, DEWI)
    year = str(datetime.now(timezone.utc).year + 3)
    with caplog.at_level(logging.DEBUG):
        declined = _pay(
            dewi,
            payment_method="new",
            card_number="4000000000009995",
            exp_month="11",
            exp_year=year,
            cvc="853",
        )
        paid = _pay(
            dewi,
            payment_method="new",
            card_number="4242424242424242",
            exp_month="11",
            exp_year=year,
            cvc="853",
        )
    assert declined.status_code == 422 and paid.status_code == 303
    for secret in ("4242424242424242", "4242 4242", "4000000000009995", "853", "pm_test_"):
        assert secret not in caplog.text, secret
    assert len(_charges_of(payments)) == 1


# -- the last use of a promotion code, raced by two customers --------------------------------


def test_two_customers_racing_for_a_codes_last_use_one_gets_it(
    shop: Flask, payments: TestPaymentProvider
) -> None:
    with shop.app_context():
        portal_store(shop).add_promotion_code(PromotionCode("LASTONE", percent_off=10, max_redemptions=1))
    forms = {}
    for customer_id, subscription_id in ((AVA, "sub_demo_ava_sync"), (DEWI, "sub_demo_dewi_sync")):
        client = _client(shop, customer_id)
        url = f"/portal/subscriptions/{subscription_id}/plan"
        token = csrf_token_from(client.get(url).text)
        preview = client.post(
            url, data={"csrf_token": token, "step": "preview", "plan": BUSINESS, "promotion_code": "lastone"}
        )
        assert preview.status_code == 200 and "Promotion code LASTONE" in preview.text
        forms[customer_id] = (client, url, plan_confirm_form(preview.text))
    barrier = threading.Barrier(2)
    answers: dict[str, int] = {}

    def confirm(customer_id: str) -> None:
        client, url, form = forms[customer_id]
        barrier.wait(timeout=30)
        answers[customer_id] = client.post(url, data=form).status_code

    threads = [threading.Thread(target=confirm, args=(who,)) for who in forms]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers.values()) == [303, 409], answers
    with shop.app_context():
        assert portal_store(shop).promotion_times_redeemed("LASTONE") == 1
    winner = next(who for who, status in answers.items() if status == 303)
    loser = next(who for who in answers if who != winner)
    # The one refused was charged nothing and keeps its plan.
    assert [k for k, _ in payments.charges if loser.removeprefix("cus_demo_") in k] == []
    loser_sub = "sub_demo_ava_sync" if loser == AVA else "sub_demo_dewi_sync"
    assert stored_subscription(shop, loser, loser_sub).plan_id != BUSINESS


def test_a_quote_for_one_plan_confirms_no_other(shop: Flask, payments: TestPaymentProvider) -> None:
    with shop.app_context():
        portal_store(shop).add_promotion_code(
            PromotionCode("TEAMONLY", percent_off=50, plan_ids=frozenset({BUSINESS}))
        )
    dewi = _client(shop, DEWI)
    url = "/portal/subscriptions/sub_demo_dewi_sync/plan"
    token = csrf_token_from(dewi.get(url).text)
    preview = dewi.post(
        url, data={"csrf_token": token, "step": "preview", "plan": BUSINESS, "promotion_code": "TEAMONLY"}
    )
    assert preview.status_code == 200
    form = plan_confirm_form(preview.text)
    assert form["plan"] == BUSINESS
    other = "plan_sync_pro_monthly"
    tampered = dewi.post(url, data={**form, "plan": other})
    assert tampered.status_code == 409, tampered.status_code
    assert "The prices were worked out again" in tampered.text
    assert payments.calls.count("charge") == 0
    with shop.app_context():
        assert not portal_store(shop).promotion_redeemed(DEWI, "TEAMONLY")


@pytest.mark.parametrize(
    "code",
    [
        "x" * 10_000,
        "WELCOME10\x00",
        "".join(chr(ord(c) + 0xFEE0) for c in "WELCOME10"),  # full-width letters and digits
        "WELCOME10\u202e",
        "' OR 1=1 --",
        "%00",
        "W\u0130LCOME10",
        "welcome10\r\nBcc: x@example.com",
    ],
)
def test_hostile_promotion_codes_get_the_plain_answer(shop: Flask, code: str) -> None:
    dewi = _client(shop, DEWI)
    url = "/portal/subscriptions/sub_demo_dewi_sync/plan"
    token = csrf_token_from(dewi.get(url).text)
    page = dewi.post(
        url, data={"csrf_token": token, "step": "preview", "plan": BUSINESS, "promotion_code": code}
    )
    assert page.status_code == 422
    assert INVALID_CODE in page.text
    with shop.app_context():
        assert not portal_store(shop).promotion_redeemed(DEWI, "WELCOME10")


# -- hostile billing details, down to the PDFs ---------------------------------------------------

_HOSTILE_NAME = "Ünïcødé ) ( \\ %PDF-1.7 <b>bold</b> &amp; 株式会社 شركة {{ 7*7 }} 🦄"


@pytest.mark.parametrize("scheme", list(TaxIdScheme))
def test_every_kind_of_tax_id_with_hostile_text_renders_in_the_pdfs(shop: Flask, scheme: TaxIdScheme) -> None:
    rule = SCHEMES[scheme]
    country = rule.country if rule.country != "EU" else "DE"
    number = validate_tax_id(scheme, rule.example, country=country)
    details = BillingDetails(
        name=_HOSTILE_NAME,
        line1="Jl. Sudirman ) Kav. 52-53 \\ (BT) ",
        country=country,
        city="東京",
        tax_id=number,
        tax_id_scheme=scheme,
    )
    with shop.app_context(), shop.test_request_context():
        state = get_state(shop)
        store = state.storage
        customer = store.get_customer(DEWI)
        invoice = store.get_invoice(DEWI, DESKTOP)
        assert customer is not None and invoice is not None and state.invoice_renderer is not None
        document = invoice_document(state, customer, replace(invoice, billing_details=details), locale="en")
        pdf = state.invoice_renderer.render(document)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("A" * 5_000, "This can be at most"),
        ("Acme\u202eGmbH", "Remove the invisible control characters."),
        ("Acme\x00GmbH", "Remove the invisible control characters."),
        ("Acme\u2028GmbH", "Remove the invisible control characters."),
    ],
)
def test_hostile_billing_names_are_refused_next_to_the_field(shop: Flask, name: str, message: str) -> None:
    dewi = _client(shop, DEWI)
    token = csrf_token_from(dewi.get("/portal/profile/billing").text)
    page = dewi.post(
        "/portal/profile/billing",
        data={
            "csrf_token": token,
            "name": name,
            "line1": "Jl. Sudirman 1",
            "city": "Jakarta",
            "postal_code": "10220",
            "country": "ID",
            "tax_id_scheme": "",
            "tax_id": "",
        },
    )
    assert page.status_code == 422, page.status_code
    assert message in page.text
    with shop.app_context():
        assert get_state(shop).storage.get_billing_details(DEWI) is None


# -- a receipt's attachment names only its own customer's invoice ----------------------------------


def test_an_outbox_row_naming_another_customers_invoice_attaches_nothing(shop: Flask) -> None:
    with shop.app_context(), shop.test_request_context():
        state = get_state(shop)
        assert make_attachments(state, f"invoice_pdf:{ONBOARDING}", AVA) == ()
        [own] = make_attachments(state, f"invoice_pdf:{ONBOARDING}", DEWI)
    assert own.data.startswith(b"%PDF-")


# -- guessing codes and asking for invoice copies across two app instances ------------------------


@pytest.mark.slow
def test_code_guesses_and_invoice_copies_are_counted_once_across_two_instances(
    make_app: Any, redis_url: str
) -> None:
    """Two workers or hosts of one shop share one allowance (Redis): a
    customer who spreads guesses over both gets no more than from one."""
    shared = {
        "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI": redis_url,
        "CUSTOMER_PORTAL_PROMOTION_CODE_RATE_LIMIT": "4 per hour",
        "CUSTOMER_PORTAL_INVOICE_EMAIL_RATE_LIMIT": "2 per hour",
    }
    first, second = make_app(**shared), make_app(**shared)
    get_state(first).rate_limits.reset()
    clients = [_client(app, DEWI) for app in (first, second)]
    url = "/portal/subscriptions/sub_demo_dewi_sync/plan"
    answers = []
    for n in range(6):
        client = clients[n % 2]
        token = csrf_token_from(client.get(url).text)
        page = client.post(
            url,
            data={"csrf_token": token, "step": "preview", "plan": BUSINESS, "promotion_code": f"GUESS{n}"},
        )
        answers.append("Too many codes tried" in page.text)
    assert answers == [False] * 4 + [True] * 2
    copies = []
    for n in range(3):
        client = clients[n % 2]
        token = csrf_token_from(client.get(f"/portal/invoices/{ONBOARDING}").text)
        copies.append(
            client.post(f"/portal/invoices/{ONBOARDING}/email", data={"csrf_token": token}).status_code
        )
    assert copies == [303, 303, 429]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"payment_method": "x" * 100_000}, 422),
        ({"payment_method": DEWI_VISA + "\x00"}, 422),
        ({"payment_method": "pm_demo_ava_visa"}, 422),  # Ava's card
        (
            {
                "payment_method": "new",
                "card_number": "4242\u0664242424242424",  # an Arabic-Indic digit
                "exp_month": "\u0661\u0662",
                "exp_year": "2030",
                "cvc": "12\u200b3",
            },
            422,
        ),
        (
            {
                "payment_method": "new",
                "card_number": "4242424242424242",
                "exp_month": "9" * 20,
                "exp_year": "-1",
                "cvc": "1234567",
            },
            422,
        ),
        ({"payment_method": DEWI_VISA, "amount_due": "x" * 10_000}, 409),
        ({"payment_method": DEWI_VISA, "amount_due": "14900 usd"}, 409),
        ({"payment_method": DEWI_VISA, "amount_due": "1.49e4 USD"}, 409),
    ],
)
def test_hostile_payment_forms_are_refused_plainly_and_charge_nothing(
    shop: Flask, payments: TestPaymentProvider, fields: dict[str, str], status: int
) -> None:
    dewi = _client(shop, DEWI)
    token = csrf_token_from(dewi.get(PAY).text)
    answer = dewi.post(PAY, data={"csrf_token": token, **fields})
    assert answer.status_code == status
    assert payments.calls.count("charge") == 0 and payments.calls.count("attach_card") == 0
    assert _status(shop) is InvoiceStatus.OPEN


# -- "now" in one tab, "at the period's end" in another, on two instances --------------------------


@pytest.fixture
def two_shops(db_url: str, tmp_path: Path) -> Iterator[list[Flask]]:
    """Two portal apps (two hosts) on one database, SQLite or PostgreSQL,
    letting the customer choose how to cancel."""
    url = f"sqlite:///{tmp_path / 'shared.db'}" if db_url.startswith("sqlite") else db_url
    modes = {
        "CUSTOMER_PORTAL_CANCEL_MODES": ("period_end", "immediately"),
        "CUSTOMER_PORTAL_REFUND_POLICY": "Cancel now and we refund the unused days.",
    }
    first = make_portal_app(url, **modes)
    second = make_portal_app(url, demo_data=False, **modes)
    try:
        yield [first, second]
    finally:
        with first.app_context():
            portal_store(first).drop_all()
        close_app(second)
        close_app(first)


@pytest.mark.slow
def test_cancelling_now_and_at_the_period_end_at_once_never_ends_it_twice(two_shops: list[Flask]) -> None:
    clients = [_client(app, AVA) for app in two_shops]
    url = f"/portal/subscriptions/{AVA_SUB}/cancel"
    tokens = [csrf_token_from(c.get(f"/portal/subscriptions/{AVA_SUB}").text) for c in clients]
    barrier = threading.Barrier(2)
    answers: dict[str, int] = {}
    told: list[bool] = []

    def listener(sender: Any, **kw: Any) -> None:
        told.append(kw["at_period_end"])

    def cancel(n: int, when: str) -> None:
        barrier.wait(timeout=30)
        answers[when] = (
            clients[n].post(url, data={"csrf_token": tokens[n], "confirm": "yes", "when": when}).status_code
        )

    with signals.subscription_cancelled.connected_to(listener):
        threads = [
            threading.Thread(target=cancel, args=(n, when))
            for n, when in enumerate(("immediately", "period_end"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    after = stored_subscription(two_shops[0], AVA, AVA_SUB)
    with two_shops[0].app_context():
        actions = _audit_actions(two_shops[0], AVA)
    done = sorted(when for when, status in answers.items() if status == 303)
    assert set(answers.values()) <= {303, 409}, answers
    # Each answer that said "done" made a change of its own (a signal, an
    # audit event each): "now" ends it however the other went, and "at the
    # period's end" can only have come first (never after it ended).
    assert actions.count("subscription.cancelled") == len(told) == len(done) >= 1
    if "immediately" in done:
        assert after.status is SubscriptionStatus.CANCELLED
        assert told[-1] is False
    else:
        assert done == ["period_end"]
        assert (after.status, after.cancel_at_period_end) == (SubscriptionStatus.ACTIVE, True)
