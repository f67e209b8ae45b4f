"""Billing history: the list of invoices, one invoice, and its PDF."""

from __future__ import annotations

import html as html_lib
import io
import logging
import re
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import BASE_URL, SECRET, make_portal_app, sign_in
from pypdf import PdfReader
from sqlalchemy import insert

from example_app.demo import load_demo_data
from flask_customer_portal import ConfigurationError, CustomerPortal
from flask_customer_portal.contrib.sqla import InvoiceModel, SQLAlchemyStorage
from flask_customer_portal.pdf import FPDFInvoiceRenderer, InvoiceDocument
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer, InvoiceStatus
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider
from flask_customer_portal.views.invoices import _page_links

AVA_INVOICE = "inv_demo_ava_sync_14"  # her newest: INV-000015
BUDI_OPEN_INVOICE = "inv_demo_budi_sync_03"  # the failed renewal, still open
BUDI_INVOICES = ("inv_demo_budi_sync_01", "inv_demo_budi_sync_02", BUDI_OPEN_INVOICE)
MERCHANT_ADDRESS = "Acme Software Pte. Ltd.\n1 Market Street\nSingapore 048941"

PAGES = ("/portal/invoices", f"/portal/invoices/{AVA_INVOICE}", f"/portal/invoices/{AVA_INVOICE}/pdf")


# -- helpers -----------------------------------------------------------------------


def _numbers(html: str) -> list[str]:
    """Invoice numbers of the list page's rows, in order."""
    return re.findall(r'<th scope="row"[^>]*><a href="/portal/invoices/[^"/]+"[^>]*>([^<]+)</a></th>', html)


def _page_nav(html: str) -> str:
    match = re.search(r'<nav class="pagination" aria-label="[^"]+">(.*?)</nav>', html, re.S)
    assert match, "no page navigation"
    return match.group(1)


def _page_link_labels(html: str) -> str:
    """The page navigation's entries (numbers, "…", "Previous", "Next"), space-separated."""
    entries = re.findall(r"<li[^>]*>(.*?)</li>", _page_nav(html), re.S)
    return " ".join(re.sub(r"<[^>]+>|[←→]", "", entry).strip() for entry in entries)


def _current_page(html: str) -> str:
    (current,) = re.findall(r'<a href="[^"]*" aria-current="page">(\d+)</a>', _page_nav(html))
    return str(current)


def _dd(html: str, label: str) -> str:
    """The value next to ``label`` in one of the invoice page's lists."""
    match = re.search(rf"<dt>{re.escape(label)}</dt><dd>(.*?)</dd>", html, re.S)
    assert match, f"no {label!r} on the page"
    return html_lib.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _add_customer_with_invoices(
    app: Flask, customer_id: str, count: int, *, numbers: Callable[[int], str] | None = None
) -> None:
    """A customer with ``count`` paid invoices, one an hour, inserted in one
    statement (the store's ``add_invoice`` is one transaction each)."""
    start = datetime(2021, 1, 1, 9, 0, tzinfo=timezone.utc)
    with app.app_context():
        storage = get_state(app).storage
        assert isinstance(storage, SQLAlchemyStorage)
        storage.add_customer(
            Customer(id=customer_id, email=f"{customer_id}@example.com", name="Bulk Buyer", locale="en")
        )
        db: SQLAlchemy = app.extensions["sqlalchemy"]
        db.session.execute(
            insert(InvoiceModel),
            [
                {
                    "id": f"{customer_id}_inv_{n:05d}",
                    "number": numbers(n) if numbers else f"{customer_id.upper()}-{n:05d}",
                    "customer_id": customer_id,
                    "status": InvoiceStatus.PAID,
                    "currency": "USD",
                    "subtotal": 1000 + n,
                    "tax": 0,
                    "total": 1000 + n,
                    "issued_at": start + timedelta(hours=n),
                    "paid_at": start + timedelta(hours=n, minutes=1),
                    "description": f"Usage, hour {n}",
                }
                for n in range(1, count + 1)
            ],
        )
        db.session.commit()


def _signed_in(app: Flask, customer_id: str) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, customer_id)
    return client


