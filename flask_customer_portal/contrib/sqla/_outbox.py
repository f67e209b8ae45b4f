"""The mail outbox in the SQLAlchemy store
(:class:`~flask_customer_portal.storage.MailOutboxStore`).

A sender claims a row with one conditional ``UPDATE`` that matches it only
while it is pending, due and not held by a live claim, and writes its
outcome with another that matches only while the row is still its own:
of two senders, the database lets one have the row. On PostgreSQL the
candidates are chosen with ``FOR UPDATE SKIP LOCKED``, so concurrent
senders take different rows instead of queueing behind one another.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select, update

from ...storage import MailCounts, MailStatus
from ._base import FRESH, StoreBase, add_event, rowcount
from .mapping import MAIL_COLUMNS, mail_record, mail_row, values_of
from .models import LinkModel, MailOutboxModel, utc

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session
    from sqlalchemy.sql import ColumnElement

    from ...storage import AuditEvent, LinkRecord, OutboxMail

__all__ = ["OutboxMixin", "add_mail"]

#: The longest error text kept on a row (the column's size).
ERROR_LENGTH = 500


def add_mail(session: Session, mails: Iterable[OutboxMail]) -> None:
    """Write ``mails``, the emails of a change, in the caller's transaction
    (``session``)."""
    session.add_all([mail_row(mail) for mail in mails])


def _link_row(record: LinkRecord) -> LinkModel:
    return LinkModel(
        token_hash=record.token_hash,
        purpose=record.purpose,
        customer_id=record.customer_id,
        created_at=utc(record.created_at, "LinkRecord.created_at"),
        expires_at=utc(record.expires_at, "LinkRecord.expires_at"),
        used_at=None,
    )


def _held_by(mail_id: str, owner: str) -> tuple[ColumnElement[bool], ...]:
    return (
        MailOutboxModel.id == mail_id,
        MailOutboxModel.claimed_by == owner,
        MailOutboxModel.status == MailStatus.PENDING,
    )


class OutboxMixin(StoreBase):
    """Emails written with their change, claimed by one sender at a time."""

    def enqueue_mail(
        self,
        mails: Sequence[OutboxMail],
        *,
        link: LinkRecord | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> None:
        with self._transaction() as session:
            if link is not None:
                session.add(_link_row(link))
            add_mail(session, mails)
            for event in events:
                add_event(session, event)

    def claim_mail(
        self,
        now: datetime,
        *,
        owner: str,
        lease: timedelta,
        limit: int = 1,
        mail_ids: Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> Sequence[OutboxMail]:
        now = utc(now, "now")
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not 1 <= len(owner) <= 64:
            raise ValueError("owner must be 1 to 64 characters")
        due_by = now if due_by is None else utc(due_by, "due_by")
        due = MailOutboxModel.next_attempt_at <= due_by
        if mail_ids is not None:
            # A row named by id that was never tried is the one its writer
            # just handed over: due at once, whatever this host's clock says.
            due = or_(due, MailOutboxModel.attempts == 0)
        claimable = (
            MailOutboxModel.status == MailStatus.PENDING,
            due,
            or_(MailOutboxModel.claimed_until.is_(None), MailOutboxModel.claimed_until <= now),
        )
        candidates = (
            select(MailOutboxModel.id)
            .where(*claimable)
            .order_by(MailOutboxModel.next_attempt_at, MailOutboxModel.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if mail_ids is not None:
            if not mail_ids:
                return ()
            candidates = candidates.where(MailOutboxModel.id.in_(list(mail_ids)))
        claimed: list[str] = []
        with self._transaction() as session:
            for mail_id in session.scalars(candidates).all():
                # Decided here, not by the read above: on SQLite (no row
                # locks) or after a concurrent commit on PostgreSQL the row
                # may be someone else's by now, and then this matches nothing.
                taken = session.execute(
                    update(MailOutboxModel)
                    .where(MailOutboxModel.id == mail_id, *claimable)
                    .values(
                        claimed_by=owner,
                        claimed_until=now + lease,
                        attempts=MailOutboxModel.attempts + 1,
                    )
                    .execution_options(synchronize_session=False)
                )
                if rowcount(taken) == 1:
                    claimed.append(mail_id)
            if not claimed:
                return ()
            rows = session.scalars(
                select(MailOutboxModel)
                .where(MailOutboxModel.id.in_(claimed))
                .order_by(MailOutboxModel.next_attempt_at, MailOutboxModel.id)
                .execution_options(**FRESH)
            ).all()
            return tuple(mail_record(values_of(row, MAIL_COLUMNS)) for row in rows)

    def compose_mail(
        self,
        mail: OutboxMail,
        *,
        owner: str,
        link: LinkRecord | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        with self._transaction() as session:
            composed = session.execute(
                update(MailOutboxModel)
                .where(*_held_by(mail.id, owner), MailOutboxModel.composed.is_(False))
                .values(
                    kind=mail.kind,
                    customer_id=mail.customer_id,
                    to=mail.to,
                    subject=mail.subject,
                    text=mail.text,
                    html=mail.html,
                    headers=dict(mail.headers),
                    expires_at=mail.expires_at,
                    composed=True,
                )
                .execution_options(synchronize_session=False)
            )
            if rowcount(composed) != 1:
                session.rollback()
                return False
            if link is not None:
                session.add(_link_row(link))
            for event in events:
                add_event(session, event)
        return True

    def discard_mail(self, mail_id: str, *, owner: str) -> bool:
        with self._transaction() as session:
            result = session.execute(
                delete(MailOutboxModel)
                .where(*_held_by(mail_id, owner))
                .execution_options(synchronize_session=False)
            )
        return rowcount(result) == 1

    def release_mail(
        self,
        mail_id: str,
        *,
        owner: str,
        now: datetime,
        status: MailStatus,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        now = utc(now, "now")
        status = MailStatus(status)
        values: dict[str, object] = {"claimed_by": None, "claimed_until": None}
        if status is MailStatus.SENT:
            # The bodies may carry a sign-in link: a sent row keeps what it
            # was (kind, address, subject, Message-ID), not what it said.
            values.update(status=status, sent_at=now, text="", html="", last_error=None)
        elif status is MailStatus.FAILED:
            values.update(status=status, text="", html="", last_error=(error or "")[:ERROR_LENGTH] or None)
        else:
            values.update(
                next_attempt_at=utc(next_attempt_at or now, "next_attempt_at"),
                last_error=(error or "")[:ERROR_LENGTH] or None,
            )
        with self._transaction() as session:
            result = session.execute(
                update(MailOutboxModel)
                .where(*_held_by(mail_id, owner))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return rowcount(result) == 1

    def mail_counts(self, now: datetime) -> MailCounts:
        now = utc(now, "now")
        session = self._session
        by_status = dict(
            session.execute(
                select(MailOutboxModel.status, func.count()).group_by(MailOutboxModel.status)
            ).all()
        )
        due, oldest = session.execute(
            select(func.count(), func.min(MailOutboxModel.next_attempt_at)).where(
                MailOutboxModel.status == MailStatus.PENDING,
                MailOutboxModel.next_attempt_at <= now,
                or_(MailOutboxModel.claimed_until.is_(None), MailOutboxModel.claimed_until <= now),
            )
        ).one()
        return MailCounts(
            pending=int(by_status.get(MailStatus.PENDING, 0)),
            due=int(due or 0),
            failed=int(by_status.get(MailStatus.FAILED, 0)),
            sent=int(by_status.get(MailStatus.SENT, 0)),
            oldest_due_at=oldest,
        )

    def list_mail(self, *, status: MailStatus, limit: int = 50) -> Sequence[OutboxMail]:
        rows = self._session.scalars(
            select(MailOutboxModel)
            .where(MailOutboxModel.status == MailStatus(status))
            .order_by(MailOutboxModel.created_at.desc(), MailOutboxModel.id)
            .limit(limit)
            .execution_options(**FRESH)
        ).all()
        return tuple(mail_record(values_of(row, MAIL_COLUMNS)) for row in rows)
