"""The renewal walk's reads on PostgreSQL use the renewal index
(``portal_0009``), with the values bound or prepared for any values."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from migration_support import scratch_postgres_database
from portal_fixtures import close_app, make_portal_app
from renewal_support import seed_due_subscriptions
from sqlalchemy import create_engine, event

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage

pytestmark = pytest.mark.postgres

INDEX = "ix_portal_subscriptions_renewing_period_end"


def _walk_statements(url: str, now: datetime) -> list[tuple[str, dict[str, Any]]]:
    """The statements of a walk over the due subscriptions, as the store sends them."""
    app = make_portal_app(url, demo_data=False)
    caught: list[tuple[str, dict[str, Any]]] = []

    def catch(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FROM portal_subscriptions" in statement and "ORDER BY" in statement:
            caught.append((statement, dict(parameters)))

    try:
        with app.app_context():
            SQLAlchemyStorage(app.extensions["sqlalchemy"]).create_all()
            seed_due_subscriptions(app.extensions["sqlalchemy"].engine, 30, due_at=now - timedelta(hours=1))
            storage = app.extensions["customer_portal"].get_state(app).storage
            event.listen(app.extensions["sqlalchemy"].engine, "before_cursor_execute", catch)
            after = None
            while page := storage.subscriptions_due_after(now, after=after, limit=10):
                after = (page[-1].current_period_end, page[-1].id)
    finally:
        close_app(app)
    return caught


def test_the_due_walk_reads_through_the_renewal_index(postgres_url: str) -> None:
    now = datetime.now(timezone.utc)
    with scratch_postgres_database(postgres_url) as url:
        statements = _walk_statements(url, now)
        assert len(statements) == 4  # three pages and the empty one
        statement, parameters = statements[1]
        # The statuses are in the statement itself, not bound: a partial
        # index matches only values the planner can see.
        assert "'active', 'trialing'" in statement
        engine = create_engine(url, connect_args={"cursor_factory": psycopg.ClientCursor})
        try:
            with engine.connect() as connection:
                # The table is tiny: tell the planner a scan is the last resort.
                connection.exec_driver_sql("SET enable_seqscan = off")
                plan = "\n".join(
                    row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                )
                assert f"Index Scan using {INDEX}" in plan, plan
                assert "Sort" not in plan, plan

                names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
                prepared = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
                connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
                connection.exec_driver_sql(f"PREPARE due_page AS {prepared}")
                arguments = ", ".join(f"%({name})s" for name in names)
                generic = "\n".join(
                    row[0]
                    for row in connection.exec_driver_sql(
                        f"EXPLAIN EXECUTE due_page({arguments})", parameters
                    )
                )
                assert f"Index Scan using {INDEX}" in generic, generic
        finally:
            engine.dispose()
