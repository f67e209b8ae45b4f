"""Bare Flask-SQLAlchemy apps with fresh portal tables, for store tests.

Kept out of ``conftest.py`` so that helper modules can import it by name
(``tests/security`` has a ``conftest`` of its own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage

__all__ = ["in_threads", "make_sqla_app", "only_postgresql", "portal_tables"]

T = TypeVar("T")

#: For a test that only makes sense on PostgreSQL (``db_url`` indirect).
only_postgresql = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def make_sqla_app(url: str) -> Flask:
    """A bare Flask app with Flask-SQLAlchemy on ``url`` (no portal)."""
    app = Flask("customer_portal_store_tests")
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=url)
    SQLAlchemy(app)
    return app


def _configure_sqlite(engine: Engine) -> None:
    # Per connection: enforce foreign keys, as PostgreSQL always does (SQLite
    # ignores them unless asked), and skip fsync, as a test database can.
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.close()

    event.listen(engine, "connect", on_connect)


@contextmanager
def portal_tables(app: Flask) -> Iterator[Flask]:
    """Inside ``app``'s context with fresh ``portal_*`` tables; cleans up after.

    Drops and creates the tables first too, so a run that crashed earlier
    against a shared PostgreSQL database cannot leak rows into this one.
    """
    with app.app_context():
        db: SQLAlchemy = app.extensions["sqlalchemy"]
        if db.engine.dialect.name == "sqlite":
            _configure_sqlite(db.engine)
        storage = SQLAlchemyStorage(db)
        storage.drop_all()
        storage.create_all()
        try:
            yield app
        finally:
            db.session.remove()
            storage.drop_all()
            for engine in db.engines.values():
                engine.dispose()


def in_threads(app: Flask, count: int, work: Callable[[], T]) -> list[T]:
    """Run ``work`` in ``count`` threads at once, each in its own app context
    (so each has its own session and connection); return every result."""
    barrier = threading.Barrier(count)
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                result = work()
            with lock:
                results.append(result)
        except BaseException as exc:  # re-raised in the test's thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    assert len(results) == count
    return results
