"""Shared fixtures.

Databases: ``db_url`` runs a test on SQLite and on PostgreSQL. PostgreSQL
comes from ``CUSTOMER_PORTAL_TEST_POSTGRES_URL`` or, without it, from a
throwaway cluster (``tests/pg.py``) started once per session. Under
pytest-xdist each worker starts its own cluster, or makes a database of
its own on the server of ``CUSTOMER_PORTAL_TEST_POSTGRES_URL``. Without
PostgreSQL binaries those tests skip, except under CI (``CI=true``), where a
missing database is a failure, not a skip. ``-m "not postgres"`` leaves
them out.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pg  # tests/pg.py (tests/ is on pythonpath)
import pytest
from db_support import make_sqla_app, portal_tables
from flask import Flask, current_app
from sqlalchemy import create_engine, event, make_url, text

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage

# pytester: tests/test_pytest_plugin.py runs a host's test suite with the portal's plugin.
pytest_plugins = ["portal_fixtures", "stripe_support", "redis_server", "pytester"]

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from sqlalchemy.engine import Engine

POSTGRES_URL_ENV = "CUSTOMER_PORTAL_TEST_POSTGRES_URL"


# -- databases -------------------------------------------------------------------


@contextmanager
def _database_of_worker(url: str, worker: str) -> Iterator[str]:
    """A database of this pytest-xdist worker's own beside the one of
    ``url`` (``portal_test_gw0``, …), dropped afterwards: workers never
    share tables."""
    server = make_url(url)
    name = f"{server.database}_{worker}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            force = " WITH (FORCE)" if connection.dialect.server_version_info >= (13,) else ""
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of an empty PostgreSQL database for this test session (for
    each pytest-xdist worker its own)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker is None:
            yield url
        else:
            with _database_of_worker(url, worker) as own:
                yield own
        return
    try:
        cluster = pg.start_cluster()
    except pg.PostgresUnavailable as exc:
        reason = (
            f"PostgreSQL is not available ({exc}); install the PostgreSQL server "
            f"or set {POSTGRES_URL_ENV}=postgresql+psycopg://user@host:port/db"
        )
        # Imported late: pytest must load portal_fixtures as a plugin first.
        from portal_fixtures import running_in_ci

        if running_in_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL; tests using it run once per backend.

    For a test that only makes sense on PostgreSQL::

        @pytest.mark.parametrize(
            "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
        )
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    raise ValueError(f"unknown database {request.param!r}")


@pytest.fixture
def store_app(db_url: str) -> Iterator[Flask]:
    """A Flask-SQLAlchemy app on each backend, inside its app context, with
    empty portal tables."""
    with portal_tables(make_sqla_app(db_url)) as app:
        yield app


@pytest.fixture
def store(store_app: Flask) -> SQLAlchemyStorage:
    """The SQLAlchemy store of ``store_app`` (each backend)."""
    return SQLAlchemyStorage(store_app.extensions["sqlalchemy"])


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[Flask]:
    """Like ``store_app`` but SQLite only, for tests where the backend does
    not matter."""
    with portal_tables(make_sqla_app(f"sqlite:///{tmp_path / 'portal.sqlite3'}")) as app:
        yield app


@pytest.fixture
def sqlite_store(sqlite_app: Flask) -> SQLAlchemyStorage:
    return SQLAlchemyStorage(sqlite_app.extensions["sqlalchemy"])


# -- query counting ----------------------------------------------------------------


class QueryCounter:
    """Counts the SQL statements an engine executes inside a ``with`` block.

    ::

        with count_queries() as queries:
            store.list_invoices("cus_1", page=1, per_page=10)
        assert queries.count == 2, queries.statements
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []
        # Only the statements of the thread that counts: the portal's
        # background thread (mail delivery after the response) is not the
        # request's work.
        self._thread = threading.get_ident()

    @property
    def count(self) -> int:
        return len(self.statements)

    def _before_cursor_execute(  # SQLAlchemy's event signature
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if threading.get_ident() == self._thread:
            self.statements.append(statement)

    def __enter__(self) -> QueryCounter:
        event.listen(self.engine, "before_cursor_execute", self._before_cursor_execute)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before_cursor_execute)


@pytest.fixture
def count_queries() -> Callable[..., QueryCounter]:
    """Factory of :class:`QueryCounter`; by default on the current app's
    ``db.engine`` (call it inside an app context)."""

    def make(engine: Engine | None = None) -> QueryCounter:
        if engine is None:
            engine = current_app.extensions["sqlalchemy"].engine
        return QueryCounter(engine)

    return make
