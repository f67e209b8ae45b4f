"""Benchmark 6: the billing-history CSV export of a customer with 1,000
invoices against a bare ``csv.writer`` loop over the same rows.

Two pairs, interleaved:

* the whole download (``GET /portal/invoices/export.csv``: keyset batches
  of 100, exact decimals, formula guard, dates in the customer's zone,
  streamed) against one ``SELECT`` of the same columns written by a bare
  ``csv.writer`` loop (amounts as ``Decimal``, ISO dates in UTC);
* the row writing alone, on invoices already in memory: the portal's
  :func:`~flask_customer_portal.exports.invoice_csv_row` and
  :func:`~flask_customer_portal.exports.stream_csv` against the bare loop.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import insert, select

from benchmarks._sql import sql_log
from benchmarks._timing import compare
from flask_customer_portal.contrib.sqla import InvoiceModel, SQLAlchemyStorage
from flask_customer_portal.exports import invoice_batches, invoice_csv_row, stream_csv
from flask_customer_portal.extension import get_state
from flask_customer_portal.storage import Customer, Invoice
from tests.portal_fixtures import make_portal_app, sign_in

INVOICES = 1_000
CUSTOMER_ID = "cus_export"
HEADER = ["Invoice number", "Date issued", "Description", "Status", "Currency"]
HEADER += ["Subtotal", "Tax", "Total", "Date paid", "Payment reference"]
_COLUMNS = (
    InvoiceModel.number,
    InvoiceModel.issued_at,
    InvoiceModel.description,
    InvoiceModel.status,
    InvoiceModel.currency,
    InvoiceModel.subtotal,
    InvoiceModel.tax,
    InvoiceModel.total,
    InvoiceModel.paid_at,
    InvoiceModel.payment_reference,
)


@dataclass(frozen=True)
class ExportResult:
    invoices: int
    statements: int
    portal_ms: float
    bare_ms: float
    portal_rows_ms: float
    bare_rows_ms: float
    ratio: float
    rows_ratio: float


def _add_invoices(app: Flask, store: SQLAlchemyStorage, count: int) -> None:
    db = app.extensions["sqlalchemy"]
    base = datetime(2020, 1, 1, 9, 30, tzinfo=timezone.utc)
    store.add_customer(
        Customer(id=CUSTOMER_ID, email="export@example.com", name="Export", timezone="Asia/Jakarta")
    )
    rows = [
        {
            "id": f"inv_export_{n:05d}",
            "number": f"INV-{n:06d}",
            "customer_id": CUSTOMER_ID,
            "status": "paid",
            "currency": "USD",
            "subtotal": 1900 + n,
            "tax": 190,
            "total": 2090 + n,
            "issued_at": base + timedelta(days=n),
            "description": f"Acme Sync — Pro (monthly), period {n}",
            "paid_at": base + timedelta(days=n, minutes=2),
            "payment_reference": f"ch_{n:08d}",
        }
        for n in range(count)
    ]
    db.session.execute(insert(InvoiceModel), rows)
    db.session.commit()


def _bare_rows(rows: list[tuple[Any, ...]]) -> bytes:
    """What a hand-written export does: the rows, amounts as Decimal."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for number, issued, description, status, currency, subtotal, tax, total, paid, reference in rows:
        writer.writerow(
            [
                number,
                issued.date().isoformat(),
                description,
                status,
                currency,
                Decimal(subtotal).scaleb(-2),
                Decimal(tax).scaleb(-2),
                Decimal(total).scaleb(-2),
                paid.date().isoformat() if paid else "",
                reference or "",
            ]
        )
    return buffer.getvalue().encode("utf-8")


def _portal_rows(invoices: list[Invoice]) -> bytes:
    rows = [invoice_csv_row(i, tz="Asia/Jakarta", status_label="Paid") for i in invoices]
    return b"".join(stream_csv(HEADER, [rows]))


def run(*, invoices: int = INVOICES, rounds: int = 60, warmup: int = 5) -> ExportResult:
    with tempfile.TemporaryDirectory() as tmp:
        app = make_portal_app(f"sqlite:///{Path(tmp) / 'bench.db'}", demo_data=False, TESTING=False)
        state = get_state(app)
        try:
            result = _measure(app, invoices, rounds=rounds, warmup=warmup)
        finally:
            state.shutdown()
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()

    print(f"\n## 6. Billing-history CSV of {invoices:,} invoices (SQLite, interleaved, median of {rounds})")
    print(
        f"download: portal {result.portal_ms:.2f} ms ({result.statements} SQL statements) "
        f"vs bare SELECT + csv.writer {result.bare_ms:.2f} ms: {result.ratio:.2f}x"
    )
    print(
        f"rows only (in memory): portal {result.portal_rows_ms:.2f} ms "
        f"vs bare csv.writer {result.bare_rows_ms:.2f} ms: {result.rows_ratio:.2f}x"
    )
    return result


def _measure(app: Flask, invoices: int, *, rounds: int, warmup: int) -> ExportResult:
    store = get_state(app).storage
    assert isinstance(store, SQLAlchemyStorage)
    db = app.extensions["sqlalchemy"]
    with app.app_context():
        _add_invoices(app, store, invoices)
        engine = db.engine
        records = [
            i
            for batch in invoice_batches(store, CUSTOMER_ID, batch_size=500, with_lines=False)
            for i in batch
        ]
        plain = [
            tuple(row)
            for row in db.session.execute(
                select(*_COLUMNS).where(InvoiceModel.customer_id == CUSTOMER_ID)
            ).all()
        ]
    client = app.test_client()
    sign_in(app, client, CUSTOMER_ID)

    def portal() -> None:
        response = client.get("/portal/invoices/export.csv")
        body = response.data
        lines = body.count(b"\r\n")
        if response.status_code != 200 or lines != invoices + 1:
            raise AssertionError(f"export: {response.status_code}, {lines} lines")

    def bare() -> None:
        with app.app_context():
            rows = db.session.execute(
                select(*_COLUMNS)
                .where(InvoiceModel.customer_id == CUSTOMER_ID)
                .order_by(InvoiceModel.issued_at.desc(), InvoiceModel.id.desc())
            ).all()
            body = _bare_rows([tuple(row) for row in rows])
        if body.count(b"\r\n") != invoices + 1:
            raise AssertionError("bare export lost rows")

    contenders: dict[str, Callable[[], object]] = {
        "portal": portal,
        "bare": bare,
        "portal rows": lambda: _portal_rows(records),
        "bare rows": lambda: _bare_rows(plain),
    }
    with sql_log(engine) as log:
        portal()
    comparison = compare(contenders, rounds=rounds, warmup=warmup)
    return ExportResult(
        invoices=invoices,
        statements=len(log.statements),
        portal_ms=comparison["portal"].median,
        bare_ms=comparison["bare"].median,
        portal_rows_ms=comparison["portal rows"].median,
        bare_rows_ms=comparison["bare rows"].median,
        ratio=comparison.ratio("portal", "bare"),
        rows_ratio=comparison.ratio("portal rows", "bare rows"),
    )
