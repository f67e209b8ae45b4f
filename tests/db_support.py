"""Bare Flask-SQLAlchemy apps with fresh portal tables, for store tests.

Kept out of ``conftest.py`` so that helper modules can import it by name
(``tests/security`` has a ``conftest`` of its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage

__all__ = ["make_sqla_app", "portal_tables"]


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
