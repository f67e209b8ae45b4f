"""Delivering the outbox: claim a row, send it through the portal's mail
transport, record what came of it.

A row is claimed with a lease (``CUSTOMER_PORTAL_MAIL_LEASE``): the
database gives it to one sender, which counts one more attempt on it.
Its outcome is written only while that sender still holds it. The
transport's answer decides the outcome:

* accepted: ``sent`` (the bodies are cleared: they may hold a sign-in link);
* refused for good (an SMTP 5xx to the recipient or the content,
  :attr:`~flask_customer_portal.mail.MailDeliveryError.permanent`):
  ``failed`` at once;
* anything else (the server down, a timeout, a 4xx): ``pending`` again,
  due after an exponential backoff with jitter, until
  ``CUSTOMER_PORTAL_MAIL_MAX_ATTEMPTS`` attempts were made: then ``failed``.

A ``failed`` row stays in the table and the
:data:`~flask_customer_portal.signals.mail_failed` signal is sent.

Exactly once, and its one gap: a row is sent only by the sender that holds
it, and the lease is at least twice the mail server's timeout, so a sender
still waiting for the server is never overtaken. A process that dies after
the server accepted a message but before ``sent`` was written leaves the
row claimed; when the lease ends another sender sends it again, with the
same ``Message-ID`` header, which mail clients and many servers use to
show one message. No sender can do better without the mail server's help:
SMTP has no way to ask whether a message was already taken.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from flask import current_app

from .. import signals
from ..clock import utcnow
from ..log_redaction import redact_link_tokens
from ..mail import Attachment, MailDeliveryError, Message
from ..mail_settings import BACKOFF_CAP, MailSettings
from ..records import AuditEvent, LinkRecord, MailStatus, OutboxMail
from ..state import PortalState, get_state
from ..storage import MailOutboxStore

__all__ = [
    "ATTACHMENT_HEADER",
    "AttachmentMaker",
    "Composed",
    "SendReport",
    "backoff",
    "deliver_due",
    "deliver_ids",
    "deliver_mail",
    "make_attachments",
    "outbox_of",
    "register_attachment",
    "sender_id",
]

logger = logging.getLogger("flask_customer_portal.mail")


@dataclass(frozen=True, slots=True)
class Composed:
    """What a composer made of a request row: the row's message, with the
    link it carries and the audit events to write with it."""

    mail: OutboxMail
    link: LinkRecord | None = None
    events: tuple[AuditEvent, ...] = ()
    after: Callable[[], None] | None = None
    """Run once the message is written (a signal)."""


#: Makes the message of a request row (``composed`` false) by its kind;
#: ``None``: no email is owed (the row is deleted).
Composer = Callable[[PortalState, OutboxMail], Composed | None]

_COMPOSERS: dict[str, Composer] = {}


def register_composer(kind: str, composer: Composer) -> None:
    _COMPOSERS[kind] = composer


#: The row header that names a file to attach when the row is sent
#: (``"<kind>:<id>"``, e.g. ``"invoice_pdf:inv_1"``): a row holds the
#: reference, never the file. The sender reads it and never sends it.
ATTACHMENT_HEADER = "X-Customer-Portal-Attachment"

#: Makes the file a row names (its kind's part after the colon, the row):
#: ``None`` when there is nothing to attach any more.
AttachmentMaker = Callable[[PortalState, str, OutboxMail], Attachment | None]

_ATTACHMENTS: dict[str, AttachmentMaker] = {}


def register_attachment(kind: str, maker: AttachmentMaker) -> None:
    """Have ``maker(state, key, row)`` make the file of rows that name
    ``"<kind>:<key>"`` (an :class:`~flask_customer_portal.mail.Attachment`,
    or ``None`` for none), when each is sent."""
    _ATTACHMENTS[kind] = maker


def _attachments(state: PortalState, mail: OutboxMail) -> tuple[Attachment, ...]:
    """The files the row names, made now. A kind nobody registered raises:
    the row is retried rather than sent without what it promised."""
    reference = mail.headers.get(ATTACHMENT_HEADER)
    if not reference:
        return ()
    kind, _colon, key = reference.partition(":")
    maker = _ATTACHMENTS.get(kind)
    if maker is None:
        raise LookupError(f"no maker for attachments of kind {kind!r}")
    made = maker(state, key, mail)
    return () if made is None else (made,)


def make_attachments(state: PortalState, reference: str, customer_id: str) -> tuple[Attachment, ...]:
    """The files ``reference`` names, made now, for a message sent without
    the outbox (a store that has none)."""
    row = OutboxMail(
        id="-",
        kind="-",
        to="",
        subject="",
        text="",
        html="",
        created_at=utcnow(),
        customer_id=customer_id,
        headers={ATTACHMENT_HEADER: reference},
    )
    return _attachments(state, row)


@dataclass(slots=True)
class SendReport:
    """What one run of :func:`deliver_due` did, by outcome."""

    sent: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """Rows whose claim another sender took over before the outcome was written."""

    @property
    def attempted(self) -> int:
        return len(self.sent) + len(self.retried) + len(self.failed) + len(self.lost)

    def summary(self) -> str:
        return (
            f"{len(self.sent)} sent, {len(self.retried)} to retry, {len(self.failed)} failed"
            + (f", {len(self.discarded)} not needed" if self.discarded else "")
            + (f", {len(self.lost)} taken over by another sender" if self.lost else "")
        )


def sender_id() -> str:
    """This sender's name on the rows it claims: host, process, and a
    random part (two senders in one process are two owners)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def backoff(attempts: int, settings: MailSettings) -> timedelta:
    """The wait after ``attempts`` failed attempts: the base doubled for each
    attempt after the first, at most :data:`BACKOFF_CAP`, then between half
    of it and all of it at random, so that senders that failed together do
    not all come back at once."""
    ceiling = min(BACKOFF_CAP, settings.backoff_base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=ceiling * (0.5 + secrets.randbelow(1001) / 2000))


