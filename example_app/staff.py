"""The shop's staff accounts: Flask-Login users in the shop's own table.

Staff and portal customers are different people with different sign-ins.
Staff sign in at ``/admin`` with an email address and a password
(Flask-Login, werkzeug's password hashing); customers sign in to
``/portal`` with the portal's links. The shop registers no
``customer_loader``, so a signed-in staff member is never a portal customer,
and the portal's session key never signs anyone in to ``/admin``.

Every cookie that signs a staff member in (the session, a remember-me
cookie) carries the account's random ``session_key``; signing out or a new
password replaces it, so every cookie made before stops working, a copied
one included.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_login import LoginManager  # type: ignore[import-untyped]
from sqlalchemy import Boolean, Integer, String, inspect, select, text, update
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from flask_customer_portal import ConfigurationError
from flask_customer_portal.contrib.sqla import TZDateTime

from . import db

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from . import Model as _Base
else:
    _Base = db.Model

__all__ = [
    "DEMO_STAFF_EMAIL",
    "DEMO_STAFF_PASSWORD",
    "Staff",
    "add_session_keys",
    "authenticate",
    "create_staff",
    "create_staff_command",
    "end_staff_sessions",
    "ensure_demo_staff",
    "init_staff",
    "login_manager",
    "refuse_published_password",
    "staff_password_command",
]

#: The demo staff account that ``flask --app example_app demo-data`` creates
#: (in test mode only) and ``make demo`` prints.
DEMO_STAFF_EMAIL = "staff@example.com"
DEMO_STAFF_PASSWORD = "acme-demo-staff"  # noqa: S105 - the documented demo password
DEMO_STAFF_NAME = "Sam Rivera"

#: ``STAFF_PASSWORD_HASH_METHOD``: werkzeug's default (scrypt) unless set.
#: Tests set a cheaper method to stay fast; production keeps the default.
_HASH_METHOD_KEY = "STAFF_PASSWORD_HASH_METHOD"
_DEFAULT_HASH_METHOD = "scrypt"

#: A staff sign-in lasts at most this long (``STAFF_SESSION_MAX_AGE``), and so
#: does a remember-me cookie (``REMEMBER_COOKIE_DURATION``).
STAFF_SESSION_MAX_AGE = timedelta(hours=12)

login_manager = LoginManager()
# A session cookie presented by another address or browser is dropped.
login_manager.session_protection = "strong"


def _new_session_key() -> str:
    return secrets.token_urlsafe(24)


class Staff(_Base):
    """A member of the shop's staff, who may sign in at ``/admin``.

    Implements the four members Flask-Login asks of a user class.
    """

    __tablename__ = "shop_staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    """Lower-cased, so that sign-in ignores case."""
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime())
    session_key: Mapped[str] = mapped_column(String(64), default=_new_session_key)
    """Random, part of every cookie that signs this member in; replaced at
    sign-out and with a new password, which ends every older cookie."""

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """What Flask-Login keeps in the session and a remember-me cookie:
        the id and the current session key."""
        return f"{self.id}:{self.session_key}"

    def set_password(self, password: str) -> None:
        """Set a new password; every session signed in with the old one ends."""
        method = current_app.config.get(_HASH_METHOD_KEY) or _DEFAULT_HASH_METHOD
        self.password_hash = generate_password_hash(password, method=method)
        self.session_key = _new_session_key()

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<Staff {self.id} {self.email}>"


def _normalize(email: str) -> str:
    return email.strip().lower()


def _load_staff(user_id: str) -> Staff | None:
    """Flask-Login's user loader: a cookie whose session key is not the
    account's current one (signed out since, or a new password) and a
    deactivated account sign nobody in."""
    account_id, _, session_key = user_id.partition(":")
    if not account_id.isdigit() or not session_key:
        return None
    staff = db.session.get(Staff, int(account_id))
    if staff is None or not staff.active:
        return None
    if not hmac.compare_digest(staff.session_key.encode(), session_key.encode()):
        return None
    return staff


def end_staff_sessions(staff: Staff) -> None:
    """End every session of ``staff`` on the server: sign-out does this, so
    a copy of the cookie taken before is worthless."""
    staff.session_key = _new_session_key()
    db.session.commit()


login_manager.user_loader(_load_staff)


def _is_live() -> bool:
    from . import portal

    return portal.get_state().config.is_live


def _check_password_rules(password: str) -> None:
    if len(password) < 8:
        raise ValueError("a staff password needs at least 8 characters")
    if _is_live() and hmac.compare_digest(password.encode(), DEMO_STAFF_PASSWORD.encode()):
        raise ValueError("that is the demo's published password; live mode refuses it")


def create_staff(email: str, password: str, *, name: str) -> Staff:
    """Add a staff account. Raises :class:`ValueError` if the address is
    taken, the password is shorter than 8 characters, or, in live mode, it
    is the demo's published password."""
    email = _normalize(email)
    if not email or "@" not in email:
        raise ValueError("enter the staff member's email address")
    _check_password_rules(password)
    if db.session.scalar(select(Staff.id).where(Staff.email == email)) is not None:
        raise ValueError(f"there is already a staff account for {email}")
    staff = Staff(email=email, name=name.strip() or email, active=True, created_at=datetime.now(timezone.utc))
    staff.set_password(password)
    db.session.add(staff)
    db.session.commit()
    return staff


