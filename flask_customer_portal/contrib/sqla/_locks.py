"""Locks of the SQLAlchemy store: what holds a subscription still while
money moves for it (:class:`~flask_customer_portal.storage.ChargeStore`,
:class:`~flask_customer_portal.storage.ProviderLockStore`).

A lock is a database transaction holding a row lock: on a subscription's
own row, or, for a subscription that lives at a payment company, on a row
of ``portal_provider_locks`` made for it. Everything done under the lock
is written in that transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from ...storage import InvoiceStatus, StateConflict
from ._base import FRESH, StoreBase, insert_if_absent, now_utc, rowcount
from ._invoices import insert_invoice, next_in_sequence
from ._outbox import add_mail
from .mapping import (
    ARREARS_ATTEMPT_COLUMNS,
    CHARGE_ATTEMPT_COLUMNS,
    PLAN_CHANGE_COLUMNS,
    arrears_attempt_record,
    audit_row,
    charge_attempt_record,
    plan_change_record,
    plan_change_row,
    subscription_record,
    subscription_values,
    values_of,
)
from .models import (
    ArrearsAttemptModel,
    ChargeAttemptModel,
    InvoiceModel,
    PaymentMethodModel,
    PlanChangeModel,
    ProviderLockModel,
    SubscriptionModel,
    utc,
    utc_or_none,
)
from .queries import GET_SUBSCRIPTION_INVOICE, OPEN_SUBSCRIPTION_INVOICES, read_invoices

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session
    from sqlalchemy.sql import Executable

    from ...storage import (
        ArrearsAttempt,
        AuditEvent,
        ChargeAttempt,
        Invoice,
        OutboxMail,
        Plan,
        PlanChange,
        Subscription,
        SubscriptionStatus,
    )

__all__ = ["LocksMixin", "SQLProviderLock", "SQLSubscriptionLock", "locked_subscription_row"]


def locked_subscription_row(
    session: Session, customer_id: str, subscription_id: str
) -> SubscriptionModel | None:
    """The subscription's row, locked until the transaction ends.

    PostgreSQL takes a row lock with ``SELECT … FOR UPDATE``. SQLite
    ignores ``FOR UPDATE``, so a no-op ``UPDATE`` of the row takes the
    database's write lock first: concurrent lockers queue up in both.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(SubscriptionModel)
            .where(SubscriptionModel.id == subscription_id, SubscriptionModel.customer_id == customer_id)
            .values(id=SubscriptionModel.id)
            .execution_options(synchronize_session=False)
        )
    return session.scalars(
        select(SubscriptionModel)
        .where(SubscriptionModel.id == subscription_id, SubscriptionModel.customer_id == customer_id)
        .with_for_update(of=SubscriptionModel)
        .execution_options(**FRESH)
    ).one_or_none()


class LocksMixin(StoreBase):
    """Holds a subscription still while money moves for it."""

    @contextmanager
    def lock_subscription(
        self, customer_id: str, subscription_id: str
    ) -> Iterator[SQLSubscriptionLock | None]:
        with self._transaction() as session:
            row = locked_subscription_row(session, customer_id, subscription_id)
            yield None if row is None else SQLSubscriptionLock(session, row)

    @contextmanager
    def lock_provider_subscription(self, customer_id: str, subscription_id: str) -> Iterator[SQLProviderLock]:
        """The lock row (``portal_provider_locks``) is made on first use (a
        concurrent maker's insert is waited for), then locked as
        :meth:`lock_subscription` locks a subscription's row: ``SELECT …
        FOR UPDATE`` on PostgreSQL; on SQLite, which ignores ``FOR
        UPDATE``, a no-op ``UPDATE`` takes the database's write lock. The
        transaction, and the lock, last the ``with`` block."""
        key = (
            ProviderLockModel.customer_id == customer_id,
            ProviderLockModel.subscription_id == subscription_id,
        )
        with self._transaction() as session:
            insert_if_absent(
                session,
                ProviderLockModel,
                {"customer_id": customer_id, "subscription_id": subscription_id, "created_at": now_utc()},
            )
            if self._engine.dialect.name == "sqlite":
                session.execute(
                    update(ProviderLockModel)
                    .where(*key)
                    .values(customer_id=ProviderLockModel.customer_id)
                    .execution_options(synchronize_session=False)
                )
            session.execute(select(ProviderLockModel.customer_id).where(*key).with_for_update()).one()
            yield SQLProviderLock(session, customer_id, subscription_id)


