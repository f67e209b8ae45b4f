"""The shop's staff accounts: Flask-Login users in the shop's own table.

Staff and portal customers are different people with different sign-ins.
Staff sign in at ``/admin`` with an email address and a password
(Flask-Login, werkzeug's password hashing); customers sign in to
``/portal`` with the portal's links. The shop registers no
``customer_loader``, so a signed-in staff member is never a portal customer,
and the portal's session key never signs anyone in to ``/admin``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_login import LoginManager  # type: ignore[import-untyped]
from sqlalchemy import Boolean, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from flask_customer_portal.contrib.sqla import TZDateTime

from . import db

if TYPE_CHECKING:
    from . import Model as _Base
else:
    _Base = db.Model

__all__ = [
    "DEMO_STAFF_EMAIL",
    "DEMO_STAFF_PASSWORD",
    "Staff",
    "authenticate",
    "create_staff",
    "create_staff_command",
    "ensure_demo_staff",
    "init_staff",
    "login_manager",
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

login_manager = LoginManager()
login_manager.session_protection = "strong"


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
        return str(self.id)

    def set_password(self, password: str) -> None:
        method = current_app.config.get(_HASH_METHOD_KEY) or _DEFAULT_HASH_METHOD
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<Staff {self.id} {self.email}>"


def _normalize(email: str) -> str:
    return email.strip().lower()


def _load_staff(user_id: str) -> Staff | None:
    """Flask-Login's user loader: a deactivated account is signed out on
    its next request."""
    if not user_id.isdigit():
        return None
    staff = db.session.get(Staff, int(user_id))
    if staff is None or not staff.active:
        return None
    return staff


login_manager.user_loader(_load_staff)


def create_staff(email: str, password: str, *, name: str) -> Staff:
    """Add a staff account. Raises :class:`ValueError` if the address is
    taken or the password is shorter than 8 characters."""
    email = _normalize(email)
    if not email or "@" not in email:
        raise ValueError("enter the staff member's email address")
    if len(password) < 8:
        raise ValueError("a staff password needs at least 8 characters")
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
    so response times do not tell which addresses have accounts.
    """
    staff = db.session.scalars(select(Staff).where(Staff.email == _normalize(email))).one_or_none()
    if staff is None or not staff.active:
        check_password_hash(_dummy_hash(), password)
        return None
    if not staff.check_password(password):
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
    from . import portal

    if portal.get_state().config.is_live:
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


def init_staff(app: Flask) -> None:
    """Sign-in for staff and the ``/admin`` blueprint, on ``app``."""
    from .admin import blueprint

    # No app-wide ``current_user`` in templates: Flask-Login then loads the
    # staff member on staff pages only, never on the portal's pages.
    login_manager.init_app(app, add_context_processor=False)
    app.register_blueprint(blueprint)
    app.cli.add_command(create_staff_command)
