"""Paying a payment company's one-off invoice from its page: the
:class:`~flask_customer_portal.storage.InvoiceLockStore` of a
:class:`~flask_customer_portal.contrib.composite.CompositeStorage`.

A payment company's API has no lock, so the hold is the local store's
:meth:`~flask_customer_portal.storage.ProviderLockStore.lock_provider_subscription`,
in the merchant's database, keyed by the portal customer and
``invoice:<the provider's invoice id>`` (a key no subscription has): every
worker and host waits for it. Inside it the billing adapter's own
:meth:`lock_invoice` reads the invoice from the provider, so that an
invoice paid a moment ago (another tab, the provider's own retry, a
webhook) is seen as paid; the charge carries the portal's idempotency key.
The block's audit events and emails are written in the local lock's
transaction when it ends normally, and dropped if it raises, as a
subscription's are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from ..storage import (
    AuditEvent,
    ChargeAttempt,
    Invoice,
    InvoiceLock,
    InvoiceLockStore,
    MailQueue,
    OutboxMail,
)
from ._composite_ids import CustomerIdMap, with_portal_ids, with_provider_id

if TYPE_CHECKING:
    from ..capabilities import Capabilities
    from ..storage import PortalStorage

__all__ = ["InvoiceLockMembers", "MappedInvoiceLock", "invoice_lock_key"]

R = TypeVar("R")


def invoice_lock_key(invoice_id: str) -> str:
    """The key of the local lock row that holds the provider's invoice
    ``invoice_id``: never a subscription's id."""
    return f"invoice:{invoice_id}"


class MappedInvoiceLock:
    """The adapter's :class:`~flask_customer_portal.storage.InvoiceLock`
    seen with portal customer ids; its events (and, where the local lock
    queues mail, its emails) kept until the block ends."""

    def __init__(
        self,
        lock: InvoiceLock,
        customer_ids: CustomerIdMap,
        events: list[AuditEvent],
    ) -> None:
        self._lock = lock
        self._customer_ids = customer_ids
        self._events = events

    def _to_portal(self, value: R) -> R:
        return with_portal_ids(value, self._customer_ids)

    @property
    def invoice(self) -> Invoice:
        return self._to_portal(self._lock.invoice)

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        return self._to_portal(list(self._lock.attempts(invoice_id)))

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        self._lock.save_attempt(with_provider_id(attempt, self._customer_ids))

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        return self._to_portal(
            self._lock.mark_invoice_paid(
                invoice_id,
                paid_at=paid_at,
                payment_reference=payment_reference,
                payment_method_id=payment_method_id,
            )
        )

    def record_event(self, event: AuditEvent) -> None:
        self._events.append(event)


class _MailingMappedInvoiceLock(MappedInvoiceLock):
    def __init__(
        self,
        lock: InvoiceLock,
        customer_ids: CustomerIdMap,
        events: list[AuditEvent],
        mails: list[OutboxMail],
    ) -> None:
        super().__init__(lock, customer_ids, events)
        self._mails = mails

    def enqueue_mail(self, mail: OutboxMail) -> None:
        """Kept until the block ends, then written with its audit events: a
        block that raises leaves no email."""
        self._mails.append(mail)


class _Composite(Protocol):
    """What :class:`InvoiceLockMembers` needs of the composite store."""

    local: PortalStorage
    customer_ids: CustomerIdMap
    _capabilities: Capabilities

    @property
    def billing(self) -> object: ...


class InvoiceLockMembers:
    """:meth:`lock_invoice` of a composite store."""

    def lock_invoice(
        self: _Composite, customer_id: str, invoice_id: str
    ) -> AbstractContextManager[InvoiceLock | None]:
        """The billing adapter's one-off invoice ``invoice_id`` of the portal
        customer, held by the local store's lock for the whole block (see
        :mod:`~flask_customer_portal.contrib._composite_invoices`); ``None``
        if it is not the customer's, bills a subscription, or the adapter
        cannot pay invoices (the capability ``invoice_lock`` is then off)."""
        return _lock_invoice(self, customer_id, invoice_id)


@contextmanager
def _lock_invoice(store: _Composite, customer_id: str, invoice_id: str) -> Iterator[InvoiceLock | None]:
    provider_id = store.customer_ids.to_provider(customer_id)
    billing = store.billing
    if (
        provider_id is None
        or not store._capabilities.invoice_lock
        or not isinstance(billing, InvoiceLockStore)
    ):
        yield None
        return
    events: list[AuditEvent] = []
    mails: list[OutboxMail] = []
    key = invoice_lock_key(invoice_id)
    with store.local.lock_provider_subscription(customer_id, key) as across_processes:
        queue = across_processes if isinstance(across_processes, MailQueue) else None
        with billing.lock_invoice(provider_id, invoice_id) as lock:
            if lock is None:
                yield None
            elif queue is None:
                yield cast(InvoiceLock, MappedInvoiceLock(lock, store.customer_ids, events))
            else:
                yield cast(InvoiceLock, _MailingMappedInvoiceLock(lock, store.customer_ids, events, mails))
        for event in events:
            across_processes.record_event(event)
        for mail in mails:
            cast(MailQueue, queue).enqueue_mail(mail)