def deliver_due(
    state: PortalState, *, limit: int | None = None, owner: str | None = None, now: datetime | None = None
) -> SendReport:
    """Deliver every row that is due, one claim at a time, until none is
    left (or ``limit`` were attempted). Rows that fail again are due later
    and wait for the next run."""
    outbox = _require_outbox(state)
    owner = owner or sender_id()
    report = SendReport()
    # Rows due when the run started: one that fails now is due later, and
    # is left for the next run even with a very short backoff.
    started = now or utcnow()
    lease = timedelta(seconds=state.config.mail.lease)
    while limit is None or report.attempted + len(report.discarded) < limit:
        # Each claim's lease counts from when it is made.
        claimed = outbox.claim_mail(now or utcnow(), owner=owner, lease=lease, due_by=started)
        if not claimed:
            break
        _deliver(state, outbox, claimed[0], owner, report, now)
    return report


def deliver_ids(
    state: PortalState, mail_ids: Sequence[str], *, owner: str | None = None, give_up: bool = False
) -> SendReport:
    """Deliver the rows ``mail_ids`` if they are due and free (the rows this
    process just wrote); the others are left to whoever has them. With
    ``give_up``, a row that cannot be sent now is ``failed`` at once (its
    caller reports the failure instead)."""
    outbox = _require_outbox(state)
    owner = owner or sender_id()
    report = SendReport()
    lease = timedelta(seconds=state.config.mail.lease)
    for mail_id in mail_ids:
        for mail in outbox.claim_mail(utcnow(), owner=owner, lease=lease, mail_ids=[mail_id]):
            _deliver(state, outbox, mail, owner, report, None, give_up=give_up)
    return report


def deliver_mail(mail_id: str) -> bool:
    """Deliver one outbox row now, in the current app's context: what a
    merchant's task (Celery, RQ, Dramatiq) calls with the id its
    dispatcher was given. ``True`` if it was sent; ``False`` if it failed
    (it is then due again later, or failed for good) or was not due or
    was another sender's."""
    report = deliver_ids(get_state(), [mail_id])
    return mail_id in report.sent


def outbox_of(state: PortalState) -> MailOutboxStore | None:
    """The store's outbox, or ``None`` for a store without one (mail then
    goes out as it did before the outbox: once, from this process)."""
    if not state.capabilities.mail_outbox:
        return None
    return state.storage


def _require_outbox(state: PortalState) -> MailOutboxStore:
    outbox = outbox_of(state)
    if outbox is None:
        raise RuntimeError("the portal's store has no mail outbox (MailOutboxStore); nothing to deliver")
    return outbox


