"""The SQLAlchemy store's own database sessions.

The store never reads or writes through the host's ``db.session``: it has a
session of its own per application context, on the same engine (the one
the portal's tables are bound to), closed when the application context
ends. Its commits and rollbacks are its own, so the host's pending work
stays the host's to commit or discard, and what the portal wrote (a link
it handed out, a session it ended, a payment it recorded) stays written
whatever the host decides afterwards.

SQLite allows one writer at a time. A host session that has flushed writes
holds that lock until it commits, so a write on another connection in the
same thread could only wait for it and fail; with an in-memory database
both sessions share one connection, where committing the portal's write
would commit the host's work too. Either way the portal refuses at once
with :class:`HostTransactionOpen` instead of writing.
"""

from __future__ import annotations

from threading import Lock
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from flask import appcontext_tearing_down
from flask.globals import app_ctx
from sqlalchemy.orm import Session

from ...errors import PortalError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import SessionTransaction

__all__ = ["HostTransactionOpen", "StoreSessions"]


class HostTransactionOpen(PortalError, RuntimeError):
    """On SQLite, the portal was asked to write while the app's own
    ``db.session`` holds uncommitted writes to the same database.

    SQLite lets one connection write at a time: the portal's write would
    wait for the lock the app's session holds (in the same thread, until it
    times out with "database is locked"), and on an in-memory database,
    where both share one connection, it would commit the app's work with
    its own. Commit or roll back ``db.session`` before calling the portal,
    or before a portal request in which it writes. Nothing was written.
    PostgreSQL has no such limit.
    """


def _app_context_id() -> int:
    return id(app_ctx._get_current_object())  # type: ignore[attr-defined]


def _connections(transaction: SessionTransaction) -> Iterable[Connection]:
    connections: Iterable[Connection] | None = getattr(transaction, "connections", None)
    if connections is None:  # SQLAlchemy before 2.1.7
        connections = {entry[0] for entry in transaction._connections.values()}
    return connections


def _same_sqlite_database(connection: Connection, engine: Engine) -> bool:
    other = connection.engine
    if other is engine or other.pool is engine.pool:
        return True
    database = engine.url.database
    return (
        other.dialect.name == "sqlite"
        and database not in (None, "", ":memory:")
        and other.url.database == database
    )


def _holds_sqlite_transaction(connection: Connection) -> bool:
    """Whether the SQLite connection has begun a transaction, which the
    driver does at the first write (``sqlite3.Connection.in_transaction``)."""
    if connection.closed or connection.invalidated:
        return False
    return bool(getattr(connection.connection.dbapi_connection, "in_transaction", False))


#: The store's sessions, by Flask-SQLAlchemy instance and application
#: context: every ``SQLAlchemyStorage(db)`` of one ``db`` shares them, as
#: every user of ``db.session`` shares the host's.
_sessions: WeakKeyDictionary[SQLAlchemy, dict[int, Session]] = WeakKeyDictionary()
_sessions_lock = Lock()


def _close_context_sessions(sender: object, **kwargs: Any) -> None:
    """Close every store session of the application context that ends."""
    key = _app_context_id()
    with _sessions_lock:
        ending = [by_context.pop(key) for by_context in _sessions.values() if key in by_context]
    for session in ending:
        session.close()


class StoreSessions:
    """The store's :class:`~sqlalchemy.orm.Session`, one per application
    context (shared by the stores of one ``db``), bound to the engine of the
    portal's tables: Flask-SQLAlchemy's default engine, or the bind named by
    ``metadata.info["bind_key"]``. Each is closed when its application
    context ends."""

    def __init__(self, db: SQLAlchemy, metadata: MetaData) -> None:
        self._db = db
        self._metadata = metadata
        with _sessions_lock:
            self._by_context = _sessions.setdefault(db, {})
        appcontext_tearing_down.connect(_close_context_sessions)  # once: the same receiver

    @property
    def engine(self) -> Engine:
        """The current app's engine for the portal's tables."""
        bind_key = self._metadata.info.get("bind_key")
        try:
            return self._db.engines[bind_key]
        except KeyError:
            raise RuntimeError(
                f'The portal\'s tables use the bind key {bind_key!r} (metadata.info["bind_key"]), '
                "which is not in SQLALCHEMY_BINDS."
            ) from None

    def session(self) -> Session:
        """The store's session in the current application context."""
        key = _app_context_id()
        session = self._by_context.get(key)
        if session is None:
            session = self._by_context[key] = Session(bind=self.engine)
        return session

    def close(self) -> None:
        """Close the current application context's session, if it has one:
        its transaction ends and its connection goes back to the pool."""
        with _sessions_lock:
            session = self._by_context.pop(_app_context_id(), None)
        if session is not None:
            session.close()

    def refuse_if_host_writing(self, engine: Engine) -> None:
        """On SQLite, raise :class:`HostTransactionOpen` if the host's
        ``db.session`` of this application context has begun writing to the
        portal's database. Reads nothing from the database."""
        if engine.dialect.name != "sqlite":
            return
        registry = self._db.session.registry
        if not registry.has():
            return
        transaction = registry().get_transaction()
        if transaction is None:
            return
        for connection in _connections(transaction):
            if _same_sqlite_database(connection, engine) and _holds_sqlite_transaction(connection):
                raise HostTransactionOpen(
                    "the app's db.session holds uncommitted writes to the portal's SQLite "
                    "database, which lets one connection write at a time: commit or roll back "
                    "db.session before calling the portal (nothing was written)"
                )