@pytest.fixture
def closing() -> Iterator[list[Flask]]:
    """Apps a test makes itself; their worker threads and database engines
    are closed after the test."""
    apps: list[Flask] = []
    yield apps
    for app in apps:
        if "customer_portal" in app.extensions:
            get_state(app).shutdown()
        with app.app_context():
            for engine in app.extensions["sqlalchemy"].engines.values():
                engine.dispose()


@pytest.fixture
def shop(tmp_path: Path, closing: list[Flask]) -> Flask:
    """The demo portal with a merchant address."""
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'shop.db'}", CUSTOMER_PORTAL_MERCHANT_ADDRESS=MERCHANT_ADDRESS
    )
    closing.append(app)
    return app


# -- the list ----------------------------------------------------------------------


def test_billing_history_lists_every_invoice_newest_first(ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/invoices")

    assert page.status_code == 200
    html = page.text
    assert "<h1>Billing history</h1>" in html
    # Her 15 invoices were issued one after another, so the numbers count down.
    assert _numbers(html) == [f"INV-{n:06d}" for n in range(15, 0, -1)]
    assert "15 invoices in total" in html
    assert html.count('<span class="badge badge-paid">Paid</span>') == 15
    assert html.count("$19.00") == 14  # the monthly plan …
    assert html.count("$99.00") == 1  # … and the yearly one she cancelled
    assert f'href="/portal/invoices/{AVA_INVOICE}"' in html
    assert f'href="/portal/invoices/{AVA_INVOICE}/pdf"' in html
    assert 'aria-label="Download invoice INV-000015 as PDF"' in html
    assert 'class="pagination"' not in html  # one page: nothing to page through
    # Phones: every cell is labelled for the stacked layout.
    assert html.count('data-label="Amount"') == 15


def test_dates_in_the_list_are_the_customers_local_dates(ava_client: FlaskClient, app: Flask) -> None:
    with app.app_context():
        newest = get_state(app).storage.list_invoices("cus_demo_ava", page=1, per_page=1).items[0]
    html = ava_client.get("/portal/invoices").text
    local_day = newest.issued_at.astimezone(ZoneInfo("America/Los_Angeles")).day  # her time zone
    first_row = html.split("<tbody>", 1)[1].split("</tr>", 1)[0]
    assert re.search(rf'data-label="Date issued">\w+ {local_day}, \d{{4}}</td>', first_row), first_row


def test_twenty_five_invoices_a_page_with_page_links(app: Flask) -> None:
    _add_customer_with_invoices(app, "cus_sixty", 60)
    client = _signed_in(app, "cus_sixty")

    first = client.get("/portal/invoices").text
    second = client.get("/portal/invoices?page=2").text
    last = client.get("/portal/invoices?page=3").text

    assert _numbers(first) == [f"CUS_SIXTY-{n:05d}" for n in range(60, 35, -1)]
    assert _numbers(second) == [f"CUS_SIXTY-{n:05d}" for n in range(35, 10, -1)]
    assert _numbers(last) == [f"CUS_SIXTY-{n:05d}" for n in range(10, 0, -1)]
    assert "60 invoices in total · Page 2 of 3" in second

    assert '<nav class="pagination" aria-label="Billing history pages">' in first
    assert _page_link_labels(first) == "1 2 3 Next"
    assert _page_link_labels(second) == "Previous 1 2 3 Next"
    assert _page_link_labels(last) == "Previous 1 2 3"
    assert [_current_page(html) for html in (first, second, last)] == ["1", "2", "3"]
    nav = _page_nav(second)
    assert '<a href="/portal/invoices?page=1" rel="prev">' in nav
    assert '<a href="/portal/invoices?page=3" rel="next">' in nav


def test_invoices_per_page_is_configurable(tmp_path: Path, closing: list[Flask]) -> None:
    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}", CUSTOMER_PORTAL_INVOICES_PER_PAGE=4)
    closing.append(app)
    client = _signed_in(app, "cus_demo_ava")

    pages = [client.get(f"/portal/invoices?page={n}") for n in range(1, 5)]

    assert [len(_numbers(page.text)) for page in pages] == [4, 4, 4, 3]
    assert [number for page in pages for number in _numbers(page.text)] == [
        f"INV-{n:06d}" for n in range(15, 0, -1)
    ]
    assert client.get("/portal/invoices?page=5").status_code == 404


