"""The staff area at ``/admin``: find a customer, share a portal link with
them, and see (and end) their portal sessions.

Everything here goes through the portal's public API
(:meth:`CustomerPortal.create_session <flask_customer_portal.CustomerPortal.create_session>`,
:meth:`~flask_customer_portal.CustomerPortal.send_invite`,
:meth:`~flask_customer_portal.CustomerPortal.static_login_url`, the store)
and reads the portal's SQLAlchemy tables for the support lists. Links are
credentials: a new link is only ever made by a POST, shown once in that
POST's response, and every staff page is sent with ``Cache-Control:
no-store``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from babel import Locale
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import (  # type: ignore[import-untyped]
    current_user,
    login_user,
    logout_user,
    user_loaded_from_cookie,
)
from flask_wtf.csrf import generate_csrf
from sqlalchemy import func, or_, select
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse
from wtforms import EmailField, HiddenField, PasswordField
from wtforms.validators import DataRequired, Length

from flask_customer_portal import (
    Customer,
    CustomerPortal,
    MailDeliveryError,
    PortalConfig,
    PortalForm,
    PortalSession,
    client_ip,
    utcnow,
)
from flask_customer_portal.contrib.sqla import AuditEventModel, CustomerModel, PortalSessionModel
from flask_customer_portal.useragent import parse_user_agent

from . import db
from .staff import Staff, authenticate, end_staff_sessions
from .staff_limits import staff_limits

__all__ = ["CUSTOMERS_PER_PAGE", "STAFF_HEADERS", "blueprint"]

URL_PREFIX = "/admin"
CUSTOMERS_PER_PAGE = 20
#: How many of a customer's portal sessions and audit events the support view lists.
RECENT_LIMIT = 20

blueprint = Blueprint("admin", __name__, url_prefix=URL_PREFIX)

#: Sent with every response under ``/admin`` (pages, errors, redirects):
#: the pages show sign-in links, which must never be cached or framed.
STAFF_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
}


# -- forms -------------------------------------------------------------------------


class StaffLoginForm(PortalForm):
    email = EmailField(
        "Email address",
        validators=[DataRequired("Enter your email address."), Length(max=320)],
        render_kw={"autocomplete": "username", "autocapitalize": "off", "spellcheck": "false"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter your password."), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()


class ActionForm(PortalForm):
    """Just the CSRF token: one button that does one thing."""


# -- access ------------------------------------------------------------------------


def _portal() -> CustomerPortal:
    """The portal registered on the current app. A blueprint reaches it
    through ``app.extensions``, as it reaches Flask-SQLAlchemy, instead of
    importing the app's module."""
    portal: CustomerPortal = current_app.extensions["customer_portal"]
    return portal


def _staff() -> Staff:
    user = current_user._get_current_object()
    if not isinstance(user, Staff):
        abort(401)
    return user


def _requested_path() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a staff page of this app, else the
    customer list. Anything else (another host, ``//host``, a path outside
    ``/admin``) is ignored, so the sign-in form is no open redirect."""
    default = url_for("admin.customers")
    if not target or "\\" in target or target.startswith("//") or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    if parts.path != URL_PREFIX and not parts.path.startswith(URL_PREFIX + "/"):
        return default
    return request.script_root + target


#: When the staff member signed in (seconds since the epoch), in the signed session.
SIGNED_IN_AT = "_staff_signed_in_at"


def _session_expired() -> bool:
    """A staff sign-in lasts ``STAFF_SESSION_MAX_AGE`` (12 hours), however
    busy: the time is kept in the signed session, so a cookie cannot
    stretch it."""
    signed_in_at = session.get(SIGNED_IN_AT)
    if not isinstance(signed_in_at, (int, float)):
        return True
    max_age: timedelta = current_app.config["STAFF_SESSION_MAX_AGE"]
    return utcnow().timestamp() - signed_in_at > max_age.total_seconds()


def _sign_out() -> None:
    logout_user()
    session.pop(SIGNED_IN_AT, None)


@blueprint.before_request
def _staff_only() -> BaseResponse | None:
    """Every staff page but the sign-in form needs a signed-in staff
    member; a portal customer's session signs nobody in here."""
    if request.endpoint == "admin.login":
        return None
    if current_user.is_authenticated and _session_expired():
        _sign_out()
        flash("Your staff session has ended. Sign in again.")
    if not current_user.is_authenticated:
        return redirect(url_for("admin.login", next=_requested_path()))
    return None


def _signed_in_from_cookie(app: Flask, user: Staff) -> None:
    """A remember-me cookie (``REMEMBER_COOKIE_DURATION``, 12 hours) starts
    a new staff session of the same length."""
    session[SIGNED_IN_AT] = utcnow().timestamp()


