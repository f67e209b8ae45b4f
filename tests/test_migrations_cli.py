"""``flask portal db …``, the start-up check of the schema and what
``flask portal check`` and ``flask portal renew-due`` say of it."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from flask_customer_portal import CustomerPortal, TestPaymentProvider
from flask_customer_portal.contrib.sqla import metadata
from flask_customer_portal.migrations import gate, head, schema_status, upgrade

pytest_plugins = ["migration_fixtures"]  # empty_db_url

SECRET = "k" * 16 + "0123456789abcdef0123"
LIVE = {
    "CUSTOMER_PORTAL_MODE": "live",
    "SESSION_COOKIE_SECURE": True,
    "MAIL_SERVER": "smtp.example.com",
    "CUSTOMER_PORTAL_SINGLE_PROCESS": True,  # memory:// rate limits
}
LOGIN = "/portal/login/biz_demo"


class LiveProvider(TestPaymentProvider):
    is_test = False


def _app(url: str, *, storage: Any = None, **config: Any) -> Flask:
    app = Flask("migrations_cli")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="https://shop.example.com",
    )
    app.config.update(config)
    SQLAlchemy(app)
    live = config.get("CUSTOMER_PORTAL_MODE") == "live"
    CustomerPortal(app, payments=LiveProvider() if live else None, storage=storage)

    @app.get("/shop")
    def shop() -> str:
        return "the host's own page"

    return app


def _engine(app: Flask) -> Engine:
    with app.app_context():
        engine: Engine = app.extensions["sqlalchemy"].engine
        return engine


def _dispose(app: Flask) -> None:
    _engine(app).dispose()


def _cli(app: Flask, *args: str, input: str | None = None) -> Any:
    return app.test_cli_runner().invoke(args=["portal", *args], input=input)


class VersionReads:
    """Counts the statements that read the version rows."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "version_num" in statement:
            self.count += 1


# -- flask portal db ---------------------------------------------------------------------------


def test_upgrade_current_downgrade_and_stamp(empty_db_url: str) -> None:
    app = _app(empty_db_url)
    try:
        current = _cli(app, "db", "current")
        assert current.exit_code == 0, current.output
        assert "no portal tables (head is portal_0009). Run `flask portal db upgrade`." in current.output

        result = _cli(app, "db", "upgrade", "portal_0001")
        assert result.exit_code == 0, result.output
        assert "Upgraded the portal's tables to portal_0001 (head is portal_0009)." in result.output
        assert (
            "portal_0001 (head is portal_0009). Run `flask portal db upgrade`."
            in _cli(app, "db", "current").output
        )

        result = _cli(app, "db", "upgrade")
        assert result.exit_code == 0, result.output
        assert f"Upgraded the portal's tables to {head()} (head)." in result.output
        assert "tables: portal_0009 (head)." in _cli(app, "db", "current").output

        declined = _cli(app, "db", "downgrade", "portal_0001", input="n\n")
        assert declined.exit_code == 1
        assert "portal_0002 (Provider locks, arrears attempts and plan changes.)" in declined.output
        assert "dropped with every row in them" in declined.output
        assert schema_status(_engine(app)).is_current  # nothing was dropped

        result = _cli(app, "db", "downgrade", "portal_0001", input="y\n")
        assert result.exit_code == 0, result.output
        assert "Downgraded the portal's tables to portal_0001" in result.output
        assert schema_status(_engine(app)).current == ("portal_0001",)

        result = _cli(app, "db", "downgrade", "base", "--yes")
        assert result.exit_code == 0, result.output
        assert schema_status(_engine(app)).is_empty
        assert "Nothing to undo" in _cli(app, "db", "downgrade", "base", "--yes").output

        with app.app_context():
            metadata.create_all(_engine(app))  # made by hand, revision not recorded
        result = _cli(app, "db", "stamp", "portal_0009")
        assert result.exit_code == 0, result.output
        assert "Recorded: the portal's tables are at portal_0009 (head)." in result.output

        unknown = _cli(app, "db", "upgrade", "portal_0042")
        assert unknown.exit_code == 1
        assert "portal_0042" in unknown.output
        assert "Traceback" not in unknown.output
    finally:
        _dispose(app)