def test_a_page_that_does_not_exist_is_not_found(app: Flask) -> None:
    _add_customer_with_invoices(app, "cus_sixty", 60)  # three pages
    client = _signed_in(app, "cus_sixty")
    pages = ["0", "-1", "4", "999999999", "9" * 20, "", "abc", "1.5", "1e3", "01", " 1", "+2", "٢"]

    responses = {page: client.get("/portal/invoices", query_string={"page": page}) for page in pages}

    assert {page: r.status_code for page, r in responses.items()} == dict.fromkeys(pages, 404)
    assert all("Page not found" in r.text for r in responses.values())
    assert client.get("/portal/invoices?page=3").status_code == 200


def test_the_page_window_leaves_out_far_pages() -> None:
    assert _page_links(1, 1) == [1]
    assert _page_links(1, 3) == [1, 2, 3]
    assert _page_links(1, 400) == [1, 2, 3, None, 400]
    assert _page_links(200, 400) == [1, None, 198, 199, 200, 201, 202, None, 400]
    assert _page_links(400, 400) == [1, None, 398, 399, 400]
    # A gap of a single page shows that page rather than "…".
    assert _page_links(4, 9) == [1, 2, 3, 4, 5, 6, None, 9]
    assert _page_links(5, 9) == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_a_customer_without_invoices_sees_the_empty_state(app: Flask) -> None:
    client = _signed_in(app, "cus_demo_chen")

    page = client.get("/portal/invoices")

    assert page.status_code == 200
    assert "No invoices yet" in page.text
    assert "Your invoices and receipts will appear here." in page.text
    assert "<table" not in page.text
    assert 'class="pagination"' not in page.text
    assert client.get("/portal/invoices?page=1").status_code == 200
    assert client.get("/portal/invoices?page=2").status_code == 404


# -- a constant number of queries, one page of rows ---------------------------------


def test_the_list_costs_the_same_queries_for_ten_or_ten_thousand_invoices(
    app: Flask, count_queries: Callable[..., Any]
) -> None:
    _add_customer_with_invoices(app, "cus_few", 10)
    _add_customer_with_invoices(app, "cus_many", 10_000)
    few, many = _signed_in(app, "cus_few"), _signed_in(app, "cus_many")
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine

    def measure(client: FlaskClient, url: str) -> tuple[int, list[str], str]:
        with count_queries(engine) as queries:
            response = client.get(url)
        assert response.status_code == 200, url
        return queries.count, queries.statements, response.text

    few_count, _, _ = measure(few, "/portal/invoices")
    first_count, statements, first = measure(many, "/portal/invoices")
    middle_count, _, middle = measure(many, "/portal/invoices?page=200")
    last_count, _, last = measure(many, "/portal/invoices?page=400")

    assert few_count == first_count == middle_count == last_count
    # Only the rows of the page shown come out of the database: the one
    # query that reads invoice rows is limited to a page.
    [page_query] = [q for q in statements if "portal_invoices.number" in q]
    assert "LIMIT" in page_query.upper() and "OFFSET" in page_query.upper()
    assert _numbers(first) == [f"CUS_MANY-{n:05d}" for n in range(10_000, 9_975, -1)]
    assert _numbers(last) == [f"CUS_MANY-{n:05d}" for n in range(25, 0, -1)]
    assert "10000 invoices in total · Page 400 of 400" in last
    assert _page_link_labels(first) == "1 2 3 … 400 Next"
    assert _page_link_labels(middle) == "Previous 1 … 198 199 200 201 202 … 400 Next"
    assert _current_page(middle) == "200"


# -- one invoice ---------------------------------------------------------------------


