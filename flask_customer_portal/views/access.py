"""Signing in and out: the static link, one-time links, logout."""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, current_app, make_response, redirect, render_template, request, url_for

from .. import signals
from ..activity import has_signed_in
from ..auth import check_link, get_current_customer, issue_link, other_signed_in_customer, sign_in, sign_out
from ..clock import utcnow
from ..emails import render_message
from ..forms import ConfirmForm, LoginForm, OpenLinkForm
from ..i18n import select_locale
from ..mail import MailDeliveryError
from ..outbox import login_request, outbox_of, queue_mail
from ..ratelimit import client_ip
from ..state import PortalState, get_state
from ..storage import AuditEvent, Customer, LinkPurpose
from ..tokens import LinkProblem, LinkTokenError
from ..urls import external_url
from ._base import blueprint
from ._flows import asked_for_page, forget_flow, start_flow

logger = logging.getLogger("flask_customer_portal")

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
            return redirect(url_for(".dashboard"))
        return render_template("customer_portal/login.html", form=form)
    if not form.validate():
        status = 400 if form.csrf_failed else 422
        return render_template("customer_portal/login.html", form=form), status

    email = form.email.data or ""
    if state.rate_limits.hit(email=email, client=client_ip(request, state.config.trusted_proxies)):
        # Known or not, the same work is done and the same page shown: the
        # response says nothing about whether the address is a customer's.
        fallback_locale = select_locale(state.config, None)
        if outbox_of(state) is not None:
            # One row, whoever the address is: the sender finds out.
            queue_mail(state, [login_request(state, email, fallback_locale)])
        else:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            state.run_in_background(app, lambda: _send_login_link(state, email, fallback_locale))
    else:
        logger.warning("Customer portal login emails rate limited for a client or address")
    return render_template("customer_portal/login_sent.html", email=email)


def _send_login_link(state: PortalState, email: str, fallback_locale: str) -> None:
    """For a store without an outbox: look the address up and send at once,
    on the portal's worker thread."""
    customer = state.storage.find_customer_by_email(email)
    if customer is None or customer.is_erased:
        return
    token, expires_at = issue_link(
        state, LinkPurpose.LOGIN_LINK, customer, max_age=state.config.login_link_max_age
    )
    link = external_url(state, "login_link", business_id=state.config.business_id, token=token)
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


def _render_open_link(form: OpenLinkForm, customer: Customer, status: int = 200) -> tuple[str, int]:
    """The page with the button: it names the account the link opens and,
    when another customer is signed in here, says so."""
    page = render_template(
        "customer_portal/open_link.html",
        form=form,
        customer=customer,
        signed_in_as=other_signed_in_customer(customer),
        first_visit=not has_signed_in(get_state().storage, customer.id),
    )
    return page, status


def _open_link(purpose: LinkPurpose, token: str, method: str) -> Any:
    """GET shows one button and uses nothing up (mail scanners prefetch
    links); the POST from that button uses the link and signs in.

    When another customer is signed in in this browser, the link replaces
    that session only if the POST says so (``switch_account``, sent by the
    button of the warning): a link someone else sent cannot quietly move a
    signed-in customer into their account."""
    state = get_state()
    form = OpenLinkForm()
    try:
        checked = check_link(state, purpose, token)
        if request.method == "GET":
            return _render_open_link(form, checked.customer)
        if not form.validate():
            return _render_open_link(form, checked.customer, 400)
        if other_signed_in_customer(checked.customer) is not None and not form.switch_account.data:
            # Nothing is used up: the page now shows the warning and asks.
            return _render_open_link(form, checked.customer, 409)
        # Read before the sign-in clears this browser's portal keys.
        asked_for = asked_for_page()
        # Uses the link up, starts the session and records the sign-in
        # together (one transaction where the store can).
        sign_in(state, checked.customer, method=method, link=checked, purpose=purpose)
    except LinkTokenError as error:
        return _link_problem(error.problem)
    # A deep link's flow comes from the signed payload only (never from the
    # request), so it cannot be changed. Redirect to a URL without the
    # token: it must not stay in the history or leak through the address bar.
    return redirect(start_flow(checked.payload, asked_for), code=303)


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
    forget_flow()
    response = make_response(render_template("customer_portal/signed_out.html"))
    return response
