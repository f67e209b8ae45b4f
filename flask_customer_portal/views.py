"""The ``portal`` blueprint: one thin function per page.

Rules every route follows: lookups are scoped to the signed-in customer (a
foreign id is a 404), changes are POSTs with a CSRF token, a GET never
changes state, and every response carries the portal's security headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from functools import wraps
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale
from flask_wtf.csrf import generate_csrf
from werkzeug.exceptions import HTTPException

from . import signals
from .auth import check_link, get_current_customer, issue_link, sign_in, sign_out, use_link, utcnow
from .extension import PortalState, get_state
from .forms import ConfirmForm, LoginForm
from .i18n import lazy_gettext as _l
from .i18n import select_locale
from .mail import MailDeliveryError, render_message
from .ratelimit import client_ip
from .storage import AuditEvent, Customer, LinkPurpose, SubscriptionStatus
from .templating import template_context
from .tokens import LinkProblem, LinkTokenError

__all__ = ["blueprint", "customer_required", "notify"]

logger = logging.getLogger("flask_customer_portal")

blueprint = Blueprint("portal", __name__, template_folder="templates", static_folder="static")

F = TypeVar("F", bound=Callable[..., Any])

_NOTICE_KEY = "_customer_portal_notice"

SECURITY_HEADERS = {
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


def _customer() -> Customer:
    """The signed-in customer, in views behind :func:`customer_required`."""
    customer = get_current_customer()
    if customer is None:
        abort(401)
    return customer


def customer_required(view: F) -> F:
    """Send visitors who are not signed in to the static login page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if get_current_customer() is None:
            state = get_state()
            return redirect(url_for("portal.login", business_id=state.config.business_id))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def notify(message: str) -> None:
    """Show ``message`` once on the next portal page (the portal's own
    session key, so the host's flashed messages are never consumed)."""
    session[_NOTICE_KEY] = message


#: The portal's navigation, in order; an entry shows once its page exists.
_NAV = (
    ("portal.dashboard", _l("Overview")),
    ("portal.subscriptions", _l("Subscriptions")),
    ("portal.invoices", _l("Billing history")),
    ("portal.license_keys", _l("Licence keys")),
    ("portal.profile", _l("Profile")),
)


@blueprint.before_request
def _enter_portal() -> None:
    if request.endpoint == "portal.static":
        return  # the stylesheet needs no customer lookup and no locale
    state = get_state()
    customer = get_current_customer()
    stack = ExitStack()
    stack.enter_context(force_locale(select_locale(state.config, customer)))
    g._customer_portal_locale = stack


@blueprint.teardown_request
def _leave_portal(exc: BaseException | None) -> None:
    stack = g.pop("_customer_portal_locale", None)
    if stack is not None:
        stack.close()


def add_security_headers(response: Response) -> Response:
    """Registered on the app by ``init_app``; applies to the portal's
    responses only (its blueprint, or any path under its prefix, so that
    a 404 for an unknown portal URL is covered too)."""
    prefix = get_state().config.url_prefix
    if request.blueprint == "portal" or (prefix and request.path.startswith(prefix + "/")):
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
    return response


@blueprint.context_processor
def _portal_context() -> dict[str, Any]:
    customer = get_current_customer()
    values = template_context(get_state(), customer)
    values["current_customer"] = customer
    values["portal_notice"] = session.pop(_NOTICE_KEY, None)
    values["portal_endpoints"] = current_app.view_functions
    values["csrf_token"] = generate_csrf
    values["portal_nav"] = [
        (endpoint, label) for endpoint, label in _NAV if endpoint in current_app.view_functions
    ]
    return values


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    return render_template("customer_portal/error.html", code=code, error=error), code


# --- access ---------------------------------------------------------------


def _check_business(business_id: str) -> PortalState:
    state = get_state()
    if business_id != state.config.business_id:
        abort(404)
    return state


@blueprint.route("/login/<business_id>", methods=["GET", "POST"])
def login(business_id: str) -> Any:
    """The static link: the customer types their email and gets a link."""
    state = _check_business(business_id)
    form = LoginForm()
    if request.method == "GET":
        if get_current_customer() is not None:
            return redirect(url_for("portal.dashboard"))
        return render_template("customer_portal/login.html", form=form)
    if not form.validate():
        status = 400 if form.csrf_failed else 422
        return render_template("customer_portal/login.html", form=form), status

    email = form.email.data or ""
    if state.rate_limits.hit(email=email, client=client_ip(request, state.config.trusted_proxies)):
        # Known or not, the same work is queued and the same page shown: the
        # response says nothing about whether the address is a customer's.
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        fallback_locale = select_locale(state.config, None)
        state.run_in_background(app, lambda: _send_login_link(state, email, fallback_locale))
    else:
        logger.warning("Customer portal login emails rate limited for a client or address")
    return render_template("customer_portal/login_sent.html", email=email)


