"""Invites: a fresh dynamic link, emailed to the customer by the merchant.

:meth:`CustomerPortal.send_invite <flask_customer_portal.CustomerPortal.send_invite>`
is the merchant's "Share invite" button: it makes a one-time link exactly
as :meth:`~flask_customer_portal.CustomerPortal.create_session` does and
sends it in the ``invite`` email, in the customer's language and with the
merchant's name. Delivery is synchronous, so the caller knows at once
whether the mail server took the message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from flask import current_app

from . import signals
from .auth import PortalSession
from .clock import utcnow
from .deep_links import create_session_link
from .emails import render_message
from .errors import CustomerNotFound
from .mail import MailDeliveryError
from .storage import AuditEvent

if TYPE_CHECKING:
    from .state import PortalState

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
    portal_session = create_session_link(
        state,
        customer.id,
        return_url,
        flow=flow,
        subscription_id=subscription_id,
        actor=actor,
        details=details,
    )
    message = render_message(
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
