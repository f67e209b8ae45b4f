"""Running the portal's revisions on an engine: what :mod:`flask_customer_portal.migrations`
offers, made of Alembic's script directory and migration context.

Nothing here knows the portal's tables: the functions that create or drop
them are given their metadata (:func:`create_tables`, :func:`drop_tables`),
so that the store that owns the tables can call them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from alembic.operations import Operations
from alembic.runtime.migration import HeadMaintainer, MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    func,
    inspect,
    select,
    text,
)

if TYPE_CHECKING:
    from alembic.runtime.migration import RevisionStep, StampStep
    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "BRANCH",
    "UPGRADE_COMMAND",
    "VERSIONS",
    "VERSION_TABLE",
    "SchemaError",
    "SchemaStatus",
    "create_tables",
    "downgrade",
    "drop_tables",
    "head",
    "schema_status",
    "script_directory",
    "stamp",
    "undone_by_downgrade",
    "upgrade",
]

#: The branch label of the portal's revisions (``customer_portal@head``).
BRANCH: Final = "customer_portal"
#: Where the portal's revision is recorded: Alembic's own table, shared with
#: the host's revisions (one row per branch).
VERSION_TABLE: Final = "alembic_version"
#: The revisions, as a host's ``version_locations`` names them.
VERSIONS: Final = "flask_customer_portal:migrations/versions"
#: What every message about a database behind the package tells to run.
UPGRADE_COMMAND: Final = "flask portal db upgrade"

_HERE: Final = Path(__file__).resolve().parent
_REVISION_PREFIX: Final = "portal_"
# Keeps two processes that upgrade the same PostgreSQL database at once
# from both creating the same tables: the second waits, then finds it done.
_ADVISORY_LOCK: Final = 0x637573745F706F72  # "cust_por"

#: The tables each revision made (or, for a revision that only adds a
#: column, that column as ``table.column``; an index, as ``table:index``):
#: how a database made by ``create_all()`` of 0.1.0
#: (``portal_0001``), of the code between 0.1.0 and this module
#: (``portal_0002``), or of a later version whose revision was lost
#: (``portal_0003`` on) is recognised.
_UNRECORDED: Final[tuple[tuple[str, frozenset[str]], ...]] = (
    (
        "portal_0001",
        frozenset(
            {
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
            }
        ),
    ),
    ("portal_0002", frozenset({"portal_arrears_attempts", "portal_plan_changes", "portal_provider_locks"})),
    ("portal_0003", frozenset({"portal_mail_outbox"})),
    # A revision that only adds a column is told by it, as ``table.column``.
    ("portal_0004", frozenset({"portal_payment_methods.is_default"})),
    ("portal_0007", frozenset({"portal_promotion_codes", "portal_promotion_redemptions"})),
    ("portal_0008", frozenset({"portal_credit_notes"})),
    ("portal_0009", frozenset({"portal_subscriptions:ix_portal_subscriptions_renewing_period_end"})),
)


class SchemaError(RuntimeError):
    """The portal's tables are in a state this version cannot migrate: no
    revision explains them, or a newer version of the package made them."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where the database stands against the package's revisions."""

    current: tuple[str, ...]
    """The portal's revisions recorded in the version table: one, or none."""
    head: str
    """The revision this version of the package needs."""
    recognised: str | None = None
    """With no revision recorded: the revision whose tables the database
    has (``create_all()`` before revisions were recorded), or ``None``."""
    problem: str | None = None
    """Why no revision can be told or run, if so."""

    @property
    def is_current(self) -> bool:
        """At the package's head revision."""
        return self.current == (self.head,)

    @property
    def is_empty(self) -> bool:
        """No portal tables and no revision: a new database."""
        return not self.current and self.recognised is None and self.problem is None

    @property
    def is_ahead(self) -> bool:
        """Made by a newer version of the package: a revision this one does not know."""
        known = _known_revisions()
        return any(revision not in known for revision in self.current)

    @property
    def tables_current(self) -> bool:
        """Has the head's tables, recorded or not (``create_all()`` of the
        code just before revisions were recorded)."""
        return self.is_current or (not self.current and self.recognised == self.head)

    def __str__(self) -> str:
        if self.is_current:
            return f"{self.head} (head)"
        if self.is_ahead:
            return (
                f"{', '.join(self.current)}, newer than this version of flask-customer-portal knows "
                f"(its head is {self.head})"
            )
        if self.current:
            return f"{', '.join(self.current)} (head is {self.head})"
        if self.problem:
            return f"no revision recorded: {self.problem}"
        if self.recognised:
            return f"no revision recorded; the tables are those of {self.recognised} (head is {self.head})"
        return f"no portal tables (head is {self.head})"