user_loaded_from_cookie.connect(_signed_in_from_cookie)


@blueprint.after_app_request
def _staff_headers(response: Response) -> Response:
    if request.path == URL_PREFIX or request.path.startswith(URL_PREFIX + "/"):
        for name, value in STAFF_HEADERS.items():
            response.headers[name] = value
    return response


def _when(value: datetime | None) -> str:
    """Staff see times in UTC, unambiguous whoever reads them."""
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@blueprint.context_processor
def _staff_context() -> dict[str, Any]:
    return {
        "current_user": current_user,
        "portal_config": _portal().get_state().config,
        "when": _when,
        "csrf_token": generate_csrf,
    }


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    return render_template("admin/error.html", code=code, error=error), code


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = StaffLoginForm()
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("admin.customers"))
        form.next.data = request.args.get("next", "")
        return render_template("admin/login.html", form=form)
    if not form.validate():
        return render_template("admin/login.html", form=form), 400 if form.csrf_failed else 422
    email = form.email.data or ""
    client = client_ip(request, _portal().get_state().config.trusted_proxies)
    limits = staff_limits()
    # Refused before the password is checked: after too many failures even
    # the right password waits, so guessing gets nowhere.
    retry_after = limits.retry_after(email=email, client=client)
    if retry_after is not None:
        minutes = max(1, math.ceil(retry_after / 60))
        page = render_template("admin/login.html", form=form, throttled_minutes=minutes)
        return page, 429, {"Retry-After": str(retry_after)}
    staff = authenticate(email, form.password.data or "")
    if staff is None or not login_user(staff):
        limits.failed(email=email, client=client)
        # One message whether the address is unknown or the password wrong.
        return render_template("admin/login.html", form=form, failed=True), 401
    limits.succeeded(email=email)
    session[SIGNED_IN_AT] = utcnow().timestamp()
    return redirect(_safe_next(form.next.data), code=303)


@blueprint.route("/logout", methods=["POST"])
def logout() -> Any:
    """Sign out on the server: every cookie of this staff member made before
    (a copy included, and a remember-me cookie) stops working."""
    if not ActionForm().validate():
        abort(400)
    end_staff_sessions(_staff())
    _sign_out()
    flash("You are signed out of the staff area.")
    return redirect(url_for("admin.login"), code=303)


def _made_by(staff: Staff) -> dict[str, str]:
    """The audit details that name the staff member behind an action."""
    return {"staff_id": str(staff.id), "staff": staff.email}


# -- customers ---------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerPage:
    items: Sequence[CustomerModel]
    page: int
    total: int
    per_page: int = CUSTOMERS_PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def find_customers(query: str, page: int) -> CustomerPage:
    """One page of customers whose name or email contains ``query`` (any
    case), or whose id is ``query``; all customers for an empty query.
    Sorted by name. Aborts with 404 for a page past the end."""
    statement = select(CustomerModel)
    needle = query.strip()
    if needle:
        lowered = needle.lower()
        statement = statement.where(
            or_(
                func.lower(CustomerModel.name).contains(lowered, autoescape=True),
                CustomerModel.email_normalized.contains(lowered, autoescape=True),
                CustomerModel.id == needle,
            )
        )
    total = db.session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    result = CustomerPage(items=(), page=page, total=total)
    if page < 1 or page > result.pages:
        abort(404)
    rows = db.session.scalars(
        statement.order_by(func.lower(CustomerModel.name), CustomerModel.id)
        .limit(CUSTOMERS_PER_PAGE)
        .offset((page - 1) * CUSTOMERS_PER_PAGE)
    ).all()
    return CustomerPage(items=tuple(rows), page=page, total=total)


@blueprint.get("/")
def customers() -> str:
    query = request.args.get("q", "")[:200]
    page = request.args.get("page", 1, type=int)
    return render_template("admin/customers.html", query=query.strip(), result=find_customers(query, page))


def _customer_or_404(customer_id: str) -> Customer:
    customer = _portal().get_state().storage.get_customer(customer_id)
    if customer is None:
        abort(404)
    return customer


@dataclass(frozen=True)
class SessionRow:
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None
    device: str
    """The browser as a person names it ("Chrome on macOS"), never the raw header."""
    status: str
    """``active``, ``expired`` (timed out, or ended by an email change) or ``revoked`` (signed out)."""


