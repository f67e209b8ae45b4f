"""The start-up check: a database behind the package's schema is named, once.

``init_app`` installs :class:`SchemaGate` on the app. On the first portal
request of a process it reads the portal's revision (one short query, never
again once the schema is current) and, if the database is behind:

* in live mode, logs an error naming ``flask portal db upgrade`` and answers
  portal pages with 503 until the database is upgraded (checked again at
  most every :attr:`SchemaGate.retry_after` seconds), rather than let a
  payment run against tables it needs and lacks;
* in test mode, logs a warning naming the command and carries on.

Nothing is checked at import or in ``init_app``: the CLI that upgrades must
start on a database that is behind, and an app may be built before its
database exists. A database that cannot be read is logged as a warning and
not checked again.
"""

from __future__ import annotations

import logging
from threading import Lock
from time import monotonic
from typing import TYPE_CHECKING

from flask import Flask, abort, request

from ..contrib.sqla import sql_store_of
from ..state import get_state
from . import UPGRADE_COMMAND, SchemaStatus, schema_status

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "SchemaGate",
    "install_schema_gate",
    "must_refuse",
    "portal_engine",
    "refuse_behind_schema",
    "schema_message",
]

logger = logging.getLogger("flask_customer_portal")


def portal_engine(app: Flask) -> Engine | None:
    """The engine of the database that keeps the portal's tables in ``app``
    (the SQLAlchemy store, also as the local half of a composite store), or
    ``None`` when the portal keeps its records elsewhere."""

    if sql_store_of(get_state(app).storage) is None:
        return None
    engine: Engine = app.extensions["sqlalchemy"].engine
    return engine


def schema_message(status: SchemaStatus) -> str | None:
    """What to tell about ``status``, or ``None`` when the schema is current."""
    if status.is_current:
        return None
    where = f"The customer portal's database tables: {status}"
    if status.is_ahead:
        return f"{where}. Install the newer version of flask-customer-portal."
    if status.problem:
        return f"{where}."
    if status.tables_current:
        return f"{where}. Run `{UPGRADE_COMMAND}` to record the revision."
    return f"{where}. Run `{UPGRADE_COMMAND}`."


def must_refuse(status: SchemaStatus) -> bool:
    """Whether live mode refuses portal pages on ``status``: tables the code
    needs may be missing. A newer schema (a rolled-back deploy) and head
    tables without a recorded revision are only warned about."""
    return not (status.is_current or status.tables_current or status.is_ahead)


class SchemaGate:
    """``before_request`` of the app: see the module's docstring."""

    retry_after = 30.0
    """Seconds between checks while live mode refuses."""

    def __init__(self, app: Flask, *, live: bool) -> None:
        self._app = app
        self._live = live
        self._lock = Lock()
        self._done = False
        self._refusing_until = 0.0

    def __call__(self) -> None:
        if self._done or request.blueprint != "portal":
            return
        with self._lock:
            if not self._done and monotonic() >= self._refusing_until:
                self._check()
            refuse = not self._done
        if refuse:
            abort(503)

    def _check(self) -> None:

        engine = portal_engine(self._app)
        if engine is None:
            self._done = True
            return
        try:
            status = schema_status(engine)
        except Exception as exc:  # any driver error: the request will tell the rest
            logger.warning(
                "Could not check the customer portal's database schema (%s); not checked again.",
                type(exc).__name__,
            )
            self._done = True
            return
        message = schema_message(status)
        first = self._refusing_until == 0.0
        if message is None or not (self._live and must_refuse(status)):
            if message is not None:
                logger.warning("%s", message)
            elif not first:
                logger.info("The customer portal's database tables are current: portal pages are back.")
            self._done = True
            return
        if first:
            logger.error("%s Portal pages answer 503 until then.", message)
        self._refusing_until = monotonic() + self.retry_after


def refuse_behind_schema(app: Flask) -> None:
    """For commands that move money: a :class:`click.ClickException` naming
    the upgrade command when the tables may lack what the code needs."""
    import click

    engine = portal_engine(app)
    if engine is None:
        return
    status = schema_status(engine)
    message = schema_message(status)
    if message is not None and must_refuse(status):
        raise click.ClickException(f"{message} Nothing was charged.")


def install_schema_gate(app: Flask, *, live: bool) -> None:
    """Check the portal's schema on the first portal request (see the module)."""
    app.before_request(SchemaGate(app, live=live))
