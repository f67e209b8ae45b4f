"""After a change is saved: tell the merchant (a signal) and the customer
(an email), in one place.

Emails are rendered at once, in the customer's language, and put in the
mail outbox (:mod:`flask_customer_portal.outbox`): through the lock of a
locked change, in that change's transaction (``batch``, a
:class:`~flask_customer_portal.outbox.MailBatch`); given to the store call
that makes a change (its ``mail`` argument, :func:`email_with_change`), in
that call's transaction; else in a transaction of their own right after
the change. They are delivered after commit, with
retries: a slow or failing mail server never undoes or delays a change
that already stands. A store without an outbox sends them once, from this
process, as before (a failure is logged)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from blinker import Signal
from flask import current_app, has_request_context

from ..auth import PortalSession, issue_session_link
from ..emails import render_message
from ..mail import MailDeliveryError
from ..outbox import MailBatch, dispatch, new_mail, outbox_of, queue_mail
from ..outbox.sender import make_attachments
from ..state import PortalState
from ..storage import AuditEvent, Customer, LinkRecord, OutboxMail, Subscription
from ..urls import external_url

__all__ = [
    "MailBatch",
    "announce",
    "email_with_change",
    "send_email",
    "send_email_with_link",
    "subscription_link",
]

logger = logging.getLogger("flask_customer_portal")


def subscription_link(state: PortalState, subscription: Subscription) -> str:
    """The subscription's page, as an absolute link for emails."""
    return external_url(state, "subscription", subscription_id=subscription.id)


def send_email(
    state: PortalState,
    name: str,
    customer: Customer,
    *,
    batch: MailBatch | None = None,
    attachment: str | None = None,
    **context: Any,
) -> None:
    """Render the email ``name`` for ``customer`` now and put it in the
    outbox: in ``batch`` (a locked change's transaction) when given, else
    at once in a transaction of its own. ``attachment`` names a file made
    when it is sent (see :func:`~flask_customer_portal.outbox.sender.register_attachment`)."""
    message = render_message(state, name, to=customer.email, customer=customer, **context)
    if outbox_of(state) is None:
        if attachment is not None:
            message = replace(message, attachments=make_attachments(state, attachment, customer.id))
        _send_without_outbox(state, name, customer, message)
        return
    mail = new_mail(state, message, kind=name, customer_id=customer.id, attachment=attachment)
    if batch is not None:
        batch.add(mail)
    else:
        queue_mail(state, [mail])


def email_with_change(state: PortalState, name: str, customer: Customer, **context: Any) -> list[OutboxMail]:
    """The email ``name`` for ``customer``, rendered now, as outbox rows for
    the ``mail`` argument of the store call that makes the change, so they
    are written in its transaction or not at all; :func:`announce` (its
    ``written``) dispatches them once the call returned. Empty for a store
    without an outbox: then :func:`announce` sends the email after the
    change, rendered from the store's answer."""
    if outbox_of(state) is None:
        return []
    message = render_message(state, name, to=customer.email, customer=customer, **context)
    return [new_mail(state, message, kind=name, customer_id=customer.id)]


def send_email_with_link(state: PortalState, name: str, customer: Customer, **context: Any) -> None:
    """Email ``name`` to ``customer`` with a fresh one-time portal link
    (``link`` in the email's context): the link, its
    ``session_link.created`` event and the email are written in one
    transaction, so the email never carries a link that was not saved,
    and a saved link is never left without its email."""
    outbox = outbox_of(state)
    if outbox is None:
        send_email(state, name, customer, link=issue_session_link(state, customer, None).link, **context)
        return
    queued: list[str] = []

    def save(record: LinkRecord, portal_session: PortalSession, created: AuditEvent) -> None:
        message = render_message(
            state, name, to=customer.email, customer=customer, link=portal_session.link, **context
        )
        expires_at = portal_session.expires_at
        mail = new_mail(state, message, kind=name, customer_id=customer.id, expires_at=expires_at)
        outbox.enqueue_mail([mail], link=record, events=[created])
        queued.append(mail.id)

    issue_session_link(state, customer, None, save=save)
    dispatch(state, queued)


def _send_without_outbox(state: PortalState, name: str, customer: Customer, message: Any) -> None:
    def deliver() -> None:
        try:
            state.mailer.send(message)
        except MailDeliveryError as exc:
            logger.error("Could not send the %s email to customer %s: %s", name, customer.id, exc)

    run_after_response(state, deliver)


def run_after_response(state: PortalState, func: Callable[[], None]) -> None:
    """Inside a request, on the worker thread; elsewhere (CLI), now."""
    if has_request_context():
        state.run_in_background(current_app._get_current_object(), func)  # type: ignore[attr-defined]
    else:
        func()


def announce(
    state: PortalState,
    signal: Signal,
    customer: Customer,
    *,
    email: str | None = None,
    email_context: dict[str, Any] | None = None,
    written: Sequence[OutboxMail] = (),
    **signal_kwargs: Any,
) -> None:
    """Send ``signal`` (with ``customer`` and ``signal_kwargs``), then the
    email ``email`` (with ``email_context``), once the change is saved;
    when the change wrote its emails itself (``written``, from
    :func:`email_with_change`), they are dispatched instead."""
    signal.send(current_app._get_current_object(), customer=customer, **signal_kwargs)  # type: ignore[attr-defined]
    if written:
        dispatch(state, [mail.id for mail in written])
    elif email is not None:
        send_email(state, email, customer, **(email_context or {}))