def _session_status(row: PortalSessionModel, config: PortalConfig, auth_version: int, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if (
        row.auth_version != auth_version
        or now - row.last_seen_at > timedelta(seconds=config.session_idle_timeout)
        or now - row.created_at > timedelta(seconds=config.session_max_age)
    ):
        return "expired"
    return "active"


def _device(user_agent: str | None) -> str:
    device = parse_user_agent(user_agent)
    if device.browser and device.os:
        return f"{device.browser} on {device.os}"
    return device.browser or (f"A browser on {device.os}" if device.os else "Unknown browser")


def recent_sessions(customer: Customer) -> tuple[list[SessionRow], int]:
    """The customer's latest portal sessions, newest first, and how many
    there are in all."""
    config = _portal().get_state().config
    total = (
        db.session.scalar(
            select(func.count())
            .select_from(PortalSessionModel)
            .where(PortalSessionModel.customer_id == customer.id)
        )
        or 0
    )
    rows = db.session.scalars(
        select(PortalSessionModel)
        .where(PortalSessionModel.customer_id == customer.id)
        .order_by(PortalSessionModel.created_at.desc(), PortalSessionModel.id)
        .limit(RECENT_LIMIT)
        .execution_options(populate_existing=True)
    ).all()
    now = utcnow()
    return [
        SessionRow(
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            revoked_at=row.revoked_at,
            device=_device(row.user_agent),
            status=_session_status(row, config, customer.auth_version, now),
        )
        for row in rows
    ], total


def recent_events(customer: Customer) -> Sequence[AuditEventModel]:
    """The customer's latest audit events, newest first."""
    return db.session.scalars(
        select(AuditEventModel)
        .where(AuditEventModel.customer_id == customer.id)
        .order_by(AuditEventModel.occurred_at.desc(), AuditEventModel.id.desc())
        .limit(RECENT_LIMIT)
    ).all()


def _language_name(customer: Customer) -> str:
    """The language the customer's emails are in, by its English name: their
    saved language if the portal speaks it, else the portal's default."""
    config = _portal().get_state().config
    code = config.default_locale
    if customer.locale:
        language = customer.locale.replace("-", "_").split("_")[0]
        if language in config.languages:
            code = language
    return str(Locale.parse(code).get_display_name("en") or code)


def _render_customer(
    customer: Customer,
    *,
    invite: PortalSession | None = None,
    mail_failed: bool = False,
    status: int = 200,
) -> tuple[str, int]:
    sessions, session_total = recent_sessions(customer)
    page = render_template(
        "admin/customer.html",
        customer=customer,
        static_login_url=_portal().static_login_url(),
        invite=invite,
        mail_failed=mail_failed,
        sessions=sessions,
        session_total=session_total,
        events=recent_events(customer),
        language_name=_language_name(customer),
    )
    return page, status


@blueprint.get("/customers/<customer_id>")
def customer(customer_id: str) -> tuple[str, int]:
    return _render_customer(_customer_or_404(customer_id))


@blueprint.post("/customers/<customer_id>/link")
def create_link(customer_id: str) -> tuple[str, int]:
    """Share invite: a new dynamic link, shown once in this response.
    Never a redirect: the link would have to be kept somewhere on the way."""
    if not ActionForm().validate():
        abort(400)
    customer = _customer_or_404(customer_id)
    staff = _staff()
    invite = _portal().create_session(customer.id, details=_made_by(staff))
    current_app.logger.info("Staff %s made a portal link for customer %s", staff.id, customer.id)
    return _render_customer(customer, invite=invite)


@blueprint.post("/customers/<customer_id>/invite")
def email_invite(customer_id: str) -> Any:
    """Email it to the customer: :meth:`CustomerPortal.send_invite`."""
    if not ActionForm().validate():
        abort(400)
    customer = _customer_or_404(customer_id)
    staff = _staff()
    try:
        sent = _portal().send_invite(customer.id, details=_made_by(staff))
    except MailDeliveryError:
        return _render_customer(customer, mail_failed=True, status=502)
    current_app.logger.info("Staff %s emailed a portal invite to customer %s", staff.id, customer.id)
    flash(f"Emailed a new portal link to {customer.email}. It works once, until {_when(sent.expires_at)}.")
    return redirect(url_for("admin.customer", customer_id=customer.id), code=303)


@blueprint.post("/customers/<customer_id>/sign-out-everywhere")
def sign_out_everywhere(customer_id: str) -> Any:
    """End every portal session of the customer and every link sent to
    them (a forwarded link, a lost laptop, a suspected takeover)."""
    if not ActionForm().validate():
        abort(400)
    customer = _customer_or_404(customer_id)
    # Sessions end, and so does every link sent before now (a forwarded one).
    ended = _portal().sign_out_everywhere(customer.id, **_made_by(_staff()))
    if ended == 0:
        flash(f"{customer.name} had no open portal session.")
    elif ended == 1:
        flash(f"Signed {customer.name} out of 1 portal session.")
    else:
        flash(f"Signed {customer.name} out of {ended} portal sessions.")
    return redirect(url_for("admin.customer", customer_id=customer.id), code=303)