def _send_login_link(state: PortalState, email: str, fallback_locale: str) -> None:
    customer = state.storage.find_customer_by_email(email)
    if customer is None:
        return
    token, expires_at = issue_link(
        state, LinkPurpose.LOGIN_LINK, customer, max_age=state.config.login_link_max_age
    )
    link = f"{state.config.portal_url}/login/{state.config.business_id}/{token}"
    message = render_message(
        state,
        "login_link",
        to=customer.email,
        customer=customer,
        fallback_locale=fallback_locale,
        link=link,
        expires_at=expires_at,
        minutes=state.config.login_link_max_age // 60,
    )
    try:
        state.mailer.send(message)
    except MailDeliveryError as exc:
        logger.error("Could not send a portal login link to customer %s: %s", customer.id, exc)
        return
    state.storage.record_event(
        AuditEvent(customer_id=customer.id, action="login_link.sent", occurred_at=utcnow())
    )
    signals.login_link_requested.send(current_app._get_current_object(), customer=customer)  # type: ignore[attr-defined]


_PROBLEM_STATUS = {
    LinkProblem.EXPIRED: 410,
    LinkProblem.USED: 410,
    LinkProblem.INVALID: 404,
    LinkProblem.WRONG_MODE: 400,
}


def _link_problem(problem: LinkProblem) -> tuple[str, int]:
    form = LoginForm(formdata=None)
    return (
        render_template("customer_portal/link_problem.html", problem=problem.value, form=form),
        _PROBLEM_STATUS[problem],
    )


def _open_link(purpose: LinkPurpose, token: str, method: str) -> Any:
    """GET shows one button and uses nothing up (mail scanners prefetch
    links); the POST from that button uses the link and signs in."""
    state = get_state()
    form = ConfirmForm()
    try:
        if request.method == "GET":
            checked = check_link(state, purpose, token)
            return render_template("customer_portal/open_link.html", form=form, customer=checked.customer)
        if not form.validate():
            checked = check_link(state, purpose, token)
            return render_template(
                "customer_portal/open_link.html", form=form, customer=checked.customer
            ), 400
        checked = use_link(state, purpose, token)
    except LinkTokenError as error:
        return _link_problem(error.problem)
    sign_in(state, checked.customer, method=method)
    if checked.payload.return_url:
        session["_customer_portal_return_url"] = checked.payload.return_url
    # Redirect to a URL without the token: it must not stay in the history
    # or leak through the address bar.
    return redirect(url_for("portal.dashboard"), code=303)


@blueprint.route("/session/<token>", methods=["GET", "POST"])
def session_link(token: str) -> Any:
    """A dynamic link made by :meth:`CustomerPortal.create_session`."""
    return _open_link(LinkPurpose.SESSION_LINK, token, "session_link")


@blueprint.route("/login/<business_id>/<token>", methods=["GET", "POST"])
def login_link(business_id: str, token: str) -> Any:
    """A login link sent by email from the static page."""
    _check_business(business_id)
    return _open_link(LinkPurpose.LOGIN_LINK, token, "login_link")


@blueprint.route("/logout", methods=["POST"])
def logout() -> Any:
    state = get_state()
    form = ConfirmForm()
    if not form.validate():
        abort(400)
    sign_out(state)
    session.pop("_customer_portal_return_url", None)
    response = make_response(render_template("customer_portal/signed_out.html"))
    return response


# --- pages ----------------------------------------------------------------


@blueprint.route("/")
@customer_required
def dashboard() -> Any:
    state = get_state()
    customer = _customer()
    subscriptions = state.storage.list_subscriptions(customer.id)
    needs_attention = [s for s in subscriptions if s.status is SubscriptionStatus.ON_HOLD]
    active = [s for s in subscriptions if s.status is SubscriptionStatus.ACTIVE]
    renewals = sorted((s for s in active if not s.cancel_at_period_end), key=lambda s: s.current_period_end)
    latest_invoices = state.storage.list_invoices(customer.id, page=1, per_page=1)
    license_keys = state.storage.list_license_keys(customer.id)
    return render_template(
        "customer_portal/dashboard.html",
        customer=customer,
        needs_attention=needs_attention,
        active_subscriptions=active,
        next_renewal=renewals[0] if renewals else None,
        latest_invoice=latest_invoices.items[0] if latest_invoices.items else None,
        invoice_count=latest_invoices.total,
        license_key_count=len(license_keys),
        return_url=session.get("_customer_portal_return_url"),
    )