def test_invoice_page_shows_merchant_customer_lines_and_payment(shop: Flask) -> None:
    client = _signed_in(shop, "cus_demo_ava")

    page = client.get(f"/portal/invoices/{AVA_INVOICE}")

    assert page.status_code == 200
    html = page.text
    assert "<h1>Invoice INV-000015</h1>" in html
    assert "<strong>Acme Software</strong>" in html
    assert f'<span class="invoice-address">{MERCHANT_ADDRESS}</span>' in html
    assert "<strong>Ava Thompson</strong><br>ava@example.com" in html
    assert re.search(
        # The stored period is shown in the customer's language, not as ISO dates.
        r'<th scope="row"[^>]*>Acme Sync Pro \(monthly\), [A-Z][a-z]{2} \d{1,2}, \d{4}\u2009\u2013\u2009'
        r"[A-Z][a-z]{2} \d{1,2}, \d{4}</th>",
        html,
    )
    assert '<td data-label="Qty" class="num">1</td>' in html
    assert '<td data-label="Unit price" class="num">$19.00</td>' in html
    assert '<td data-label="Amount" class="num">$19.00</td>' in html
    assert _dd(html, "Subtotal") == "$19.00"
    assert _dd(html, "Tax") == "$0.00"
    assert _dd(html, "Total") == "$19.00"
    assert "Amount due" not in html  # paid
    assert _dd(html, "Status") == "Paid"
    assert _dd(html, "Paid with").startswith("Visa •••• 4242 expires 12/")
    assert _dd(html, "Payment reference") == "ch_demo_demo_ava_sync_14"
    assert _dd(html, "Date issued") == _dd(html, "Date paid")  # paid two minutes later
    assert f'href="/portal/invoices/{AVA_INVOICE}/pdf"' in html
    assert "Download PDF" in html
    assert 'href="/portal/invoices"' in html


def test_invoice_page_shows_the_tax(shop: Flask) -> None:
    client = _signed_in(shop, "cus_demo_budi")

    html = client.get(f"/portal/invoices/{BUDI_INVOICES[0]}").text

    # 11% tax on Rp150.000, in rupiah without decimals.
    assert _dd(html, "Subtotal") == "Rp150.000"
    assert _dd(html, "Pajak") == "Rp16.500"
    assert _dd(html, "Total") == "Rp166.500"


def test_an_unpaid_renewal_of_a_subscription_on_hold_links_to_its_payment_method(app: Flask) -> None:
    client = _signed_in(app, "cus_demo_budi")

    open_invoice = client.get(f"/portal/invoices/{BUDI_OPEN_INVOICE}").text
    paid_invoice = client.get(f"/portal/invoices/{BUDI_INVOICES[0]}").text

    link = 'href="/portal/subscriptions/sub_demo_budi_sync/payment-method"'
    assert link in open_invoice
    assert 'class="panel attention"' in open_invoice
    assert _dd(open_invoice, "Jumlah terutang") == "Rp166.500"
    assert link not in paid_invoice
    assert 'class="panel attention"' not in paid_invoice


# -- the PDF ---------------------------------------------------------------------------


def test_pdf_download_is_an_attachment_with_a_safe_name(ava_client: FlaskClient) -> None:
    response = ava_client.get(f"/portal/invoices/{AVA_INVOICE}/pdf")

    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == "attachment; filename=invoice-INV-000015.pdf"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.data.startswith(b"%PDF-")


def test_pdf_says_what_the_page_says(shop: Flask) -> None:
    client = _signed_in(shop, "cus_demo_ava")
    page = client.get(f"/portal/invoices/{AVA_INVOICE}").text

    text = _pdf_text(client.get(f"/portal/invoices/{AVA_INVOICE}/pdf").data)

    for expected in (
        "INV-000015",
        "Ava Thompson",
        "ava@example.com",
        "Acme Software",
        "1 Market Street",
        "Paid",
        "Visa •••• 4242",
        "Page 1 of 1",
        _dd(page, "Date issued"),
        _dd(page, "Date paid"),
        f"Subtotal {_dd(page, 'Subtotal')}",
        f"Tax {_dd(page, 'Tax')}",
        f"Total {_dd(page, 'Total')}",
    ):
        assert expected in text, expected


def test_budis_pdf_is_in_indonesian_and_rupiah(shop: Flask) -> None:
    client = _signed_in(shop, "cus_demo_budi")
    page = client.get(f"/portal/invoices/{BUDI_OPEN_INVOICE}").text

    response = client.get(f"/portal/invoices/{BUDI_OPEN_INVOICE}/pdf")

    assert response.headers["Content-Disposition"] == "attachment; filename=invoice-INV-000018.pdf"
    text = _pdf_text(response.data)
    for expected in (
        "Faktur",
        "Ditagihkan kepada",
        "Budi Santoso",
        "Nomor faktur INV-000018",
        f"Tanggal terbit {_dd(page, 'Tanggal terbit')}",
        "Status Belum dibayar",
        "Harga satuan",
        "Pajak Rp16.500",
        f"Total {_dd(page, 'Total')}",
        "Jumlah terutang Rp166.500",
        "Halaman 1 dari 1",
    ):
        assert expected in text, expected
    assert not re.search(r"Rp[\d.]+,\d", text)  # rupiah have no decimals
    assert "Invoice" not in text
    assert "Bill to" not in text
    metadata = PdfReader(io.BytesIO(response.data)).metadata
    assert metadata is not None
    assert metadata.title == "Faktur INV-000018"