@cache
def script_directory() -> ScriptDirectory:
    """The portal's revisions, as Alembic reads them."""
    return ScriptDirectory(str(_HERE), version_locations=[str(_HERE / "versions")])


@cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in script_directory().walk_revisions())


def head() -> str:
    """The revision this version of the package needs."""
    revision = script_directory().get_current_head()
    if revision is None:  # pragma: no cover - the package ships its revisions
        raise SchemaError("the package has no revisions")
    return revision


def schema_status(engine: Engine) -> SchemaStatus:
    """Where the database behind ``engine`` stands (one short read)."""
    with engine.connect() as connection:
        return _status(connection)


def create_tables(engine: Engine, metadata: MetaData) -> SchemaStatus:
    """On a database without the tables of ``metadata``, create them all
    and record the head revision; on one at the head, create any table that
    is missing; on an older one, :func:`upgrade` it. Raises
    :class:`SchemaError` where :func:`upgrade` would."""
    with _begin(engine) as connection:
        status = _status(connection)
        if status.is_empty:
            metadata.create_all(connection)
            _run(connection, script_directory()._stamp_revs(head(), ()))
        elif status.is_current:
            metadata.create_all(connection)
        else:
            _upgrade(connection, status, "head")
        return _status(connection)


def drop_tables(engine: Engine, metadata: MetaData) -> None:
    """Drop the tables of ``metadata`` and forget the portal's revision (the
    host's revisions stay; an empty version table goes)."""
    with _begin(engine) as connection:
        metadata.drop_all(connection)
        if not inspect(connection).has_table(VERSION_TABLE):
            return
        versions = _version_table()
        connection.execute(delete(versions).where(versions.c.version_num.startswith(_REVISION_PREFIX)))
        if connection.execute(select(func.count()).select_from(versions)).scalar_one() == 0:
            versions.drop(connection)


def upgrade(engine: Engine, revision: str = "head") -> SchemaStatus:
    """Run the portal's revisions up to ``revision`` (default: the head) in
    one transaction; a database that ``create_all()`` made before revisions
    were recorded is recognised first. Returns where the database stands
    after. Raises :class:`SchemaError` for tables no revision explains and
    for a database a newer version made."""
    with _begin(engine) as connection:
        _upgrade(connection, _status(connection), revision)
        return _status(connection)


def downgrade(engine: Engine, revision: str) -> SchemaStatus:
    """Undo the portal's revisions after ``revision`` (``base`` undoes them
    all): their tables and columns are dropped with every row in them."""
    with _begin(engine) as connection:
        status = _checked(_status(connection))
        script = script_directory()
        steps = _record_recognised(status)
        steps += script._downgrade_revs(revision, _starting_point(status))  # type: ignore[arg-type]
        _run(connection, steps)
        return _status(connection)


def undone_by_downgrade(engine: Engine, revision: str) -> list[str]:
    """The revisions (id and title) that :func:`downgrade` to ``revision``
    would undo, newest first, without changing anything."""
    status = _checked(schema_status(engine))
    script = script_directory()
    steps = script._downgrade_revs(revision, _starting_point(status))  # type: ignore[arg-type]
    return [f"{step.revision.revision} ({step.revision.doc})" for step in steps]


def stamp(engine: Engine, revision: str) -> SchemaStatus:
    """Record ``revision`` as the portal's without running anything: for
    tables made or changed by hand to match it."""
    with _begin(engine) as connection:
        status = _status(connection)
        if status.is_ahead:
            raise SchemaError(_ahead_message(status))
        _run(connection, script_directory()._stamp_revs(revision, status.current))
        return _status(connection)


# -- internals ------------------------------------------------------------------------------


@contextmanager
def _begin(engine: Engine) -> Iterator[Connection]:
    """One transaction on a connection of its own (never the host's
    session), that one process at a time holds: on PostgreSQL under an
    advisory lock, on SQLite as ``BEGIN IMMEDIATE`` (the write lock), which
    also makes the DDL part of it."""
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
                yield connection
            return
        # The sqlite3 module begins transactions itself, only before DML and
        # as deferred ones; for this connection, while it is ours, it begins
        # none and the transaction is begun here.
        driver: Any = connection.connection.dbapi_connection
        isolation_level = driver.isolation_level
        driver.isolation_level = None
        try:
            if not driver.in_transaction:  # (an in-memory database's one connection may be in one)
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        finally:
            driver.isolation_level = isolation_level


