"""What a signed-in page costs the database per request, on each backend:
statements, transactions, commits and connection checkouts. On PostgreSQL
each statement, ``BEGIN`` and ``ROLLBACK`` is a round trip to the server,
so these counts are what a page's speed under a real server depends on
(benchmark 5)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, sign_in
from sqlalchemy import event
from sqlalchemy.engine import Engine

from example_app.demo import load_demo_data
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.state import get_state

SIGNED_IN_AT = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@dataclass
class Traffic:
    """What one engine was asked to do inside :func:`traffic`."""

    statements: list[str] = field(default_factory=list)
    begins: int = 0
    commits: int = 0
    rollbacks: int = 0
    checkouts: int = 0
    connects: int = 0

    @property
    def writes(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().split(None, 1)[0].upper() != "SELECT"]

    @property
    def round_trips(self) -> int:
        """Statements plus the ``BEGIN`` and ``COMMIT``/``ROLLBACK`` around
        them: what PostgreSQL answers one by one."""
        return len(self.statements) + self.begins + self.commits + self.rollbacks


@contextmanager
def traffic(engine: Engine) -> Iterator[Traffic]:
    seen = Traffic()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.statements.append(sql)

    def counter(name: str) -> Any:
        def count(*_args: Any) -> None:
            setattr(seen, name, getattr(seen, name) + 1)

        return count

    listeners: list[tuple[Any, str, Any]] = [
        (engine, "before_cursor_execute", statement),
        (engine, "begin", counter("begins")),
        (engine, "commit", counter("commits")),
        (engine, "rollback", counter("rollbacks")),
        (engine.pool, "checkout", counter("checkouts")),
        (engine.pool, "connect", counter("connects")),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield seen
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


@pytest.fixture
def demo_app(db_url: str) -> Iterator[Flask]:
    """The demo data on each backend, in fresh tables (a shared PostgreSQL
    database may hold tables of an earlier, crashed run)."""
    app = make_portal_app(db_url, demo_data=False)
    store = get_state(app).storage
    assert isinstance(store, SQLAlchemyStorage)
    with app.app_context():
        store.drop_all()
        store.create_all()
        load_demo_data(store)
    try:
        yield app
    finally:
        get_state(app).shutdown()
        with app.app_context():
            store.drop_all()
            app.extensions["sqlalchemy"].engine.dispose()


def _engine(app: Flask) -> Engine:
    with app.app_context():
        engine: Engine = app.extensions["sqlalchemy"].engine
    return engine


def _signed_in(app: Flask, customer_id: str) -> FlaskClient:
    client = app.test_client()
    with time_machine.travel(SIGNED_IN_AT, tick=False):
        sign_in(app, client, customer_id)
    return client


def _first_table(statement: str) -> str | None:
    found = re.search(r"\bFROM\s+(\w+)", statement)
    return found.group(1) if found else None


def _get(app: Flask, client: FlaskClient, path: str, at: datetime) -> tuple[Traffic, str]:
    with time_machine.travel(at, tick=False), traffic(_engine(app)) as seen:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return seen, response.text


@pytest.mark.parametrize("customer_id", ["cus_demo_ava", "cus_demo_chen"])
def test_the_dashboard_is_four_reads_in_one_transaction(demo_app: Flask, customer_id: str) -> None:
    """Session with its customer, subscriptions, the latest invoice with
    the count of all of them, the licence-key count: one connection, one
    transaction that is rolled back, nothing written, nothing set up per
    request. Six round trips on PostgreSQL, for a customer with history
    and for one without."""
    client = _signed_in(demo_app, customer_id)
    seen, page = _get(demo_app, client, "/portal/", SIGNED_IN_AT + timedelta(seconds=30))

    tables = [_first_table(s) for s in seen.statements]
    assert tables == ["portal_sessions", "portal_subscriptions", "portal_invoices", "portal_license_keys"], (
        seen.statements
    )
    assert seen.writes == []
    assert (seen.checkouts, seen.connects) == (1, 0)
    assert (seen.begins, seen.commits, seen.rollbacks) == (1, 0, 1)
    assert seen.round_trips == 6
    if customer_id == "cus_demo_ava":
        assert "15 invoices in total" in page
        assert "Latest invoice: INV-000015" in page
    else:
        assert "No invoices yet" in page


def test_a_signed_in_page_writes_at_most_once_a_minute(demo_app: Flask) -> None:
    """The session's ``last_seen_at`` moves forward at most once a minute:
    one ``UPDATE`` and its commit, on top of the page's reads; every other
    request within that minute writes nothing."""
    client = _signed_in(demo_app, "cus_demo_ava")
    reads = len(_get(demo_app, client, "/portal/", SIGNED_IN_AT + timedelta(seconds=59))[0].statements)

    touched_at = SIGNED_IN_AT + timedelta(seconds=61)
    touching, _page = _get(demo_app, client, "/portal/", touched_at)
    assert len(touching.writes) == 1 and touching.writes[0].lstrip().startswith("UPDATE portal_sessions")
    assert len(touching.statements) == reads + 1
    # The write commits at once; the page's other reads run in a second
    # transaction, rolled back at the end of the request like any other.
    assert (touching.begins, touching.commits, touching.rollbacks) == (2, 1, 1)

    for later in (touched_at + timedelta(seconds=1), touched_at + timedelta(seconds=59)):
        quiet, _page = _get(demo_app, client, "/portal/", later)
        assert quiet.writes == [], later
        assert (len(quiet.statements), quiet.commits) == (reads, 0), later

    with demo_app.app_context():
        (record,) = get_state(demo_app).storage.list_customer_sessions(
            "cus_demo_ava", touched_at, idle_timeout=timedelta(minutes=30), max_age=timedelta(hours=12)
        )
    assert record.last_seen_at == touched_at


def test_the_invoice_list_reads_its_page_and_total_in_one_statement(demo_app: Flask) -> None:
    client = _signed_in(demo_app, "cus_demo_ava")
    seen, page = _get(demo_app, client, "/portal/invoices", SIGNED_IN_AT + timedelta(seconds=30))
    invoice_reads = [s for s in seen.statements if _first_table(s) == "portal_invoices"]
    assert len(invoice_reads) == 1, seen.statements
    assert "count(" in invoice_reads[0].lower() and "LIMIT" in invoice_reads[0].upper()
    assert len(seen.statements) == 2, seen.statements  # and the session with its customer
    assert (seen.begins, seen.commits, seen.rollbacks, seen.checkouts) == (1, 0, 1, 1)
    assert "15 invoices in total" in page


def test_a_late_page_skips_index_entries_not_invoices(sqlite_app: Flask) -> None:
    """The invoice page's ``OFFSET`` walks the billing-history index alone
    (a covering index), and only the page's own invoices are read, by
    primary key, and joined to their cards: a late page of a long history
    costs about what the first does."""
    from flask_customer_portal.contrib.sqla.queries import LIST_INVOICES

    engine = sqlite_app.extensions["sqlalchemy"].engine
    compiled = LIST_INVOICES.compile(dialect=engine.dialect)
    values = {"customer_id": "cus_a", "limit": 25, "offset": 9975}
    assert compiled.positiontup is not None
    with engine.connect() as connection:
        plan = [
            row[3]
            for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}", tuple(values[name] for name in compiled.positiontup)
            )
        ]
    assert "SEARCH portal_invoices USING INDEX sqlite_autoindex_portal_invoices_1 (id=?)" in plan, plan
    assert (
        plan.count(
            "SEARCH portal_invoices USING COVERING INDEX ix_portal_invoices_customer_issued (customer_id=?)"
        )
        == 2
    ), plan  # the page's ids and the count
    assert not any(step.startswith("SCAN") for step in plan), plan
