"""What a :class:`~flask_customer_portal.contrib.composite.CompositeStorage`
always takes from its local store: customers, sign-in links, sessions, the
audit log, webhook claims, the mail outbox and the lock that holds across
processes."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import cast

from ..capabilities import LocksProviderSubscriptions, PrunesWebhookEvents, implements
from ..storage import (
    AuditEvent,
    Customer,
    ErasureReport,
    LinkPurpose,
    LinkRecord,
    LinkUse,
    MailCounts,
    MailOutboxStore,
    MailStatus,
    OutboxMail,
    Page,
    PortalSessionRecord,
    PortalStorage,
    ProviderSubscriptionLock,
    PruneReport,
    StateConflict,
    WebhookClaim,
)
from ._webhooks import finishes_with_mail

__all__ = ["LocalMembers"]


class LocalMembers:
    """The members of :class:`~flask_customer_portal.storage.PortalStorage`
    that a composite store serves from ``local``, as they are."""

    local: PortalStorage

    # -- customers -------------------------------------------------------------------

    def get_customer(self, customer_id: str) -> Customer | None:
        return self.local.get_customer(customer_id)

    def find_customer_by_email(self, email: str) -> Customer | None:
        return self.local.find_customer_by_email(email)

    def update_profile(
        self, customer_id: str, *, name: str, phone: str | None, event: AuditEvent | None = None
    ) -> Customer | None:
        return self.local.update_profile(customer_id, name=name, phone=phone, event=event)

    def set_locale(
        self, customer_id: str, locale: str | None, *, event: AuditEvent | None = None
    ) -> Customer | None:
        return self.local.set_locale(customer_id, locale, event=event)

    def change_email(
        self,
        customer_id: str,
        email: str,
        *,
        auth_version: int,
        event: AuditEvent | None = None,
        mail: Sequence[OutboxMail] = (),
    ) -> Customer | None:
        return self.local.change_email(customer_id, email, auth_version=auth_version, event=event, mail=mail)

    def add_customer(self, customer: Customer) -> Customer:
        return self.local.add_customer(customer)

    def erase_customer(
        self, customer_id: str, *, email: str, now: datetime, event: AuditEvent | None = None
    ) -> ErasureReport | None:
        return self.local.erase_customer(customer_id, email=email, now=now, event=event)

    # -- links, sessions, the audit log and webhook claims ----------------------------

    def create_link(self, record: LinkRecord) -> None:
        self.local.create_link(record)

    def consume_link(self, token_hash: str, purpose: LinkPurpose, customer_id: str, now: datetime) -> bool:
        return self.local.consume_link(token_hash, purpose, customer_id, now)

    def get_link(self, token_hash: str) -> LinkRecord | None:
        return self.local.get_link(token_hash)

    def create_portal_session(self, record: PortalSessionRecord) -> None:
        self.local.create_portal_session(record)

    def start_portal_session(
        self,
        record: PortalSessionRecord,
        *,
        link: LinkUse | None = None,
        replaces: str | None = None,
        event: AuditEvent | None = None,
    ) -> bool:
        return self.local.start_portal_session(record, link=link, replaces=replaces, event=event)

    def get_portal_session(self, session_id: str) -> PortalSessionRecord | None:
        return self.local.get_portal_session(session_id)

    def get_session_with_customer(self, session_id: str) -> tuple[PortalSessionRecord, Customer] | None:
        return self.local.get_session_with_customer(session_id)

    def touch_portal_session(self, session_id: str, now: datetime) -> None:
        self.local.touch_portal_session(session_id, now)

    def revoke_portal_session(self, session_id: str, now: datetime) -> None:
        self.local.revoke_portal_session(session_id, now)

    def revoke_customer_sessions(self, customer_id: str, now: datetime) -> int:
        return self.local.revoke_customer_sessions(customer_id, now)

    def sign_out_everywhere(self, customer_id: str, now: datetime, *, event: AuditEvent | None = None) -> int:
        return self.local.sign_out_everywhere(customer_id, now, event=event)

    def list_customer_sessions(
        self, customer_id: str, now: datetime, *, idle_timeout: timedelta, max_age: timedelta
    ) -> Sequence[PortalSessionRecord]:
        return self.local.list_customer_sessions(customer_id, now, idle_timeout=idle_timeout, max_age=max_age)

    def revoke_customer_session(
        self, customer_id: str, public_id: str, now: datetime, *, event: AuditEvent | None = None
    ) -> PortalSessionRecord | None:
        return self.local.revoke_customer_session(customer_id, public_id, now, event=event)

    def record_event(self, event: AuditEvent) -> None:
        self.local.record_event(event)

    def list_customer_events(self, customer_id: str, *, page: int, per_page: int) -> Page[AuditEvent]:
        return self.local.list_customer_events(customer_id, page=page, per_page=per_page)

    def claim_webhook_event(
        self, provider: str, event_id: str, now: datetime, *, lease: timedelta
    ) -> WebhookClaim:
        return self.local.claim_webhook_event(provider, event_id, now, lease=lease)

    def finish_webhook_event(
        self, provider: str, event_id: str, now: datetime, *, mail: Sequence[OutboxMail] = ()
    ) -> None:
        if not mail:
            self.local.finish_webhook_event(provider, event_id, now)
        elif finishes_with_mail(self.local):
            self.local.finish_webhook_event(provider, event_id, now, mail=mail)  # type: ignore[call-arg]
        else:
            # A local store that cannot write them with the mark: right after.
            self.local.finish_webhook_event(provider, event_id, now)
            cast(MailOutboxStore, self.local).enqueue_mail(mail)

    def release_webhook_event(self, provider: str, event_id: str) -> None:
        self.local.release_webhook_event(provider, event_id)

    def prune_webhook_events(self, received_before: datetime) -> int:
        """The local store's (``webhook_pruning``)."""
        return cast(PrunesWebhookEvents, self.local).prune_webhook_events(received_before)

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
        return self.local.prune_expired(
            now,
            session_idle_timeout=session_idle_timeout,
            session_max_age=session_max_age,
            webhook_events_before=webhook_events_before,
            batch_size=batch_size,
            sent_mail_before=sent_mail_before,
        )

    # -- the lock that holds across processes ---------------------------------------

    def lock_provider_subscription(
        self, customer_id: str, subscription_id: str
    ) -> AbstractContextManager[ProviderSubscriptionLock]:
        """The local store's lock, in the merchant's database (portal
        customer id, the provider's subscription id).
        :class:`~flask_customer_portal.storage.StateConflict` if the local
        store has none (one written before the protocol had it): what runs
        under this lock moves money, and must not run without it."""
        if not implements(self.local, LocksProviderSubscriptions):
            raise StateConflict(f"subscription {subscription_id!r} cannot be locked by this store")
        return self.local.lock_provider_subscription(customer_id, subscription_id)

    # -- the mail outbox --------------------------------------------------------------

    def enqueue_mail(
        self,
        mails: Sequence[OutboxMail],
        *,
        link: LinkRecord | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> None:
        self._outbox.enqueue_mail(mails, link=link, events=events)

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
        return self._outbox.claim_mail(
            now, owner=owner, lease=lease, limit=limit, mail_ids=mail_ids, due_by=due_by
        )

    def compose_mail(
        self,
        mail: OutboxMail,
        *,
        owner: str,
        link: LinkRecord | None = None,
        events: Sequence[AuditEvent] = (),
    ) -> bool:
        return self._outbox.compose_mail(mail, owner=owner, link=link, events=events)

    def discard_mail(self, mail_id: str, *, owner: str) -> bool:
        return self._outbox.discard_mail(mail_id, owner=owner)

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
        return self._outbox.release_mail(
            mail_id, owner=owner, now=now, status=status, error=error, next_attempt_at=next_attempt_at
        )

    def mail_counts(self, now: datetime) -> MailCounts:
        return self._outbox.mail_counts(now)

    def list_mail(self, *, status: MailStatus, limit: int = 50) -> Sequence[OutboxMail]:
        return self._outbox.list_mail(status=status, limit=limit)

    @property
    def _outbox(self) -> MailOutboxStore:
        """The local store's outbox (the composite declares ``mail_outbox``
        only when the local store has one)."""
        return cast(MailOutboxStore, self.local)
