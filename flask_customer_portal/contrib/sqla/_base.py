"""What every part of the SQLAlchemy store stands on: its own session, its
transactions, its schema, and the statements more than one part runs."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import IntegrityError

from ...migrations.runner import create_tables, drop_tables
from .mapping import audit_row
from .models import PortalModel, metadata
from .sessions import StoreSessions

if TYPE_CHECKING:
    from collections.abc import Iterator

    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from ...storage import AuditEvent

__all__ = ["FRESH", "StoreBase", "add_event", "insert_if_absent", "now_utc", "rowcount"]

#: Reads refresh rows already in the session's identity map, so a record is
#: never older than the statement that fetched it.
FRESH: dict[str, Any] = {"populate_existing": True}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an ``UPDATE`` executed through the session."""
    if not isinstance(result, CursorResult):  # pragma: no cover - always one for DML
        raise TypeError(f"expected a CursorResult, got {type(result).__name__}")
    return int(result.rowcount)


def add_event(session: Session, event: AuditEvent | None) -> None:
    """Append ``event`` to the audit log in the change's own transaction."""
    if event is not None:
        session.add(audit_row(event))


def insert_if_absent(session: Session, model: type[PortalModel], values: dict[str, Any]) -> bool:
    """Insert the row ``values`` unless a row with its key exists (a
    concurrent transaction's included, which the database waits for);
    whether it was inserted."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # psycopg reports no row count for this INSERT: the returned row says.
        on_postgresql = (
            postgresql.insert(model)
            .values(values)
            .on_conflict_do_nothing()
            .returning(*model.__mapper__.primary_key)
        )
        return session.execute(on_postgresql).first() is not None
    if dialect == "sqlite":
        on_sqlite = sqlite.insert(model).values(values).on_conflict_do_nothing()
        return rowcount(session.execute(on_sqlite)) == 1
    try:
        with session.begin_nested():
            session.execute(insert(model).values(values))
    except IntegrityError:
        return False
    return True


class StoreBase:
    """The store's session, transactions and schema; each part of
    :class:`~flask_customer_portal.contrib.sqla.SQLAlchemyStorage` adds its
    methods to this."""

    def __init__(self, db: SQLAlchemy) -> None:
        self._db = db
        self._sessions = StoreSessions(db, metadata)

    @property
    def _engine(self) -> Engine:
        return self._sessions.engine

    @property
    def _session(self) -> Session:
        return self._sessions.session()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """Run a write in the store's own session and commit it; roll back
        if anything fails. The host's ``db.session`` is left as it is."""
        session = self._session
        self._sessions.refuse_if_host_writing(self._engine)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

    def close_db_session(self) -> None:
        """End the store's database session in this application context now:
        its transaction (reads on PostgreSQL) ends and its connection goes
        back to the pool; the next call starts a new one. This happens when
        the application context ends anyway; call it in a long-lived one,
        such as a worker's loop, between units of work."""
        self._sessions.close()

    # -- schema ---------------------------------------------------------------

    def create_all(self) -> None:
        """Create the ``portal_*`` tables that do not exist yet and record
        the schema's revision, so that ``flask portal db upgrade`` knows it.
        A database an older version made is upgraded (see
        :func:`flask_customer_portal.migrations.create_all`)."""
        self._sessions.close()  # its open reads would hold up the DDL on PostgreSQL
        create_tables(self._engine, metadata)

    def drop_all(self) -> None:
        """Drop the ``portal_*`` tables and everything in them, and forget the revision."""
        self._sessions.close()
        drop_tables(self._engine, metadata)