def test_pdf_file_name_is_made_safe(app: Flask) -> None:
    _add_customer_with_invoices(app, "cus_odd", 1, numbers=lambda n: f'FKT/2026/"{n}"\r\nX: y')
    client = _signed_in(app, "cus_odd")

    response = client.get("/portal/invoices/cus_odd_inv_00001/pdf")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == "attachment; filename=invoice-FKT-2026-1-X-y.pdf"


# -- only the customer's own invoices ---------------------------------------------------


def test_another_customers_invoice_is_not_found(ava_client: FlaskClient) -> None:
    for invoice_id in BUDI_INVOICES:
        for path in (f"/portal/invoices/{invoice_id}", f"/portal/invoices/{invoice_id}/pdf"):
            response = ava_client.get(path)
            assert response.status_code == 404, path
            assert "Budi" not in response.text
            assert "166.500" not in response.text


ODD_IDS = [
    "inv_nope",
    "..%2Finv_demo_ava_sync_14",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "inv_demo_ava_sync_14%00",
    "%00",
    "inv_demo_ava_sync_14%0d%0aX-Evil:%201",
    "%E2%80%AEinv_demo_ava_sync_14",
    "f%C3%A4ktur-%E7%8E%8B",
    "%F0%9F%92%B8",
    "%ff%fe",
    "INV_DEMO_AVA_SYNC_14",
    "inv_demo_ava_sync_14%20",
    "inv_demo_ava_%25",
    "x" * 129,
    "x" * 10_000,
    "1' OR '1'='1",
]


def test_odd_invoice_ids_are_not_found(ava_client: FlaskClient) -> None:
    paths = [f"/portal/invoices/{invoice_id}{suffix}" for invoice_id in ODD_IDS for suffix in ("", "/pdf")]

    statuses = {path[:80]: ava_client.get(path).status_code for path in paths}

    assert statuses == dict.fromkeys(statuses, 404)


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/portal/login/biz_demo"


def test_the_pages_only_answer_get(ava_client: FlaskClient) -> None:
    for path in PAGES:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = ava_client.open(path, method=method)
            assert response.status_code == 405, (method, path)
            assert "GET" in response.headers["Allow"]


# -- Indonesian --------------------------------------------------------------------------


def test_budi_sees_his_billing_history_in_indonesian_and_rupiah(app: Flask) -> None:
    client = _signed_in(app, "cus_demo_budi")

    page = client.get("/portal/invoices", headers={"Accept-Language": "en-US,en;q=0.9"})

    html = page.text
    assert '<html lang="id" dir="ltr">' in html
    assert "<h1>Riwayat Penagihan</h1>" in html
    assert "Total 3 faktur" in html
    for text in ("Tanggal terbit", "Nomor faktur", "Deskripsi", "Jumlah", "Lunas", "Belum dibayar"):
        assert text in html, text
    assert 'aria-label="Unduh faktur INV-000018 sebagai PDF"' in html
    assert _numbers(html) == ["INV-000018", "INV-000017", "INV-000016"]
    assert html.count("Rp166.500") == 3
    assert not re.search(r"Rp[\d.]+,\d", html)
    for english in ("Billing history", "Date issued", "Invoice number", "Paid", "Download invoice"):
        assert english not in html, english

    invoice = client.get(f"/portal/invoices/{BUDI_OPEN_INVOICE}").text
    assert "<h1>Faktur INV-000018</h1>" in invoice
    assert "Unduh PDF" in invoice
    assert "Ditagihkan kepada" in invoice
    for english in ("Download PDF", "Bill to", "Items", "From"):
        assert english not in invoice, english


# -- the renderer ------------------------------------------------------------------------


class RecordingRenderer:
    """Stands in for an HTML-to-PDF renderer: keeps what it was asked to draw."""

    def __init__(self) -> None:
        self.documents: list[InvoiceDocument] = []

    def render(self, document: InvoiceDocument) -> bytes:
        self.documents.append(document)
        return b"%PDF-1.7 " + document.invoice.number.encode()


