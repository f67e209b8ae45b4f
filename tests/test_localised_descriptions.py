"""Stored descriptions carry ISO dates ("2026-12-01 to 2027-01-01"); every
place a customer reads them (the invoice list, the PDF, the credit note, the
CSV export) writes them in the customer's language."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import sign_in
from test_exports_licences import CHEN, add_invoices, chen_invoice, read_csv
from test_pdf import all_text, make_document, make_invoice, render

from flask_customer_portal.pdf import FPDFInvoiceRenderer
from flask_customer_portal.pdf.document import CreditNoteDocument
from flask_customer_portal.storage import CreditNote, CreditNoteReason, Customer, InvoiceLine

SPAN = "Acme Sync Pro (2026-12-01 to 2027-01-01)"
ISO = ("2026-12-01", "2027-01-01")
#: What the span reads as in Indonesian: Babel's interval, no English "to".
ID_SPAN = "1 Des 2026\u20131 Jan 2027"
EN_SPAN = "Dec 1, 2026\u2009\u2013\u2009Jan 1, 2027"


def _flat(text: str) -> str:
    """PDF text as one line (long descriptions wrap)."""
    return " ".join(text.split())


def test_pdf_invoice_lines_show_dates_in_the_customers_language() -> None:
    invoice = make_invoice(lines=(InvoiceLine(SPAN, 1, 1900, 1900),))
    for locale, expected in (("id", ID_SPAN), ("en", EN_SPAN)):
        text = _flat(all_text(render(make_document(invoice, locale=locale))))
        assert not any(day in text for day in ISO), (locale, text)
        assert "Pro (" in text and " to 2027" not in text
        assert _flat(expected) in text, (locale, text)


def test_a_pdf_invoice_without_lines_shows_its_description_localised() -> None:
    invoice = dataclasses.replace(make_invoice(lines=()), description=SPAN)
    text = _flat(all_text(render(make_document(invoice, locale="id"))))
    assert ID_SPAN in text, text
    assert "2026-12-01" not in text


def test_pdf_credit_note_lines_show_dates_in_the_customers_language() -> None:
    invoice = make_invoice(lines=(InvoiceLine(SPAN, 1, 1900, 1900),))
    note = CreditNote(
        id="cn_1",
        number="CN-0001",
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        amount=1900,
        refunded=1900,
        issued_at=datetime(2027, 1, 2, tzinfo=UTC),
        reason=CreditNoteReason.DUPLICATE,
        lines=(InvoiceLine(SPAN, 1, 1900, 1900),),
    )
    document = CreditNoteDocument(
        credit_note=note,
        invoice=invoice,
        customer=Customer(invoice.customer_id, "ava@example.com", "Ava Example"),
        merchant_name="Acme Software Ltd",
        locale="id",
    )
    text = _flat(all_text(FPDFInvoiceRenderer().render_credit_note(document)))
    assert ID_SPAN in text, text
    assert "2026-12-01" not in text


def test_the_csv_and_the_invoice_list_show_dates_in_the_customers_language(
    app: Flask, client: FlaskClient
) -> None:
    add_invoices(app, CHEN, [chen_invoice(1, description=SPAN)])
    sign_in(app, client, CHEN)
    indonesian = {"Accept-Language": "id"}

    _header, row = read_csv(client.get("/portal/invoices/export.csv", headers=indonesian).data)
    assert row[2] == f"Acme Sync Pro ({ID_SPAN})"
    assert row[1] == "2026-03-14"  # the date columns stay ISO 8601, for spreadsheets

    page = client.get("/portal/invoices", headers=indonesian).text
    assert ID_SPAN in page
    assert "2026-12-01" not in page
