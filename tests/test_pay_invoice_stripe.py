"""Paying a Stripe one-off invoice from its page over the composite store:
``POST /v1/invoices/{id}/pay`` with the chosen saved card and the portal's
idempotency key, under the local database's lock (keyed by the invoice),
once however many submits race over two apps; an invoice Stripe already
shows as paid is answered as done and never paid again; a decline is said
once, and nothing is recorded as paid."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, sign_in
from stripe_support import CARD_CHARGE_FAILS, invoice_pays, make_stripe_portal_app

from flask_customer_portal.billing.collect import idempotency_key
from flask_customer_portal.contrib._composite_invoices import invoice_lock_key
from flask_customer_portal.contrib.stripe import StripeBillingStore
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import InvoiceStatus
from flask_customer_portal.testing import MemoryMailer, csrf_token_from


@dataclass
class OneOff:
    """A Stripe customer with a saved Visa (their default) and an open
    one-off invoice of 149.00 USD, mapped to the portal's ``cus_dewi``;
    another customer (``cus_budi``) with an open one-off invoice of theirs."""

    customer_id: str
    card_id: str
    invoice_id: str
    other_invoice_id: str
    url: str


def _open_one_off(client: stripe.StripeClient, customer_id: str, amount: int) -> str:
    """An open one-off invoice: localstripe keeps an invoice a draft until a
    payment is tried, so one try with a card that fails leaves it open."""
    client.v1.invoice_items.create(
        params={"customer": customer_id, "amount": amount, "currency": "usd", "description": "Onboarding"}
    )
    invoice = client.v1.invoices.create(params={"customer": customer_id})
    failing = client.v1.payment_methods.attach(CARD_CHARGE_FAILS, params={"customer": customer_id})
    with suppress(stripe.StripeError):
        client.v1.invoices.pay(invoice.id, params={"payment_method": failing.id, "off_session": True})
    client.v1.payment_methods.detach(failing.id)
    assert client.v1.invoices.retrieve(invoice.id).status == "open"
    return str(invoice.id)


def _customer(client: stripe.StripeClient, email: str) -> tuple[str, str]:
    customer = client.v1.customers.create(params={"email": email})
    card = client.v1.payment_methods.attach("pm_card_visa", params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": card.id}})
    return str(customer.id), str(card.id)


@pytest.fixture
def one_off(localstripe: stripe.StripeClient, localstripe_url: str) -> OneOff:
    customer, card = _customer(localstripe, "dewi@example.com")
    other, _ = _customer(localstripe, "budi@example.com")
    return OneOff(
        customer,
        card,
        _open_one_off(localstripe, customer, 14900),
        _open_one_off(localstripe, other, 500),
        localstripe_url,
    )


def _ids(one_off: OneOff, localstripe: stripe.StripeClient) -> dict[str, str]:
    other = localstripe.v1.invoices.retrieve(one_off.other_invoice_id).customer
    return {"cus_dewi": one_off.customer_id, "cus_budi": str(other)}


@pytest.fixture
def shop(
    one_off: OneOff, localstripe: stripe.StripeClient, tmp_path: Path
) -> Iterator[tuple[Flask, MemoryMailer]]:
    mailer = MemoryMailer()
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'shop.db'}", localstripe, _ids(one_off, localstripe), mailer=mailer
    )
    try:
        yield app, mailer
    finally:
        close_app(app)


def _signed_in(app: Flask, customer_id: str = "cus_dewi") -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def _form(client: FlaskClient, invoice_id: str) -> dict[str, str]:
    page = client.get(f"/portal/invoices/{invoice_id}/pay")
    assert page.status_code == 200, page.text
    amount = re.search(r'name="amount_due" value="([^"]*)"', page.text)
    assert amount is not None
    return {"csrf_token": csrf_token_from(page.text), "amount_due": amount.group(1)}


def _portal_pays(one_off: OneOff, invoice_id: str) -> list[dict[str, Any]]:
    prefix = f"invoice:{invoice_id}:attempt:"
    return [
        pay
        for pay in invoice_pays(one_off.url, invoice_id)
        if (pay["idempotency_key"] or "").startswith(prefix)
    ]


def _events(app: Flask, invoice_id: str) -> list[str]:
    with app.app_context():
        events = get_state(app).storage.list_customer_events("cus_dewi", page=1, per_page=100).items
    return [event.action for event in events if event.subject_id == invoice_id]


def test_the_composite_store_over_stripe_pays_one_off_invoices(shop: tuple[Flask, MemoryMailer]) -> None:
    app, _ = shop
    assert get_state(app).capabilities.invoice_lock


def test_a_one_off_stripe_invoice_is_paid_once_with_the_chosen_card(
    shop: tuple[Flask, MemoryMailer], one_off: OneOff, localstripe: stripe.StripeClient
) -> None:
    app, mailer = shop
    client = _signed_in(app)
    listed = client.get("/portal/invoices")
    assert f'href="/portal/invoices/{one_off.invoice_id}/pay"' in listed.text
    assert "Pay this invoice" in client.get(f"/portal/invoices/{one_off.invoice_id}").text
    form = _form(client, one_off.invoice_id)
    assert form["amount_due"] == "14900 USD"

    paid = client.post(
        f"/portal/invoices/{one_off.invoice_id}/pay", data={**form, "payment_method": one_off.card_id}
    )
    assert paid.status_code == 303 and paid.headers["Location"].endswith(f"/invoices/{one_off.invoice_id}")
    assert localstripe.v1.invoices.retrieve(one_off.invoice_id).status == "paid"
    [pay] = _portal_pays(one_off, one_off.invoice_id)
    assert (pay["idempotency_key"], pay["status"]) == (idempotency_key(one_off.invoice_id, 1), 200)
    assert _events(app, one_off.invoice_id).count("invoice.paid") == 1
    assert "charge.succeeded" in _events(app, one_off.invoice_id)
    # The attempt is kept with the invoice at Stripe.
    metadata = localstripe.v1.invoices.retrieve(one_off.invoice_id).metadata
    assert '"s":"succeeded"' in metadata["portal_attempt_1"]
    get_state(app).wait_for_background_tasks()
    [receipt] = [m for m in mailer.outbox if m.subject.startswith("Receipt for invoice")]
    assert receipt.to == "cus_dewi@example.com" and "$149.00" in receipt.text

    # A second tab's submit: done, nothing paid again.
    again = client.post(
        f"/portal/invoices/{one_off.invoice_id}/pay", data={**form, "payment_method": one_off.card_id}
    )
    assert again.status_code == 303
    assert len(_portal_pays(one_off, one_off.invoice_id)) == 1
    assert f"/portal/invoices/{one_off.invoice_id}/pay" not in client.get("/portal/invoices").text


def test_an_invoice_stripe_already_shows_as_paid_is_not_paid_again(
    shop: tuple[Flask, MemoryMailer], one_off: OneOff, localstripe: stripe.StripeClient
) -> None:
    app, _ = shop
    client = _signed_in(app)
    form = _form(client, one_off.invoice_id)
    # Paid meanwhile at Stripe (the dashboard, Stripe's own retry): the page was open.
    localstripe.v1.invoices.pay(one_off.invoice_id, params={"payment_method": one_off.card_id})
    answer = client.post(
        f"/portal/invoices/{one_off.invoice_id}/pay", data={**form, "payment_method": one_off.card_id}
    )
    assert answer.status_code == 303
    assert _portal_pays(one_off, one_off.invoice_id) == []
    assert "invoice.paid" not in _events(app, one_off.invoice_id)


def test_a_declined_card_is_said_once_and_nothing_is_paid(
    shop: tuple[Flask, MemoryMailer], one_off: OneOff, localstripe: stripe.StripeClient
) -> None:
    app, _ = shop
    declining = localstripe.v1.payment_methods.attach(
        CARD_CHARGE_FAILS, params={"customer": one_off.customer_id}
    )
    client = _signed_in(app)
    form = _form(client, one_off.invoice_id)
    answer = client.post(
        f"/portal/invoices/{one_off.invoice_id}/pay", data={**form, "payment_method": declining.id}
    )
    assert answer.status_code == 422
    assert answer.text.count("was declined, so nothing was charged") == 1
    assert localstripe.v1.invoices.retrieve(one_off.invoice_id).status == "open"
    assert _events(app, one_off.invoice_id) == ["charge.declined"]
    assert len(_portal_pays(one_off, one_off.invoice_id)) == 1
    # The next try is a new attempt, with a key of its own.
    retried = client.post(
        f"/portal/invoices/{one_off.invoice_id}/pay",
        data={**_form(client, one_off.invoice_id), "payment_method": one_off.card_id},
    )
    assert retried.status_code == 303
    assert [p["idempotency_key"] for p in _portal_pays(one_off, one_off.invoice_id)] == [
        idempotency_key(one_off.invoice_id, 1),
        idempotency_key(one_off.invoice_id, 2),
    ]


def test_another_customers_invoice_is_not_found(shop: tuple[Flask, MemoryMailer], one_off: OneOff) -> None:
    app, _ = shop
    client = _signed_in(app)
    assert client.get(f"/portal/invoices/{one_off.other_invoice_id}/pay").status_code == 404
    token = csrf_token_from(client.get("/portal/invoices").text)
    answer = client.post(
        f"/portal/invoices/{one_off.other_invoice_id}/pay",
        data={"csrf_token": token, "payment_method": one_off.card_id},
    )
    assert answer.status_code == 404
    assert _portal_pays(one_off, one_off.other_invoice_id) == []


def test_the_lock_holds_only_the_customers_one_off_invoices(
    shop: tuple[Flask, MemoryMailer], one_off: OneOff, localstripe: stripe.StripeClient
) -> None:
    app, _ = shop
    store = StripeBillingStore(localstripe)
    with store.lock_invoice(one_off.customer_id, one_off.other_invoice_id) as lock:
        assert lock is None
    with store.lock_invoice(one_off.customer_id, one_off.invoice_id) as lock:
        assert lock is not None and lock.invoice.status is InvoiceStatus.OPEN
        with pytest.raises(ValueError, match="its own invoice"):
            lock.attempts(one_off.other_invoice_id)
    with app.app_context():
        storage = get_state(app).storage
        with storage.lock_invoice("cus_budi", one_off.invoice_id) as held:  # type: ignore[attr-defined]
            assert held is None
        with storage.lock_invoice("cus_dewi", one_off.invoice_id) as held:  # type: ignore[attr-defined]
            assert held is not None and held.invoice.customer_id == "cus_dewi"
    assert invoice_lock_key(one_off.invoice_id) == f"invoice:{one_off.invoice_id}"


# -- many submits over two apps ---------------------------------------------------------------


@pytest.fixture
def two_shops(
    db_url: str, one_off: OneOff, localstripe: stripe.StripeClient, tmp_path: Path
) -> Iterator[list[Flask]]:
    """Two portal apps (two "servers") on one database, over one Stripe."""
    url = f"sqlite:///{tmp_path / 'shared.db'}" if db_url.startswith("sqlite") else db_url
    ids = _ids(one_off, localstripe)
    first = make_stripe_portal_app(url, localstripe, ids)
    second = make_stripe_portal_app(url, localstripe, ids, add_customers=False)
    try:
        yield [first, second]
    finally:
        with first.app_context():
            get_state(first).storage.local.drop_all()  # type: ignore[attr-defined]
        close_app(second)
        close_app(first)


@pytest.mark.slow
def test_many_submits_over_two_apps_pay_stripe_once(two_shops: list[Flask], one_off: OneOff) -> None:
    submits = 16
    clients = []
    for index in range(submits):
        app = two_shops[index % 2]
        client = _signed_in(app)
        clients.append((client, _form(client, one_off.invoice_id)))
    barrier = threading.Barrier(submits)
    statuses: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def submit(client: FlaskClient, form: dict[str, str]) -> None:
        try:
            barrier.wait(timeout=60)
            response = client.post(
                f"/portal/invoices/{one_off.invoice_id}/pay", data={**form, "payment_method": one_off.card_id}
            )
            with guard:
                statuses.append(response.status_code)
        except BaseException as exc:
            with guard:
                errors.append(exc)

    threads = [threading.Thread(target=submit, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    if errors:
        raise errors[0]
    assert sorted(set(statuses)) == [303], statuses
    [pay] = _portal_pays(one_off, one_off.invoice_id)
    assert (pay["idempotency_key"], pay["status"]) == (idempotency_key(one_off.invoice_id, 1), 200)
    assert _events(two_shops[1], one_off.invoice_id).count("invoice.paid") == 1


def test_a_new_card_from_stripe_elements_is_attached_and_pays(
    shop: tuple[Flask, MemoryMailer], one_off: OneOff, localstripe: stripe.StripeClient
) -> None:
    app, _ = shop
    client = _signed_in(app)
    form = _form(client, one_off.invoice_id)
    # Stripe Elements posts the PaymentMethod it made in the browser, never the card.
    paid = client.post(
        f"/portal/invoices/{one_off.invoice_id}/pay",
        data={**form, "payment_method": "new", "payment_token": "pm_card_visa"},
    )
    assert paid.status_code == 303, paid.text
    assert localstripe.v1.invoices.retrieve(one_off.invoice_id).status == "paid"
    [pay] = _portal_pays(one_off, one_off.invoice_id)
    assert pay["idempotency_key"] == idempotency_key(one_off.invoice_id, 1)
    cards = localstripe.v1.payment_methods.list(params={"customer": one_off.customer_id, "type": "card"}).data
    assert len(cards) == 2  # the saved Visa and the new card, now saved too