def test_upgrade_says_when_the_tables_differ_from_the_recorded_head(tmp_path: Any) -> None:
    app = _app(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        upgrade(_engine(app))
        with _engine(app).begin() as connection:
            connection.execute(text("ALTER TABLE portal_sessions DROP COLUMN location"))
        result = _cli(app, "db", "upgrade")
        assert result.exit_code == 1
        assert "error: portal_sessions lacks the columns location" in result.output
        assert "the tables differ from it" in result.output
    finally:
        _dispose(app)


def test_a_store_of_the_merchants_own_has_no_tables_to_migrate(tmp_path: Any) -> None:
    app = _app(f"sqlite:///{tmp_path / 'x.db'}", storage=SimpleNamespace())
    try:
        result = _cli(app, "db", "current")
        assert result.exit_code == 1
        assert "no tables to migrate" in result.output
        assert app.test_client().get(LOGIN).status_code == 200  # and the start-up check keeps out of it
    finally:
        _dispose(app)


# -- the start-up check -------------------------------------------------------------------------


@pytest.fixture
def behind_url(empty_db_url: str) -> str:
    """A database at portal_0001: the head's tables are missing."""
    engine = create_engine(empty_db_url)
    upgrade(engine, "portal_0001")
    engine.dispose()
    return empty_db_url


def test_live_mode_answers_503_behind_the_schema_until_it_is_upgraded(
    behind_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(behind_url, **LIVE)  # init_app reads nothing: the app starts
    try:
        reads = VersionReads(_engine(app))
        client = app.test_client()
        assert client.get("/shop").status_code == 200  # the host's pages are not the portal's business
        assert reads.count == 0
        with caplog.at_level(logging.INFO, logger="flask_customer_portal"):
            assert client.get(LOGIN).status_code == 503
            assert client.get(LOGIN).status_code == 503
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert [r.getMessage() for r in errors] == [
            "The customer portal's database tables: portal_0001 (head is portal_0009). "
            "Run `flask portal db upgrade`. Portal pages answer 503 until then."
        ]
        assert reads.count == 1  # checked once, not per request

        result = _cli(app, "db", "upgrade")  # the CLI runs on the same app
        assert result.exit_code == 0, result.output
        assert client.get(LOGIN).status_code == 503  # not checked again within retry_after
        later = gate.monotonic() + gate.SchemaGate.retry_after
        monkeypatch.setattr(gate, "monotonic", lambda: later)
        with caplog.at_level(logging.INFO, logger="flask_customer_portal"):
            assert client.get(LOGIN).status_code == 200
        assert "portal pages are back" in caplog.text
        reads.count = 0
        for _ in range(3):
            assert client.get(LOGIN).status_code == 200
        assert reads.count == 0  # current: never checked again
    finally:
        _dispose(app)


def test_test_mode_warns_once_and_carries_on(behind_url: str, caplog: pytest.LogCaptureFixture) -> None:
    app = _app(behind_url)
    try:
        reads = VersionReads(_engine(app))
        client = app.test_client()
        with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
            for _ in range(3):
                assert client.get(LOGIN).status_code == 200
        warnings = [r.getMessage() for r in caplog.records if r.name == "flask_customer_portal"]
        assert warnings == [
            "The customer portal's database tables: portal_0001 (head is portal_0009). "
            "Run `flask portal db upgrade`."
        ]
        assert reads.count == 1
    finally:
        _dispose(app)


def test_live_mode_only_warns_about_a_missing_record_or_a_newer_schema(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(empty_db_url)
    metadata.create_all(engine)  # the head's tables, no revision recorded
    engine.dispose()
    app = _app(empty_db_url, **LIVE)
    try:
        with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
            assert app.test_client().get(LOGIN).status_code == 200
        assert "Run `flask portal db upgrade` to record the revision." in caplog.text
    finally:
        _dispose(app)
    upgrade(_engine(app))
    with _engine(app).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'portal_9999'"))
    _dispose(app)
    app = _app(empty_db_url, **LIVE)
    caplog.clear()
    try:
        with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
            assert app.test_client().get(LOGIN).status_code == 200
        assert "newer than this version of flask-customer-portal knows" in caplog.text
    finally:
        _dispose(app)


def test_a_database_that_cannot_be_read_is_warned_about_once(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    def unreachable(engine: Engine) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    app = _app(f"sqlite:///{tmp_path / 'x.db'}", **LIVE)
    monkeypatch.setattr("flask_customer_portal.migrations.gate.schema_status", unreachable)
    try:
        client = app.test_client()
        with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
            assert client.get(LOGIN).status_code == 200
            assert client.get(LOGIN).status_code == 200
        assert [r.getMessage() for r in caplog.records if r.name == "flask_customer_portal"] == [
            "Could not check the customer portal's database schema (OperationalError); not checked again."
        ]
    finally:
        _dispose(app)


# -- flask portal check and renew-due ------------------------------------------------------------


def _schema_line(app: Flask) -> str:
    output = _cli(app, "check").output
    (line,) = [line for line in output.splitlines() if "database schema:" in line]
    return line


def test_portal_check_reports_the_revision(empty_db_url: str) -> None:
    app = _app(empty_db_url)
    try:
        assert _schema_line(app) == (
            "FAIL  database schema: none of the 22 portal tables exist: run `flask portal db upgrade`"
        )
        upgrade(_engine(app), "portal_0001")
        line = _schema_line(app)
        assert line.startswith(
            "FAIL  database schema: not current: revision portal_0001 (head is portal_0009); "
        )
        assert line.endswith(": run `flask portal db upgrade`")
        upgrade(_engine(app))
        assert _schema_line(app) == (
            "OK    database schema: all 22 portal tables are current (revision portal_0009 (head))"
        )
        with _engine(app).begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        assert _schema_line(app) == (
            "WARN  database schema: all 22 portal tables are current, but no revision is recorded: "
            "run `flask portal db upgrade`"
        )
    finally:
        _dispose(app)


def test_renew_due_charges_nothing_behind_the_schema(behind_url: str) -> None:
    app = _app(behind_url)
    try:
        result = _cli(app, "renew-due")
        assert result.exit_code == 1
        assert "Run `flask portal db upgrade`. Nothing was charged." in result.output
        upgrade(_engine(app))
        result = _cli(app, "renew-due")
        assert result.exit_code == 0, result.output
    finally:
        _dispose(app)
