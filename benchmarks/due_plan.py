"""The plans PostgreSQL makes for the renewal walk's reads, at scale.

python -m benchmarks.due_plan [due] [not_due]

Seeds a throwaway cluster with ``due`` subscriptions due now, ``not_due``
renewing later, and as many cancelled and on-hold ones (period over, never
renewed) as a tenth of ``not_due`` each; then prints ``EXPLAIN (ANALYZE,
BUFFERS)`` of the statements the store sends for the first, a middle and
the last keyset page of ``subscriptions_due_after`` (the renewal walk) and
of ``subscriptions_due``: the statements are caught as the store sends
them, so the plans are of the real queries. Run with and without the
index of ``portal_0009`` (``--without-index`` drops it first).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import create_engine, event, text, update
from sqlalchemy.engine import Engine

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.contrib.sqla.models import SubscriptionModel
from flask_customer_portal.storage import SubscriptionStatus
from tests.portal_fixtures import close_app, make_portal_app
from tests.renewal_support import seed_due_subscriptions

INDEX = "ix_portal_subscriptions_renewing_period_end"


def _seed(url: str, due: int, not_due: int) -> None:
    app = make_portal_app(url, demo_data=False)
    with app.app_context():
        SQLAlchemyStorage(app.extensions["sqlalchemy"]).create_all()
    close_app(app)
    engine = create_engine(url)
    now = datetime.now(timezone.utc)
    try:
        seed_due_subscriptions(engine, due, due_at=now - timedelta(hours=1), prefix="d")
        seed_due_subscriptions(engine, not_due, due_at=now + timedelta(days=15), prefix="f")
        for prefix, status in (("c", SubscriptionStatus.CANCELLED), ("h", SubscriptionStatus.ON_HOLD)):
            seed_due_subscriptions(engine, not_due // 10, due_at=now - timedelta(days=40), prefix=prefix)
            with engine.begin() as connection:
                connection.execute(
                    update(SubscriptionModel)
                    .where(SubscriptionModel.id.like(f"sub_{prefix}%"))
                    .values(status=status)
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def _explain(engine: Engine, statement: str, parameters: Any) -> str:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {statement}", parameters)
        return "\n".join(f"    {row[0]}" for row in rows)


def _explain_generic(url: str, statement: str, parameters: dict[str, Any]) -> str:
    """The plan of ``statement`` prepared on the server and planned for any
    values (``plan_cache_mode = force_generic_plan``), as a driver that
    prepares a statement it runs often may end up with."""
    import psycopg

    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    prepared = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
    engine = create_engine(url, connect_args={"cursor_factory": psycopg.ClientCursor})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            connection.exec_driver_sql(f"PREPARE due_page AS {prepared}")
            arguments = ", ".join(f"%({name})s" for name in names)
            rows = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE due_page({arguments})", parameters
            )
            return "\n".join(f"    {row[0]}" for row in rows)
    finally:
        engine.dispose()


def plans(url: str, *, without_index: bool) -> None:
    engine = create_engine(url)
    if without_index:
        with engine.begin() as connection:
            connection.execute(text(f"DROP INDEX IF EXISTS {INDEX}"))
            connection.execute(text("ANALYZE portal_subscriptions"))
    app = make_portal_app(url, demo_data=False)
    caught: list[tuple[str, Any]] = []

    def catch(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "portal_subscriptions" in statement and "ORDER BY" in statement:
            caught.append((statement, parameters))

    try:
        with app.app_context():
            storage = app.extensions["customer_portal"].get_state(app).storage
            store_engine = app.extensions["sqlalchemy"].engine
            event.listen(store_engine, "before_cursor_execute", catch)
            now = datetime.now(timezone.utc)
            pages = []
            after = None
            while page := storage.subscriptions_due_after(now, after=after, limit=100):
                pages.append(caught[-1])
                after = (page[-1].current_period_end, page[-1].id)
            storage.subscriptions_due(now, limit=100)
            unpaged = caught[-1]
            event.remove(store_engine, "before_cursor_execute", catch)
        print(f"  {len(pages)} pages of due subscriptions; index {'dropped' if without_index else 'present'}")
        named = (
            ("first page", pages[0]),
            ("middle page", pages[len(pages) // 2]),
            ("last page", pages[-1]),
            ("subscriptions_due", unpaged),
        )
        for label, (statement, parameters) in named:
            print(f"  {label}:")
            print(_explain(engine, statement, parameters))
        print("  middle page, prepared on the server with a generic plan:")
        print(_explain_generic(url, *named[1][1]))
    finally:
        close_app(app)
        engine.dispose()


def main(argv: list[str]) -> None:
    from tests import pg

    numbers = [int(arg) for arg in argv if arg.isdigit()]
    due, not_due = (numbers + [10_000, 40_000][len(numbers) :])[:2]
    cluster = pg.start_cluster()
    try:
        _seed(cluster.url, due, not_due)
        print(
            f"## Plans of the due walk: {due:,} due, {not_due:,} later, {not_due // 5:,} over and not renewing"
        )
        print("\nWith the index:")
        plans(cluster.url, without_index=False)
        print("\nWithout it:")
        plans(cluster.url, without_index=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
