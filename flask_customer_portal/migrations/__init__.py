"""Schema migrations of the portal's tables: an Alembic branch of their own.

The revisions in ``versions/`` form the Alembic branch labelled
``customer_portal``; their ids are ``portal_0001``, ``portal_0002``, … Two
ways run them, and both record the portal's revision in the same row of
Alembic's ``alembic_version`` table, beside the host's own, so that a
database can move from one to the other:

* ``flask portal db upgrade`` (this module): nothing to set up;
* the host's own Alembic or Flask-Migrate, with
  ``flask_customer_portal:migrations/versions`` in its ``version_locations``
  and ``flask db upgrade customer_portal@head``.

A database that ``create_all()`` made before the portal recorded its
revision (release 0.1.0) has no row there: its tables tell which revision
made it, which is recorded before anything runs.

Every change runs in one transaction on the host's engine, never in its
session, and on PostgreSQL under an advisory lock, so that two processes
upgrading at once take turns. See ``docs/upgrading.rst``.

The revisions are run by :mod:`.runner`; this module adds the portal's
tables (:data:`flask_customer_portal.contrib.sqla.metadata`) to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..contrib.sqla.models import metadata
from .runner import (
    BRANCH,
    UPGRADE_COMMAND,
    VERSION_TABLE,
    VERSIONS,
    SchemaError,
    SchemaStatus,
    create_tables,
    downgrade,
    drop_tables,
    head,
    schema_status,
    script_directory,
    stamp,
    undone_by_downgrade,
    upgrade,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "BRANCH",
    "UPGRADE_COMMAND",
    "VERSIONS",
    "VERSION_TABLE",
    "SchemaError",
    "SchemaStatus",
    "create_all",
    "downgrade",
    "drop_all",
    "head",
    "schema_status",
    "script_directory",
    "stamp",
    "undone_by_downgrade",
    "upgrade",
]


def create_all(engine: Engine) -> SchemaStatus:
    """What :meth:`SQLAlchemyStorage.create_all
    <flask_customer_portal.contrib.sqla.SQLAlchemyStorage.create_all>` does:
    on a database without the portal's tables, create them all and record
    the head revision; on one at the head, create any table that is missing;
    on an older one, :func:`upgrade` it. Raises :class:`SchemaError` where
    :func:`upgrade` would."""
    return create_tables(engine, metadata)


def drop_all(engine: Engine) -> None:
    """Drop the portal's tables and forget its revision (the host's
    revisions stay; an empty version table goes)."""
    drop_tables(engine, metadata)
