"""Sign-in links, portal sessions, the audit log and webhook events in the
SQLAlchemy store (:class:`~flask_customer_portal.storage.AccessStore`)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Update, delete, func, select, update

from ...storage import Page, WebhookClaim
from . import housekeeping
from ._base import FRESH, StoreBase, add_event, insert_if_absent, rowcount
from ._outbox import add_mail
from .mapping import (
    AUDIT_EVENT_COLUMNS,
    LINK_COLUMNS,
    SESSION_COLUMNS,
    audit_event_record,
    audit_row,
    customer_record,
    link_record,
    portal_session_row,
    session_record,
    values_of,
)
from .models import (
    REFERENCE_LENGTH,
    AuditEventModel,
    CustomerModel,
    LinkModel,
    PortalSessionModel,
    WebhookEventModel,
    metadata,
    utc,
    utc_or_none,
)
from .queries import LIST_CUSTOMER_SESSIONS, SESSION_WITH_CUSTOMER, portal_sessions, session_columns

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from ...storage import (
        AuditEvent,
        Customer,
        LinkPurpose,
        LinkRecord,
        LinkUse,
        OutboxMail,
        PortalSessionRecord,
        PruneReport,
    )

__all__ = ["AccessMixin"]


def _use_link(token_hash: str, purpose: LinkPurpose, customer_id: str, now: datetime) -> Update:
    """The conditional ``UPDATE`` that uses a link up: it matches the row
    only while the link is unused, unexpired, of this purpose and customer."""
    return (
        update(LinkModel)
        .where(
            LinkModel.token_hash == token_hash,
            LinkModel.purpose == purpose,
            LinkModel.customer_id == customer_id,
            LinkModel.used_at.is_(None),
            LinkModel.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )


def _revoke_session(session_id: str, now: datetime) -> Update:
    """End one session; a revoked one keeps its first ``revoked_at``."""
    return (
        update(PortalSessionModel)
        .where(PortalSessionModel.id == session_id, PortalSessionModel.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


class AccessMixin(StoreBase):
    """Who may sign in and how: one-time links, sessions, the audit log,
    webhook events handled once, and pruning what expired."""

    # -- one-time links --------------------------------------------------------

    def create_link(self, record: LinkRecord) -> None:
        row = LinkModel(
            token_hash=record.token_hash,
            purpose=record.purpose,
            customer_id=record.customer_id,
            created_at=utc(record.created_at, "LinkRecord.created_at"),
            expires_at=utc(record.expires_at, "LinkRecord.expires_at"),
            used_at=utc_or_none(record.used_at, "LinkRecord.used_at"),
        )
        with self._transaction() as session:
            session.add(row)

    def consume_link(self, token_hash: str, purpose: LinkPurpose, customer_id: str, now: datetime) -> bool:
        """Use the link up with one conditional ``UPDATE``.

        The database decides who wins: of concurrent callers, only the one
        whose ``UPDATE`` matched the still-unused row gets ``True``.
        """
        now = utc(now, "now")
        with self._transaction() as session:
            result = session.execute(_use_link(token_hash, purpose, customer_id, now))
        return rowcount(result) == 1

    def get_link(self, token_hash: str) -> LinkRecord | None:
        row = self._session.get(LinkModel, token_hash, populate_existing=True)
        return None if row is None else link_record(values_of(row, LINK_COLUMNS))

    # -- portal sessions -------------------------------------------------------

    def create_portal_session(self, record: PortalSessionRecord) -> None:
        with self._transaction() as session:
            session.add(portal_session_row(record))

    def start_portal_session(
        self,
        record: PortalSessionRecord,
        *,
        link: LinkUse | None = None,
        replaces: str | None = None,
        event: AuditEvent | None = None,
    ) -> bool:
        """One transaction, one commit: the link's conditional ``UPDATE``
        first (the database decides who wins, as in :meth:`consume_link`),
        and nothing else is written when it matches no row."""
        row = portal_session_row(record)
        with self._transaction() as session:
            if link is not None:
                used = session.execute(
                    _use_link(link.token_hash, link.purpose, record.customer_id, row.created_at)
                )
                if rowcount(used) != 1:
                    session.rollback()
                    return False
            if replaces is not None:
                session.execute(_revoke_session(replaces, row.created_at))
            session.add(row)
            add_event(session, event)
        return True

    def get_portal_session(self, session_id: str) -> PortalSessionRecord | None:
        row = self._session.get(PortalSessionModel, session_id, populate_existing=True)
        return None if row is None else session_record(values_of(row, SESSION_COLUMNS))

    def get_session_with_customer(self, session_id: str) -> tuple[PortalSessionRecord, Customer] | None:
        """One query: the session joined to its customer."""
        row = self._session.execute(SESSION_WITH_CUSTOMER, {"session_id": session_id}).one_or_none()
        if row is None:
            return None
        columns = len(SESSION_COLUMNS)
        return session_record(row[:columns]), customer_record(row[columns:])

    def touch_portal_session(self, session_id: str, now: datetime) -> None:
        """Move ``last_seen_at`` forward; revoked sessions stay as they ended."""
        now = utc(now, "now")
        with self._transaction() as session:
            session.execute(
                update(PortalSessionModel)
                .where(
                    PortalSessionModel.id == session_id,
                    PortalSessionModel.revoked_at.is_(None),
                    PortalSessionModel.last_seen_at < now,
                )
                .values(last_seen_at=now)
                .execution_options(synchronize_session=False)
            )

    def revoke_portal_session(self, session_id: str, now: datetime) -> None:
        """End the session; revoking it again keeps the first ``revoked_at``."""
        now = utc(now, "now")
        with self._transaction() as session:
            session.execute(_revoke_session(session_id, now))

    def revoke_customer_sessions(self, customer_id: str, now: datetime) -> int:
        now = utc(now, "now")
        with self._transaction() as session:
            result = session.execute(
                update(PortalSessionModel)
                .where(
                    PortalSessionModel.customer_id == customer_id,
                    PortalSessionModel.revoked_at.is_(None),
                )
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
        return rowcount(result)

    def sign_out_everywhere(self, customer_id: str, now: datetime, *, event: AuditEvent | None = None) -> int:
        now = utc(now, "now")
        with self._transaction() as session:
            session.execute(
                update(CustomerModel)
                .where(CustomerModel.id == customer_id)
                .values(auth_version=CustomerModel.auth_version + 1)
                .execution_options(synchronize_session=False)
            )
            result = session.execute(
                update(PortalSessionModel)
                .where(
                    PortalSessionModel.customer_id == customer_id,
                    PortalSessionModel.revoked_at.is_(None),
                )
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
            add_event(session, event)
        return rowcount(result)

    def list_customer_sessions(
        self, customer_id: str, now: datetime, *, idle_timeout: timedelta, max_age: timedelta
    ) -> Sequence[PortalSessionRecord]:
        """One query; the customer join checks ``auth_version``."""
        now = utc(now, "now")
        rows = self._session.execute(
            LIST_CUSTOMER_SESSIONS,
            {"customer_id": customer_id, "seen_since": now - idle_timeout, "created_since": now - max_age},
        ).all()
        return tuple(session_record(row) for row in rows)

    def revoke_customer_session(
        self, customer_id: str, public_id: str, now: datetime, *, event: AuditEvent | None = None
    ) -> PortalSessionRecord | None:
        now = utc(now, "now")
        with self._transaction() as session:
            result = session.execute(
                update(PortalSessionModel)
                .where(
                    PortalSessionModel.customer_id == customer_id,
                    PortalSessionModel.public_id == public_id,
                    PortalSessionModel.revoked_at.is_(None),
                )
                .values(revoked_at=now)
                .execution_options(synchronize_session=False)
            )
            if rowcount(result) != 1:
                return None
            row = session.execute(
                select(*session_columns).where(
                    portal_sessions.c.customer_id == customer_id, portal_sessions.c.public_id == public_id
                )
            ).one()
            add_event(session, event)
        return session_record(row)

    # -- the audit log ---------------------------------------------------------

    def record_event(self, event: AuditEvent) -> None:
        with self._transaction() as session:
            session.add(audit_row(event))

    def list_events(self, customer_id: str) -> Sequence[AuditEvent]:
        """The customer's audit log, oldest first (for support and tests)."""
        rows = self._session.scalars(
            select(AuditEventModel)
            .where(AuditEventModel.customer_id == customer_id)
            .order_by(AuditEventModel.occurred_at, AuditEventModel.id)
            .execution_options(**FRESH)
        ).all()
        return tuple(audit_event_record(values_of(r, AUDIT_EVENT_COLUMNS)) for r in rows)

    def list_customer_events(self, customer_id: str, *, page: int, per_page: int) -> Page[AuditEvent]:
        """One page of the audit log in two queries (count + page)."""
        if page < 1:
            raise ValueError(f"page must be 1 or more, got {page}")
        if per_page < 1:
            raise ValueError(f"per_page must be 1 or more, got {per_page}")
        session = self._session
        total = session.scalar(
            select(func.count())
            .select_from(AuditEventModel)
            .where(AuditEventModel.customer_id == customer_id)
        )
        rows = session.scalars(
            select(AuditEventModel)
            .where(AuditEventModel.customer_id == customer_id)
            .order_by(AuditEventModel.occurred_at.desc(), AuditEventModel.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
            .execution_options(**FRESH)
        ).all()
        return Page(
            items=tuple(audit_event_record(values_of(r, AUDIT_EVENT_COLUMNS)) for r in rows),
            page=page,
            per_page=per_page,
            total=total or 0,
        )

    # -- webhook events, handled once ------------------------------------------

    def claim_webhook_event(
        self, provider: str, event_id: str, now: datetime, *, lease: timedelta
    ) -> WebhookClaim:
        """One ``INSERT … ON CONFLICT DO NOTHING`` on the primary key
        ``(provider, event_id)``; if the row was there, one conditional
        ``UPDATE`` takes an unfinished claim older than ``lease`` over
        (``handled_at IS NULL AND received_at <= now - lease``, setting
        ``received_at = now``); if neither wrote, the row says whether the
        event was handled. Of concurrent callers the database lets one
        insert the row or update it: on PostgreSQL the others wait for
        that transaction and then find the row, or its new
        ``received_at``, which no longer matches; on SQLite writers take
        turns."""
        if not 1 <= len(provider) <= 32 or not 1 <= len(event_id) <= REFERENCE_LENGTH:
            raise ValueError(f"provider must be 1 to 32 characters and event_id 1 to {REFERENCE_LENGTH}")
        now = utc(now, "now")
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        key = (WebhookEventModel.provider == provider, WebhookEventModel.event_id == event_id)
        new_claim = {"provider": provider, "event_id": event_id, "received_at": now, "handled_at": None}
        with self._transaction() as session:
            # A row released by another caller between two statements is
            # claimed on the next round.
            for _round in range(3):
                if insert_if_absent(session, WebhookEventModel, new_claim):
                    return WebhookClaim.CLAIMED
                taken_over = session.execute(
                    update(WebhookEventModel)
                    .where(
                        *key,
                        WebhookEventModel.handled_at.is_(None),
                        WebhookEventModel.received_at <= now - lease,
                    )
                    .values(received_at=now)
                    .execution_options(synchronize_session=False)
                )
                if rowcount(taken_over) == 1:
                    return WebhookClaim.CLAIMED
                found = session.execute(select(WebhookEventModel.handled_at).where(*key)).first()
                if found is not None:
                    return WebhookClaim.IN_PROGRESS if found.handled_at is None else WebhookClaim.HANDLED
        return WebhookClaim.IN_PROGRESS  # pragma: no cover - released three times in a row

    def finish_webhook_event(
        self, provider: str, event_id: str, now: datetime, *, mail: Sequence[OutboxMail] = ()
    ) -> None:
        """Mark the event handled and, only if this call did (it was not
        handled yet), write ``mail`` in the same transaction."""
        now = utc(now, "now")
        with self._transaction() as session:
            finished = session.execute(
                update(WebhookEventModel)
                .where(
                    WebhookEventModel.provider == provider,
                    WebhookEventModel.event_id == event_id,
                    WebhookEventModel.handled_at.is_(None),
                )
                .values(handled_at=now)
                .execution_options(synchronize_session=False)
            )
            if mail and rowcount(finished) == 1:
                add_mail(session, mail)

    def release_webhook_event(self, provider: str, event_id: str) -> None:
        with self._transaction() as session:
            session.execute(
                delete(WebhookEventModel)
                .where(
                    WebhookEventModel.provider == provider,
                    WebhookEventModel.event_id == event_id,
                    WebhookEventModel.handled_at.is_(None),
                )
                .execution_options(synchronize_session=False)
            )

    def prune_webhook_events(self, received_before: datetime) -> int:
        """Forget the webhook events received before ``received_before``;
        returns how many. A provider's delivery of an event forgotten
        here would be handled again, so keep them well past the time the
        provider retries for (Stripe: up to three days)."""
        received_before = utc(received_before, "received_before")
        with self._transaction() as session:
            result = session.execute(
                delete(WebhookEventModel)
                .where(WebhookEventModel.received_at < received_before)
                .execution_options(synchronize_session=False)
            )
        return rowcount(result)

    def prune_expired(
        self,
        now: datetime,
        *,
        session_idle_timeout: timedelta,
        session_max_age: timedelta,
        webhook_events_before: datetime | None = None,
        batch_size: int = 500,
        sent_mail_before: datetime | None = None,
    ) -> PruneReport:
        """Batched deletes, one transaction per batch (see
        :mod:`~flask_customer_portal.contrib.sqla.housekeeping`)."""
        return housekeeping.prune_expired(
            self._transaction,
            metadata.tables,
            utc(now, "now"),
            session_idle_timeout=session_idle_timeout,
            session_max_age=session_max_age,
            webhook_events_before=utc_or_none(webhook_events_before, "webhook_events_before"),
            batch_size=batch_size,
            sent_mail_before=utc_or_none(sent_mail_before, "sent_mail_before"),
        )
