"""Paying an open invoice from its own page (``portal.pay_invoice``): with a
saved or a new card, once however many submits race, never another
customer's invoice, never a paid or void one, and the unpaid renewal of a
subscription on hold only through reactivation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import factories
import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, portal_store, sign_in

from flask_customer_portal.payments import DeclineReason, TestPaymentProvider
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import InvoiceStatus
from flask_customer_portal.testing import csrf_token_from

INVOICE = "inv_oneoff_ava"
URL = f"/portal/invoices/{INVOICE}/pay"
#: Ava's saved Visa in the demo data.
AVA_VISA = "pm_demo_ava_visa"


def add_open_invoice(
    app: Flask, invoice_id: str = INVOICE, customer_id: str = "cus_demo_ava", **kw: Any
) -> None:
    with app.app_context():
        portal_store(app).add_invoice(
            factories.invoice(
                invoice_id,
                customer_id,
                status=InvoiceStatus.OPEN,
                number=f"INV-{invoice_id}",
                description="Setup and onboarding",
                subtotal=15000,
                total=15000,
                **kw,
            )
        )


def invoice_status(app: Flask, invoice_id: str = INVOICE, customer_id: str = "cus_demo_ava") -> InvoiceStatus:
    with app.app_context():
        found = get_state(app).storage.get_invoice(customer_id, invoice_id)
    assert found is not None
    return found.status


def pay(client: FlaskClient, url: str = URL, **fields: str) -> Any:
    token = csrf_token_from(client.get(url).text)
    return client.post(url, data={"csrf_token": token, **fields})


@pytest.fixture
def oneoff(app: Flask) -> Flask:
    add_open_invoice(app)
    return app


def test_the_page_shows_the_amount_and_the_saved_cards(oneoff: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get(URL)
    assert page.status_code == 200
    assert "$150.00" in page.text
    assert 'value="pm_demo_ava_visa" checked' in page.text
    assert 'name="amount_due" value="15000 USD"' in page.text


def test_links_from_the_list_the_invoice_and_the_overview(oneoff: Flask, ava_client: FlaskClient) -> None:
    for path in ("/portal/invoices", f"/portal/invoices/{INVOICE}", "/portal/"):
        assert f'href="{URL}"' in ava_client.get(path).text, path


def test_no_pay_link_for_paid_invoices(app: Flask, ava_client: FlaskClient) -> None:
    # Ava's demo invoices are all paid: nothing to pay anywhere.
    for path in ("/portal/invoices", "/portal/"):
        assert '/pay"' not in ava_client.get(path).text, path


def test_a_saved_card_pays_once(
    oneoff: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = pay(ava_client, payment_method=AVA_VISA, amount_due="15000 USD")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/portal/invoices/{INVOICE}")
    assert invoice_status(oneoff) is InvoiceStatus.PAID
    assert [key for key, _ in payments.charges] == [f"invoice:{INVOICE}:attempt:1"]
    assert "is paid" in ava_client.get(f"/portal/invoices/{INVOICE}").text
    # The same form again (back button, second tab): nothing more is charged.
    token = csrf_token_from(ava_client.get("/portal/invoices").text)
    again = ava_client.post(
        URL, data={"csrf_token": token, "payment_method": AVA_VISA, "amount_due": "15000 USD"}
    )
    assert again.status_code == 303
    assert payments.calls.count("charge") == 1


def test_a_new_card_is_saved_and_pays(
    oneoff: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = pay(
        ava_client,
        payment_method="new",
        card_number="4242 4242 4242 4242",
        exp_month="12",
        exp_year="2040",
        cvc="123",
        amount_due="15000 USD",
    )
    assert response.status_code == 303
    assert invoice_status(oneoff) is InvoiceStatus.PAID
    assert len(payments.charges) == 1


def test_a_declined_new_card_is_said_once_and_nothing_is_charged(
    oneoff: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = pay(
        ava_client,
        payment_method="new",
        card_number="4000 0000 0000 0002",
        exp_month="12",
        exp_year="2040",
        cvc="123",
        amount_due="15000 USD",
    )
    assert response.status_code == 422
    assert response.text.count("Nothing was charged") == 1
    assert "4000 0000 0000 0002" not in response.text.replace("&nbsp;", " ").split("Test mode")[0]
    assert payments.charges == []
    assert invoice_status(oneoff) is InvoiceStatus.OPEN


def test_a_saved_card_that_declines(
    oneoff: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    with oneoff.app_context():
        portal_store(oneoff).add_payment_method(
            factories.card(
                "pm_ava_declines",
                "cus_demo_ava",
                last4="0002",
                exp_year=2040,
                provider_token=TestPaymentProvider.token_for(
                    "4000000000000002", charges_decline=DeclineReason.GENERIC
                ),
            )
        )
    response = pay(ava_client, payment_method="pm_ava_declines", amount_due="15000 USD")
    assert response.status_code == 422
    assert response.text.count("was declined, so nothing was charged") == 1
    assert payments.charges == []
    assert invoice_status(oneoff) is InvoiceStatus.OPEN
    # The declined card is not chosen again for the customer.
    assert 'value="pm_ava_declines" checked' not in response.text
    retry = pay(ava_client, payment_method=AVA_VISA, amount_due="15000 USD")
    assert retry.status_code == 303
    assert [key for key, _ in payments.charges] == [f"invoice:{INVOICE}:attempt:2"]


def test_another_customers_invoice_is_not_found(
    oneoff: Flask, client: FlaskClient, payments: TestPaymentProvider
) -> None:
    sign_in(oneoff, client, "cus_demo_chen")
    assert client.get(URL).status_code == 404
    token = csrf_token_from(client.get("/portal/").text)
    response = client.post(URL, data={"csrf_token": token, "payment_method": AVA_VISA})
    assert response.status_code == 404
    assert client.get("/portal/invoices/no_such_invoice/pay").status_code == 404
    assert payments.calls.count("charge") == 0
    assert invoice_status(oneoff) is InvoiceStatus.OPEN


def test_a_post_without_csrf_is_refused(
    oneoff: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = ava_client.post(URL, data={"payment_method": AVA_VISA})
    assert response.status_code == 400
    assert payments.calls.count("charge") == 0


def test_an_amount_other_than_the_one_shown_charges_nothing(
    oneoff: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = pay(ava_client, payment_method=AVA_VISA, amount_due="9900 USD")
    assert response.status_code == 409
    assert "nothing was charged" in response.text
    assert payments.calls.count("charge") == 0


@pytest.mark.parametrize("status", [InvoiceStatus.PAID, InvoiceStatus.VOID])
def test_a_paid_or_void_invoice_is_not_charged(
    app: Flask, ava_client: FlaskClient, payments: TestPaymentProvider, status: InvoiceStatus
) -> None:
    add_open_invoice(app, "inv_closed_ava")
    with app.app_context(), portal_store(app).lock_invoice("cus_demo_ava", "inv_closed_ava") as lock:
        assert lock is not None
        from sqlalchemy import update

        from flask_customer_portal.contrib.sqla.models import InvoiceModel

        lock._session.execute(
            update(InvoiceModel).where(InvoiceModel.id == "inv_closed_ava").values(status=status)
        )
    url = "/portal/invoices/inv_closed_ava/pay"
    page = ava_client.get(url)
    assert page.status_code == 200
    assert "This invoice is not open, so there is nothing to pay. Nothing was charged." in page.text
    assert 'name="payment_method"' not in page.text
    token = csrf_token_from(ava_client.get("/portal/").text)
    response = ava_client.post(url, data={"csrf_token": token, "payment_method": AVA_VISA})
    assert response.status_code == (303 if status is InvoiceStatus.PAID else 409)
    assert payments.calls.count("charge") == 0


def test_an_on_hold_renewal_is_paid_by_reactivating(
    app: Flask, client: FlaskClient, payments: TestPaymentProvider
) -> None:
    sign_in(app, client, "cus_demo_budi")
    with app.app_context():
        store = get_state(app).storage
        page = store.list_invoices("cus_demo_budi", page=1, per_page=50)
        budi_open = next(i for i in page.items if i.status is InvoiceStatus.OPEN)
        budi_card = store.list_payment_methods("cus_demo_budi")[0]
    url = f"/portal/invoices/{budi_open.id}/pay"
    assert f'href="{url}"' not in client.get("/portal/invoices").text
    page_text = client.get(url).text
    # Budi reads the portal in Indonesian.
    assert "Tidak ada yang ditagih" in page_text
    assert 'name="payment_method"' not in page_text
    assert f"/portal/subscriptions/{budi_open.subscription_id}/payment-method" in page_text
    token = csrf_token_from(page_text)
    response = client.post(url, data={"csrf_token": token, "payment_method": budi_card.id})
    assert response.status_code == 409
    assert payments.calls.count("charge") == 0


# -- many submits at once -----------------------------------------------------------------


class SlowProvider(TestPaymentProvider):
    """Answers each charge after a pause, so racing submits overlap it."""

    def charge(self, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return super().charge(**kwargs)


def _race(apps: list[Flask], submits: int) -> list[int]:
    """``submits`` signed-in clients, spread over ``apps``, press "Pay" at once."""
    clients = []
    for index in range(submits):
        app = apps[index % len(apps)]
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        token = csrf_token_from(client.get(URL).text)
        clients.append((client, token))
    barrier = threading.Barrier(submits)
    statuses: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def submit(client: FlaskClient, token: str) -> None:
        try:
            barrier.wait(timeout=30)
            response = client.post(
                URL, data={"csrf_token": token, "payment_method": AVA_VISA, "amount_due": "15000 USD"}
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
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return statuses


@pytest.fixture
def two_apps(db_url: str, tmp_path: Path) -> Iterator[tuple[list[Flask], SlowProvider]]:
    """Two portal apps (two "servers") on one database, one provider."""
    provider = SlowProvider()
    url = f"sqlite:///{tmp_path / 'shared.db'}" if db_url.startswith("sqlite") else db_url
    first = make_portal_app(url, payments=provider)
    second = make_portal_app(url, payments=provider, demo_data=False)
    add_open_invoice(first)
    try:
        yield [first, second], provider
    finally:
        with first.app_context():
            portal_store(first).drop_all()
        close_app(second)
        close_app(first)


@pytest.mark.slow
def test_many_submits_on_two_apps_charge_once(two_apps: tuple[list[Flask], SlowProvider]) -> None:
    apps, provider = two_apps
    statuses = _race(apps, 16)
    assert sorted(set(statuses)) == [303], statuses
    assert provider.calls.count("charge") == 1
    assert [key for key, _ in provider.charges] == [f"invoice:{INVOICE}:attempt:1"]
    assert invoice_status(apps[1]) is InvoiceStatus.PAID
    with apps[0].app_context():
        events = get_state(apps[0]).storage.list_customer_events("cus_demo_ava", page=1, per_page=100).items
    assert [e.action for e in events if e.subject_id == INVOICE].count("invoice.paid") == 1


def test_an_invoice_lock_is_the_customers_own(oneoff: Flask) -> None:
    with oneoff.app_context():
        with portal_store(oneoff).lock_invoice("cus_demo_chen", INVOICE) as lock:
            assert lock is None
        with portal_store(oneoff).lock_invoice("cus_demo_ava", INVOICE) as lock:
            assert lock is not None
            assert lock.invoice.total == 15000
            with pytest.raises(ValueError, match="its own invoice"):
                lock.attempts("inv_other")


NEW_MASTERCARD = {
    "payment_method": "new",
    "card_number": "5555 5555 5555 4444",
    "exp_month": "12",
    "exp_year": "2040",
    "cvc": "123",
    "amount_due": "15000 USD",
}


def test_raw_card_details_are_refused_when_the_provider_does_not_take_them(tmp_path: Path) -> None:
    class TokensOnly(TestPaymentProvider):
        accepts_raw_cards = False

    provider = TokensOnly()
    app = make_portal_app(f"sqlite:///{tmp_path / 'tokens.db'}", payments=provider)
    try:
        add_open_invoice(app)
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        assert 'name="card_number"' not in client.get(URL).text
        for fields in (NEW_MASTERCARD, {"payment_method": "new", "cvc": "1", "amount_due": "15000 USD"}):
            assert pay(client, **fields).status_code == 400
        assert provider.calls == []
        assert invoice_status(app) is InvoiceStatus.OPEN
    finally:
        close_app(app)


def test_the_most_saved_cards_holds_on_an_invoice_payment(tmp_path: Path) -> None:
    provider = TestPaymentProvider()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'few.db'}", payments=provider, CUSTOMER_PORTAL_MAX_SAVED_CARDS=1
    )
    try:
        add_open_invoice(app)
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        refused = pay(client, **NEW_MASTERCARD)
        assert refused.status_code == 422
        assert "You already have 1 saved card, the most an account can keep." in refused.text
        assert "5555 5555 5555 4444" not in refused.text
        assert provider.calls == []
        assert invoice_status(app) is InvoiceStatus.OPEN
    finally:
        close_app(app)


def test_the_card_add_limit_holds_on_an_invoice_payment(tmp_path: Path) -> None:
    provider = TestPaymentProvider()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'limited.db'}", payments=provider, CUSTOMER_PORTAL_CARD_ATTACH_LIMIT="1/hour"
    )
    try:
        add_open_invoice(app)
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        declined = pay(client, **{**NEW_MASTERCARD, "card_number": "4000 0000 0000 0002"})
        assert declined.status_code == 422
        refused = pay(client, **NEW_MASTERCARD)
        assert refused.status_code == 429
        assert "Retry-After" in refused.headers
        assert "You have tried to add too many cards recently" in refused.text
        assert provider.calls.count("charge") == 0
        assert invoice_status(app) is InvoiceStatus.OPEN
    finally:
        close_app(app)
