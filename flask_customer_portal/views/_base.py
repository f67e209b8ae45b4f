"""The ``portal`` blueprint: one thin function per page.

Rules every route follows: lookups are scoped to the signed-in customer (a
foreign id is a 404), changes are POSTs with a CSRF token, a GET never
changes state, and every response carries the portal's security headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import force_locale, get_locale
from flask_wtf.csrf import generate_csrf

from ..auth import get_current_customer
from ..formatting import format_datetime
from ..i18n import lazy_gettext as _l
from ..i18n import select_locale
from ..payments import ContentSecurityPolicyProvider
from ..state import PortalState, get_state
from ..storage import Customer
from ..templating import template_context

__all__ = [
    "add_security_headers",
    "blueprint",
    "current_customer_or_401",
    "customer_required",
    "local_endpoint",
    "notify",
    "plausible_id",
    "when",
]

logger = logging.getLogger("flask_customer_portal")

#: Registered under ``CUSTOMER_PORTAL_BLUEPRINT_NAME`` ("portal" unless the
#: host app has a blueprint of that name): the portal's own code names its
#: pages relatively (``url_for(".dashboard")``) or through
#: ``PortalConfig.endpoint("dashboard")``.
blueprint = Blueprint(
    "portal",
    __name__,
    root_path=str(Path(__file__).resolve().parent.parent),
    template_folder="templates",
    static_folder="static",
)

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


def local_endpoint() -> str | None:
    """This request's portal page by its own name (``"dashboard"``), or
    ``None`` outside the portal's blueprint."""
    name = get_state().config.blueprint_name
    if request.blueprint != name or not request.endpoint:
        return None
    return request.endpoint[len(name) + 1 :]


def current_customer_or_401() -> Customer:
    """The signed-in customer, in views behind :func:`customer_required`."""
    customer = get_current_customer()
    if customer is None:
        abort(401)
    return customer


#: Ids longer than this (the SQLAlchemy store's id columns), or with control
#: characters, are nobody's: they get a 404 without a trip to the store
#: (some databases refuse NUL bytes outright).
MAX_ID_LENGTH = 128


def plausible_id(value: str) -> bool:
    """Whether ``value`` from a URL or form could be a record's id at all."""
    return 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


#: The portal page a signed-out visitor asked for, opened after signing in.
NEXT_PAGE_KEY = "_customer_portal_next"


def customer_required(view: F) -> F:
    """Send visitors who are not signed in to the static login page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if get_current_customer() is None:
            state = get_state()
            if request.method == "GET":
                # The page asked for survives the sign-in (see start_flow).
                session[NEXT_PAGE_KEY] = request.full_path if request.query_string else request.path
            return redirect(url_for(".login", business_id=state.config.business_id))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def when(state: PortalState, customer: Customer, moment: datetime) -> str:
    """``moment`` as the customer reads a time: their language and time zone."""
    locale = str(get_locale() or state.config.default_locale)
    return format_datetime(moment, locale, customer.timezone or state.config.default_timezone, format="short")


def notify(message: str) -> None:
    """Show ``message`` once on the next portal page (the portal's own
    session key, so the host's flashed messages are never consumed)."""
    session[_NOTICE_KEY] = message


#: The portal's navigation, in order; an entry shows once its page exists.
_NAV = (
    ("dashboard", _l("Overview")),
    ("subscriptions", _l("Subscriptions")),
    ("invoices", _l("Billing history")),
    ("payment_methods", _l("Payment methods")),
    ("license_keys", _l("Licence keys")),
    ("profile", _l("Profile")),
)


#: Pages that belong to a navigation entry without being it: the entry is
#: marked as the current section (``aria-current="true"``) on them.
_SECTION_OF = {
    "invoice": "invoices",
    "license_key": "license_keys",
    "subscription": "subscriptions",
    "cancel_subscription": "subscriptions",
    "undo_cancellation": "subscriptions",
    "cancel_flow": "subscriptions",
    "accept_retention_offer": "subscriptions",
    "pause_subscription": "subscriptions",
    "unpause_subscription": "subscriptions",
    "payment_method": "subscriptions",
    "set_default_payment_method": "payment_methods",
    "remove_payment_method": "payment_methods",
    "reactivated": "subscriptions",
    "change_plan": "subscriptions",
    "confirm_email_change": "profile",
    "sessions": "profile",
    "activity": "profile",
    "billing_details": "profile",
    "invoice_billing_details": "invoices",
    "pay_invoice": "invoices",
    "email_invoice": "invoices",
    "apply_promotion_code": "subscriptions",
    "cancel_scheduled_change": "subscriptions",
    "deactivate_license_instance": "license_keys",
}


@blueprint.before_request
def _enter_portal() -> None:
    if local_endpoint() == "static":
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
    state = get_state()
    prefix = state.config.url_prefix
    if request.blueprint == state.config.blueprint_name or (prefix and request.path.startswith(prefix + "/")):
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        extra = dict(
            cast(ContentSecurityPolicyProvider, state.payments).content_security_policy
            if state.provider_capabilities.content_security_policy
            else {}
        )
        for directive, sources in state.config.brand.content_security_policy.items():
            extra[directive] = (*extra.get(directive, ()), *sources)
        if extra:
            response.headers["Content-Security-Policy"] = extend_policy(
                SECURITY_HEADERS["Content-Security-Policy"], extra
            )
    return response


def extend_policy(policy: str, extra: dict[str, tuple[str, ...]]) -> str:
    """``policy`` with the sources a payment provider needs (its
    ``content_security_policy``, e.g. ``{"script-src": ("https://js.stripe.com",)}``)
    added to their directives; a directive the policy lacks starts from
    ``'self'``. Only a provider that names sources gets them."""
    directives = [part.strip().split() for part in policy.split(";") if part.strip()]
    by_name = {parts[0]: parts for parts in directives}
    for name, sources in extra.items():
        parts = by_name.get(name)
        if parts is None:
            parts = by_name[name] = [name, "'self'"]
            directives.append(parts)
        parts.extend(source for source in sources if source not in parts)
    return "; ".join(" ".join(parts) for parts in directives)


@blueprint.context_processor
def _portal_context() -> dict[str, Any]:
    customer = get_current_customer()
    values = template_context(get_state(), customer)
    values["current_customer"] = customer
    values["portal_notice"] = session.pop(_NOTICE_KEY, None)
    name = get_state().config.blueprint_name
    own = f"{name}."
    # Spelt with the default blueprint name whatever the portal is registered
    # as, so that templates (a host's overrides too) can ask
    # ``"portal.invoices" in portal_endpoints`` under any name.
    values["portal_endpoints"] = frozenset(
        "portal." + view[len(own) :] for view in current_app.view_functions if view.startswith(own)
    )
    values["csrf_token"] = generate_csrf
    values["portal_nav"] = [(f"{name}.{page}", label) for page, label in _NAV]
    page = local_endpoint()
    section = _SECTION_OF.get(page) if page else None
    values["portal_nav_section"] = f"{name}.{section}" if section else request.endpoint
    return values