def authenticate(email: str, password: str) -> Staff | None:
    """The active staff member with this address and password, or ``None``.

    An unknown address costs the same password check as a wrong password,
    so response times do not tell which addresses have accounts. In live
    mode the demo's published password opens no account.
    """
    staff = db.session.scalars(select(Staff).where(Staff.email == _normalize(email))).one_or_none()
    if staff is None or not staff.active:
        check_password_hash(_dummy_hash(), password)
        return None
    if not staff.check_password(password):
        return None
    if _is_live() and hmac.compare_digest(password.encode(), DEMO_STAFF_PASSWORD.encode()):
        return None
    return staff


def _dummy_hash() -> str:
    method = current_app.config.get(_HASH_METHOD_KEY) or _DEFAULT_HASH_METHOD
    cache: dict[str, str] = current_app.extensions.setdefault("shop_staff_dummy_hashes", {})
    if method not in cache:
        cache[method] = generate_password_hash("not a staff password", method=method)
    return cache[method]


def ensure_demo_staff() -> Staff | None:
    """The demo staff account, created if missing; ``None`` in live mode,
    where a published password must never open the staff area."""
    if _is_live():
        return None
    staff = db.session.scalars(select(Staff).where(Staff.email == DEMO_STAFF_EMAIL)).one_or_none()
    if staff is None:
        staff = create_staff(DEMO_STAFF_EMAIL, DEMO_STAFF_PASSWORD, name=DEMO_STAFF_NAME)
    return staff


@click.command("create-staff")
@click.argument("email")
@click.option("--name", default="", help="The staff member's name (default: the email address).")
@click.password_option(help="The password (asked for if not given).")
@with_appcontext
def create_staff_command(email: str, name: str, password: str) -> None:
    """Add a staff account that can sign in at /admin."""
    try:
        staff = create_staff(email, password, name=name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Added staff account {staff.email}.")


@click.command("staff-password")
@click.argument("email")
@click.password_option(help="The new password (asked for if not given).")
@with_appcontext
def staff_password_command(email: str, password: str) -> None:
    """Give a staff account a new password; its sessions end everywhere."""
    staff = db.session.scalars(select(Staff).where(Staff.email == _normalize(email))).one_or_none()
    if staff is None:
        raise click.ClickException(f"there is no staff account for {_normalize(email)}")
    try:
        _check_password_rules(password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    staff.set_password(password)
    db.session.commit()
    click.echo(f"New password set for {staff.email}; every session of the account has ended.")


def refuse_published_password() -> None:
    """In live mode, refuse to start while the demo staff account still
    opens with the demo's published password (the README prints it)."""
    if not _is_live():
        return
    staff = db.session.scalars(select(Staff).where(Staff.email == DEMO_STAFF_EMAIL)).one_or_none()
    if staff is not None and staff.active and staff.check_password(DEMO_STAFF_PASSWORD):
        raise ConfigurationError(
            "CUSTOMER_PORTAL_MODE",
            f"live mode does not start while the staff account {DEMO_STAFF_EMAIL} has the demo's "
            f"published password; give it a new one in test mode first: "
            f"`flask --app example_app staff-password {DEMO_STAFF_EMAIL}` (same DATABASE_URL)",
        )


def add_session_keys(engine: Engine) -> None:
    """Give the staff table of a demo database that 0.1.0 made the
    ``session_key`` column it lacks, a random key for each member. The
    shop's own tables have no migrations (the portal's do); this is the one
    change they have had."""
    inspector = inspect(engine)
    table = Staff.__tablename__
    if not inspector.has_table(table) or any(
        c["name"] == "session_key" for c in inspector.get_columns(table)
    ):
        return
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE shop_staff ADD COLUMN session_key VARCHAR(64)"))
        for staff_id in connection.execute(select(Staff.id)).scalars().all():
            connection.execute(
                update(Staff).where(Staff.id == staff_id).values(session_key=_new_session_key())
            )


def init_staff(app: Flask) -> None:
    """Sign-in for staff and the ``/admin`` blueprint, on ``app``."""
    from .admin import blueprint
    from .staff_limits import init_staff_limits

    app.config.setdefault("STAFF_SESSION_MAX_AGE", STAFF_SESSION_MAX_AGE)
    # Flask-Login's default keeps a remember-me cookie for a year.
    app.config.setdefault("REMEMBER_COOKIE_DURATION", app.config["STAFF_SESSION_MAX_AGE"])
    app.config.setdefault("REMEMBER_COOKIE_SECURE", bool(app.config.get("SESSION_COOKIE_SECURE")))
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    # No app-wide ``current_user`` in templates: Flask-Login then loads the
    # staff member on staff pages only, never on the portal's pages.
    login_manager.init_app(app, add_context_processor=False)
    init_staff_limits(app)
    app.register_blueprint(blueprint)
    app.cli.add_command(create_staff_command)
    app.cli.add_command(staff_password_command)
