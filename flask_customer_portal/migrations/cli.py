"""``flask portal db …``: the portal's tables without Flask-Migrate.

The commands run the ``customer_portal`` branch on the app's database
engine and record it in ``alembic_version``, as a host's own Alembic would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from alembic.util import CommandError
from flask import current_app
from flask.cli import with_appcontext

from ..contrib.sqla.models import metadata
from ..production import schema_problems
from . import UPGRADE_COMMAND, SchemaError, downgrade, schema_status, stamp, undone_by_downgrade, upgrade
from .gate import portal_engine, schema_message

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["db_cli"]


@click.group("db", help="The portal's database tables: upgrade, current, downgrade, stamp.")
def db_cli() -> None:
    pass


def _engine() -> Engine:

    engine = portal_engine(current_app)
    if engine is None:
        raise click.ClickException(
            "The portal keeps its records in a store of your own, not in the SQLAlchemy store: "
            "it has no tables to migrate."
        )
    return engine


def _alembic_errors() -> tuple[type[Exception], ...]:
    return (CommandError, SchemaError)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def upgrade_command(revision: str) -> None:
    """Upgrade the portal's tables to REVISION (default: head).

    A database that create_all() of 0.1.0 made, with no revision recorded,
    is recognised by its tables and that revision recorded first. Runs in
    one transaction (on PostgreSQL one process at a time); at the head it
    changes nothing, so it is safe in every deploy."""

    engine = _engine()
    try:
        before = schema_status(engine)
        after = upgrade(engine, revision)
    except _alembic_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if before.recognised and not before.current:
        click.echo(f"Recognised the tables of {before.recognised} (no revision was recorded).")
    if before.current == after.current and before.recognised is None:
        click.echo(f"Nothing to do: the portal's tables are at {after}.")
    else:
        click.echo(f"Upgraded the portal's tables to {after}.")
    if after.is_current:
        problems = schema_problems(engine, metadata)
        if problems:
            for problem in problems:
                click.echo(f"error: {problem}", err=True)
            raise click.ClickException(
                "The head revision is recorded but the tables differ from it (changed by hand?); "
                "see the lines above."
            )


@db_cli.command("current")
@with_appcontext
def current_command() -> None:
    """Print the portal's revision in the database and the head this
    version of the package needs."""

    status = schema_status(_engine())
    click.echo(schema_message(status) or f"The customer portal's database tables: {status}.")


@db_cli.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask before dropping tables.")
@with_appcontext
def downgrade_command(revision: str, yes: bool) -> None:
    """Undo the portal's revisions after REVISION ("base" undoes them all).

    The tables and columns they added are dropped with every row in them:
    back the database up first. Use the newer version of the package to
    downgrade what it upgraded."""

    engine = _engine()
    try:
        undone = undone_by_downgrade(engine, revision)
        if not undone:
            click.echo(f"Nothing to undo: the portal's tables are not past {revision}.")
            return
        click.echo("This undoes:")
        for line in undone:
            click.echo(f"  {line}")
        if not yes:
            click.confirm("Their tables and columns are dropped with every row in them. Go on?", abort=True)
        after = downgrade(engine, revision)
    except _alembic_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Downgraded the portal's tables to {after}; `{UPGRADE_COMMAND}` brings them back.")


@db_cli.command("stamp")
@click.argument("revision")
@with_appcontext
def stamp_command(revision: str) -> None:
    """Record REVISION as the portal's without changing any table: for
    tables made or repaired by hand to match it."""

    try:
        after = stamp(_engine(), revision)
    except _alembic_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Recorded: the portal's tables are at {after}.")
