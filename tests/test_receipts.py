"""Receipts after every payment, with the invoice's PDF rendered when the
outbox sends them, and "Email me this invoice" (POST, CSRF, limited)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, portal_store, sign_in
from test_pay_invoice import AVA_VISA, INVOICE, URL, add_open_invoice, pay

from flask_customer_portal.billing.renewal import renew_subscription
from flask_customer_portal.mail import Attachment, Message
from flask_customer_portal.outbox.sender import ATTACHMENT_HEADER
from flask_customer_portal.payments import DeclineReason, TestPaymentProvider
from flask_customer_portal.records import MailStatus
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
EMAIL_URL = f"/portal/invoices/{INVOICE}/email"


def receipts(mailer: MemoryMailer) -> list[Message]:
    return [m for m in mailer.outbox if m.subject.startswith("Receipt for invoice")]


def pdf_of(message: Message) -> Attachment:
    [attachment] = message.attachments
    assert attachment.content_type == "application/pdf"
    assert attachment.data.startswith(b"%PDF-")
    return attachment


def _app(tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider, **config: Any) -> Flask:
    app = make_portal_app(f"sqlite:///{tmp_path / 'receipts.db'}", mailer=mailer, payments=payments, **config)
    add_open_invoice(app)
    return app


@pytest.fixture
def shop(tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider) -> Iterator[Flask]:
    app = _app(tmp_path, mailer, payments)
    yield app
    close_app(app)


@pytest.fixture
def ava(shop: Flask) -> FlaskClient:
    client = shop.test_client()
    sign_in(shop, client, AVA)
    return client


def test_paying_an_invoice_sends_one_receipt_with_its_pdf(
    shop: Flask, ava: FlaskClient, mailer: MemoryMailer
) -> None:
    assert pay(ava, payment_method=AVA_VISA, amount_due="15000 USD").status_code == 303
    get_state(shop).wait_for_background_tasks()
    [receipt] = receipts(mailer)
    assert receipt.to == "ava@example.com"
    assert receipt.subject == f"Receipt for invoice INV-{INVOICE}"
    assert "Thank you: we received your payment of $150.00." in receipt.text
    assert "The invoice is attached as a PDF." in receipt.text
    assert f"/portal/invoices/{INVOICE}" in receipt.text
    assert pdf_of(receipt).filename == f"invoice-INV-{INVOICE}.pdf"
    with shop.app_context():
        [row] = [m for m in portal_store(shop).list_mail(status=MailStatus.SENT) if m.kind == "receipt"]
    # The row names the invoice; the PDF is made when it is sent, never stored.
    assert row.headers[ATTACHMENT_HEADER] == f"invoice_pdf:{INVOICE}"


def test_a_declined_payment_sends_no_receipt(shop: Flask, ava: FlaskClient, mailer: MemoryMailer) -> None:
    with shop.app_context():
        portal_store(shop).add_payment_method(
            factories.card(
                "pm_ava_declines",
                AVA,
                last4="0002",
                exp_year=2040,
                provider_token=TestPaymentProvider.token_for(
                    "4000000000000002", charges_decline=DeclineReason.GENERIC
                ),
            )
        )
    assert pay(ava, payment_method="pm_ava_declines", amount_due="15000 USD").status_code == 422
    get_state(shop).wait_for_background_tasks()
    assert receipts(mailer) == []


@pytest.mark.parametrize(
    ("key", "sent", "attached"),
    [("CUSTOMER_PORTAL_RECEIPT_PDF", 1, False), ("CUSTOMER_PORTAL_RECEIPTS", 0, False)],
)
def test_receipts_and_their_pdf_can_be_turned_off(
    tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider, key: str, sent: int, attached: bool
) -> None:
    app = _app(tmp_path, mailer, payments, **{key: False})
    try:
        client = app.test_client()
        sign_in(app, client, AVA)
        assert pay(client, payment_method=AVA_VISA, amount_due="15000 USD").status_code == 303
        get_state(app).wait_for_background_tasks()
        found = receipts(mailer)
        assert len(found) == sent
        assert all(bool(m.attachments) is attached for m in found)
        assert all("attached as a PDF" not in m.text for m in found)
    finally:
        close_app(app)


def test_a_renewal_sends_a_receipt(shop: Flask, mailer: MemoryMailer) -> None:
    with shop.app_context():
        subscription = get_state(shop).storage.get_subscription(AVA, AVA_SUB)
        assert subscription is not None
        result = renew_subscription(
            get_state(shop), AVA, AVA_SUB, now=subscription.current_period_end + timedelta(minutes=1)
        )
    assert result.invoice is not None
    get_state(shop).wait_for_background_tasks()
    [receipt] = receipts(mailer)
    assert receipt.subject == f"Receipt for invoice {result.invoice.number}"
    pdf_of(receipt)


# -- "Email me this invoice" -------------------------------------------------------------


def test_the_invoice_page_has_the_button(ava: FlaskClient) -> None:
    page = ava.get(f"/portal/invoices/{INVOICE}").text
    assert f'action="{EMAIL_URL}"' in page
    assert "Email me this invoice" in page


def test_email_me_this_invoice(shop: Flask, ava: FlaskClient, mailer: MemoryMailer) -> None:
    token = csrf_token_from(ava.get(f"/portal/invoices/{INVOICE}").text)
    response = ava.post(EMAIL_URL, data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/portal/invoices/{INVOICE}")
    assert "We are sending invoice" in ava.get(f"/portal/invoices/{INVOICE}").text
    get_state(shop).wait_for_background_tasks()
    [copy] = mailer.outbox
    assert (copy.to, copy.subject) == ("ava@example.com", f"Invoice INV-{INVOICE}")
    assert "Here is the invoice you asked for." in copy.text
    pdf_of(copy)


def test_email_me_needs_csrf_and_the_customers_own_invoice(shop: Flask, mailer: MemoryMailer) -> None:
    chen = shop.test_client()
    sign_in(shop, chen, "cus_demo_chen")
    assert chen.post(EMAIL_URL).status_code == 400
    token = csrf_token_from(chen.get("/portal/").text)
    assert chen.post(EMAIL_URL, data={"csrf_token": token}).status_code == 404
    assert chen.get(EMAIL_URL).status_code == 405
    get_state(shop).wait_for_background_tasks()
    assert mailer.outbox == []


def test_email_me_is_rate_limited(
    tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider
) -> None:
    app = _app(tmp_path, mailer, payments, CUSTOMER_PORTAL_INVOICE_EMAIL_RATE_LIMIT="2 per hour")
    try:
        client = app.test_client()
        sign_in(app, client, AVA)
        token = csrf_token_from(client.get(f"/portal/invoices/{INVOICE}").text)
        statuses = [client.post(EMAIL_URL, data={"csrf_token": token}).status_code for _ in range(3)]
        assert statuses == [303, 303, 429]
        refused = client.post(EMAIL_URL, data={"csrf_token": token})
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert "You have asked for many invoices by email recently" in refused.text
        get_state(app).wait_for_background_tasks()
        assert len(mailer.outbox) == 2
    finally:
        close_app(app)


# -- over real SMTP ------------------------------------------------------------------------


def test_a_receipt_arrives_once_over_smtp_with_its_pdf(tmp_path: Path, smtp_server: Any) -> None:
    payments = TestPaymentProvider()
    app = make_portal_app(f"sqlite:///{tmp_path / 'smtp.db'}", payments=payments, **smtp_server.config())
    try:
        add_open_invoice(app)
        client = app.test_client()
        sign_in(app, client, AVA)
        assert pay(client, payment_method=AVA_VISA, amount_due="15000 USD").status_code == 303
        # A double submit: nothing more charged, nothing more mailed.
        token = csrf_token_from(client.get(f"/portal/invoices/{INVOICE}").text)
        client.post(URL, data={"csrf_token": token, "payment_method": AVA_VISA, "amount_due": "15000 USD"})
        get_state(app).wait_for_background_tasks()
        with app.app_context():
            from flask_customer_portal.outbox import deliver_due

            deliver_due(get_state(app))  # nothing is left to send again
    finally:
        get_state(app).shutdown()
        close_app(app)
    received = [m for m in smtp_server.messages if m["Subject"].startswith("Receipt for invoice")]
    assert len(received) == 1
    [message] = received
    assert message["To"] == "ava@example.com"
    [part] = list(message.iter_attachments())
    assert part.get_content_type() == "application/pdf"
    assert part.get_filename() == f"invoice-INV-{INVOICE}.pdf"
    assert part.get_content().startswith(b"%PDF-")
    assert "$150.00" in message.get_body(preferencelist=("plain",)).get_content()
    assert len(payments.charges) == 1
