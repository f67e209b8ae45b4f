"""Databases of their own, the 0.1.0 fixtures and schema comparisons, for
the migration tests (their pytest fixtures are in ``migration_fixtures``).

Migration tests create and drop tables and the version table, so on
PostgreSQL each gets a database of its own on the test server (not the
shared ``portal_test``), dropped afterwards.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine, make_url

FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: The tables of release 0.1.0's example shop, the portal's and the shop's.
TABLES_0_1_0 = (
    "portal_audit_events",
    "portal_billing_details",
    "portal_charge_attempts",
    "portal_customers",
    "portal_invoice_lines",
    "portal_invoices",
    "portal_license_key_instances",
    "portal_license_keys",
    "portal_links",
    "portal_payment_methods",
    "portal_plans",
    "portal_sequences",
    "portal_sessions",
    "portal_subscriptions",
    "portal_webhook_events",
    "shop_staff",
)


@contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``; dropped after."""
    url = make_url(server_url)
    name = f"portal_migrations_{secrets.token_hex(4)}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def load_0_1_0(url: str) -> None:
    """Load the database that 0.1.0's example shop made, with its demo data
    (see ``scripts/schema_fixture_0_1_0.py``), into the empty database ``url``."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        assert database
        with sqlite3.connect(database) as connection:
            connection.executescript((FIXTURES / "schema_0_1_0.sqlite.sql").read_text())
        connection.close()
        return
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            # pg_dump's output is several statements: psycopg runs them as
            # one query when given no parameters.
            driver = connection.connection.driver_connection
            assert driver is not None
            driver.execute((FIXTURES / "schema_0_1_0.postgresql.sql").read_text())
    finally:
        engine.dispose()  # its session settings (search_path, timeouts) go with it


def snapshot(
    engine: Engine,
    tables: tuple[str, ...] = TABLES_0_1_0,
    *,
    columns: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables``, in primary key order, as the database returns
    them: all their columns, or those ``columns`` names per table (the
    columns a table had before an upgrade added some)."""
    inspector = inspect(engine)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in tables:
            key = inspector.get_pk_constraint(table)["constrained_columns"]
            order = ", ".join(key)
            names = ", ".join(columns[table]) if columns is not None else "*"
            rows[table] = [
                tuple(row)
                for row in connection.execute(text(f"SELECT {names} FROM {table} ORDER BY {order}"))
            ]
    return rows


def column_names(engine: Engine, tables: tuple[str, ...] = TABLES_0_1_0) -> dict[str, list[str]]:
    """The columns of each of ``tables``, in the database's order."""
    inspector = inspect(engine)
    return {table: [column["name"] for column in inspector.get_columns(table)] for table in tables}


def describe_schema(engine: Engine, tables: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What the database says of ``tables``: columns (type, nullability,
    default), and every constraint and index with its name, comparable
    between two databases of the same backend."""
    inspector = inspect(engine)
    described: dict[str, dict[str, Any]] = {}
    for table in sorted(tables):
        columns = {
            column["name"]: (
                str(column["type"].compile(engine.dialect)),
                column["nullable"],
                column.get("default"),
            )
            for column in inspector.get_columns(table)
        }
        primary_key = inspector.get_pk_constraint(table)
        described[table] = {
            "columns": columns,
            "primary key": (primary_key.get("name"), tuple(primary_key["constrained_columns"])),
            "foreign keys": sorted(
                (
                    fk.get("name") or "",
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(
                (uq.get("name") or "", tuple(uq["column_names"]))
                for uq in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (
                    index.get("name") or "",
                    tuple(str(name) for name in index["column_names"]),
                    bool(index["unique"]),
                    tuple(sorted((str(k), tuple(v)) for k, v in (index.get("column_sorting") or {}).items())),
                    tuple(str(e) for e in index.get("expressions") or ()),
                )
                for index in inspector.get_indexes(table)
            ),
            "checks": sorted(
                (check.get("name") or "", " ".join(str(check["sqltext"]).split()))
                for check in inspector.get_check_constraints(table)
            ),
        }
    return described
