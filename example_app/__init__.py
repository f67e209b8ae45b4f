"""The demo merchant: a small Flask shop that mounts the customer portal.

It uses only the portal's public API, the way a merchant's app would::

    flask --app example_app demo-data   # load the demo customers and staff account
    flask --app example_app run         # http://127.0.0.1:5000

Its staff sign in at ``/admin`` (Flask-Login, see :mod:`example_app.staff`)
to find customers and share portal links with them.
"""

from __future__ import annotations

import os
import secrets
from contextlib import suppress
from pathlib import Path
from typing import Any

from flask import Flask, render_template
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import inspect
from sqlalchemy.orm import DeclarativeBase

from flask_customer_portal import CustomerPortal, schema_problems
from flask_customer_portal.contrib.composite import CompositeStorage
from flask_customer_portal.contrib.sqla import PortalModel, SQLAlchemyStorage
from flask_customer_portal.migrations import SchemaError
from flask_customer_portal.migrations import upgrade as upgrade_portal_tables

from .backends import portal_backend
from .offers import retention_offer

__all__ = ["Model", "create_app", "db", "portal"]


class Model(DeclarativeBase):
    """Base of the shop's own tables (``db.Model``). The portal's tables
    live on their own base and metadata."""


db = SQLAlchemy(model_class=Model)
portal = CustomerPortal()


def _instance_secret(instance_path: Path) -> str:
    """A random secret kept in the instance folder, so demo links survive
    a restart without anyone committing a key."""
    path = instance_path / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the demo shop. ``config`` overrides any setting."""
    app = Flask(__name__, instance_relative_config=True)
    instance_path = Path(app.instance_path)
    instance_path.mkdir(parents=True, exist_ok=True)
    port = os.environ.get("PORT", "5000")
    app.config.update(
        SQLALCHEMY_DATABASE_URI=os.environ.get("DATABASE_URL") or f"sqlite:///{instance_path / 'shop.db'}",
        CUSTOMER_PORTAL_MODE="test",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=os.environ.get("CUSTOMER_PORTAL_BASE_URL") or f"http://127.0.0.1:{port}",
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
        CUSTOMER_PORTAL_MERCHANT_ADDRESS="Acme Software Ltd.\n1 Market Street\nSingapore 048941",
        CUSTOMER_PORTAL_SUPPORT_EMAIL="support@acme.example",
        CUSTOMER_PORTAL_PHONE_DEFAULT_REGION="ID",
        # Every feature the README names can be tried: pausing instead of
        # cancelling, and the retention offers of example_app/offers.py.
        CUSTOMER_PORTAL_ALLOW_PAUSE=True,
        MAIL_DEFAULT_SENDER="Acme Software <billing@acme.example>",
    )
    for key in (
        "MAIL_SERVER",
        "MAIL_PORT",
        "MAIL_USERNAME",
        "MAIL_PASSWORD",
        "PORTAL_BACKEND",
        "CUSTOMER_PORTAL_RATE_LIMIT_STORAGE_URI",
        "DODO_PAYMENTS_API_KEY",
        "DODO_PAYMENTS_ENVIRONMENT",
        "DODO_PAYMENTS_BASE_URL",
        "DODO_PAYMENTS_WEBHOOK_KEY",
        "STRIPE_SECRET_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_API_BASE",
        "STRIPE_CACHE_REDIS_URL",
    ):
        if os.environ.get(key):
            app.config[key] = os.environ[key]
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or _instance_secret(instance_path)

    db.init_app(app)
    portal.init_app(app, **portal_backend(app, db))
    portal.retention_offer(retention_offer)

    @app.get("/")
    def home() -> str:
        return render_template("home.html", static_login_url=portal.static_login_url())

    from .demo import demo_data_command
    from .staff import add_session_keys, init_staff, refuse_published_password

    app.cli.add_command(demo_data_command)
    init_staff(app)

    with app.app_context():
        # The portal's tables: made, or upgraded from an older version, by
        # their migrations, as `flask portal db upgrade` does. Tables that no
        # migration explains: the demo's own file is set aside below.
        with suppress(SchemaError):
            upgrade_portal_tables(db.engine)
        add_session_keys(db.engine)  # the shop's own staff table, as 0.1.0 made it
        _set_aside_outdated_demo_database(app, instance_path / "shop.db")
        upgrade_portal_tables(db.engine)  # nothing to do, unless the file was set aside
        db.create_all()
        refuse_published_password()
    return app


def _set_aside_outdated_demo_database(app: Flask, demo_database: Path) -> None:
    """The demo's own SQLite file, when the portal's migrations could not
    bring it up to date (tables changed by hand, or made by a version older
    than 0.1.0) or the shop's own tables (which have no migrations) lack
    columns, is moved aside (``shop.db.old``) so the demo starts on a fresh
    one. Only ever the demo's default file: a configured database is never
    touched."""
    engine = db.engine
    if engine.url.database != str(demo_database) or not demo_database.exists():
        return
    inspector = inspect(engine)
    outdated = schema_problems(engine, PortalModel.metadata)
    for table in db.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue  # create_all adds missing tables
        present = {column["name"] for column in inspector.get_columns(table.name)}
        outdated.extend(
            f"{table.name}.{column.name} is missing" for column in table.columns if column.name not in present
        )
    if not outdated:
        return
    engine.dispose()
    backup = demo_database.with_name(demo_database.name + ".old")
    demo_database.replace(backup)
    app.logger.warning(
        "The demo database %s cannot be upgraded (%s); it was moved to %s "
        "and a new one is made. Run `flask --app example_app demo-data` to load the demo data.",
        demo_database,
        "; ".join(outdated[:5]),
        backup,
    )


def storage() -> SQLAlchemyStorage:
    """The portal's store in the current app (the shop's billing tables)."""
    store = portal.get_state().storage
    if isinstance(store, CompositeStorage):
        store = store.local  # billing at a payment company: customers stay here
    if not isinstance(store, SQLAlchemyStorage):
        raise TypeError("the demo shop keeps its billing records in the SQLAlchemy store")
    return store
