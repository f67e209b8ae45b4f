"""The profile: name and phone saved at once, a new email address only once
a link sent to it is confirmed."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from flask import abort, current_app, redirect, render_template, request, url_for

from .. import signals
from ..auth import (
    check_link,
    get_current_customer,
    issue_link,
    make_link,
    other_signed_in_customer,
    sign_in,
    use_link,
)
from ..clock import utcnow
from ..emails import render_message
from ..forms import OpenLinkForm, normalize_email
from ..forms.profile import ProfileForm, example_phone_number, format_phone
from ..i18n import gettext as _
from ..mail import MailDeliveryError, Message
from ..outbox import new_mail, outbox_of, queue_mail
from ..outbox.queue import dispatch
from ..ratelimit import client_ip
from ..state import PortalState, get_state
from ..storage import AuditEvent, Customer, EmailInUse, LinkPurpose
from ..tokens import LinkProblem, LinkTokenError
from ..urls import external_url
from ._base import blueprint, current_customer_or_401, customer_required, notify

__all__ = ["confirm_email_change", "profile"]

logger = logging.getLogger("flask_customer_portal")

_PROBLEM_STATUS = {
    LinkProblem.EXPIRED: 410,
    LinkProblem.USED: 410,
    LinkProblem.INVALID: 404,
    LinkProblem.WRONG_MODE: 400,
}


def _same_email(a: str, b: str) -> bool:
    """Addresses are one customer's whatever their case (DESIGN: compared
    case-insensitively)."""

    def key(address: str) -> str:
        try:
            return normalize_email(address.strip()).casefold()
        except ValueError:
            return address.strip().casefold()

    return key(a) == key(b)


def _render_profile(state: PortalState, customer: Customer, form: ProfileForm) -> str:
    return render_template(
        "customer_portal/profile.html",
        customer=customer,
        form=form,
        phone_example=example_phone_number(state.config.phone_default_region),
    )


# --- the profile page ---------------------------------------------------------


@blueprint.route("/profile", methods=["GET", "POST"])
@customer_required
def profile() -> Any:
    state = get_state()
    customer = current_customer_or_401()
    if request.method == "GET":
        form = ProfileForm(
            formdata=None,
            data={"name": customer.name, "email": customer.email, "phone": format_phone(customer.phone)},
        )
        return _render_profile(state, customer, form)

    form = ProfileForm(phone_region=state.config.phone_default_region, current_phone=customer.phone)
    if not form.validate():
        return _render_profile(state, customer, form), 400 if form.csrf_failed else 422
    cleaned = form.cleaned
    changed = tuple(
        field
        for field, old, new in (
            ("name", customer.name, cleaned.name),
            ("phone", customer.phone, cleaned.phone),
        )
        if old != new
    )
    new_email = None if _same_email(cleaned.email, customer.email) else cleaned.email

    if new_email is not None:
        # Mail first: if the link cannot be sent, nothing is saved and the
        # customer sees why next to the field they were changing.
        problem = _request_email_change(state, customer, new_email)
        if problem is not None:
            form.email.errors = [problem]
            return _render_profile(state, customer, form), 422

    messages = []
    if changed:
        saved = state.storage.update_profile(
            customer.id,
            name=cleaned.name,
            phone=cleaned.phone,
            event=AuditEvent(
                customer_id=customer.id,
                action="profile.updated",
                occurred_at=utcnow(),
                details={"changed": ",".join(changed)},
            ),
        )
        if saved is None:  # deleted by the merchant while the form was open
            abort(404)
        signals.profile_updated.send(current_app._get_current_object(), customer=saved, changed=changed)  # type: ignore[attr-defined]
        messages.append(_("Your profile was saved."))
    if new_email is not None:
        messages.append(
            _(
                "We sent a link to %(email)s. Your email address changes when you open it and confirm.",
                email=new_email,
            )
        )
    notify(" ".join(messages) if messages else _("There were no changes to save."))
    return redirect(url_for(".profile"), code=303)


def _request_email_change(state: PortalState, customer: Customer, new_email: str) -> str | None:
    """Send a confirmation link to ``new_email`` and a notice to the current
    address. Returns a message for the email field if nothing could be sent.

    Whether another customer already has ``new_email`` is not checked
    here: the answer would tell a signed-in visitor who else is a customer.
    The confirmation fails politely instead.
    """
    # The same counters as the login emails: they protect a mailbox from
    # floods of portal mail, whichever form asked for it.
    if not state.rate_limits.hit(email=new_email, client=client_ip(request, state.config.trusted_proxies)):
        logger.warning("Customer portal email change for customer %s rate limited", customer.id)
        return _("Too many emails were sent to this address. Please try again later.")
    requested = AuditEvent(
        customer_id=customer.id,
        action="profile.email_change_requested",
        occurred_at=utcnow(),
        details={"new_email": new_email},
    )
    if outbox_of(state) is not None:
        # The link, its email, the notice to the current address and the
        # audit event: one transaction, delivered after it.
        token, record = make_link(
            state,
            LinkPurpose.EMAIL_CHANGE,
            customer,
            max_age=state.config.email_change_max_age,
            new_email=new_email,
        )
        confirmation = _change_link_message(state, customer, token, record.expires_at, new_email)
        # Tell the current address at once, as payment companies do: if the
        # request was not the customer's, they hear of it before it takes effect.
        notice = _notice(state, customer, to=customer.email, stage="requested", new_email=new_email)
        queue_mail(
            state,
            [
                new_mail(state, confirmation, kind="email_change", customer_id=customer.id),
                new_mail(state, notice, kind="email_change_notice", customer_id=customer.id),
            ],
            link=record,
            events=[requested],
        )
        _announce_change_requested(customer, new_email)
        return None
    token, expires_at = issue_link(
        state,
        LinkPurpose.EMAIL_CHANGE,
        customer,
        max_age=state.config.email_change_max_age,
        new_email=new_email,
    )
    message = _change_link_message(state, customer, token, expires_at, new_email)
    try:
        state.mailer.send(message)
    except MailDeliveryError as exc:
        logger.error("Could not send an email change link for customer %s: %s", customer.id, exc)
        return _("We could not send an email to this address just now. Check it, or try again later.")
    state.storage.record_event(requested)
    _announce_change_requested(customer, new_email)
    _send_notice(state, customer, to=customer.email, stage="requested", new_email=new_email)
    return None


def _change_link_message(
    state: PortalState, customer: Customer, token: str, expires_at: datetime, new_email: str
) -> Message:
    link = external_url(state, "confirm_email_change", token=token)
    return render_message(
        state,
        "email_change",
        to=new_email,
        customer=customer,
        link=link,
        expires_at=expires_at,
        new_email=new_email,
    )


def _announce_change_requested(customer: Customer, new_email: str) -> None:
    signals.email_change_requested.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        new_email=new_email,
    )


def _notice(state: PortalState, customer: Customer, *, to: str, stage: str, new_email: str) -> Message:
    return render_message(
        state,
        "email_change_notice",
        to=to,
        customer=customer,
        stage=stage,
        new_email=new_email,
        occurred_at=utcnow(),
    )


def _send_notice(state: PortalState, customer: Customer, *, to: str, stage: str, new_email: str) -> None:
    """For a store without an outbox: send at once."""
    message = _notice(state, customer, to=to, stage=stage, new_email=new_email)
    try:
        state.mailer.send(message)
    except MailDeliveryError as exc:
        # The change itself does not depend on this message; the audit log
        # and the signals still record it.
        logger.error("Could not send an email change notice to customer %s: %s", customer.id, exc)


# --- the confirmation link ----------------------------------------------------


def _link_problem(problem: LinkProblem) -> tuple[str, int]:
    return (
        render_template(
            "customer_portal/email_change_problem.html",
            problem=problem.value,
            signed_in=get_current_customer() is not None,
        ),
        _PROBLEM_STATUS[problem],
    )


def _render_confirm(
    form: OpenLinkForm, customer: Customer, new_email: str, status: int = 200
) -> tuple[str, int]:
    page = render_template(
        "customer_portal/confirm_email_change.html",
        form=form,
        new_email=new_email,
        customer=customer,
        signed_in_as=other_signed_in_customer(customer),
    )
    return page, status


@blueprint.route("/profile/email/<token>", methods=["GET", "POST"])
def confirm_email_change(token: str) -> Any:
    """The link sent to the new address. GET shows one button and uses
    nothing up (mail scanners prefetch links); the POST from that button
    uses the link and changes the address."""
    state = get_state()
    form = OpenLinkForm()
    try:
        checked = check_link(state, LinkPurpose.EMAIL_CHANGE, token)
        new_email = checked.payload.new_email
        if not new_email:
            raise LinkTokenError(LinkProblem.INVALID)
        if request.method == "GET":
            return _render_confirm(form, checked.customer, new_email)
        if not form.validate():
            return _render_confirm(form, checked.customer, new_email, 400)
        if other_signed_in_customer(checked.customer) is not None and not form.switch_account.data:
            # The change would sign this browser in to the link's account:
            # only with the customer's explicit "yes" (see _open_link).
            return _render_confirm(form, checked.customer, new_email, 409)
        checked = use_link(state, LinkPurpose.EMAIL_CHANGE, token)
    except LinkTokenError as error:
        return _link_problem(error.problem)

    customer = checked.customer
    old_email = customer.email
    notices = []
    if outbox_of(state) is not None:
        # The notice to the old address is written with the change: it
        # goes out exactly when the address really changed.
        changed = replace(customer, email=new_email, auth_version=customer.auth_version + 1)
        notice = _notice(state, changed, to=old_email, stage="changed", new_email=new_email)
        notices.append(new_mail(state, notice, kind="email_change_notice", customer_id=customer.id))
    try:
        updated = state.storage.change_email(
            customer.id,
            new_email,
            auth_version=checked.payload.auth_version,
            event=AuditEvent(
                customer_id=customer.id,
                action="profile.email_changed",
                occurred_at=utcnow(),
                details={"old_email": old_email, "new_email": new_email},
            ),
            **({"mail": notices} if notices else {}),
        )
    except EmailInUse:
        logger.info("Customer %s confirmed an email address another customer has", customer.id)
        state.storage.record_event(
            AuditEvent(
                customer_id=customer.id,
                action="profile.email_change_refused",
                occurred_at=utcnow(),
                details={"reason": "email_in_use"},
            )
        )
        return render_template("customer_portal/email_change_refused.html", new_email=new_email), 409
    if updated is None:
        # The address changed, or the customer signed out everywhere, since
        # the link was checked a moment ago.
        return _link_problem(LinkProblem.USED)

    now = utcnow()
    # Every session of the customer ends (the auth version moved on, and
    # they are revoked too); this browser gets a fresh one below.
    state.storage.revoke_customer_sessions(customer.id, now)
    signals.email_changed.send(current_app._get_current_object(), customer=updated, old_email=old_email)  # type: ignore[attr-defined]
    if notices:
        dispatch(state, [mail.id for mail in notices])
    else:
        _send_notice(state, updated, to=old_email, stage="changed", new_email=updated.email)
    sign_in(state, updated, method="email_change")
    notify(_("Your email address is now %(email)s.", email=updated.email))
    # Redirect to a URL without the token: it must not stay in the history.
    return redirect(url_for(".profile"), code=303)