class SQLSubscriptionLock:
    """:class:`~flask_customer_portal.storage.SubscriptionLock` inside one
    transaction of :meth:`SQLAlchemyStorage.lock_subscription`."""

    def __init__(self, session: Session, row: SubscriptionModel) -> None:
        self._session = session
        self._row = row

    @property
    def subscription(self) -> Subscription:
        method_row = None
        if self._row.payment_method_id is not None:
            method_row = self._session.get(PaymentMethodModel, self._row.payment_method_id)
        return subscription_record(subscription_values(self._row, method_row))

    def _invoices(self, statement: Executable, **params: str) -> tuple[Invoice, ...]:
        """The subscription's invoices a select of :data:`~.queries.SELECT_INVOICES` finds."""
        return read_invoices(
            self._session,
            statement,
            {"subscription_id": self._row.id, "customer_id": self._row.customer_id, **params},
        )

    def open_invoices(self) -> Sequence[Invoice]:
        return self._invoices(OPEN_SUBSCRIPTION_INVOICES)

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        found = self._invoices(GET_SUBSCRIPTION_INVOICE, invoice_id=invoice_id)
        return found[0] if found else None

    def issue_invoice(self, invoice: Invoice) -> Invoice:
        if invoice.customer_id != self._row.customer_id or invoice.subscription_id != self._row.id:
            raise ValueError("an invoice issued under a subscription lock must be that subscription's")
        if not invoice.number:
            value = next_in_sequence(self._session, "invoice_number:INV-")
            invoice = replace(invoice, number=f"INV-{value:06d}")
        return insert_invoice(self._session, invoice)

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        rows = self._session.scalars(
            select(ChargeAttemptModel)
            .where(
                ChargeAttemptModel.invoice_id == invoice_id,
                ChargeAttemptModel.customer_id == self._row.customer_id,
            )
            .order_by(ChargeAttemptModel.attempt)
            .execution_options(**FRESH)
        ).all()
        return tuple(charge_attempt_record(values_of(r, CHARGE_ATTEMPT_COLUMNS)) for r in rows)

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        if attempt.customer_id != self._row.customer_id:
            raise ValueError("a charge attempt must be the locked subscription's customer's")
        row = self._session.get(ChargeAttemptModel, (attempt.invoice_id, attempt.attempt))
        if row is None:
            row = ChargeAttemptModel(
                invoice_id=attempt.invoice_id,
                attempt=attempt.attempt,
                idempotency_key=attempt.idempotency_key,
                customer_id=attempt.customer_id,
                created_at=utc(attempt.created_at, "ChargeAttempt.created_at"),
            )
            self._session.add(row)
        elif row.idempotency_key != attempt.idempotency_key:
            raise ValueError("an attempt's idempotency key never changes")
        row.payment_method_id = attempt.payment_method_id
        row.amount = attempt.amount
        row.currency = attempt.currency
        row.status = attempt.status
        row.decline_reason = attempt.decline_reason
        row.provider_reference = attempt.provider_reference
        row.resolved_at = utc_or_none(attempt.resolved_at, "ChargeAttempt.resolved_at")
        self._session.flush()

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        result = self._session.execute(
            update(InvoiceModel)
            .where(
                InvoiceModel.id == invoice_id,
                InvoiceModel.customer_id == self._row.customer_id,
                InvoiceModel.status == InvoiceStatus.OPEN,
            )
            .values(
                status=InvoiceStatus.PAID,
                paid_at=utc(paid_at, "paid_at"),
                payment_reference=payment_reference,
                payment_method_id=payment_method_id,
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            raise StateConflict(f"invoice {invoice_id!r} is not open")
        invoice = self.get_invoice(invoice_id)
        if invoice is None:  # pragma: no cover - just updated
            raise StateConflict(f"invoice {invoice_id!r} vanished")
        return invoice

    def update_subscription(
        self,
        *,
        status: SubscriptionStatus | None = None,
        current_period_start: datetime | None = None,
        current_period_end: datetime | None = None,
        payment_method_id: str | None = None,
        hold_reason: str | None = None,
        clear_hold_reason: bool = False,
        ended_at: datetime | None = None,
    ) -> Subscription:
        row = self._row
        if status is not None:
            row.status = status
        if current_period_start is not None:
            row.current_period_start = utc(current_period_start, "current_period_start")
        if current_period_end is not None:
            row.current_period_end = utc(current_period_end, "current_period_end")
        if payment_method_id is not None:
            row.payment_method_id = payment_method_id
        if clear_hold_reason:
            row.hold_reason = None
        if hold_reason is not None:
            row.hold_reason = hold_reason
        if ended_at is not None:
            row.ended_at = utc(ended_at, "ended_at")
        self._session.flush()
        return self.subscription

    def void_invoice(self, invoice_id: str) -> Invoice:
        result = self._session.execute(
            update(InvoiceModel)
            .where(
                InvoiceModel.id == invoice_id,
                InvoiceModel.customer_id == self._row.customer_id,
                InvoiceModel.status == InvoiceStatus.OPEN,
            )
            .values(status=InvoiceStatus.VOID)
            .execution_options(synchronize_session=False)
        )
        if rowcount(result) != 1:
            raise StateConflict(f"invoice {invoice_id!r} is not open")
        invoice = self.get_invoice(invoice_id)
        if invoice is None:  # pragma: no cover - just updated
            raise StateConflict(f"invoice {invoice_id!r} vanished")
        return invoice

    def change_plan(
        self,
        plan: Plan,
        quantity: int,
        *,
        credit: int,
        current_period_start: datetime | None = None,
        current_period_end: datetime | None = None,
    ) -> Subscription:
        if credit < 0:
            raise ValueError("credit cannot be negative")
        row = self._row
        amount = plan.amount_for(quantity)
        row.plan_id = plan.id
        row.plan_name = plan.name
        row.price_amount = amount.amount
        row.price_currency = amount.currency
        row.interval = plan.interval
        row.interval_count = plan.interval_count
        row.quantity = quantity
        row.credit = credit
        row.scheduled_plan_id = None
        row.scheduled_quantity = None
        if current_period_start is not None:
            row.current_period_start = utc(current_period_start, "current_period_start")
        if current_period_end is not None:
            row.current_period_end = utc(current_period_end, "current_period_end")
        self._session.flush()
        return self.subscription

    def set_credit(self, credit: int) -> Subscription:
        if credit < 0:
            raise ValueError("credit cannot be negative")
        self._row.credit = credit
        self._session.flush()
        return self.subscription

    def clear_scheduled_change(self) -> Subscription:
        self._row.scheduled_plan_id = None
        self._row.scheduled_quantity = None
        self._session.flush()
        return self.subscription

    def record_event(self, event: AuditEvent) -> None:
        if event.customer_id != self._row.customer_id:
            raise ValueError("an event recorded under a subscription lock must be its customer's")
        self._session.add(audit_row(event))
        self._session.flush()

    def enqueue_mail(self, mail: OutboxMail) -> None:
        """Written in the lock's transaction: sent only if the change is committed."""
        if mail.customer_id != self._row.customer_id:
            raise ValueError("an email queued under a subscription lock must be to its customer")
        add_mail(self._session, mail)

    def record_plan_change(self, change: PlanChange) -> None:
        if (change.customer_id, change.subscription_id) != (self._row.customer_id, self._row.id):
            raise ValueError("a plan change recorded under a subscription lock must be that subscription's")
        self._session.add(plan_change_row(change))
        self._session.flush()

    def get_plan_change(self, invoice_id: str) -> PlanChange | None:
        row = self._session.get(PlanChangeModel, invoice_id, populate_existing=True)
        if row is None or (row.customer_id, row.subscription_id) != (self._row.customer_id, self._row.id):
            return None
        return plan_change_record(values_of(row, PLAN_CHANGE_COLUMNS))

    def use_retention_discount(self) -> Subscription:
        row = self._row
        row.discount_renewals = max(0, row.discount_renewals - 1)
        if row.discount_renewals == 0:
            row.discount_percent = 0
        self._session.flush()
        return self.subscription


class SQLProviderLock:
    """:class:`~flask_customer_portal.storage.ProviderSubscriptionLock`
    inside one transaction of :meth:`SQLAlchemyStorage.lock_provider_subscription`."""

    def __init__(self, session: Session, customer_id: str, subscription_id: str) -> None:
        self._session = session
        self._customer_id = customer_id
        self._subscription_id = subscription_id

    def attempts(self) -> Sequence[ArrearsAttempt]:
        rows = self._session.scalars(
            select(ArrearsAttemptModel)
            .where(
                ArrearsAttemptModel.customer_id == self._customer_id,
                ArrearsAttemptModel.subscription_id == self._subscription_id,
            )
            .order_by(ArrearsAttemptModel.attempt)
            .execution_options(**FRESH)
        ).all()
        return tuple(arrears_attempt_record(values_of(row, ARREARS_ATTEMPT_COLUMNS)) for row in rows)

    def save_attempt(self, attempt: ArrearsAttempt) -> None:
        if (attempt.customer_id, attempt.subscription_id) != (self._customer_id, self._subscription_id):
            raise ValueError("an arrears attempt must be the locked subscription's")
        key = (attempt.customer_id, attempt.subscription_id, attempt.attempt)
        row = self._session.get(ArrearsAttemptModel, key)
        if row is None:
            row = ArrearsAttemptModel(
                customer_id=attempt.customer_id,
                subscription_id=attempt.subscription_id,
                attempt=attempt.attempt,
                idempotency_key=attempt.idempotency_key,
                created_at=utc(attempt.created_at, "ArrearsAttempt.created_at"),
            )
            self._session.add(row)
        elif row.idempotency_key != attempt.idempotency_key:
            raise ValueError("an attempt's idempotency key never changes")
        row.payment_method_id = attempt.payment_method_id
        row.status = attempt.status
        row.decline_reason = attempt.decline_reason
        row.provider_reference = attempt.provider_reference
        row.resolved_at = utc_or_none(attempt.resolved_at, "ArrearsAttempt.resolved_at")
        self._session.flush()

    def record_event(self, event: AuditEvent) -> None:
        if event.customer_id != self._customer_id:
            raise ValueError("an event recorded under a subscription lock must be its customer's")
        self._session.add(audit_row(event))
        self._session.flush()

    def enqueue_mail(self, mail: OutboxMail) -> None:
        """Written in the lock's transaction: sent only if the change is committed."""
        if mail.customer_id != self._customer_id:
            raise ValueError("an email queued under a subscription lock must be to its customer")
        add_mail(self._session, mail)
