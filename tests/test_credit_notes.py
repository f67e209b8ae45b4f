"""Refunds and credit notes of the portal's own invoices: recorded exactly
once by the store (SQLite and PostgreSQL), shown on the invoice page, its
PDF, the billing history and the CSV export, each credit note with a PDF
of its own that only its customer can download."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from db_support import in_threads
from factories import invoice, vat_invoice
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import portal_store, sign_in
from pypdf import PdfReader

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.pdf import (
    CreditNoteDocument,
    FPDFInvoiceRenderer,
    InvoiceDocument,
    default_credit_note_labels,
    default_labels,
)
from flask_customer_portal.storage import (
    AuditEvent,
    CreditNote,
    CreditNoteReason,
    Customer,
    InvoiceLine,
    InvoiceStatus,
    StateConflict,
)
from flask_customer_portal.testing import csrf_token_from

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=timezone.utc)
AVA, BUDI = "cus_demo_ava", "cus_demo_budi"
AVA_INVOICE = "inv_demo_ava_sync_14"  # paid, INV-000015
AVA_OLDER = "inv_demo_ava_sync_13"
BUDI_PAID = "inv_demo_budi_sync_01"


def _note(note_id: str, invoice_id: str = "inv_1", customer_id: str = "cus_a", **kw: Any) -> CreditNote:
    values: dict[str, Any] = {
        "id": note_id,
        "number": f"CN-{note_id}",
        "invoice_id": invoice_id,
        "customer_id": customer_id,
        "currency": "EUR",
        "amount": 595,
        "refunded": 595,
        "issued_at": T0 + timedelta(days=3),
        "reason": CreditNoteReason.PRODUCT_UNSATISFACTORY,
        **kw,
    }
    return CreditNote(**values)


def _customer(store: SQLAlchemyStorage, customer_id: str) -> None:
    store.add_customer(Customer(id=customer_id, email=f"{customer_id}@example.com", name=customer_id))


# -- the store ---------------------------------------------------------------------------


def test_a_partial_then_a_full_refund(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    store.add_invoice(vat_invoice("inv_1", "cus_a", issued_at=T0))  # 11.90 EUR, paid
    lines = (InvoiceLine("Half a month of Pro", 1, 595, 595),)
    event = AuditEvent(
        customer_id="cus_a", action="invoice.credited", occurred_at=T0, subject_id="inv_1", actor="merchant"
    )
    first = store.add_credit_note(_note("cn_1", lines=lines, memo="Sorry about the outage"), event=event)
    assert first.lines == lines

    partly = store.get_invoice("cus_a", "inv_1")
    assert partly is not None
    assert (partly.status, partly.amount_refunded, partly.amount_credited) == (InvoiceStatus.PAID, 595, 595)
    assert partly.partially_refunded and not partly.fully_refunded
    assert partly.display_status == "partially_refunded"
    assert partly.credit_notes == (first,)
    assert [e.subject_id for e in store.list_events("cus_a") if e.action == "invoice.credited"] == ["inv_1"]

    # The rest: 3.00 back to the card, 2.95 as credit on the account.
    second = _note("cn_2", refunded=300, issued_at=T0 + timedelta(days=4), reason=None)
    store.add_credit_note(second)
    done = store.get_invoice("cus_a", "inv_1")
    assert done is not None
    assert (done.amount_refunded, done.amount_credited) == (895, 1190)
    assert done.status is InvoiceStatus.PAID and done.display_status == "partially_refunded"
    assert [n.number for n in done.credit_notes] == ["CN-cn_1", "CN-cn_2"]

    # Nothing is left to credit.
    with pytest.raises(StateConflict):
        store.add_credit_note(_note("cn_3", amount=1, refunded=1))
    # Lists carry the sums too, without the notes.
    [listed] = store.list_invoices("cus_a", page=1, per_page=10).items
    assert (listed.amount_refunded, listed.amount_credited, listed.credit_notes) == (895, 1190, ())


def test_a_full_refund_makes_the_invoice_refunded(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    store.add_invoice(vat_invoice("inv_1", "cus_a", issued_at=T0))
    store.add_credit_note(_note("cn_1", amount=1190, refunded=1190, reason=CreditNoteReason.DUPLICATE))
    found = store.get_invoice("cus_a", "inv_1")
    assert found is not None
    assert found.status is InvoiceStatus.REFUNDED and found.display_status == "refunded"
    assert found.fully_refunded and not found.partially_refunded


def test_the_same_credit_note_twice_is_recorded_once(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    store.add_invoice(vat_invoice("inv_1", "cus_a", issued_at=T0))
    note = _note("cn_1")
    assert store.add_credit_note(note) == note
    assert store.add_credit_note(note) == note  # a retry
    found = store.get_invoice("cus_a", "inv_1")
    assert found is not None and found.amount_refunded == 595 and len(found.credit_notes) == 1
    # The same id for another invoice is not a retry.
    store.add_invoice(vat_invoice("inv_2", "cus_a", issued_at=T0))
    with pytest.raises(StateConflict):
        store.add_credit_note(_note("cn_1", invoice_id="inv_2"))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"customer_id": "cus_b"}, "another customer's invoice"),
        ({"invoice_id": "inv_open"}, "an open invoice: nothing was paid"),
        ({"invoice_id": "inv_nope"}, "no such invoice"),
        ({"currency": "USD"}, "another currency"),
        ({"amount": 1191, "refunded": 0}, "more than the total"),
        ({"number": "CN-taken"}, "a number already used"),
    ],
)
def test_credit_notes_the_store_refuses(store: SQLAlchemyStorage, change: dict[str, Any], why: str) -> None:
    _customer(store, "cus_a")
    _customer(store, "cus_b")
    store.add_invoice(vat_invoice("inv_1", "cus_a", issued_at=T0))
    store.add_invoice(vat_invoice("inv_open", "cus_a", issued_at=T0, status=InvoiceStatus.OPEN, paid_at=None))
    store.add_credit_note(_note("cn_taken", amount=1, refunded=0, number="CN-taken"))
    with pytest.raises(StateConflict):
        store.add_credit_note(_note("cn_1", **change))
    found = store.get_invoice("cus_a", "inv_1")
    assert found is not None and found.amount_credited == 1, why


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 0, "refunded": 0},
        {"amount": 100, "refunded": 101},
        {"refunded": -1},
        {"lines": (InvoiceLine("Part", 1, 100, 100),)},  # lines of 1.00, amount 5.95
        {"currency": "XXX1"},
    ],
)
def test_credit_notes_that_do_not_add_up(store: SQLAlchemyStorage, change: dict[str, Any]) -> None:
    _customer(store, "cus_a")
    store.add_invoice(vat_invoice("inv_1", "cus_a", issued_at=T0))
    with pytest.raises(ValueError, match=r"cn_1|currency"):
        store.add_credit_note(_note("cn_1", **change))
    found = store.get_invoice("cus_a", "inv_1")
    assert found is not None and found.amount_credited == 0 and found.credit_notes == ()


def test_an_invoice_is_issued_without_refunds(store: SQLAlchemyStorage) -> None:
    _customer(store, "cus_a")
    with pytest.raises(ValueError, match="add_credit_note"):
        store.add_invoice(vat_invoice("inv_1", "cus_a", issued_at=T0, amount_refunded=100))


def test_concurrent_credit_notes_never_take_off_more_than_the_total(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    _customer(store, "cus_a")
    store.add_invoice(vat_invoice("inv_1", "cus_a", issued_at=T0))
    ids = iter(range(6))
    lock = threading.Lock()

    def credit() -> str:
        with lock:
            n = next(ids)
        try:
            store.add_credit_note(_note(f"cn_{n}", amount=800, refunded=800))
        except StateConflict:
            return "refused"
        return "recorded"

    results = in_threads(store_app, 6, credit)
    assert results.count("recorded") == 1 and results.count("refused") == 5
    found = store.get_invoice("cus_a", "inv_1")
    assert found is not None and (found.amount_refunded, len(found.credit_notes)) == (800, 1)


# -- the pages ----------------------------------------------------------------------------


def _signed_in(app: Flask, customer_id: str) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


def _credit_ava(app: Flask, invoice_id: str = AVA_INVOICE, **kw: Any) -> CreditNote:
    with app.app_context():
        store = portal_store(app)
        paid = store.get_invoice(AVA, invoice_id)
        assert paid is not None and paid.status is InvoiceStatus.PAID
        note = _note(
            kw.pop("note_id", "cn_ava_1"),
            invoice_id=invoice_id,
            customer_id=AVA,
            number=kw.pop("number", store.next_invoice_number("CN-")),
            currency=paid.currency,
            **{"amount": 500, "refunded": 500, **kw},
        )
        return store.add_credit_note(note)


def _pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def test_the_invoice_page_shows_the_refund_and_its_credit_note(app: Flask) -> None:
    note = _credit_ava(app, memo="Refund for the sync outage")
    client = _signed_in(app, AVA)
    page = client.get(f"/portal/invoices/{AVA_INVOICE}", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    html = page.text
    assert '<span class="badge badge-partially_refunded">Partially refunded</span>' in html
    assert "<dt>Refunded</dt>" in html
    assert "Credit notes" in html and note.number in html
    assert "Refund for the sync outage" in html
    pdf_link = f"/portal/invoices/{AVA_INVOICE}/credit-notes/{note.id}/pdf"
    assert f'href="{pdf_link}"' in html

    response = client.get(pdf_link)
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert f"credit-note-{note.number}.pdf" in response.headers["Content-Disposition"]
    text = _pdf_text(response.data)
    assert "Credit note" in text and note.number in text and "INV-000015" in text
    assert "Refund for the sync outage" in text

    invoice_pdf = _pdf_text(client.get(f"/portal/invoices/{AVA_INVOICE}/pdf").data)
    assert "Partially refunded" in invoice_pdf and f"Credit note {note.number}" in invoice_pdf

    history = client.get("/portal/invoices").text
    assert "Partially refunded" in history


def test_a_credit_note_is_found_only_through_its_own_customers_invoice(app: Flask) -> None:
    note = _credit_ava(app)
    url = f"/portal/invoices/{AVA_INVOICE}/credit-notes/{note.id}/pdf"
    budi = _signed_in(app, BUDI)
    assert budi.get(url).status_code == 404
    assert budi.get(f"/portal/invoices/{BUDI_PAID}/credit-notes/{note.id}/pdf").status_code == 404
    ava = _signed_in(app, AVA)
    assert ava.get(f"/portal/invoices/{AVA_OLDER}/credit-notes/{note.id}/pdf").status_code == 404
    assert ava.get(f"/portal/invoices/{AVA_INVOICE}/credit-notes/cn_nope/pdf").status_code == 404
    assert ava.get(f"/portal/invoices/{AVA_INVOICE}/credit-notes/{'x' * 500}/pdf").status_code == 404
    assert app.test_client().get(url).status_code in (302, 303, 401)


def test_a_fully_refunded_invoice_reads_refunded_in_english_and_indonesian(app: Flask) -> None:
    with app.app_context():
        paid = portal_store(app).get_invoice(AVA, AVA_INVOICE)
    assert paid is not None
    _credit_ava(app, amount=paid.total, refunded=paid.total, reason=CreditNoteReason.DUPLICATE)
    client = _signed_in(app, AVA)
    html = client.get(f"/portal/invoices/{AVA_INVOICE}", headers={"Accept-Language": "en"}).text
    assert '<span class="badge badge-refunded">Refunded</span>' in html
    assert "Duplicate charge" in html
    client.post(
        "/portal/language",
        data={"language": "id", "csrf_token": csrf_token_from(client.get("/portal/profile").text)},
    )
    html = client.get(f"/portal/invoices/{AVA_INVOICE}").text
    assert '<span class="badge badge-refunded">Dana dikembalikan</span>' in html
    assert "Tagihan ganda" in html and "Nota kredit" in html


def test_the_csv_export_adds_its_columns_at_the_end(app: Flask) -> None:
    note = _credit_ava(app, amount=500, refunded=200)
    client = _signed_in(app, AVA)
    response = client.get("/portal/invoices/export.csv", headers={"Accept-Language": "en"})
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][:10] == [
        "Invoice number",
        "Date issued",
        "Description",
        "Status",
        "Currency",
        "Subtotal",
        "Tax",
        "Total",
        "Date paid",
        "Payment reference",
    ]
    assert rows[0][10:] == ["Refunded", "Credited to your account", "Credit notes"]
    [credited] = [row for row in rows[1:] if row[0] == "INV-000015"]
    assert credited[3] == "Partially refunded"
    assert credited[10:] == ["2.00", "3.00", note.number]
    others = [row for row in rows[1:] if row[0] != "INV-000015"]
    assert others and all(row[10:] == ["0.00", "0.00", ""] for row in others)


def test_the_billing_history_reads_no_more_for_refunded_invoices(
    app: Flask, count_queries: Callable[..., Any]
) -> None:
    client = _signed_in(app, AVA)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    client.get("/portal/invoices")  # warm caches
    with count_queries(engine) as before:
        assert client.get("/portal/invoices").status_code == 200
    for n in range(1, 9):
        _credit_ava(app, invoice_id=f"inv_demo_ava_sync_{n:02d}", note_id=f"cn_{n}", amount=100, refunded=100)
    with count_queries(engine) as after:
        page = client.get("/portal/invoices")
    assert page.text.count("Partially refunded") >= 8
    assert after.count == before.count, after.statements


# -- the PDFs without a request ---------------------------------------------------------------


def test_a_credit_note_pdf_in_indonesian_with_its_lines() -> None:
    paid = invoice("inv_1", "cus_a", currency="IDR", subtotal=15_000_000, total=15_000_000)
    note = CreditNote(
        id="cn_1",
        number="CN-000001",
        invoice_id="inv_1",
        customer_id="cus_a",
        currency="IDR",
        amount=5_000_000,
        refunded=2_000_000,
        issued_at=T0 + timedelta(days=2),
        reason=CreditNoteReason.ORDER_CHANGE,
        lines=(InvoiceLine("Dua kursi dikurangi", 2, 2_500_000, 5_000_000),),
    )
    customer = Customer(id="cus_a", email="budi@example.com", name="Budi Santoso")
    renderer = FPDFInvoiceRenderer()
    document = CreditNoteDocument(
        credit_note=note,
        invoice=paid,
        customer=customer,
        merchant_name="Acme Software",
        locale="id",
    )
    data = renderer.render_credit_note(document)
    assert data == renderer.render_credit_note(document)  # deterministic
    text = _pdf_text(data)
    for expected in ("CN-000001", "INV-cus_a-inv_1", "Dua kursi dikurangi", "Budi Santoso", "Order changed"):
        assert expected in text
    assert "Rp" in text

    with pytest.raises(ValueError, match="not of invoice"):
        CreditNoteDocument(
            credit_note=note,
            invoice=invoice("inv_2", "cus_a"),
            customer=customer,
            merchant_name="Acme Software",
            labels=default_credit_note_labels(),
        )


def test_a_hosts_own_invoice_labels_without_the_refund_labels_still_work() -> None:
    paid = invoice("inv_1", "cus_a", amount_refunded=500, amount_credited=500)
    labels = {key: text for key, text in default_labels().items() if key not in ("refunded", "credited")}
    document = InvoiceDocument(
        invoice=paid,
        customer=Customer(id="cus_a", email="a@example.com", name="A"),
        merchant_name="Acme Software",
        labels={key: text for key, text in labels.items() if key != "status_partially_refunded"},
    )
    assert "Refunded" in _pdf_text(FPDFInvoiceRenderer().render(document))
