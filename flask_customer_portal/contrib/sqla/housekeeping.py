"""Pruning and erasure in the SQLAlchemy store's tables.

:class:`~flask_customer_portal.contrib.sqla.SQLAlchemyStorage` answers
:meth:`~flask_customer_portal.storage.AccessStore.prune_expired` and
:meth:`~flask_customer_portal.storage.CustomerStore.erase_customer` with
the statements here. They work on the portal's tables as SQLAlchemy Core
:class:`~sqlalchemy.Table` objects (``metadata.tables``), so this module
needs nothing from the store but its tables and its transactions.

Pruning deletes in batches, each in a transaction of its own: a batch is
chosen with ``SELECT … LIMIT n FOR UPDATE SKIP LOCKED`` on PostgreSQL (so
two hosts pruning at once take different rows and never wait for each
other) and deleted by primary key. A row deleted by another host in the
meantime is simply not counted again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, exists, func, or_, select, tuple_, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from ...storage import ErasureReport, PruneReport

__all__ = ["KEPT_AUDIT_DETAILS", "erase_customer_rows", "prune_expired"]

#: Audit event details an erasure keeps: the keys the portal writes that
#: never hold personal data (ids, amounts, codes, plan and card summaries).
#: Every other key goes — the old and new email of an email change, the
#: free text of a cancellation reason, and any key a host added.
KEPT_AUDIT_DETAILS = frozenset(
    {
        "amount",
        "amount_due",
        "at_period_end",
        "automatic",
        "brand",
        "changed",
        "credit_after",
        "currency",
        "decline_reason",
        "error_code",
        "flow",
        "forced",
        "from_plan_id",
        "idempotency_key",
        "invoice_id",
        "last4",
        "license_key_id",
        "locale",
        "method",
        "months",
        "offer",
        "outcome",
        "payment_method_id",
        "percent",
        "plan_id",
        "previous",
        "previous_payment_method_id",
        "quantity",
        "reason",
        "renewals",
        "resumes_at",
        "retention_offer",
        "status",
        "subscription_id",
        "subscriptions_cancelled",
        "to_plan_id",
        "total_amount",
        "webhook_id",
        "when",
    }
)

Transaction = Callable[[], AbstractContextManager[Session]]


def _rowcount(result: Result[Any]) -> int:
    if not isinstance(result, CursorResult):  # pragma: no cover - always one for DML
        raise TypeError(f"expected a CursorResult, got {type(result).__name__}")
    return int(result.rowcount)


def _delete_in_batches(
    transaction: Transaction, table: Table, condition: ColumnElement[bool], batch_size: int
) -> int:
    """Delete the rows of ``table`` matching ``condition``, ``batch_size``
    at a time, one transaction per batch; how many this call deleted."""
    key = list(table.primary_key.columns)
    deleted = 0
    while True:
        chosen = select(*key).where(condition).limit(batch_size).with_for_update(skip_locked=True)
        target = key[0] if len(key) == 1 else tuple_(*key)
        with transaction() as session:
            batch = _rowcount(session.execute(delete(table).where(target.in_(chosen))))
        deleted += batch
        if batch < batch_size:
            return deleted


def prune_expired(
    transaction: Transaction,
    tables: Mapping[str, Table],
    now: datetime,
    *,
    session_idle_timeout: timedelta,
    session_max_age: timedelta,
    webhook_events_before: datetime | None,
    batch_size: int,
    sent_mail_before: datetime | None = None,
) -> PruneReport:
    """See :meth:`~flask_customer_portal.storage.AccessStore.prune_expired`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if session_idle_timeout <= timedelta(0) or session_max_age <= timedelta(0):
        raise ValueError("session_idle_timeout and session_max_age must be positive")
    links = tables["portal_links"]
    sessions = tables["portal_sessions"]
    webhook_events = tables["portal_webhook_events"]
    pruned_links = _delete_in_batches(transaction, links, links.c.expires_at <= now, batch_size)
    ended = or_(
        sessions.c.revoked_at.is_not(None),
        sessions.c.last_seen_at <= now - session_idle_timeout,
        sessions.c.created_at <= now - session_max_age,
    )
    pruned_sessions = _delete_in_batches(transaction, sessions, ended, batch_size)
    pruned_events = 0
    if webhook_events_before is not None:
        pruned_events = _delete_in_batches(
            transaction, webhook_events, webhook_events.c.received_at < webhook_events_before, batch_size
        )
    pruned_mail = 0
    if sent_mail_before is not None:
        outbox = tables["portal_mail_outbox"]
        sent = (outbox.c.status == "sent") & (outbox.c.sent_at < sent_mail_before)
        pruned_mail = _delete_in_batches(transaction, outbox, sent, batch_size)
    return PruneReport(
        links=pruned_links, sessions=pruned_sessions, webhook_events=pruned_events, mail=pruned_mail
    )


