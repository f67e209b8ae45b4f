"""Benchmark 3: the invoice list for customers with 10, 1,000 and 10,000
invoices (goal: flat). Measures the page (``GET /portal/invoices``, first
and last page) and, under it, the storage call and the two parts of its
query run apart (the count and the page of rows), all interleaved, plus the
statements per page.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flask import Flask
from sqlalchemy import func, insert, select

from benchmarks._sql import sql_log
from benchmarks._timing import compare, verdict
from flask_customer_portal.contrib.sqla import InvoiceModel, SQLAlchemyStorage
from flask_customer_portal.extension import get_state
from flask_customer_portal.storage import Customer
from tests.portal_fixtures import make_portal_app, sign_in

SIZES = (10, 1_000, 10_000)
#: "Flat": the largest customer's first page takes at most this much longer
#: than that of the smallest customer with a full page (a customer with 10
#: invoices has a shorter page, so it is shown but not the yardstick).
FLAT = 1.25


@dataclass(frozen=True)
class SizeResult:
    invoices: int
    statements_per_page: int
    page_first_ms: float
    page_last_ms: float
    storage_first_ms: float
    count_query_ms: float
    rows_query_ms: float


@dataclass(frozen=True)
class InvoiceListResult:
    sizes: tuple[SizeResult, ...]

    per_page: int

    @property
    def yardstick(self) -> SizeResult:
        """The smallest customer whose first page is full."""
        full = [size for size in self.sizes if size.invoices >= self.per_page]
        return full[0] if full else self.sizes[0]

    @property
    def growth(self) -> float:
        """First page of the largest customer over the yardstick's."""
        return self.sizes[-1].page_first_ms / self.yardstick.page_first_ms

    @property
    def last_page_growth(self) -> float:
        return self.sizes[-1].page_last_ms / self.yardstick.page_last_ms

    @property
    def met(self) -> bool:
        statements = {size.statements_per_page for size in self.sizes}
        return len(statements) == 1 and self.growth <= FLAT


def _add_customer(app: Flask, store: SQLAlchemyStorage, size: int) -> str:
    db = app.extensions["sqlalchemy"]
    base = datetime(2020, 1, 1, tzinfo=timezone.utc)
    customer = store.add_customer(Customer(id=f"cus_{size}", email=f"c{size}@example.com", name=f"C {size}"))
    rows = [
        {
            "id": f"inv_{size}_{n}",
            "number": f"B{size}-{n:06d}",
            "customer_id": customer.id,
            "status": "paid",
            "currency": "USD",
            "subtotal": 1000,
            "tax": 0,
            "total": 1000,
            "issued_at": base + timedelta(hours=n),
            "description": "Plan",
        }
        for n in range(size)
    ]
    db.session.execute(insert(InvoiceModel), rows)
    db.session.commit()
    return customer.id


def run(*, sizes: tuple[int, ...] = SIZES, rounds: int = 100, warmup: int = 10) -> InvoiceListResult:
    with tempfile.TemporaryDirectory() as tmp:
        app = make_portal_app(f"sqlite:///{Path(tmp) / 'bench.db'}", demo_data=False, TESTING=False)
        state = get_state(app)
        try:
            result = _measure(app, sizes, rounds=rounds, warmup=warmup)
        finally:
            state.shutdown()
            with app.app_context():
                app.extensions["sqlalchemy"].engine.dispose()

    print(
        f"\n## 3. Invoice list at {', '.join(f'{s:,}' for s in sizes)} invoices "
        f"(SQLite, 25 a page, interleaved, median of {rounds})"
    )
    yardstick = result.yardstick
    for size in result.sizes:
        print(
            f"{size.invoices:>7,} invoices: page 1 {size.page_first_ms:.2f} ms "
            f"({size.page_first_ms / yardstick.page_first_ms:.2f}x), last page {size.page_last_ms:.2f} ms, "
            f"{size.statements_per_page} SQL statements a page; storage call {size.storage_first_ms:.2f} ms "
            f"= count {size.count_query_ms:.2f} ms + rows {size.rows_query_ms:.2f} ms (+ mapping)"
        )
    print(
        f"growth from {yardstick.invoices:,} to {result.sizes[-1].invoices:,} invoices (both a full page): "
        f"page 1 {result.growth:.2f}x, last page {result.last_page_growth:.2f}x "
        f"(goal: flat, page 1 ≤ {FLAT}x with the same statements: {verdict(result.met)})"
    )
    return result


def _measure(app: Flask, sizes: tuple[int, ...], *, rounds: int, warmup: int) -> InvoiceListResult:
    store = get_state(app).storage
    assert isinstance(store, SQLAlchemyStorage)
    db = app.extensions["sqlalchemy"]
    per_page = get_state(app).config.invoices_per_page
    contenders: dict[str, Callable[[], object]] = {}
    statements: dict[int, int] = {}
    with app.app_context():
        customers = {size: _add_customer(app, store, size) for size in sizes}
        engine = db.engine
    for size, customer_id in customers.items():
        client = app.test_client()
        sign_in(app, client, customer_id)
        last_page = max(1, -(-size // per_page))

        def get(path: str, client: object = client, marker: str = f"B{size}-") -> Callable[[], None]:
            def call() -> None:
                response = client.get(path)  # type: ignore[attr-defined]
                if response.status_code != 200 or marker not in response.text:
                    raise AssertionError(f"{path}: {response.status_code}")

            return call

        contenders[f"page {size} first"] = get("/portal/invoices")
        contenders[f"page {size} last"] = get(f"/portal/invoices?page={last_page}")
        with sql_log(engine) as log:
            contenders[f"page {size} first"]()
        statements[size] = len(log.statements)

    for size, customer_id in customers.items():
        # Each call in its own app context, as a request has: a pushed
        # context would also be reused by the page requests (and their g).

        def storage_call(customer_id: str = customer_id) -> None:
            with app.app_context():
                store.list_invoices(customer_id, page=1, per_page=per_page)

        def count_query(customer_id: str = customer_id) -> None:
            with app.app_context():
                db.session.scalar(
                    select(func.count())
                    .select_from(InvoiceModel)
                    .where(InvoiceModel.customer_id == customer_id)
                )

        def rows_query(customer_id: str = customer_id) -> None:
            with app.app_context():
                db.session.execute(
                    select(InvoiceModel.id)
                    .where(InvoiceModel.customer_id == customer_id)
                    .order_by(InvoiceModel.issued_at.desc(), InvoiceModel.id.desc())
                    .limit(per_page)
                ).all()

        contenders[f"storage {size}"] = storage_call
        contenders[f"count {size}"] = count_query
        contenders[f"rows {size}"] = rows_query
    comparison = compare(contenders, rounds=rounds, warmup=warmup)
    return InvoiceListResult(
        per_page=per_page,
        sizes=tuple(
            SizeResult(
                invoices=size,
                statements_per_page=statements[size],
                page_first_ms=comparison[f"page {size} first"].median,
                page_last_ms=comparison[f"page {size} last"].median,
                storage_first_ms=comparison[f"storage {size}"].median,
                count_query_ms=comparison[f"count {size}"].median,
                rows_query_ms=comparison[f"rows {size}"].median,
            )
            for size in sizes
        ),
    )
