"""Login links asked for on the static login page, through the outbox.

The page writes the same row for every address it is given, a customer's
or not (:func:`login_request`): one insert, so that neither the answer
nor its timing says whether the address is known. The sender composes the
row (:func:`compose_login_link`): for a customer, the one-time link, the
email and the audit event are written in one transaction; for anyone
else the row is deleted and nothing is sent.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from .. import signals
from ..auth import make_link
from ..clock import utcnow
from ..emails import render_message
from ..records import AuditEvent, LinkPurpose, OutboxMail
from ..state import PortalState
from ..urls import external_url
from .queue import new_mail, new_mail_id
from .sender import Composed, register_composer

__all__ = ["LOGIN_REQUEST", "compose_login_link", "login_request"]

#: The kind of a row the static login page writes, before it is composed.
LOGIN_REQUEST = "login_request"


def login_request(state: PortalState, email: str, locale: str) -> OutboxMail:
    """The row for a login link asked for ``email`` from a browser in
    ``locale``: the address and the language only. Worth nothing once a
    link made from it would have expired."""
    now = utcnow()
    return OutboxMail(
        id=new_mail_id(),
        kind=LOGIN_REQUEST,
        to=email,
        subject="",
        text="",
        html="",
        created_at=now,
        expires_at=now + timedelta(seconds=state.config.login_link_max_age),
        composed=False,
        locale=locale,
    )


def compose_login_link(state: PortalState, request: OutboxMail) -> Composed | None:
    """The login email for the customer whose address ``request`` names,
    or ``None`` (no email) for an address that is no customer's."""
    customer = state.storage.find_customer_by_email(request.to)
    if customer is None or customer.is_erased:
        return None
    token, link = make_link(state, LinkPurpose.LOGIN_LINK, customer, max_age=state.config.login_link_max_age)
    url = external_url(state, "login_link", business_id=state.config.business_id, token=token)
    message = render_message(
        state,
        "login_link",
        to=customer.email,
        customer=customer,
        fallback_locale=request.locale,
        link=url,
        expires_at=link.expires_at,
        minutes=state.config.login_link_max_age // 60,
    )
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def announce() -> None:
        signals.login_link_requested.send(app, customer=customer)

    return Composed(
        mail=new_mail(state, message, kind="login_link", customer_id=customer.id, expires_at=link.expires_at),
        link=link,
        events=(AuditEvent(customer_id=customer.id, action="login_link.sent", occurred_at=utcnow()),),
        after=announce,
    )


register_composer(LOGIN_REQUEST, compose_login_link)
