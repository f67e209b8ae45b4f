"""Make the SQL fixtures of a database that release 0.1.0 made.

``tests/fixtures/schema_0_1_0.sqlite.sql`` and ``…postgresql.sql`` hold the
tables that 0.1.0's example shop made with ``create_all()`` (the portal's,
without a version row, and the shop's own), its demo data as of 2026-12-07,
a handled webhook event, and Ava signed in with a magic link (a used link,
a session, audit events). ``tests/test_migrations_upgrade.py`` loads them and upgrades.
They were made once, with the 0.1.0 source (commit f1609f7) first on the
path; to make them again::

    $ mkdir /tmp/v010 && git archive f1609f7 | tar -x -C /tmp/v010
    $ PYTHONPATH=/tmp/v010 .venv/bin/python scripts/schema_fixture_0_1_0.py \\
          sqlite tests/fixtures/schema_0_1_0.sqlite.sql
    $ PYTHONPATH=/tmp/v010 .venv/bin/python scripts/schema_fixture_0_1_0.py \\
          "$(python tests/pg.py url)" tests/fixtures/schema_0_1_0.postgresql.sql

The PostgreSQL database named by the URL must be empty; ``pg_dump`` of the
server's version must be on the ``PATH`` or in ``/usr/lib/postgresql``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)


def build(url: str) -> None:
    """Run 0.1.0's example shop on ``url``: its ``create_all()`` and demo data."""
    if importlib.util.find_spec("flask_customer_portal.migrations") is not None:
        sys.exit("put the 0.1.0 source first on PYTHONPATH (see the docstring)")
    from example_app import create_app, portal, storage  # 0.1.0's, from PYTHONPATH
    from example_app.demo import load_demo_data
    from example_app.staff import ensure_demo_staff
    from flask_customer_portal.testing import csrf_token_from

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "0.1.0-fixture-" + "x" * 32})
    with app.app_context():
        load_demo_data(storage(), now=NOW)
        ensure_demo_staff()
        link = portal.create_session("cus_demo_ava").link
        storage().claim_webhook_event("stripe", "evt_0_1_0", NOW, lease=timedelta(minutes=5))
        storage().finish_webhook_event("stripe", "evt_0_1_0", NOW)
    # Ava signs in with the link: a used link, a session and audit events.
    client = app.test_client()
    path = urlsplit(link).path
    page = client.get(path)
    client.post(path, data={"csrf_token": csrf_token_from(page.text)})
    if client.get("/portal/").status_code != 200:
        sys.exit("Ava could not sign in")
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def dump_sqlite(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        return "\n".join(connection.iterdump()) + "\n"


def dump_postgresql(url: str) -> str:
    parsed = make_url(url)
    pg_dump = shutil.which("pg_dump") or max(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    result = subprocess.run(  # noqa: S603 - fixed arguments and the URL given on the command line
        [
            str(pg_dump),
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            "--inserts",
            f"--host={parsed.host}",
            f"--port={parsed.port}",
            f"--username={parsed.username}",
            str(parsed.database),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    # Keep what a plain connection can execute: no psql meta-commands, and
    # no change of the session's search_path (the names are qualified).
    lines = [
        line
        for line in result.stdout.splitlines()
        if not line.startswith("\\") and "set_config('search_path'" not in line
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database", help='"sqlite" or a PostgreSQL URL (an empty database)')
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    if args.database == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            database = Path(directory) / "shop.db"
            build(f"sqlite:///{database}")
            sql = dump_sqlite(database)
    else:
        build(args.database)
        sql = dump_postgresql(args.database)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(sql)


if __name__ == "__main__":
    main()
