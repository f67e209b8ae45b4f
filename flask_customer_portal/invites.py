"""Invites: a fresh dynamic link, emailed to the customer by the merchant.

:meth:`CustomerPortal.send_invite <flask_customer_portal.CustomerPortal.send_invite>`
is the merchant's "Share invite" button: it makes a one-time link exactly
as :meth:`~flask_customer_portal.CustomerPortal.create_session` does and
sends it in the ``invite`` email, in the customer's language and with the
merchant's name. Delivery is synchronous, so the caller knows at once
whether the mail server took the message. With a store that has the mail
outbox, the link and its email are written in one transaction first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from flask import current_app

from . import signals
from .auth import PortalSession
from .clock import utcnow
from .deep_links import create_session_link
from .emails import render_message
from .errors import CustomerNotFound
from .mail import MailDeliveryError, Message
from .outbox import deliver_ids, new_mail, outbox_of
from .storage import AuditEvent, Customer, LinkRecord

if TYPE_CHECKING:
    from .state import PortalState
    from .storage import MailOutboxStore

__all__ = ["send_invite"]

logger = logging.getLogger("flask_customer_portal")


def send_invite(
    state: PortalState,
    customer_id: str,
    *,
    return_url: str | None = None,
    flow: str | None = None,
    subscription_id: str | None = None,
    actor: str = "merchant",
    details: Mapping[str, str] | None = None,
) -> PortalSession:
    """Make a dynamic link for ``customer_id`` and email it to them, in the
    customer's saved language or else ``CUSTOMER_PORTAL_DEFAULT_LOCALE``.

    Raises :class:`~flask_customer_portal.CustomerNotFound` for an unknown id
    and :class:`ValueError` for a ``return_url`` outside the allowed hosts
    or a deep-link ``flow`` that cannot be made
    (both before anything is made or sent), and
    :class:`~flask_customer_portal.mail.MailDeliveryError` when the mail
    transport refuses the message. The link made before a failed delivery
    was never shown to anyone; it expires unused. ``actor`` and ``details``
    go into both audit events (``session_link.created``, ``invite.sent``).
    """
    customer = state.storage.get_customer(customer_id)
    if customer is None:
        raise CustomerNotFound(customer_id)
    if outbox_of(state) is not None:
        return _send_through_outbox(
            state,
            customer,
            return_url=return_url,
            flow=flow,
            subscription_id=subscription_id,
            actor=actor,
            details=details,
        )
    portal_session = create_session_link(
        state,
        customer.id,
        return_url,
        flow=flow,
        subscription_id=subscription_id,
        actor=actor,
        details=details,
    )
    message = _invite_message(state, customer, portal_session)
    try:
        state.mailer.send(message)
    except MailDeliveryError as exc:
        # The transport's text names the server, never the message body.
        logger.error("Could not email a portal invite to customer %s: %s", customer.id, exc)
        raise MailDeliveryError(f"could not email the portal invite to customer {customer.id!r}") from exc
    state.storage.record_event(
        AuditEvent(
            customer_id=customer.id,
            action="invite.sent",
            occurred_at=utcnow(),
            actor=actor,
            details=dict(details or {}),
        )
    )
    signals.invite_sent.send(current_app._get_current_object(), customer=customer, session=portal_session)  # type: ignore[attr-defined]
    return portal_session


def _invite_message(state: PortalState, customer: Customer, portal_session: PortalSession) -> Message:
    return render_message(
        state,
        "invite",
        to=customer.email,
        customer=customer,
        # A customer without a saved language gets the portal's default, not
        # the language of the browser that asked (usually the merchant's).
        fallback_locale=state.config.default_locale,
        link=portal_session.link,
        expires_at=portal_session.expires_at,
    )


def _send_through_outbox(
    state: PortalState,
    customer: Customer,
    *,
    return_url: str | None,
    flow: str | None,
    subscription_id: str | None,
    actor: str,
    details: Mapping[str, str] | None,
) -> PortalSession:
    """The link, its ``session_link.created`` event and the email in one
    transaction, then one attempt at delivery in this thread: the caller
    learns at once whether the mail server took it. A refused invite is
    not retried (the caller was told it failed, and may make another);
    one this process never got to try (it died) is sent by the next sender."""
    queued: list[str] = []

    def save(record: LinkRecord, portal_session: PortalSession, created: AuditEvent) -> None:
        mail = new_mail(
            state,
            _invite_message(state, customer, portal_session),
            kind="invite",
            customer_id=customer.id,
            expires_at=portal_session.expires_at,
        )
        outbox = cast("MailOutboxStore", state.storage)
        outbox.enqueue_mail([mail], link=record, events=[created])
        queued.append(mail.id)

    portal_session = create_session_link(
        state,
        customer.id,
        return_url,
        flow=flow,
        subscription_id=subscription_id,
        actor=actor,
        details=details,
        save=save,
    )
    report = deliver_ids(state, queued, give_up=True)
    if report.failed:
        raise MailDeliveryError(f"could not email the portal invite to customer {customer.id!r}")
    state.storage.record_event(
        AuditEvent(
            customer_id=customer.id,
            action="invite.sent",
            occurred_at=utcnow(),
            actor=actor,
            details=dict(details or {}),
        )
    )
    signals.invite_sent.send(current_app._get_current_object(), customer=customer, session=portal_session)  # type: ignore[attr-defined]
    return portal_session
