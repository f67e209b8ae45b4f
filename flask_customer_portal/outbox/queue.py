"""Putting emails in the outbox, and having them delivered after commit.

An email is a row written in the transaction of the change that causes it
(:meth:`~flask_customer_portal.storage.MailOutboxStore.enqueue_mail`, or a
lock's :meth:`~flask_customer_portal.storage.MailQueue.enqueue_mail`).
Once that transaction is committed, :func:`dispatch` asks for delivery:
the merchant's dispatcher gets the row ids (a task queue), or the
portal's worker thread delivers them at once (``CUSTOMER_PORTAL_MAIL_IN_PROCESS``),
or a sender (``flask portal send-mail`` / ``worker``) finds them due.
Whatever happens to this process, the rows stay until one of them has.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime

from flask import current_app, has_request_context

from ..clock import utcnow
from ..mail import Message, _domain_of
from ..records import AuditEvent, LinkRecord, OutboxMail
from ..state import PortalState
from ..storage import MailQueue
from .sender import ATTACHMENT_HEADER, deliver_ids, outbox_of

__all__ = ["MailBatch", "dispatch", "new_mail", "new_mail_id", "outbox_of", "queue_mail"]

logger = logging.getLogger("flask_customer_portal.mail")


def new_mail(
    state: PortalState,
    message: Message,
    *,
    kind: str,
    customer_id: str | None,
    expires_at: datetime | None = None,
    attachment: str | None = None,
) -> OutboxMail:
    """An outbox row for ``message``, with an id and a ``Message-ID`` of its
    own that every attempt to send it uses. ``attachment`` names a file made
    when the row is sent (``"<kind>:<id>"``, see
    :func:`~.sender.register_attachment`), so the row stays small."""
    mail_id = new_mail_id()
    sender = message.sender or _default_sender(state)
    headers = {"Message-ID": f"<{mail_id}@{_domain_of(sender)}>"}
    if attachment is not None:
        headers[ATTACHMENT_HEADER] = attachment
    return OutboxMail(
        id=mail_id,
        kind=kind,
        to=message.to,
        subject=message.subject,
        text=message.text,
        html=message.html,
        created_at=utcnow(),
        customer_id=customer_id,
        headers=headers,
        expires_at=expires_at,
    )


def new_mail_id() -> str:
    """A new outbox row id (random: it is in the ``Message-ID`` header)."""
    return f"mail_{secrets.token_hex(16)}"


def _default_sender(state: PortalState) -> str:
    return str(getattr(state.mailer, "default_sender", None) or "no-reply@localhost")


def queue_mail(
    state: PortalState,
    mails: Sequence[OutboxMail],
    *,
    link: LinkRecord | None = None,
    events: Sequence[AuditEvent] = (),
) -> None:
    """Write ``mails`` (with the ``link`` they carry and ``events``) in one
    transaction of the store's own, then :func:`dispatch` them."""
    outbox = outbox_of(state)
    if outbox is None:
        raise RuntimeError("the portal's store has no mail outbox")
    outbox.enqueue_mail(mails, link=link, events=events)
    dispatch(state, [mail.id for mail in mails])


def dispatch(state: PortalState, mail_ids: Sequence[str]) -> None:
    """Ask for delivery of committed rows: the merchant's dispatcher, else
    the portal's worker thread inside a request (elsewhere, now), unless
    in-process delivery is off. A failure here loses nothing: the rows
    stay due for the next sender."""
    if not mail_ids:
        return
    settings = state.config.mail
    dispatcher = state.hooks.mail_dispatcher or settings.dispatcher
    if dispatcher is not None:
        for mail_id in mail_ids:
            try:
                dispatcher(mail_id)
            except Exception:
                logger.exception(
                    "The mail dispatcher failed; outbox row %s waits for the next sender", mail_id
                )
        return
    if not settings.in_process:
        return
    ids = tuple(mail_ids)
    if has_request_context():
        app = current_app._get_current_object()  # type: ignore[attr-defined]

        def deliver() -> None:
            deliver_ids(state, ids)

        state.run_in_background(app, deliver)
    else:
        deliver_ids(state, ids)


class MailBatch:
    """The emails of one locked change: written through the lock (in its
    transaction) when it can take them, and dispatched by :meth:`committed`
    once the lock's block has ended normally. A block that raised never
    reaches :meth:`committed`, and its emails were rolled back with it.

    ::

        batch = MailBatch(state)
        with state.storage.lock_subscription(customer.id, subscription_id) as lock:
            batch.write_through(lock)
            ...
            send_email(state, "subscription_reactivated", customer, batch=batch, ...)
        batch.committed()
    """

    def __init__(self, state: PortalState) -> None:
        self._state = state
        self._queue: MailQueue | None = None
        self._written: list[str] = []
        self._after: list[OutboxMail] = []

    def write_through(self, lock: object) -> None:
        """Write the batch's emails through ``lock`` when it has
        :meth:`~flask_customer_portal.storage.MailQueue.enqueue_mail`;
        else they are written right after its block ends."""
        self._queue = lock if isinstance(lock, MailQueue) else None

    def add(self, mail: OutboxMail) -> None:
        if self._queue is not None:
            self._queue.enqueue_mail(mail)
            self._written.append(mail.id)
        else:
            self._after.append(mail)

    def committed(self) -> None:
        """The lock's transaction is committed: write what the lock could
        not take, and dispatch everything."""
        written, after = self._written, self._after
        self._written, self._after = [], []
        if after:
            outbox = outbox_of(self._state)
            if outbox is not None:
                outbox.enqueue_mail(after)
                written += [mail.id for mail in after]
        dispatch(self._state, written)