def kept_details(details: Mapping[str, str]) -> dict[str, str]:
    """``details`` without the keys an erasure removes."""
    return {key: value for key, value in details.items() if key in KEPT_AUDIT_DETAILS}


def _referenced(
    tables: Iterable[Table], customer_id: str, method_id: ColumnElement[Any]
) -> ColumnElement[bool]:
    """Some row of ``tables`` of this customer names the payment method."""
    return or_(
        *(
            exists().where(table.c.customer_id == customer_id, table.c.payment_method_id == method_id)
            for table in tables
        )
    )


def erase_customer_rows(
    session: Session,
    tables: Mapping[str, Table],
    customer_id: str,
    *,
    email: str,
    email_normalized: str,
) -> ErasureReport | None:
    """The statements of
    :meth:`~flask_customer_portal.storage.CustomerStore.erase_customer`,
    in the caller's transaction (``session``); ``None`` if there is no
    such customer (and nothing was written)."""
    customers = tables["portal_customers"]
    anonymised = session.execute(
        update(customers)
        .where(customers.c.id == customer_id)
        .values(
            email=email,
            email_normalized=email_normalized,
            name="",
            phone=None,
            locale=None,
            timezone=None,
            auth_version=customers.c.auth_version + 1,
        )
    )
    if _rowcount(anonymised) != 1:
        return None

    def delete_own(name: str) -> int:
        table = tables[name]
        return _rowcount(session.execute(delete(table).where(table.c.customer_id == customer_id)))

    sessions_deleted = delete_own("portal_sessions")
    links_deleted = delete_own("portal_links")
    # Queued or sent, an email holds the address and what was said to it.
    mail_deleted = delete_own("portal_mail_outbox")
    billing_details_deleted = delete_own("portal_billing_details")
    # Activations before their keys (the keys are their foreign key's target).
    delete_own("portal_license_key_instances")
    license_keys_deleted = delete_own("portal_license_keys")

    methods = tables["portal_payment_methods"]
    naming = [tables["portal_subscriptions"], tables["portal_invoices"], tables["portal_charge_attempts"]]
    in_use = _referenced(naming, customer_id, methods.c.id)
    own_methods = methods.c.customer_id == customer_id
    payment_methods_deleted = _rowcount(session.execute(delete(methods).where(own_methods, ~in_use)))
    # What is left is named by issued records: nothing may be charged to it again.
    unchargeable = update(methods).where(own_methods).values({methods.c.provider_token: ""})
    payment_methods_kept = _rowcount(session.execute(unchargeable))

    events = tables["portal_audit_events"]
    scrubbed = 0
    rows = session.execute(select(events.c.id, events.c.details).where(events.c.customer_id == customer_id))
    for event_id, details in rows.all():
        kept = kept_details(details or {})
        if kept != (details or {}):
            session.execute(update(events).where(events.c.id == event_id).values(details=kept))
            scrubbed += 1

    invoices = tables["portal_invoices"]
    invoices_kept = session.execute(
        select(func.count()).select_from(invoices).where(invoices.c.customer_id == customer_id)
    ).scalar_one()
    return ErasureReport(
        customer_id=customer_id,
        sessions_deleted=sessions_deleted,
        links_deleted=links_deleted,
        billing_details_deleted=billing_details_deleted,
        payment_methods_deleted=payment_methods_deleted,
        payment_methods_kept=payment_methods_kept,
        license_keys_deleted=license_keys_deleted,
        audit_events_scrubbed=scrubbed,
        invoices_kept=int(invoices_kept),
        mail_deleted=mail_deleted,
    )
