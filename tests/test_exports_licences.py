"""Exports (invoice ZIP, billing CSV, renewals calendar) and licence key
activations: content read back with real parsers, scoping, CSRF, query
counts and concurrent deactivation on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import dataclasses
import gc
import io
import zipfile
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import time_machine
from db_support import in_threads, only_postgresql
from factories import customer, license_key, subscription
from flask import Flask
from flask.testing import FlaskClient
from icalendar import Calendar
from portal_fixtures import sign_in
from pypdf import PdfReader
from sqlalchemy.exc import IntegrityError

from flask_customer_portal import signals
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.contrib.sqla._invoices import insert_invoice
from flask_customer_portal.exports import (
    CSV_BOM,
    CalendarEvent,
    csv_safe,
    decimal_amount,
    fold_ics_line,
    ics_text,
    render_calendar,
    stream_zip,
    unique_name,
)
from flask_customer_portal.formatting import to_timezone
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    Invoice,
    InvoiceStatus,
    LicenseKeyInstance,
    StateConflict,
    SubscriptionStatus,
)
from flask_customer_portal.testing import csrf_token_from

if TYPE_CHECKING:
    from conftest import QueryCounter

UTC = timezone.utc
T0 = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
CHEN = "cus_demo_chen"


def store_of(app: Flask) -> SQLAlchemyStorage:
    store = get_state(app).storage
    assert isinstance(store, SQLAlchemyStorage)
    return store


def add_invoices(app: Flask, customer_id: str, invoices: list[Invoice]) -> None:
    """Many invoices in one transaction (one commit, not one per invoice)."""
    with app.app_context():
        store = store_of(app)
        with store._transaction() as session:
            for invoice in invoices:
                insert_invoice(session, invoice)


def chen_invoice(n: int, **kw: Any) -> Invoice:
    values: dict[str, Any] = {
        "id": f"inv_chen_{n:05d}",
        "number": f"CH-{n:05d}",
        "customer_id": CHEN,
        "status": InvoiceStatus.PAID,
        "currency": "USD",
        "subtotal": 1000 + n,
        "tax": 100,
        "total": 1100 + n,
        "issued_at": T0 + timedelta(hours=n),
        "description": f"Order {n}",
        "paid_at": T0 + timedelta(hours=n, minutes=1),
        "payment_reference": f"ch_{n}",
    }
    values.update(kw)
    return Invoice(**values)


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(CSV_BOM.encode("utf-8"))
    text = body.decode("utf-8")[1:]
    assert "\r\n" in text
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.fixture
def chen_client(app: Flask, client: FlaskClient) -> FlaskClient:
    sign_in(app, client, CHEN)
    return client


@pytest.fixture
def budi_client(app: Flask, client: FlaskClient) -> FlaskClient:
    sign_in(app, client, BUDI)
    return client


# -- pure helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1999, "USD", "19.99"),
        (1900, "USD", "19.00"),
        (0, "USD", "0.00"),
        (5, "USD", "0.05"),
        (-250, "EUR", "-2.50"),
        (1500, "JPY", "1500"),
        (12345, "BHD", "12.345"),
        (15_000_000, "IDR", "150000"),  # whole rupiah: as the invoice shows it
        (1_650_000, "IDR", "16500"),
        (15_000_050, "IDR", "150000.50"),  # a fraction is kept, never rounded away
        (2**53 + 1, "USD", "90071992547409.93"),  # beyond a float's exact integers
    ],
)
def test_amounts_are_exact_decimal_strings(amount: int, currency: str, expected: str) -> None:
    written = decimal_amount(amount, currency)
    assert written == expected
    assert Decimal(written) == Money(amount, currency).decimal


@pytest.mark.parametrize(
    "text",
    ["=1+1", "+41 79", "-2", "@SUM(A1)", "\t=cmd", "\r=cmd", '=HYPERLINK("http://evil.example","x")'],
)
def test_formula_starts_are_made_text(text: str) -> None:
    assert csv_safe(text) == "'" + text


@pytest.mark.parametrize("text", ["Pro plan", "", "INV-0001", "a=b", " =x"])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert csv_safe(text) == text


def test_unique_names_never_hide_a_file() -> None:
    taken: set[str] = set()
    names = [unique_name(n, taken) for n in ["a.pdf", "a.pdf", "a.pdf", "b", "b"]]
    assert names == ["a.pdf", "a-2.pdf", "a-3.pdf", "b", "b-2"]


def test_ics_text_escapes_what_rfc_5545_says() -> None:
    assert ics_text("a,b;c\\d\ne\r\nf\rg") == "a\\,b\\;c\\\\d\\ne\\nf\\ng"
    assert ics_text("bell\x07 and del\x7f") == "bell and del"


@pytest.mark.parametrize("text", ["x" * 200, "é" * 100, "€" * 80, "a" + "😀" * 40, "ab" * 37 + "é"])
def test_folding_keeps_lines_within_75_octets_and_characters_whole(text: str) -> None:
    folded = fold_ics_line("SUMMARY:" + text)
    lines = folded.split("\r\n")
    assert all(len(line.encode("utf-8")) <= 75 for line in lines), [len(x.encode()) for x in lines]
    assert all(line.startswith(" ") for line in lines[1:])
    assert "".join(line[1:] if i else line for i, line in enumerate(lines)) == "SUMMARY:" + text


def test_a_calendar_reads_back_with_icalendar() -> None:
    tricky = "Pro, with; back\\slash\nand a new line — " + "ü" * 60
    body = render_calendar(
        [
            CalendarEvent(
                uid="renewal-sub_1-1@shop.test", day=date(2026, 2, 28), summary=tricky, url="http://x"
            )
        ],
        product_id="-//test//EN",
        name="Shop, Inc.",
        stamp=T0,
    )
    raw = body.encode("utf-8")
    assert raw.endswith(b"END:VCALENDAR\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    calendar = Calendar.from_ical(raw)
    (event,) = calendar.walk("VEVENT")
    assert str(event["SUMMARY"]) == tricky
    assert event.decoded("DTSTART") == date(2026, 2, 28)
    assert event.decoded("DTEND") == date(2026, 3, 1)
    assert event.decoded("DTSTAMP") == T0
    assert str(event["UID"]) == "renewal-sub_1-1@shop.test"
    # An X- property is TEXT by convention; icalendar leaves it as written.
    assert b"\r\nX-WR-CALNAME:Shop\\, Inc.\r\n" in raw


def test_zip_streams_one_file_at_a_time_and_is_a_valid_archive() -> None:
    produced: list[int] = []

    def files() -> Iterator[tuple[str, datetime, bytes]]:
        for n in range(3):
            produced.append(n)
            yield f"f{n}.txt", datetime(1970, 1, 1, tzinfo=UTC) if n == 0 else T0, f"file {n}".encode() * 100

    chunks = stream_zip(files())
    first = next(chunks)
    # The first file is out before the second was even made.
    assert produced == [0]
    assert first.startswith(b"PK\x03\x04")
    archive = zipfile.ZipFile(io.BytesIO(first + b"".join(chunks)))
    assert archive.testzip() is None
    assert archive.namelist() == ["f0.txt", "f1.txt", "f2.txt"]
    assert archive.read("f2.txt") == b"file 2" * 100
    assert archive.getinfo("f0.txt").date_time == (1980, 1, 1, 0, 0, 0)  # ZIP's own epoch
    assert archive.getinfo("f1.txt").date_time == (2026, 3, 14, 9, 26, 52)  # two-second resolution


# -- CSV export -----------------------------------------------------------------------


def test_csv_has_every_invoice_as_exact_decimals(app: Flask, client: FlaskClient) -> None:
    # 07:00 UTC is still the evening before in Los Angeles, Ava's zone.
    with time_machine.travel(datetime(2030, 11, 25, 7, 0, tzinfo=UTC), tick=False):
        sign_in(app, client, AVA)
        response = client.get("/portal/invoices/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == "attachment; filename=invoices-2030-11-24.csv"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    header, *rows = read_csv(response.data)
    assert header == [
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
        "Refunded",
        "Credited to your account",
        "Credit notes",
    ]
    with app.app_context():
        listed = store_of(app).list_invoices(AVA, page=1, per_page=100).items
    assert [row[0] for row in rows] == [invoice.number for invoice in listed]  # newest first
    assert len(rows) == 15
    newest = listed[0]
    row = rows[0]
    assert row[1] == to_timezone(newest.issued_at, "America/Los_Angeles").date().isoformat()
    assert row[2:8] == ["Acme Sync — Pro (monthly)", "Paid", "USD", "19.00", "0.00", "19.00"]
    assert row[9] == newest.payment_reference
    assert sum(Decimal(r[7]) for r in rows) == Decimal("19.00") * 14 + Decimal("99.00")


def test_csv_in_rupiah_has_whole_amounts(app: Flask, budi_client: FlaskClient) -> None:
    response = budi_client.get("/portal/invoices/export.csv")
    _header, *rows = read_csv(response.data)
    assert len(rows) == 3
    open_renewal = rows[0]
    assert open_renewal[4:8] == ["IDR", "150000", "16500", "166500"]
    assert open_renewal[8] == ""  # not paid
    assert open_renewal[9] == ""
    assert {r[4] for r in rows} == {"IDR"}
    assert all("." not in r[7] for r in rows)
    # The issue date is Budi's day in Jakarta.
    with app.app_context():
        newest = store_of(app).list_invoices(BUDI, page=1, per_page=10).items[0]
    assert open_renewal[1] == to_timezone(newest.issued_at, "Asia/Jakarta").date().isoformat()


def test_csv_cells_never_become_formulas(app: Flask, chen_client: FlaskClient) -> None:
    hostile = [
        '=HYPERLINK("http://evil.example","x")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1)",
        "\tx",
        "\ry",
    ]
    add_invoices(
        app,
        CHEN,
        [
            chen_invoice(n, number=f"=N{n}", description=text, payment_reference=text)
            for n, text in enumerate(hostile)
        ],
    )
    _header, *rows = read_csv(chen_client.get("/portal/invoices/export.csv").data)
    assert len(rows) == len(hostile)
    by_description = {row[2]: row for row in rows}
    for text in hostile:
        row = by_description["'" + text]
        assert row[9] == "'" + text
        assert row[0].startswith("'=N")
    for row in rows:  # our own cells stay plain numbers and dates
        assert Decimal(row[7]) > 0
        date.fromisoformat(row[1])


def test_csv_reads_the_history_in_batches_not_per_invoice(
    app: Flask,
    chen_client: FlaskClient,
    count_queries: Callable[..., QueryCounter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("flask_customer_portal.views.exports.EXPORT_BATCH_SIZE", 5)

    def queries_for_export() -> tuple[int, int]:
        with app.app_context(), count_queries() as queries:
            body = chen_client.get("/portal/invoices/export.csv").data
        return queries.count, len(read_csv(body)) - 1

    add_invoices(app, CHEN, [chen_invoice(n) for n in range(3)])
    few, rows = queries_for_export()
    assert rows == 3
    add_invoices(app, CHEN, [chen_invoice(n) for n in range(3, 13)])
    many, rows = queries_for_export()
    assert rows == 13
    # 3 invoices: one batch; 13: three batches (5 + 5 + 3). One query each.
    assert many - few == 2


def test_csv_of_many_invoices_takes_one_query_per_hundred(
    app: Flask, chen_client: FlaskClient, count_queries: Callable[..., QueryCounter]
) -> None:
    add_invoices(app, CHEN, [chen_invoice(n) for n in range(1)])
    with app.app_context(), count_queries() as one:
        assert len(read_csv(chen_client.get("/portal/invoices/export.csv").data)) == 2
    add_invoices(app, CHEN, [chen_invoice(n) for n in range(1, 1000)])
    with app.app_context(), count_queries() as thousand:
        body = chen_client.get("/portal/invoices/export.csv").data
    assert len(read_csv(body)) == 1001
    # 10 full batches and an empty one that ends it, instead of 1.
    assert thousand.count - one.count == 10, thousand.statements


def test_csv_of_no_invoices_is_just_the_header(chen_client: FlaskClient) -> None:
    response = chen_client.get("/portal/invoices/export.csv")
    assert response.status_code == 200
    assert len(read_csv(response.data)) == 1


# -- ZIP export ---------------------------------------------------------------------------


def test_zip_has_one_pdf_per_invoice(app: Flask, client: FlaskClient) -> None:
    with time_machine.travel(datetime(2030, 11, 25, 9, 0, tzinfo=UTC), tick=False):
        sign_in(app, client, AVA)
        response = client.get("/portal/invoices/export.zip")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"] == "attachment; filename=invoices-2030-11-25.zip"
    assert response.headers["Cache-Control"] == "no-store"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.testzip() is None
    with app.app_context():
        listed = store_of(app).list_invoices(AVA, page=1, per_page=100).items
    assert archive.namelist() == [f"invoice-{invoice.number}.pdf" for invoice in listed]
    for name in archive.namelist():
        assert archive.read(name).startswith(b"%PDF-")
    newest = listed[0]
    reader = PdfReader(io.BytesIO(archive.read(f"invoice-{newest.number}.pdf")))
    text = "".join(page.extract_text() for page in reader.pages)
    assert newest.number in text
    assert "Ava Thompson" in text
    assert "19.00" in text


def test_zip_is_not_offered_without_a_pdf_renderer(app: Flask, ava_client: FlaskClient) -> None:
    assert "/portal/invoices/export.zip" in ava_client.get("/portal/invoices").text
    get_state(app).invoice_renderer = None
    page = ava_client.get("/portal/invoices").text
    assert "/portal/invoices/export.zip" not in page
    assert "/portal/invoices/export.csv" in page
    assert ava_client.get("/portal/invoices/export.zip").status_code == 404


def test_zip_reads_invoices_with_lines_in_batches(
    app: Flask,
    chen_client: FlaskClient,
    count_queries: Callable[..., QueryCounter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("flask_customer_portal.views.exports.EXPORT_BATCH_SIZE", 5)

    class CountingRenderer:
        calls = 0

        def render(self, document: Any) -> bytes:
            CountingRenderer.calls += 1
            return f"%PDF-1.4 {document.invoice.number} {len(document.invoice.lines)}".encode()

    get_state(app).invoice_renderer = CountingRenderer()
    from flask_customer_portal.storage import InvoiceLine

    line = InvoiceLine(description="Thing", quantity=1, unit_amount=1000, amount=1000)
    add_invoices(
        app, CHEN, [chen_invoice(n, subtotal=1000, tax=100, total=1100, lines=(line,)) for n in range(3)]
    )
    with app.app_context(), count_queries() as few:
        assert chen_client.get("/portal/invoices/export.zip").data.startswith(b"PK")
    add_invoices(
        app, CHEN, [chen_invoice(n, subtotal=1000, tax=100, total=1100, lines=(line,)) for n in range(3, 13)]
    )
    with app.app_context(), count_queries() as many:
        body = chen_client.get("/portal/invoices/export.zip").data
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert len(archive.namelist()) == 13
    assert archive.read("invoice-CH-00012.pdf") == b"%PDF-1.4 CH-00012 1"  # lines were loaded
    # Two more batches, each one query for the invoices and one for their lines.
    assert many.count - few.count == 4, many.statements
    assert CountingRenderer.calls == 16


def test_same_safe_file_name_does_not_hide_an_invoice(app: Flask, chen_client: FlaskClient) -> None:
    add_invoices(app, CHEN, [chen_invoice(1, number="A/1"), chen_invoice(2, number="A-1")])
    archive = zipfile.ZipFile(io.BytesIO(chen_client.get("/portal/invoices/export.zip").data))
    assert sorted(archive.namelist()) == ["invoice-A-1-2.pdf", "invoice-A-1.pdf"]


# -- exports are scoped, read-only, signed-in only -------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/portal/invoices/export.zip", "/portal/invoices/export.csv", "/portal/subscriptions/renewals.ics"],
)
def test_exports_are_for_the_signed_in_customer_only(app: Flask, client: FlaskClient, path: str) -> None:
    signed_out = client.get(path)
    assert signed_out.status_code == 302
    assert signed_out.location.endswith("/portal/login/biz_demo")
    sign_in(app, client, CHEN)
    body = client.get(path).data
    for foreign in (b"Ava", b"INV-", b"sub_demo_ava", b"Budi"):
        assert foreign not in body
    assert client.post(path).status_code == 405


def test_billing_history_links_to_the_exports(ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/invoices").text
    assert 'href="/portal/invoices/export.zip"' in page
    assert 'href="/portal/invoices/export.csv"' in page


def test_no_export_links_without_invoices(chen_client: FlaskClient) -> None:
    page = chen_client.get("/portal/invoices").text
    assert "export.csv" not in page


# -- renewals calendar ---------------------------------------------------------------------------


def test_ics_has_the_renewal_of_each_renewing_subscription(app: Flask, ava_client: FlaskClient) -> None:
    response = ava_client.get("/portal/subscriptions/renewals.ics")
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    assert response.headers["Content-Disposition"] == "attachment; filename=renewals.ics"
    assert response.headers["Cache-Control"] == "no-store"
    raw = response.data
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")
    calendar = Calendar.from_ical(raw)
    events = calendar.walk("VEVENT")
    assert len(events) == 1  # the cancelled yearly plan does not renew
    (event,) = events
    with app.app_context():
        sync = store_of(app).get_subscription(AVA, "sub_demo_ava_sync")
    assert sync is not None
    renewal_day = to_timezone(sync.current_period_end, "America/Los_Angeles").date()
    assert event.decoded("DTSTART") == renewal_day
    assert event.decoded("DTEND") == renewal_day + timedelta(days=1)
    assert str(event["SUMMARY"]) == "Acme Sync renews"
    assert "$19.00" in str(event["DESCRIPTION"])
    assert str(event["URL"]) == "http://shop.test/portal/subscriptions/sub_demo_ava_sync"
    assert event.decoded("DTSTAMP").tzinfo is not None
    # Downloading again gives the same event id: calendars update, not duplicate.
    again = Calendar.from_ical(ava_client.get("/portal/subscriptions/renewals.ics").data)
    assert str(again.walk("VEVENT")[0]["UID"]) == str(event["UID"])
    assert "sub_demo_ava_sync" in str(event["UID"])


def test_ics_uid_moves_on_with_the_period(app: Flask, ava_client: FlaskClient) -> None:
    first = Calendar.from_ical(ava_client.get("/portal/subscriptions/renewals.ics").data)
    with app.app_context():
        store = store_of(app)
        with store.lock_subscription(AVA, "sub_demo_ava_sync") as lock:
            assert lock is not None
            end = lock.subscription.current_period_end
            lock.update_subscription(current_period_start=end, current_period_end=end + timedelta(days=31))
    second = Calendar.from_ical(ava_client.get("/portal/subscriptions/renewals.ics").data)
    assert str(first.walk("VEVENT")[0]["UID"]) != str(second.walk("VEVENT")[0]["UID"])


def test_ics_leaves_out_subscriptions_that_do_not_renew(budi_client: FlaskClient) -> None:
    calendar = Calendar.from_ical(budi_client.get("/portal/subscriptions/renewals.ics").data)
    assert calendar.walk("VEVENT") == []  # on hold: never renews by itself
    assert "renewals.ics" not in budi_client.get("/portal/subscriptions").text


def test_ics_escapes_merchant_data(app: Flask, chen_client: FlaskClient) -> None:
    name = "Sync, Pro; \\ Team\nEdition " + "é" * 50
    with app.app_context():
        store_of(app).add_subscription(
            subscription(
                "sub_chen",
                CHEN,
                product_name=name,
                current_period_start=datetime(2030, 1, 1, tzinfo=UTC),
                current_period_end=datetime(2030, 1, 31, 17, 30, tzinfo=UTC),
            )
        )
    assert 'href="/portal/subscriptions/renewals.ics"' in chen_client.get("/portal/subscriptions").text
    raw = chen_client.get("/portal/subscriptions/renewals.ics").data
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    (event,) = Calendar.from_ical(raw).walk("VEVENT")
    assert str(event["SUMMARY"]) == f"{name} renews"
    # 17:30 UTC on the 31st is already 1 February in Singapore, Chen's zone.
    assert event.decoded("DTSTART") == date(2030, 2, 1)


def test_ics_of_a_cancelled_at_period_end_subscription_is_empty(app: Flask, ava_client: FlaskClient) -> None:
    with app.app_context():
        store_of(app).cancel_subscription(AVA, "sub_demo_ava_sync", at_period_end=True, now=datetime.now(UTC))
    calendar = Calendar.from_ical(ava_client.get("/portal/subscriptions/renewals.ics").data)
    assert calendar.walk("VEVENT") == []


# -- licence key activations: storage --------------------------------------------------------------


def instance(
    instance_id: str, key_id: str = "lk_1", customer_id: str = "cus_a", **kw: Any
) -> LicenseKeyInstance:
    return dataclasses.replace(
        LicenseKeyInstance(
            id=instance_id,
            license_key_id=key_id,
            customer_id=customer_id,
            name=f"Device {instance_id}",
            created_at=T0,
        ),
        **kw,
    )


@pytest.fixture
def keyed_store(store: SQLAlchemyStorage) -> SQLAlchemyStorage:
    store.add_customer(customer("cus_a"))
    store.add_customer(customer("cus_b"))
    store.add_license_key(license_key("lk_1", activations=0, activation_limit=3))
    store.add_license_key(license_key("lk_2", activations=0))
    store.add_license_key(license_key("lk_b", "cus_b", activations=0))
    return store


def test_recording_an_activation_counts_it(keyed_store: SQLAlchemyStorage) -> None:
    store = keyed_store
    saved = store.add_license_key_instance(instance("i1"))
    assert saved == instance("i1")
    store.add_license_key_instance(instance("i2", created_at=T0 + timedelta(days=1)))
    store.add_license_key_instance(instance("old", created_at=T0 + timedelta(days=2), deactivated_at=T0))
    key = store.get_license_key("cus_a", "lk_1")
    assert key is not None
    assert key.activations == 2  # the deactivated one is history, not a seat
    # Active ones first, newest first within each.
    assert [i.id for i in store.list_license_key_instances("cus_a", "lk_1")] == ["i2", "i1", "old"]
    assert store.list_license_key_instances("cus_a", "lk_2") == ()


def test_activations_are_scoped_to_the_customer(keyed_store: SQLAlchemyStorage, store_app: Flask) -> None:
    store = keyed_store
    store.add_license_key_instance(instance("i1"))
    assert store.get_license_key("cus_b", "lk_1") is None
    assert store.list_license_key_instances("cus_b", "lk_1") == ()
    assert store.deactivate_license_key_instance("cus_b", "lk_1", "i1", now=T0) is None
    assert store.deactivate_license_key_instance("cus_a", "lk_2", "i1", now=T0) is None  # wrong key
    with pytest.raises(ValueError, match="not a key of customer"):
        store.add_license_key_instance(instance("x", "lk_b", "cus_a"))
    assert store.get_license_key("cus_b", "lk_b").activations == 0  # type: ignore[union-attr]
    assert store.get_license_key("cus_a", "lk_1").activations == 1  # type: ignore[union-attr]


def test_database_refuses_an_activation_of_another_customers_key(
    keyed_store: SQLAlchemyStorage, store_app: Flask
) -> None:
    from flask_customer_portal.contrib.sqla import LicenseKeyInstanceModel

    db = store_app.extensions["sqlalchemy"]
    db.session.add(
        LicenseKeyInstanceModel(
            id="sneaky", license_key_id="lk_b", customer_id="cus_a", name="x", created_at=T0
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_deactivating_takes_one_off_once(keyed_store: SQLAlchemyStorage) -> None:
    store = keyed_store
    store.add_license_key_instance(instance("i1"))
    store.add_license_key_instance(instance("i2"))
    event = signals_free_event("i1")
    done = store.deactivate_license_key_instance(
        "cus_a", "lk_1", "i1", now=T0 + timedelta(days=3), event=event
    )
    assert done is not None
    assert done.deactivated_at == T0 + timedelta(days=3)
    assert not done.is_active
    assert store.get_license_key("cus_a", "lk_1").activations == 1  # type: ignore[union-attr]
    with pytest.raises(StateConflict):
        store.deactivate_license_key_instance("cus_a", "lk_1", "i1", now=T0 + timedelta(days=4), event=event)
    assert store.get_license_key("cus_a", "lk_1").activations == 1  # type: ignore[union-attr]
    # The event was written with the change, once.
    assert [e.action for e in store.list_events("cus_a")] == ["license_key.instance_deactivated"]


def signals_free_event(subject: str) -> Any:
    from flask_customer_portal.storage import AuditEvent

    return AuditEvent(
        customer_id="cus_a", action="license_key.instance_deactivated", occurred_at=T0, subject_id=subject
    )


def test_the_count_never_goes_below_zero(keyed_store: SQLAlchemyStorage, store_app: Flask) -> None:
    store = keyed_store
    store.add_license_key_instance(instance("i1"))
    from sqlalchemy import update

    from flask_customer_portal.contrib.sqla import LicenseKeyModel

    db = store_app.extensions["sqlalchemy"]
    db.session.execute(update(LicenseKeyModel).where(LicenseKeyModel.id == "lk_1").values(activations=0))
    db.session.commit()
    store.deactivate_license_key_instance("cus_a", "lk_1", "i1", now=T0)
    assert store.get_license_key("cus_a", "lk_1").activations == 0  # type: ignore[union-attr]


def test_concurrent_deactivations_take_one_off(keyed_store: SQLAlchemyStorage, store_app: Flask) -> None:
    store = keyed_store
    for n in range(3):
        store.add_license_key_instance(instance(f"i{n}"))
    assert store.get_license_key("cus_a", "lk_1").activations == 3  # type: ignore[union-attr]

    def deactivate() -> str:
        try:
            done = store.deactivate_license_key_instance("cus_a", "lk_1", "i0", now=T0)
        except StateConflict:
            return "conflict"
        return "done" if done is not None else "missing"

    results = in_threads(store_app, 6, deactivate)
    assert sorted(results) == ["conflict"] * 5 + ["done"]
    assert store.get_license_key("cus_a", "lk_1").activations == 2  # type: ignore[union-attr]


@only_postgresql
def test_concurrent_deactivations_of_different_devices_all_count(
    keyed_store: SQLAlchemyStorage, store_app: Flask
) -> None:
    store = keyed_store
    for n in range(6):
        store.add_license_key_instance(instance(f"i{n}"))
    ids = iter(f"i{n}" for n in range(6))
    lock = __import__("threading").Lock()

    def deactivate() -> bool:
        with lock:
            instance_id = next(ids)
        return store.deactivate_license_key_instance("cus_a", "lk_1", instance_id, now=T0) is not None

    assert in_threads(store_app, 6, deactivate) == [True] * 6
    assert store.get_license_key("cus_a", "lk_1").activations == 0  # type: ignore[union-attr]


def test_keyset_batches_cover_the_history_exactly_once(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    same_time = T0
    for n in range(7):  # four share an issue time: the id breaks the tie
        store.add_invoice(
            Invoice(
                id=f"inv_{n}",
                number=f"N-{n}",
                customer_id="cus_a",
                status=InvoiceStatus.PAID,
                currency="USD",
                subtotal=100,
                tax=0,
                total=100,
                issued_at=same_time if n < 4 else T0 + timedelta(days=n),
                description="x",
            )
        )
    from flask_customer_portal.exports import invoice_batches

    batches = list(invoice_batches(store, "cus_a", batch_size=3, with_lines=False))
    seen = [invoice.id for batch in batches for invoice in batch]
    assert seen == [i.id for i in store.list_invoices("cus_a", page=1, per_page=10).items]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert store.list_invoices_after("cus_b", None, limit=3) == ()


# -- licence key activations: pages ----------------------------------------------------------------


def test_key_page_shows_the_masked_key_and_its_devices(ava_client: FlaskClient) -> None:
    page = ava_client.get("/portal/license-keys/lk_demo_ava_sync")
    assert page.status_code == 200
    html = page.text
    assert "ACME-••••-4RTA" in html
    assert "ACME-SYNC-7K3Q-M9VX-2HPD-4RTA" not in html  # never the full key here
    assert '<a href="/portal/license-keys" aria-current="true">' in html  # its section in the navigation
    assert "2 of 5" in html
    assert "Ava&#39;s MacBook Pro" in html
    assert "Ava&#39;s iPhone" in html
    assert html.count('action="/portal/license-keys/lk_demo_ava_sync/instances/') == 2
    deactivated = html.split("Deactivated devices", 1)[1]
    assert "Old ThinkPad" in deactivated
    assert "Old ThinkPad" not in html.split("Deactivated devices", 1)[0]


def test_licence_keys_page_links_to_each_key(ava_client: FlaskClient) -> None:
    html = ava_client.get("/portal/license-keys").text
    assert 'href="/portal/license-keys/lk_demo_ava_sync"' in html
    assert 'href="/portal/license-keys/lk_demo_ava_desktop"' in html


def test_key_page_of_another_customer_is_not_found(ava_client: FlaskClient) -> None:
    assert ava_client.get("/portal/license-keys/lk_demo_budi_sync").status_code == 404
    assert ava_client.get("/portal/license-keys/lk_nope").status_code == 404


def _deactivate(client: FlaskClient, key_id: str, instance_id: str, token: str | None) -> Any:
    data = {} if token is None else {"csrf_token": token}
    return client.post(f"/portal/license-keys/{key_id}/instances/{instance_id}/deactivate", data=data)


def test_deactivating_a_device(app: Flask, ava_client: FlaskClient) -> None:
    received: list[dict[str, Any]] = []

    def on_deactivated(sender: Flask, **kw: Any) -> None:
        received.append(kw)

    token = csrf_token_from(ava_client.get("/portal/license-keys/lk_demo_ava_sync").text)
    with signals.license_key_instance_deactivated.connected_to(on_deactivated, app):
        response = _deactivate(ava_client, "lk_demo_ava_sync", "lki_demo_ava_iphone", token)
    assert response.status_code == 303
    assert response.location.endswith("/portal/license-keys/lk_demo_ava_sync")
    page = ava_client.get(response.location).text
    assert "Ava&#39;s iPhone is deactivated" in page
    assert "1 of 5" in page
    with app.app_context():
        store = store_of(app)
        key = store.get_license_key(AVA, "lk_demo_ava_sync")
        events = [e for e in store.list_events(AVA) if e.action == "license_key.instance_deactivated"]
    assert key is not None and key.activations == 1
    assert len(events) == 1
    assert events[0].subject_id == "lki_demo_ava_iphone"
    assert events[0].details == {"license_key_id": "lk_demo_ava_sync"}
    assert len(received) == 1
    assert received[0]["instance"].id == "lki_demo_ava_iphone"
    assert received[0]["license_key"].activations == 1
    assert received[0]["customer"].id == AVA

    # Again (a second tab, a double click): a clear word, no second decrement.
    again = _deactivate(ava_client, "lk_demo_ava_sync", "lki_demo_ava_iphone", token)
    assert again.status_code == 303
    assert "already deactivated. Nothing changed." in ava_client.get(again.location).text
    with app.app_context():
        assert store_of(app).get_license_key(AVA, "lk_demo_ava_sync").activations == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("token", [None, "forged"])
def test_deactivating_needs_a_csrf_token(app: Flask, ava_client: FlaskClient, token: str | None) -> None:
    response = _deactivate(ava_client, "lk_demo_ava_sync", "lki_demo_ava_iphone", token)
    assert response.status_code == 400
    with app.app_context():
        store = store_of(app)
        assert store.get_license_key(AVA, "lk_demo_ava_sync").activations == 2  # type: ignore[union-attr]
        assert all(i.is_active for i in store.list_license_key_instances(AVA, "lk_demo_ava_sync")[:2])


@pytest.mark.parametrize(
    ("key_id", "instance_id"),
    [
        ("lk_demo_budi_sync", "lki_demo_budi_laptop"),  # Budi's key and device
        ("lk_demo_ava_sync", "lki_demo_budi_laptop"),  # Budi's device under Ava's key
        ("lk_demo_ava_desktop", "lki_demo_ava_iphone"),  # Ava's device under her other key
        ("lk_demo_ava_sync", "lki_nope"),
    ],
)
def test_deactivating_someone_elses_device_is_not_found(
    app: Flask, ava_client: FlaskClient, key_id: str, instance_id: str
) -> None:
    token = csrf_token_from(ava_client.get("/portal/license-keys").text)
    assert _deactivate(ava_client, key_id, instance_id, token).status_code == 404
    with app.app_context():
        store = store_of(app)
        assert store.get_license_key(BUDI, "lk_demo_budi_sync").activations == 1  # type: ignore[union-attr]
        assert store.get_license_key(AVA, "lk_demo_ava_sync").activations == 2  # type: ignore[union-attr]
        assert all(i.is_active for i in store.list_license_key_instances(BUDI, "lk_demo_budi_sync"))


def test_a_get_never_deactivates(ava_client: FlaskClient) -> None:
    response = ava_client.get(
        "/portal/license-keys/lk_demo_ava_sync/instances/lki_demo_ava_iphone/deactivate"
    )
    assert response.status_code == 405


def test_unrecorded_activations_are_explained(app: Flask, chen_client: FlaskClient) -> None:
    with app.app_context():
        store_of(app).add_license_key(license_key("lk_chen", CHEN, activations=2))
    html = chen_client.get("/portal/license-keys/lk_chen").text
    assert "No active devices" in html
    assert "2 activations were made before devices were recorded" in html


def test_key_page_takes_a_fixed_number_of_queries(
    app: Flask, chen_client: FlaskClient, count_queries: Callable[..., QueryCounter]
) -> None:
    with app.app_context():
        store = store_of(app)
        store.add_license_key(license_key("lk_chen", CHEN, activations=0))
        store.add_license_key_instance(instance("c0", "lk_chen", CHEN))
    with app.app_context(), count_queries() as one:
        assert chen_client.get("/portal/license-keys/lk_chen").status_code == 200
    with app.app_context():
        for n in range(1, 30):
            store_of(app).add_license_key_instance(instance(f"c{n}", "lk_chen", CHEN))
    with app.app_context(), count_queries() as thirty:
        html = chen_client.get("/portal/license-keys/lk_chen").text
    assert html.count("<strong>Device c") == 30
    assert thirty.count == one.count, thirty.statements


def test_demo_devices_match_the_counts(app: Flask) -> None:
    with app.app_context():
        store = store_of(app)
        for customer_id in (AVA, BUDI):
            for key in store.list_license_keys(customer_id):
                active = [i for i in store.list_license_key_instances(customer_id, key.id) if i.is_active]
                assert key.activations == len(active), key.id


def test_subscriptions_status_is_untouched_by_exports(app: Flask, ava_client: FlaskClient) -> None:
    with app.app_context():
        before = store_of(app).list_subscriptions(AVA)
    for path in (
        "/portal/invoices/export.csv",
        "/portal/subscriptions/renewals.ics",
        "/portal/invoices/export.zip",
    ):
        assert ava_client.get(path).data
    with app.app_context():
        after = store_of(app).list_subscriptions(AVA)
    assert before == after
    assert {s.status for s in after} == {SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELLED}


def test_a_pdf_that_fails_half_way_is_logged_and_not_hidden(
    app: Flask, ava_client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    real = get_state(app).invoice_renderer
    assert real is not None
    made: list[str] = []

    class FailingSecond:
        def render(self, document: Any) -> bytes:
            if made:
                raise RuntimeError("renderer broke")
            made.append(document.invoice.id)
            return real.render(document)

    get_state(app).invoice_renderer = FailingSecond()
    response = ava_client.get("/portal/invoices/export.zip")
    with pytest.raises(RuntimeError, match="renderer broke"):
        response.get_data()
    logged = [r for r in caplog.records if "invoice ZIP for customer cus_demo_ava stopped" in r.getMessage()]
    assert len(logged) == 1


def test_ics_takes_a_fixed_number_of_queries(
    app: Flask, chen_client: FlaskClient, count_queries: Callable[..., QueryCounter]
) -> None:
    def add(n: int) -> None:
        with app.app_context():
            store_of(app).add_subscription(
                subscription(
                    f"sub_chen_{n}",
                    CHEN,
                    current_period_start=datetime(2030, 1, 1, tzinfo=UTC),
                    current_period_end=datetime(2030, 2, 1, tzinfo=UTC) + timedelta(days=n),
                )
            )

    add(0)
    with app.app_context(), count_queries() as one:
        assert (
            len(Calendar.from_ical(chen_client.get("/portal/subscriptions/renewals.ics").data).walk("VEVENT"))
            == 1
        )
    for n in range(1, 8):
        add(n)
    with app.app_context(), count_queries() as eight:
        assert (
            len(Calendar.from_ical(chen_client.get("/portal/subscriptions/renewals.ics").data).walk("VEVENT"))
            == 8
        )
    assert eight.count == one.count, eight.statements


def test_downloads_left_unread_or_half_read_leave_no_context_behind(ava_client: FlaskClient) -> None:
    unread = [ava_client.get(path) for path in ("/portal/invoices/export.zip", "/portal/invoices/export.csv")]
    half_read = ava_client.get("/portal/invoices/export.zip")
    first_chunk = next(iter(half_read.response))
    assert first_chunk.startswith(b"PK")
    half_read.close()
    # Pages after them work, and dropping the unread ones raises nothing.
    assert ava_client.get("/portal/invoices").status_code == 200
    for response in unread:
        response.close()
    del unread
    gc.collect()
    assert ava_client.get("/portal/").status_code == 200
