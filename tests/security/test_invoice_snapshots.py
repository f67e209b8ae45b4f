"""Issued invoices are snapshots: a paid (or void, or refunded) invoice
keeps the billing details it was issued with, even none."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from factories import vat_invoice
from flask import Flask
from flask.testing import FlaskClient
from security_support import AVA, db_dump
from sqlalchemy import func, select

from flask_customer_portal.contrib.sqla import InvoiceModel, SQLAlchemyStorage
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    AuditEvent,
    BillingDetails,
    Customer,
    Invoice,
    InvoiceStatus,
    StateConflict,
    TaxIdScheme,
)
from flask_customer_portal.testing import csrf_token_from

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=timezone.utc)

EVIL = BillingDetails(
    name="Evil GmbH",
    line1="Unter den Linden 1",
    country="DE",
    city="Berlin",
    postal_code="10117",
    tax_id="DE136695976",
    tax_id_scheme=TaxIdScheme.EU_VAT,
    updated_at=T0,
)

EVIL_FORM = {
    "name": "Evil GmbH",
    "line1": "Unter den Linden 1",
    "line2": "",
    "city": "Berlin",
    "region": "",
    "postal_code": "10117",
    "country": "DE",
    "tax_id_scheme": "",
    "tax_id": "DE136695976",
}


def _invoice(invoice_id: str, customer_id: str, status: InvoiceStatus, **kw: object) -> Invoice:
    paid_at = T0 + timedelta(minutes=5) if status is InvoiceStatus.PAID else None
    return vat_invoice(invoice_id, customer_id, status=status, issued_at=T0, paid_at=paid_at, **kw)


# -- the store, on SQLite and PostgreSQL ------------------------------------------------


def test_item12_the_store_gives_billing_details_to_open_invoices_only(store: SQLAlchemyStorage) -> None:
    store.add_customer(Customer(id="cus_a", email="a@example.com", name="A"))
    # Issued last year, before the customer saved any details, and paid.
    for status in InvoiceStatus:
        store.add_invoice(_invoice(f"inv_{status}", "cus_a", status))
    before = {status: store.get_invoice("cus_a", f"inv_{status}") for status in InvoiceStatus}
    store.save_billing_details("cus_a", EVIL)
    event = AuditEvent(customer_id="cus_a", action="invoice.billing_details_added", occurred_at=T0)

    for status in (InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.REFUNDED):
        with pytest.raises(StateConflict, match="final"):
            store.add_invoice_billing_details("cus_a", f"inv_{status}", EVIL, event=event)
        assert store.get_invoice("cus_a", f"inv_{status}") == before[status]
    assert list(store.list_events("cus_a")) == []  # a refusal writes nothing

    added = store.add_invoice_billing_details("cus_a", "inv_open", EVIL, event=event)
    assert added is not None and added.billing_details == EVIL
    assert [e.action for e in store.list_events("cus_a")] == ["invoice.billing_details_added"]


def test_item12_an_invoice_paid_after_the_page_was_read_is_refused_by_the_store(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    store.add_customer(Customer(id="cus_a", email="a@example.com", name="A"))
    store.add_invoice(_invoice("inv_1", "cus_a", InvoiceStatus.OPEN))
    seen = store.get_invoice("cus_a", "inv_1")
    assert seen is not None and seen.status is InvoiceStatus.OPEN  # what the page showed
    # Paid in the meantime (a renewal charged, another tab paid it).
    session = store_app.extensions["sqlalchemy"].session
    with store_app.extensions["sqlalchemy"].engine.begin() as connection:
        connection.execute(
            InvoiceModel.__table__.update()
            .where(InvoiceModel.id == "inv_1")
            .values(status=InvoiceStatus.PAID.value, paid_at=T0)
        )
    session.expire_all()
    with pytest.raises(StateConflict):
        store.add_invoice_billing_details("cus_a", "inv_1", EVIL)
    with store_app.extensions["sqlalchemy"].engine.connect() as connection:
        filled = connection.execute(
            select(func.count()).where(InvoiceModel.billing_details.is_not(None))
        ).scalar_one()
    assert filled == 0


# -- the portal ---------------------------------------------------------------------------


def _post_details(client: FlaskClient) -> None:
    page = client.get("/portal/profile/billing")
    response = client.post(
        "/portal/profile/billing", data={**EVIL_FORM, "csrf_token": csrf_token_from(page.text)}
    )
    assert response.status_code == 303


def test_item12_a_paid_invoice_keeps_its_snapshot_and_the_refusal_is_clear(
    shop: Flask, ava: FlaskClient
) -> None:
    paid = "inv_demo_ava_sync_01"  # paid last period, issued without billing details
    store = get_state(shop).storage
    with shop.app_context():
        # An open invoice issued before Ava saved her details, too.
        store.add_invoice(_invoice("inv_ava_open", AVA, InvoiceStatus.OPEN))
        before = store.get_invoice(AVA, paid)
    assert before is not None and before.status is InvoiceStatus.PAID and before.billing_details is None
    _post_details(ava)
    dump = db_dump(shop)

    invoice_page = ava.get(f"/portal/invoices/{paid}")
    assert f"/portal/invoices/{paid}/billing-details" not in invoice_page.text  # nothing offered
    page = ava.get(f"/portal/invoices/{paid}/billing-details")
    assert page.status_code == 200
    assert "It is paid or closed, so it is final" in page.text
    assert f'action="/portal/invoices/{paid}/billing-details"' not in page.text
    refused = ava.post(
        f"/portal/invoices/{paid}/billing-details", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert refused.status_code == 409
    assert "It is paid or closed, so it is final" in refused.text
    assert "Evil GmbH" not in refused.text
    assert db_dump(shop) == dump  # nothing changed, no event
    with shop.app_context():
        assert store.get_invoice(AVA, paid) == before
    pdf = ava.get(f"/portal/invoices/{paid}/pdf")
    assert pdf.status_code == 200

    # An open invoice still gets them, once.
    link = "/portal/invoices/inv_ava_open/billing-details"
    assert link in ava.get("/portal/invoices/inv_ava_open").text
    page = ava.get(link)
    assert "Evil GmbH" in page.text
    added = ava.post(link, data={"csrf_token": csrf_token_from(page.text)})
    assert added.status_code == 303
    with shop.app_context():
        open_invoice = store.get_invoice(AVA, "inv_ava_open")
    assert open_invoice is not None and open_invoice.billing_details is not None
    assert open_invoice.billing_details.name == "Evil GmbH"
