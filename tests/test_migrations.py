"""The portal's Alembic branch: revisions against the models and against 0.1.0,
recognising databases made without a recorded revision, and the version
table shared with the host's own revisions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.migration import MigrationContext
from migration_support import describe_schema, load_0_1_0
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from flask_customer_portal import migrations
from flask_customer_portal.contrib.sqla import StringEnum, TZDateTime, metadata
from flask_customer_portal.migrations import SchemaError, create_all, downgrade, head, schema_status, upgrade
from flask_customer_portal.storage import SubscriptionStatus

VERSIONS = Path(migrations.__file__).parent / "versions"
PORTAL_TABLES = frozenset(metadata.tables)
TABLES_0_1_0 = migrations.runner._UNRECORDED[0][1]
HOST_REVISION = "1f2e3d4c5b6a"

pytest_plugins = ["migration_fixtures"]  # empty_db_url, new_database


def _engine(url: str) -> Engine:
    return create_engine(url)


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _version_rows(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version")))


def test_the_branch_is_labelled_linear_and_self_contained() -> None:
    script = migrations.script_directory()
    revisions = list(script.walk_revisions())
    assert [r.revision for r in reversed(revisions)] == [
        "portal_0001",
        "portal_0002",
        "portal_0003",
        "portal_0004",
        "portal_0007",
        "portal_0008",
        "portal_0009",
    ]
    assert script.get_bases() == ["portal_0001"]
    assert script.get_heads() == [head()] == ["portal_0009"]
    assert script.get_revision("customer_portal@head").revision == head()
    assert script.get_revision("portal_0001").branch_labels == {"customer_portal"}
    # alembic_version.version_num is VARCHAR(32); the prefix tells the
    # portal's rows from the host's.
    assert all(r.revision.startswith("portal_") and len(r.revision) <= 32 for r in revisions)
    for path in VERSIONS.glob("portal_*.py"):
        source = path.read_text()
        assert "import flask_customer_portal" not in source, f"{path.name} imports the package"
        assert "from flask_customer_portal" not in source, f"{path.name} imports the package"
        assert "StringEnum(" not in source
        assert "TZDateTime(" not in source


def test_upgrade_to_head_makes_exactly_the_models_tables(new_database: Callable[[], str]) -> None:
    migrated, created = _engine(new_database()), _engine(new_database())
    try:
        assert upgrade(migrated).is_current
        with migrated.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        # Names too (constraints, indexes, checks), which the comparison skips
        # and later revisions drop by name: as the models' create_all() makes them.
        metadata.create_all(created)
        assert describe_schema(migrated, PORTAL_TABLES) == describe_schema(created, PORTAL_TABLES)
        assert _tables(migrated) == {*PORTAL_TABLES, "alembic_version"}
        assert _version_rows(migrated) == [head()]
    finally:
        migrated.dispose()
        created.dispose()


def test_revision_1_is_the_schema_that_0_1_0_made(new_database: Callable[[], str]) -> None:
    released, migrated = new_database(), _engine(new_database())
    load_0_1_0(released)
    released_engine = _engine(released)
    try:
        assert upgrade(migrated, "portal_0001").current == ("portal_0001",)
        assert _tables(migrated) == {*TABLES_0_1_0, "alembic_version"}
        assert describe_schema(migrated, TABLES_0_1_0) == describe_schema(released_engine, TABLES_0_1_0)
    finally:
        migrated.dispose()
        released_engine.dispose()


def test_create_all_records_the_head_and_drop_all_forgets_it(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        status = create_all(engine)
        assert status.is_current
        assert _version_rows(engine) == [head()]
        assert create_all(engine).is_current  # again: nothing changes
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE portal_plan_changes"))
        create_all(engine)  # at the head, a missing table is made again
        assert "portal_plan_changes" in _tables(engine)
        migrations.drop_all(engine)
        assert _tables(engine) == set()
        assert schema_status(engine).is_empty
    finally:
        engine.dispose()


def test_tables_create_all_made_before_revisions_were_recorded_are_recognised(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        metadata.create_all(engine)  # by hand, or the code between 0.1.0 and the migrations: no version row
        status = schema_status(engine)
        assert status.current == ()
        assert status.recognised == head()
        assert status.tables_current and not status.is_current
        assert upgrade(engine).is_current  # records the head; nothing to create
        assert _version_rows(engine) == [head()]

        # portal_0002's tables (a column came later), no version row.
        downgrade(engine, "portal_0002")
        downgrade(engine, "portal_0002")
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        status = schema_status(engine)
        assert status.current == ()
        assert status.recognised == "portal_0002"
        assert not status.is_current
        assert upgrade(engine).is_current  # records portal_0002, then runs what came after
        assert _version_rows(engine) == [head()]
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []

        downgrade(engine, "portal_0001")  # the tables create_all() of 0.1.0 made
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        assert schema_status(engine).recognised == "portal_0001"
        assert create_all(engine).is_current  # create_all() upgrades it too
        assert _tables(engine) == {*PORTAL_TABLES, "alembic_version"}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("missing", "present_later"),
    [
        pytest.param({"portal_links"}, set(), id="a table of 0.1.0 missing"),
        pytest.param(set(), {"portal_provider_locks"}, id="part of portal_0002"),
    ],
)
def test_tables_no_revision_explains_are_refused(
    empty_db_url: str, missing: set[str], present_later: set[str]
) -> None:
    engine = _engine(empty_db_url)
    try:
        tables = (TABLES_0_1_0 - missing) | present_later
        metadata.create_all(engine, tables=[metadata.tables[name] for name in tables])
        status = schema_status(engine)
        assert status.problem is not None
        assert "flask portal db stamp" in status.problem
        for run in (upgrade, create_all):
            with pytest.raises(SchemaError, match="match no revision"):
                run(engine)
        assert _tables(engine) == tables  # nothing was made, nothing recorded
    finally:
        engine.dispose()


def test_a_database_a_newer_version_made_is_left_alone(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        create_all(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'portal_9999'"))
        status = schema_status(engine)
        assert status.is_ahead
        assert "newer" in str(status)
        for run in (upgrade, create_all):
            with pytest.raises(SchemaError, match="newer version of flask-customer-portal"):
                run(engine)
        with pytest.raises(SchemaError, match="newer"):
            downgrade(engine, "base")
        assert _version_rows(engine) == ["portal_9999"]
    finally:
        engine.dispose()


def test_the_hosts_own_revisions_share_the_version_table_untouched(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        with engine.begin() as connection:  # as the host's Alembic leaves it
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            connection.execute(text(f"INSERT INTO alembic_version VALUES ('{HOST_REVISION}')"))
        assert schema_status(engine).is_empty
        assert upgrade(engine).is_current
        assert _version_rows(engine) == sorted([HOST_REVISION, head()])
        assert downgrade(engine, "portal_0001").current == ("portal_0001",)
        assert _version_rows(engine) == sorted([HOST_REVISION, "portal_0001"])
        assert downgrade(engine, "base").is_empty
        assert _version_rows(engine) == [HOST_REVISION]
        create_all(engine)
        migrations.drop_all(engine)
        assert _tables(engine) == {"alembic_version"}
        assert _version_rows(engine) == [HOST_REVISION]
    finally:
        engine.dispose()


def test_downgrade_drops_what_each_revision_added_and_upgrade_makes_it_again(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        upgrade(engine)
        assert migrations.undone_by_downgrade(engine, "portal_0001") == [
            "portal_0009 (An index for the renewal walk.)",
            "portal_0008 (Refunds and credit notes of invoices.)",
            "portal_0007 (Promotion codes and their redemptions.)",
            "portal_0004 (A customer's default payment method.)",
            "portal_0003 (The mail outbox.)",
            "portal_0002 (Provider locks, arrears attempts and plan changes.)",
        ]
        assert downgrade(engine, "portal_0001").current == ("portal_0001",)
        assert _tables(engine) == {*TABLES_0_1_0, "alembic_version"}
        assert downgrade(engine, "base").is_empty
        assert _tables(engine) <= {"alembic_version"}
        assert upgrade(engine, "portal_0001").current == ("portal_0001",)
        assert upgrade(engine).is_current
        assert migrations.undone_by_downgrade(engine, head()) == []
    finally:
        engine.dispose()


def test_the_outbox_revision_adds_its_table_and_takes_it_away(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        assert upgrade(engine, "portal_0002").current == ("portal_0002",)
        assert "portal_mail_outbox" not in _tables(engine)
        assert upgrade(engine).is_current
        assert "portal_mail_outbox" in _tables(engine)
        columns = {column["name"] for column in inspect(engine).get_columns("portal_mail_outbox")}
        assert {"to_address", "headers", "claimed_by", "claimed_until", "next_attempt_at"} <= columns
        assert migrations.undone_by_downgrade(engine, "portal_0002") == [
            "portal_0009 (An index for the renewal walk.)",
            "portal_0008 (Refunds and credit notes of invoices.)",
            "portal_0007 (Promotion codes and their redemptions.)",
            "portal_0004 (A customer's default payment method.)",
            "portal_0003 (The mail outbox.)",
        ]
        assert downgrade(engine, "portal_0002").current == ("portal_0002",)
        assert "portal_mail_outbox" not in _tables(engine)
        assert upgrade(engine).is_current
    finally:
        engine.dispose()


def test_the_promotion_codes_revision_adds_its_tables_and_takes_them_away(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    promotions = {"portal_promotion_codes", "portal_promotion_redemptions"}
    try:
        assert upgrade(engine, "portal_0004").current == ("portal_0004",)
        assert not promotions & _tables(engine)
        assert upgrade(engine).is_current
        assert promotions <= _tables(engine)
        columns = {column["name"] for column in inspect(engine).get_columns("portal_promotion_codes")}
        assert {"code", "percent_off", "amount_off", "max_redemptions", "times_redeemed"} <= columns
        keys = inspect(engine).get_pk_constraint("portal_promotion_redemptions")["constrained_columns"]
        assert sorted(keys) == ["code", "customer_id"]
        assert downgrade(engine, "portal_0004").current == ("portal_0004",)
        assert not promotions & _tables(engine)
        assert upgrade(engine).is_current
    finally:
        engine.dispose()


RENEWAL_INDEX = "ix_portal_subscriptions_renewing_period_end"


def _indexes(engine: Engine) -> set[str]:
    return {str(index["name"]) for index in inspect(engine).get_indexes("portal_subscriptions")}


def test_the_renewal_index_revision_adds_the_index_and_takes_it_away(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        assert upgrade(engine, "portal_0008").current == ("portal_0008",)
        assert RENEWAL_INDEX not in _indexes(engine)
        assert upgrade(engine).is_current
        assert RENEWAL_INDEX in _indexes(engine)
        assert downgrade(engine, "portal_0008").current == ("portal_0008",)
        assert RENEWAL_INDEX not in _indexes(engine)

        # Made ahead by hand (CREATE INDEX CONCURRENTLY on PostgreSQL): kept.
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE INDEX {RENEWAL_INDEX} ON portal_subscriptions (current_period_end, id) "
                    "WHERE status IN ('active', 'trialing')"
                )
            )
        assert upgrade(engine).is_current

        # Without a version row, the index tells portal_0009 from portal_0008.
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        assert schema_status(engine).recognised == "portal_0009"
        with engine.begin() as connection:
            connection.execute(text(f"DROP INDEX {RENEWAL_INDEX}"))
        assert schema_status(engine).recognised == "portal_0008"
        assert upgrade(engine).is_current
        assert RENEWAL_INDEX in _indexes(engine)
    finally:
        engine.dispose()


def test_the_renewal_index_holds_exactly_the_statuses_that_renew() -> None:
    from flask_customer_portal.contrib.sqla.models import RENEWING_PREDICATE
    from flask_customer_portal.records import RENEWING_STATUSES

    statuses = ", ".join(f"'{status.value}'" for status in sorted(RENEWING_STATUSES))
    assert RENEWING_PREDICATE.text == f"status IN ({statuses})"
    revision = migrations.script_directory().get_revision("portal_0009")
    assert revision is not None and RENEWING_PREDICATE.text == revision.module.RENEWING


def test_stamp_records_a_revision_without_changing_tables(empty_db_url: str) -> None:
    engine = _engine(empty_db_url)
    try:
        metadata.create_all(
            engine, tables=[metadata.tables[name] for name in TABLES_0_1_0 - {"portal_links"}]
        )
        assert migrations.stamp(engine, "portal_0001").current == ("portal_0001",)
        assert "portal_links" not in _tables(engine)
        assert migrations.stamp(engine, head()).is_current
    finally:
        engine.dispose()


def test_two_processes_upgrading_at_once_take_turns(new_database: Callable[[], str]) -> None:
    url = new_database()
    engines = [_engine(url), _engine(url)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(engine: Engine) -> None:
        start.wait()
        try:
            upgrade(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert _version_rows(engines[0]) == [head()]
    finally:
        for engine in engines:
            engine.dispose()


def test_the_portals_types_render_as_the_plain_types_they_store() -> None:
    assert repr(StringEnum(SubscriptionStatus)) == "String(length=32)"
    assert repr(TZDateTime()) == "DateTime(timezone=True)"
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            script = produce_migrations(MigrationContext.configure(connection), metadata)
        code = render_python_code(script.upgrade_ops, user_module_prefix=None)  # as env.py leaves it
    finally:
        engine.dispose()
    assert "flask_customer_portal" not in code
    assert "sa.Column('status', sa.String(length=32), nullable=False)" in code
    assert "sa.Column('created_at', sa.DateTime(timezone=True), nullable=False)" in code
    namespace: dict[str, object] = {"sa": sqlalchemy}  # what a migration script imports
    for line in code.splitlines():
        if "sa.Column(" in line:  # every column renders as code that runs
            column = line.strip().rstrip(",")
            eval(compile(column, "<script>", "eval"), namespace)  # noqa: S307 - rendered by Alembic
