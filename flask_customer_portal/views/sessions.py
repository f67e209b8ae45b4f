"""Security: where the customer is signed in, signing other devices out,
and the history of their own account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort, current_app, redirect, render_template, session, url_for

from .. import signals
from ..activity import describe_event
from ..auth import current_session_record_id, session_limits, sign_out, sign_out_everywhere
from ..clock import utcnow
from ..forms import ConfirmForm
from ..i18n import gettext as _
from ..state import PortalState, get_state
from ..storage import AuditEvent, Customer, PortalSessionRecord
from ..useragent import Device, parse_user_agent
from ._base import blueprint, current_customer_or_401, customer_required, notify, plausible_id
from .invoices import _page_links, _page_number

# --- helpers --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One signed-in browser as the sessions page shows it."""

    record: PortalSessionRecord
    device: Device
    is_current: bool


def _live_sessions(state: PortalState, customer: Customer) -> list[PortalSessionRecord]:
    idle_timeout, max_age = session_limits(state)
    return list(
        state.storage.list_customer_sessions(
            customer.id, utcnow(), idle_timeout=idle_timeout, max_age=max_age
        )
    )


def _app() -> Any:
    return current_app._get_current_object()  # type: ignore[attr-defined]


def _to_login(state: PortalState) -> Any:
    return redirect(url_for(".login", business_id=state.config.business_id), code=303)


# --- pages ----------------------------------------------------------------


@blueprint.route("/sessions")
@customer_required
def sessions() -> Any:
    """The customer's live portal sessions, most recently active first."""
    state = get_state()
    customer = current_customer_or_401()
    current = current_session_record_id()
    rows = [
        SessionRow(record=record, device=parse_user_agent(record.user_agent), is_current=record.id == current)
        for record in _live_sessions(state, customer)
    ]
    return render_template(
        "customer_portal/sessions.html",
        customer=customer,
        sessions=rows,
        form=ConfirmForm(formdata=None),
        locator_configured=state.hooks.session_locator is not None,
    )


@blueprint.route("/sessions/<session_id>/sign-out", methods=["POST"])
@customer_required
def sign_out_session(session_id: str) -> Any:
    """Sign one of the customer's sessions out (by its public id)."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    if not plausible_id(session_id):
        abort(404)
    target = next((r for r in _live_sessions(state, customer) if r.public_id == session_id), None)
    if target is None:
        abort(404)
    if target.id == current_session_record_id():
        # This browser: the same as the header's "Sign out".
        sign_out(state)
        session.pop("_customer_portal_return_url", None)
        notify(_("You signed out on this device."))
        return _to_login(state)
    now = utcnow()
    revoked = state.storage.revoke_customer_session(
        customer.id,
        session_id,
        now,
        event=AuditEvent(
            customer_id=customer.id, action="session.revoked", occurred_at=now, subject_id=session_id
        ),
    )
    if revoked is None:  # signed out meanwhile, by itself or another tab
        abort(404)
    signals.session_revoked.send(_app(), customer=customer, session=revoked)
    notify(_("That device is signed out. It needs a new sign-in link to come back."))
    return redirect(url_for(".sessions"), code=303)


@blueprint.route("/sessions/sign-out-everywhere", methods=["POST"], endpoint="sign_out_everywhere")
@customer_required
def sign_out_everywhere_view() -> Any:
    """End every session of the customer, this one included, and every
    sign-in link sent before now."""
    state = get_state()
    customer = current_customer_or_401()
    if not ConfirmForm().validate():
        abort(400)
    sign_out_everywhere(state, customer)
    session.pop("_customer_portal_return_url", None)
    notify(
        _(
            "You are signed out on every device, and sign-in links sent to you before now no "
            "longer work. To come back, ask for a new link below."
        )
    )
    return _to_login(state)


@blueprint.route("/activity")
@customer_required
def activity() -> Any:
    """The customer's own history, newest first."""
    state = get_state()
    customer = current_customer_or_401()
    page = state.storage.list_customer_events(
        customer.id, page=_page_number(), per_page=state.config.activity_per_page
    )
    if page.page > page.pages:
        abort(404)
    endpoints = current_app.view_functions
    return render_template(
        "customer_portal/activity.html",
        customer=customer,
        events=page,
        entries=[
            describe_event(event, endpoints, blueprint=state.config.blueprint_name) for event in page.items
        ],
        page_links=_page_links(page.page, page.pages),
    )
