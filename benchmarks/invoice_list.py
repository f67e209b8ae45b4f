"""Invoice list for customers with 10, 1,000 and 10,000 invoices: latency and
query count of one page (goal: flat)."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import event, insert

from benchmarks._timing import measure
from flask_customer_portal.contrib.sqla import InvoiceModel, SQLAlchemyStorage
from flask_customer_portal.extension import get_state
from flask_customer_portal.storage import Customer
from tests.portal_fixtures import make_portal_app


def run() -> None:
    print("\n## Invoice list, one page of 25 (SQLite, storage call, median)")
    with tempfile.TemporaryDirectory() as tmp:
        app = make_portal_app(f"sqlite:///{Path(tmp) / 'bench.db'}", demo_data=False)
        db = app.extensions["sqlalchemy"]
        with app.app_context():
            store = get_state(app).storage
            assert isinstance(store, SQLAlchemyStorage)
            base = datetime(2020, 1, 1, tzinfo=timezone.utc)
            results = []
            for size in (10, 1_000, 10_000):
                customer = store.add_customer(
                    Customer(id=f"cus_{size}", email=f"c{size}@example.com", name="C")
                )
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
                queries = 0

                def count(*_args: object) -> None:
                    nonlocal queries
                    queries += 1

                event.listen(db.engine, "before_cursor_execute", count)
                store.list_invoices(customer.id, page=1, per_page=25)
                event.remove(db.engine, "before_cursor_execute", count)
                first = measure(lambda c=customer.id: store.list_invoices(c, page=1, per_page=25), runs=100)
                last_page = (size + 24) // 25
                last = measure(
                    lambda c=customer.id, p=last_page: store.list_invoices(c, page=p, per_page=25), runs=100
                )
                results.append((size, queries, first, last))
            baseline = results[0][2]
            for size, queries, first, last in results:
                print(
                    f"{size:>6} invoices: {queries} queries, first page {first:.2f} ms ({first / baseline:.2f}x of 10), "
                    f"last page {last:.2f} ms"
                )
        get_state(app).shutdown()
        with app.app_context():
            db.engine.dispose()
