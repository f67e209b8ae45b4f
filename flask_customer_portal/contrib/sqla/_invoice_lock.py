"""The SQLAlchemy store's lock on one invoice of no subscription, held
while it is paid directly
(:class:`~flask_customer_portal.storage.InvoiceLockStore`).

The lock is the invoice's own row, locked as a subscription's row is
(:func:`~._locks.locked_subscription_row`): ``SELECT … FOR UPDATE`` on
PostgreSQL, and on SQLite, which ignores ``FOR UPDATE``, a no-op
``UPDATE`` that takes the database's write lock first. Every write of the
payment (attempts, the invoice, the audit log) is in that transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Table, insert, select, update

from ...storage import StateConflict
from ._base import FRESH, StoreBase
from ._charge_attempts import charge_attempt_rows, mark_open_invoice_paid, write_charge_attempt
from ._outbox import add_mail
from .mapping import CHARGE_ATTEMPT_COLUMNS, audit_values, charge_attempt_record, values_of
from .models import AuditEventModel, ChargeAttemptModel, InvoiceModel
from .queries import GET_INVOICE, read_invoices

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

    from ...storage import AuditEvent, ChargeAttempt, Invoice, OutboxMail

__all__ = ["InvoiceLocksMixin", "SQLInvoiceLock"]

#: The audit log as a table: a lock's events go in one ``executemany``.
_AUDIT_EVENTS: Table = AuditEventModel.__table__  # type: ignore[assignment]


class InvoiceLocksMixin(StoreBase):
    """Holds one invoice still while it is paid directly."""

    @contextmanager
    def lock_invoice(self, customer_id: str, invoice_id: str) -> Iterator[SQLInvoiceLock | None]:
        key = (InvoiceModel.id == invoice_id, InvoiceModel.customer_id == customer_id)
        with self._transaction() as session:
            if session.get_bind().dialect.name == "sqlite":
                session.execute(
                    update(InvoiceModel)
                    .where(*key)
                    .values(id=InvoiceModel.id)
                    .execution_options(synchronize_session=False)
                )
            found = session.execute(
                select(InvoiceModel.id).where(*key).with_for_update().execution_options(**FRESH)
            ).one_or_none()
            lock = None if found is None else SQLInvoiceLock(session, customer_id, invoice_id)
            yield lock
            if lock is not None:
                lock.write_events()


class SQLInvoiceLock:
    """:class:`~flask_customer_portal.storage.InvoiceLock` inside one
    transaction of :meth:`InvoiceLocksMixin.lock_invoice`."""

    def __init__(self, session: Session, customer_id: str, invoice_id: str) -> None:
        self._session = session
        self._customer_id = customer_id
        self._invoice_id = invoice_id
        self._events: list[AuditEvent] = []

    def _own(self, invoice_id: str) -> None:
        if invoice_id != self._invoice_id:
            raise ValueError("an invoice lock writes only its own invoice")

    @property
    def invoice(self) -> Invoice:
        found = read_invoices(
            self._session, GET_INVOICE, {"invoice_id": self._invoice_id, "customer_id": self._customer_id}
        )
        if not found:  # pragma: no cover - the row is locked
            raise StateConflict(f"invoice {self._invoice_id!r} vanished")
        return found[0]

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        self._own(invoice_id)
        rows = charge_attempt_rows(self._session, invoice_id, self._customer_id)
        return tuple(charge_attempt_record(values_of(r, CHARGE_ATTEMPT_COLUMNS)) for r in rows)

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        self._own(attempt.invoice_id)
        if attempt.customer_id != self._customer_id:
            raise ValueError("a charge attempt must be the locked invoice's customer's")
        row = self._session.get(ChargeAttemptModel, (attempt.invoice_id, attempt.attempt))
        write_charge_attempt(self._session, row, attempt)
        self._session.flush()

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        self._own(invoice_id)
        mark_open_invoice_paid(
            self._session,
            self._customer_id,
            invoice_id,
            paid_at=paid_at,
            payment_reference=payment_reference,
            payment_method_id=payment_method_id,
        )
        return self.invoice

    def record_event(self, event: AuditEvent) -> None:
        self._events.append(event)

    def enqueue_mail(self, mail: OutboxMail) -> None:
        """Written in the lock's transaction: sent only if the payment is committed."""
        if mail.customer_id != self._customer_id:
            raise ValueError("an email queued under an invoice lock must be to its customer")
        add_mail(self._session, [mail])

    def write_events(self) -> None:
        """Append the events recorded under the lock to the audit log before
        the transaction commits."""
        if self._events:
            rows = [audit_values(event) for event in self._events]
            self._events = []
            self._session.execute(insert(_AUDIT_EVENTS), rows)