def _bare_app(tmp_path: Path, closing: list[Flask]) -> Flask:
    """An app with Flask-SQLAlchemy, for the test to register the portal on."""
    app = Flask("invoice_renderer_test")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'portal.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
        CUSTOMER_PORTAL_MERCHANT_ADDRESS=MERCHANT_ADDRESS,
    )
    SQLAlchemy(app)
    closing.append(app)
    return app


def _with_demo_data(app: Flask) -> Flask:
    with app.app_context():
        storage = get_state(app).storage
        assert isinstance(storage, SQLAlchemyStorage)
        storage.create_all()
        load_demo_data(storage)
    return app


def test_the_default_renderer_is_fpdf(app: Flask) -> None:
    assert isinstance(get_state(app).invoice_renderer, FPDFInvoiceRenderer)


def test_a_renderer_of_the_apps_own_gets_the_resolved_document(tmp_path: Path, closing: list[Flask]) -> None:
    renderer = RecordingRenderer()
    app = _bare_app(tmp_path, closing)
    CustomerPortal(app, invoice_renderer=renderer, payments=TestPaymentProvider(), mailer=MemoryMailer())
    client = _signed_in(_with_demo_data(app), "cus_demo_budi")
    page = client.get(f"/portal/invoices/{BUDI_OPEN_INVOICE}").text

    response = client.get(f"/portal/invoices/{BUDI_OPEN_INVOICE}/pdf")

    assert response.status_code == 200
    assert response.data == b"%PDF-1.7 INV-000018"
    assert response.headers["Content-Disposition"] == "attachment; filename=invoice-INV-000018.pdf"
    (document,) = renderer.documents
    assert document.invoice.id == BUDI_OPEN_INVOICE
    assert len(document.invoice.lines) == 1
    assert document.customer.id == "cus_demo_budi"
    assert document.merchant_name == "Acme Software"
    assert document.merchant_address == MERCHANT_ADDRESS
    assert (document.locale, document.timezone) == ("id", "Asia/Jakarta")
    assert document.labels["invoice"] == "Faktur"
    assert document.labels["amount_due"] == "Jumlah terutang"
    assert document.labels["page_x_of_y"] == "Halaman %(page)s dari %(pages)s"
    assert "Rp166.500" in page


def test_init_app_can_set_the_renderer_per_app(tmp_path: Path, closing: list[Flask]) -> None:
    shared, own = RecordingRenderer(), RecordingRenderer()
    portal = CustomerPortal(invoice_renderer=shared)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = _bare_app(tmp_path / "first", closing)
    second = _bare_app(tmp_path / "second", closing)

    portal.init_app(first)
    portal.init_app(second, invoice_renderer=own)

    assert get_state(first).invoice_renderer is shared
    assert get_state(second).invoice_renderer is own


def test_a_renderer_without_render_is_a_configuration_error(tmp_path: Path, closing: list[Flask]) -> None:
    app = _bare_app(tmp_path, closing)

    with pytest.raises(ConfigurationError, match="invoice_renderer") as caught:
        CustomerPortal(app, invoice_renderer=object())  # type: ignore[arg-type]
    assert caught.value.key == "invoice_renderer"


def test_without_fpdf2_there_is_no_pdf_and_one_warning(
    tmp_path: Path, closing: list[Flask], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "fpdf", None)  # ``import fpdf`` now fails
    app = _bare_app(tmp_path, closing)
    with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
        CustomerPortal(app, payments=TestPaymentProvider(), mailer=MemoryMailer())
    client = _signed_in(_with_demo_data(app), "cus_demo_ava")
    listing = client.get("/portal/invoices").text
    invoice = client.get(f"/portal/invoices/{AVA_INVOICE}").text

    assert get_state(app).invoice_renderer is None
    warnings = [r for r in caplog.records if "fpdf2" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "/pdf" not in listing
    assert "PDF" not in listing
    assert "/pdf" not in invoice
    assert "Download PDF" not in invoice
    assert client.get(f"/portal/invoices/{AVA_INVOICE}/pdf").status_code == 404
    assert len(_numbers(listing)) == 15  # the rest of the page is all there