def _recorded(connection: Connection) -> tuple[str, ...]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    # The host's own revisions share the table; the portal's have its prefix.
    return tuple(sorted(rev for rev in context.get_current_heads() if rev.startswith(_REVISION_PREFIX)))


def _status(connection: Connection) -> SchemaStatus:
    recorded = _recorded(connection)
    if recorded:
        return SchemaStatus(current=recorded, head=head())
    recognised, problem = _recognise(_present(connection))
    return SchemaStatus(current=(), head=head(), recognised=recognised, problem=problem)


def _present(connection: Connection) -> set[str]:
    """The tables in the database, and ``table.column`` and ``table:index``
    for the columns and indexes :data:`_UNRECORDED` tells revisions by."""
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    marked = {m.partition(".")[0] for _, markers in _UNRECORDED for m in markers if "." in m}
    for table in sorted(marked & present):
        present.update(f"{table}.{column['name']}" for column in inspector.get_columns(table))
    indexed = {m.partition(":")[0] for _, markers in _UNRECORDED for m in markers if ":" in m}
    for table in sorted(indexed & present):
        present.update(f"{table}:{index['name']}" for index in inspector.get_indexes(table))
    return present


def _recognise(present: set[str]) -> tuple[str | None, str | None]:
    """The revision whose tables are ``present`` (with no revision
    recorded), or why none is: ``(revision, problem)``."""
    if not any(tables & present for _, tables in _UNRECORDED):
        return None, None
    recognised: str | None = None
    for position, (revision, tables) in enumerate(_UNRECORDED):
        if tables <= present:
            recognised = revision
            continue
        later = frozenset().union(*(t for _, t in _UNRECORDED[position:])) & present
        if recognised is None or later:
            missing = ", ".join(sorted(tables - present))
            return None, (
                f"the portal's tables match no revision ({missing} missing); create or restore them, "
                "or record the revision they match with `flask portal db stamp REVISION`"
            )
        break
    return recognised, None


def _ahead_message(status: SchemaStatus) -> str:
    return (
        f"The database is at {', '.join(status.current)}, which a newer version of "
        f"flask-customer-portal made; this one knows revisions up to {status.head}. Install the "
        "newer version, or downgrade the database with it first."
    )


def _checked(status: SchemaStatus) -> SchemaStatus:
    if status.is_ahead:
        raise SchemaError(_ahead_message(status))
    if status.problem:
        raise SchemaError(f"Cannot migrate: {status.problem}.")
    return status


def _starting_point(status: SchemaStatus) -> tuple[str, ...]:
    if status.current:
        return status.current
    return (status.recognised,) if status.recognised else ()


def _record_recognised(status: SchemaStatus) -> list[RevisionStep | StampStep]:
    """The step that records the recognised revision of a database that
    ``create_all()`` made before revisions were recorded (no step if one is)."""
    if status.current or status.recognised is None:
        return []
    return list(script_directory()._stamp_revs(status.recognised, ()))


def _upgrade(connection: Connection, status: SchemaStatus, revision: str) -> None:
    _checked(status)
    steps = _record_recognised(status)
    steps += script_directory()._upgrade_revs(revision, _starting_point(status))  # type: ignore[arg-type]
    _run(connection, steps)


def _run(connection: Connection, steps: Sequence[RevisionStep | StampStep]) -> None:
    """Run ``steps`` (ScriptDirectory's ``_upgrade_revs``, ``_downgrade_revs``
    or ``_stamp_revs``, as ``alembic.command`` makes them) in the caller's
    transaction, with ``op`` bound for the revisions: what Alembic's
    ``run_migrations`` does, except that it keeps the version rows of the
    portal's branch only. The host's rows in the same table name revisions
    the portal's scripts do not have, which Alembic would look up."""
    if not steps:
        return
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    _version_table().create(connection, checkfirst=True)
    versions = HeadMaintainer(context, _recorded(connection))
    context.impl.start_migrations()
    with Operations.context(context):
        for step in steps:
            step.migration_fn()
            versions.update_to_step(step)


def _version_table() -> Table:
    """Alembic's version table, as Alembic makes it."""
    return Table(
        VERSION_TABLE,
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
    )