def _error_text(exc: BaseException) -> str:
    """What is kept of a failure: the transport's own text for a
    :class:`MailDeliveryError` (it names the server, never the message),
    only the class of anything else, and never a link's token."""
    text = str(exc) if isinstance(exc, MailDeliveryError) else f"{type(exc).__name__} from the mail transport"
    return redact_link_tokens(text)[:500]


def _deliver(
    state: PortalState,
    outbox: MailOutboxStore,
    mail: OutboxMail,
    owner: str,
    report: SendReport,
    now: datetime | None,
    *,
    give_up: bool = False,
) -> None:
    settings = state.config.mail
    started = now or utcnow()
    if mail.expires_at is not None and mail.expires_at <= started:
        if not mail.composed:
            if outbox.discard_mail(mail.id, owner=owner):
                report.discarded.append(mail.id)
            return
        _give_up(state, outbox, mail, owner, report, started, "expired before it could be sent")
        return
    if not mail.composed:
        composed = _compose(state, outbox, mail, owner, report)
        if composed is None:
            return
        mail = composed
    if mail.attempts > settings.max_attempts:
        # Claimed more often than allowed: the senders that had it died
        # (a message that crashes its sender must not be retried forever).
        _give_up(state, outbox, mail, owner, report, started, "no attempts left")
        return
    try:
        message = Message(
            to=mail.to,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            message_id=mail.message_id,
            attachments=_attachments(state, mail),
        )
        state.mailer.send(message)
    except Exception as exc:
        error = _error_text(exc)
        finished = now or utcnow()
        permanent = isinstance(exc, MailDeliveryError) and exc.permanent
        if give_up or permanent or mail.attempts >= settings.max_attempts:
            _give_up(state, outbox, mail, owner, report, finished, error)
            return
        retry_at = finished + backoff(mail.attempts, settings)
        if outbox.release_mail(
            mail.id,
            owner=owner,
            now=finished,
            status=MailStatus.PENDING,
            error=error,
            next_attempt_at=retry_at,
        ):
            report.retried.append(mail.id)
            logger.warning(
                "Could not send the %s email to customer %s (outbox row %s, attempt %d of %d): %s; "
                "next attempt after %s",
                mail.kind,
                mail.customer_id or "-",
                mail.id,
                mail.attempts,
                settings.max_attempts,
                error,
                retry_at.isoformat(timespec="seconds"),
            )
        else:
            report.lost.append(mail.id)
        return
    if outbox.release_mail(mail.id, owner=owner, now=now or utcnow(), status=MailStatus.SENT):
        report.sent.append(mail.id)
    else:
        report.lost.append(mail.id)
        logger.error(
            "Outbox row %s was sent, but its claim had passed to another sender before that was recorded; "
            "it may be sent again (with the same Message-ID). CUSTOMER_PORTAL_MAIL_LEASE is too short.",
            mail.id,
        )


def _compose(
    state: PortalState, outbox: MailOutboxStore, mail: OutboxMail, owner: str, report: SendReport
) -> OutboxMail | None:
    composer = _COMPOSERS.get(mail.kind)
    made = None if composer is None else composer(state, mail)
    if made is None:
        if composer is None:
            logger.error(
                "No composer for outbox requests of kind %r (row %s); it is dropped", mail.kind, mail.id
            )
        if outbox.discard_mail(mail.id, owner=owner):
            report.discarded.append(mail.id)
        return None
    composed = replace(made.mail, id=mail.id, attempts=mail.attempts, composed=True)
    if not outbox.compose_mail(composed, owner=owner, link=made.link, events=made.events):
        report.lost.append(mail.id)
        return None
    if made.after is not None:
        made.after()
    return composed


def _give_up(
    state: PortalState,
    outbox: MailOutboxStore,
    mail: OutboxMail,
    owner: str,
    report: SendReport,
    now: datetime,
    error: str,
) -> None:
    if not outbox.release_mail(mail.id, owner=owner, now=now, status=MailStatus.FAILED, error=error):
        report.lost.append(mail.id)
        return
    report.failed.append(mail.id)
    logger.error(
        "Gave up on the %s email to customer %s (outbox row %s) after %d attempts: %s",
        mail.kind,
        mail.customer_id or "-",
        mail.id,
        mail.attempts,
        error,
    )
    failed = replace(mail, status=MailStatus.FAILED, last_error=error, text="", html="", claimed_by=None)
    signals.mail_failed.send(current_app._get_current_object(), mail=failed, error=error)  # type: ignore[attr-defined]
