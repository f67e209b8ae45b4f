"""Upgrading the database that release 0.1.0 made, demo data and all, with
``flask portal db upgrade``: every row kept, and the portal works after."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from migration_support import TABLES_0_1_0, column_names, load_0_1_0, snapshot
from portal_fixtures import make_portal_app, sign_in
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from example_app import _set_aside_outdated_demo_database, create_app
from example_app.staff import DEMO_STAFF_EMAIL, DEMO_STAFF_PASSWORD
from flask_customer_portal import CustomerPortal
from flask_customer_portal.contrib.sqla import metadata
from flask_customer_portal.migrations import head, schema_status
from flask_customer_portal.testing import csrf_token_from

pytest_plugins = ["migration_fixtures"]  # empty_db_url

SECRET = "test-secret-key-0123456789abcdef0123456789"


def _portal_app(url: str) -> Flask:
    """A bare host app with the portal on ``url``: nothing made, nothing loaded."""
    app = Flask("upgraded_host")
    app.config.update(
        TESTING=True,
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="http://shop.test",
    )
    SQLAlchemy(app)
    CustomerPortal(app)
    return app


def _dispose(app: Flask) -> None:
    with app.app_context():
        for engine in app.extensions["sqlalchemy"].engines.values():
            engine.dispose()


def test_flask_portal_db_upgrade_keeps_every_row_of_0_1_0(empty_db_url: str) -> None:
    load_0_1_0(empty_db_url)
    engine: Engine = create_engine(empty_db_url)
    try:
        before = snapshot(engine)
        columns_before = column_names(engine)
        assert {table: len(rows) for table, rows in before.items() if table != "shop_staff"} == {
            "portal_audit_events": 2,
            "portal_billing_details": 1,
            "portal_charge_attempts": 0,
            "portal_customers": 3,
            "portal_invoice_lines": 18,
            "portal_invoices": 18,
            "portal_license_key_instances": 5,
            "portal_license_keys": 3,
            "portal_links": 1,
            "portal_payment_methods": 2,
            "portal_plans": 8,
            "portal_sequences": 1,
            "portal_sessions": 1,
            "portal_subscriptions": 3,
            "portal_webhook_events": 1,
        }
        assert schema_status(engine).recognised == "portal_0001"

        app = _portal_app(empty_db_url)
        result = app.test_cli_runner().invoke(args=["portal", "db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "Recognised the tables of portal_0001" in result.output
        assert f"Upgraded the portal's tables to {head()} (head)." in result.output

        # Every row of every table, value for value (a column added since has its default).
        assert snapshot(engine, columns=columns_before) == before
        assert schema_status(engine).is_current
        assert set(inspect(engine).get_table_names()) == {*TABLES_0_1_0, *metadata.tables, "alembic_version"}
        with engine.connect() as connection:
            email, total = connection.execute(
                text(
                    "SELECT c.email, SUM(i.total) FROM portal_customers c "
                    "JOIN portal_invoices i ON i.customer_id = c.id WHERE c.id = 'cus_demo_ava' GROUP BY c.email"
                )
            ).one()
        assert (email, int(total)) == ("ava@example.com", 36500)

        again = app.test_cli_runner().invoke(args=["portal", "db", "upgrade"])
        assert again.exit_code == 0, again.output
        assert "Nothing to do" in again.output
        _dispose(app)
    finally:
        engine.dispose()

    # The portal works on the upgraded database: a magic link signs Ava in
    # (a link, a session and audit events written after 0.1.0's rows), and
    # her invoices from 0.1.0 are there.
    app = make_portal_app(empty_db_url, demo_data=False)
    try:
        client = app.test_client()
        sign_in(app, client, "cus_demo_ava")
        dashboard = client.get("/portal/")
        assert dashboard.status_code == 200
        assert "Ava Thompson" in dashboard.text
        invoices = client.get("/portal/invoices")
        assert invoices.status_code == 200
        assert "Acme Sync" in invoices.text
    finally:
        _dispose(app)


def test_the_demo_shop_upgrades_a_0_1_0_demo_database_in_place(tmp_path: Path) -> None:
    demo_database = tmp_path / "shop.db"
    url = f"sqlite:///{demo_database}"
    load_0_1_0(url)
    shop = create_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "STAFF_PASSWORD_HASH_METHOD": "pbkdf2:sha256:1"}
    )
    try:
        with shop.app_context():
            assert schema_status(shop.extensions["sqlalchemy"].engine).is_current
            _set_aside_outdated_demo_database(shop, demo_database)  # as if it were the demo's own file
        assert demo_database.exists()
        assert not (tmp_path / "shop.db.old").exists()  # upgraded in place, not set aside
        result = shop.test_cli_runner().invoke(args=["demo-data"])
        assert result.exit_code == 0, result.output
        # The 0.1.0 customers are still there; Dewi came later.
        assert "Loaded demo data: cus_demo_dewi." in result.output
        # The staff account of 0.1.0 signs in (its table got its session keys).
        client = shop.test_client()
        page = client.get("/admin/login")
        response = client.post(
            "/admin/login",
            data={
                "email": DEMO_STAFF_EMAIL,
                "password": DEMO_STAFF_PASSWORD,
                "csrf_token": csrf_token_from(page.text),
            },
        )
        assert response.status_code == 303, response.status_code
        assert client.get("/admin/").status_code == 200
    finally:
        _dispose(shop)
