"""Locks of the SQLAlchemy store: what holds a subscription still while
money moves for it (:class:`~flask_customer_portal.storage.ChargeStore`,
:class:`~flask_customer_portal.storage.ProviderLockStore`).

A lock is a database transaction holding a row lock: on a subscription's
own row, or, for a subscription that lives at a payment company, on a row
of ``portal_provider_locks`` made for it. Everything done under the lock
is written in that transaction.

``flask portal renew-due`` claims the subscriptions it renews instead of
waiting for them (:meth:`LocksMixin.claim_due_subscription`): on
PostgreSQL a row another transaction holds is skipped (``FOR UPDATE SKIP
LOCKED``), so runners on several hosts share the work without waiting for
one another; on SQLite, which has one writer at a time, a claim waits for
the database's write lock as a lock does.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import Table, bindparam, insert, select, text, tuple_, update
from sqlalchemy.orm import joinedload

from ...records import RENEWING_STATUSES
from ...storage import (
    InvoiceStatus,
    PromotionCode,
    PromotionRedemption,
    StateConflict,
    SubscriptionStatus,
)
from ._base import FRESH, StoreBase, insert_if_absent, now_utc, rowcount
from ._charge_attempts import charge_attempt_rows, mark_open_invoice_paid, write_charge_attempt
from ._invoices import current_billing_details, insert_invoice, next_in_sequence, number_invoice
from ._outbox import add_mail
from ._promotions import redeem as redeem_promotion
from ._promotions import release as release_promotion
from .mapping import (
    ARREARS_ATTEMPT_COLUMNS,
    CHARGE_ATTEMPT_COLUMNS,
    PAYMENT_METHOD_COLUMNS,
    PLAN_CHANGE_COLUMNS,
    arrears_attempt_record,
    audit_row,
    audit_values,
    charge_attempt_record,
    payment_method_record,
    plan_change_record,
    plan_change_row,
    subscription_record,
    subscription_values,
    values_of,
)
from .models import (
    ArrearsAttemptModel,
    AuditEventModel,
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

    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session
    from sqlalchemy.sql import ColumnElement, Executable

    from ...storage import (
        ArrearsAttempt,
        AuditEvent,
        ChargeAttempt,
        Invoice,
        OutboxMail,
        Plan,
        PlanChange,
        Subscription,
    )

__all__ = [
    "LocksMixin",
    "SQLDueShare",
    "SQLProviderLock",
    "SQLSubscriptionLock",
    "due_after",
    "locked_subscription_row",
]


#: The audit log as a table: the events of a lock go in one ``executemany``
#: (the ORM would insert them one by one to read back each id).
_AUDIT_EVENTS: Table = AuditEventModel.__table__  # type: ignore[assignment]


#: The statuses that renew, written into the statement as literals: the
#: renewal index (``ix_portal_subscriptions_renewing_period_end``) holds only
#: their rows, and PostgreSQL matches a partial index only with the values
#: in sight, never with bound parameters of a plan prepared for any values.
_RENEWING = bindparam(
    "renewing",
    sorted(RENEWING_STATUSES),
    type_=SubscriptionModel.status.type,
    expanding=True,
    literal_execute=True,
)


def due_after(now: datetime, after: tuple[datetime, str] | None = None) -> ColumnElement[bool]:
    """Active and trialing subscriptions whose period ended at or before ``now`` (and,
    with ``after``, that come after it in ``(current_period_end, id)``
    order): what ``renew-due`` renews."""
    condition = (SubscriptionModel.status.in_(_RENEWING)) & (
        SubscriptionModel.current_period_end <= utc(now, "now")
    )
    if after is not None:
        end, subscription_id = after
        condition &= tuple_(SubscriptionModel.current_period_end, SubscriptionModel.id) > tuple_(
            utc(end, "after"), subscription_id
        )
    return condition


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
        .options(joinedload(SubscriptionModel.payment_method))
        .with_for_update(of=SubscriptionModel)
        .execution_options(**FRESH)
    ).one_or_none()


def claimed_due_row(
    session: Session, customer_id: str, subscription_id: str, now: datetime
) -> SubscriptionModel | None:
    """The subscription's row, locked until the transaction ends, if it is
    still due at ``now`` and, on PostgreSQL, no other transaction holds it
    (``SELECT … FOR UPDATE SKIP LOCKED``: the claim never waits). SQLite
    takes its write lock with a no-op ``UPDATE`` first, as
    :func:`locked_subscription_row` does, and so waits for other writers."""
    key = (
        SubscriptionModel.id == subscription_id,
        SubscriptionModel.customer_id == customer_id,
        due_after(now),
    )
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(SubscriptionModel)
            .where(*key)
            .values(id=SubscriptionModel.id)
            .execution_options(synchronize_session=False)
        )
    return session.scalars(
        select(SubscriptionModel)
        .where(*key)
        .options(joinedload(SubscriptionModel.payment_method))
        .with_for_update(of=SubscriptionModel, skip_locked=True)
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
            lock = None if row is None else SQLSubscriptionLock(session, row)
            yield lock
            if lock is not None:
                lock.finish()

    @contextmanager
    def claim_due_subscription(
        self, customer_id: str, subscription_id: str, now: datetime
    ) -> Iterator[SQLSubscriptionLock | None]:
        """Like :meth:`lock_subscription`, for a subscription that is still
        due at ``now``; ``None`` when it is not (renewed in the meantime)
        or, on PostgreSQL, when another transaction holds it: another
        runner renews it, or a customer is paying for it."""
        with self._transaction() as session:
            row = claimed_due_row(session, customer_id, subscription_id, now)
            lock = None if row is None else SQLSubscriptionLock(session, row)
            yield lock
            if lock is not None:
                lock.finish()

    def claims_in_parallel(self) -> bool:
        """Whether claims of different subscriptions hold each other up: not
        on PostgreSQL (a row lock each), while on SQLite every claim holds
        the database's one write lock."""
        return self._engine.dialect.name != "sqlite"

    @contextmanager
    def share_due(self) -> Iterator[SQLDueShare | None]:
        """On PostgreSQL, session advisory locks on a connection of the
        run's own, which the server drops with the connection if the run
        dies; ``None`` elsewhere."""
        if self._engine.dialect.name != "postgresql":
            yield None
            return
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        share = SQLDueShare(connection)
        try:
            yield share
            share.release()
        except BaseException:
            # Locks it may still hold must not go back to the pool with it.
            connection.invalidate()
            raise
        finally:
            connection.close()

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
        # The session's identity map holds rows weakly: the rows this lock
        # reads again are kept here, so that each is read once per lock.
        self._method_row: PaymentMethodModel | None = row.payment_method  # loaded with the row
        self._attempt_rows: dict[tuple[str, int], ChargeAttemptModel] = {}
        self._attempts_read: set[str] = set()
        self._issued: dict[str, Invoice] = {}
        # Invoices read under the lock: the subscription's invoices change
        # only under it, so one paid here is what was read, paid.
        self._read: dict[str, Invoice] = {}
        self._events: list[AuditEvent] = []
        # Issued with a provisional number, numbered by _number_pending().
        self._unnumbered: list[str] = []

    def finish(self) -> None:
        """What the block leaves to its end, before the commit: the events,
        then the numbers of the invoices issued to be numbered now, the
        last thing the transaction does."""
        self.write_events()
        self._number_pending()

    def _number_pending(self) -> None:
        """Give each invoice issued with a provisional number its number.

        The counter's row, which every invoice of every runner takes, is
        locked from here to the commit: as short a hold as the number's
        allocation allows. Called too before anything under the lock reads
        an invoice, which then never shows a provisional number."""
        while self._unnumbered:
            invoice_id = self._unnumbered.pop(0)
            number = number_invoice(self._session, invoice_id, self._row.customer_id)
            issued = self._issued.get(invoice_id)
            if issued is not None:
                self._issued[invoice_id] = replace(issued, number=number)

    def write_events(self) -> None:
        """Append the events recorded under the lock to the audit log, in
        one statement, before the transaction commits."""
        if self._events:
            rows = [audit_values(event) for event in self._events]
            self._events = []
            self._session.execute(insert(_AUDIT_EVENTS), rows)

    def _payment_method_row(self) -> PaymentMethodModel | None:
        method_id = self._row.payment_method_id
        if method_id is None:
            return None
        if self._method_row is None or self._method_row.id != method_id:
            self._method_row = self._session.get(PaymentMethodModel, method_id)
        return self._method_row

    @property
    def subscription(self) -> Subscription:
        return subscription_record(subscription_values(self._row, self._payment_method_row()))

    def _invoices(self, statement: Executable, **params: str) -> tuple[Invoice, ...]:
        """The subscription's invoices a select of :data:`~.queries.SELECT_INVOICES` finds."""
        return read_invoices(
            self._session,
            statement,
            {"subscription_id": self._row.id, "customer_id": self._row.customer_id, **params},
        )

    def open_invoices(self) -> Sequence[Invoice]:
        self._number_pending()
        return self._invoices(OPEN_SUBSCRIPTION_INVOICES)

    def get_invoice(self, invoice_id: str) -> Invoice | None:
        self._number_pending()
        found = self._invoices(GET_SUBSCRIPTION_INVOICE, invoice_id=invoice_id)
        if not found:
            return None
        self._read[invoice_id] = found[0]
        return found[0]

    def issue_invoice(self, invoice: Invoice) -> Invoice:
        if invoice.customer_id != self._row.customer_id or invoice.subscription_id != self._row.id:
            raise ValueError("an invoice issued under a subscription lock must be that subscription's")
        # Read before the counter is taken: every invoice of every runner
        # waits for the counter's row until this transaction commits.
        saved = None
        if invoice.billing_details is None:
            saved = current_billing_details(self._session, invoice.customer_id)
        if not invoice.number:
            value = next_in_sequence(self._session, "invoice_number:INV-")
            invoice = replace(invoice, number=f"INV-{value:06d}")
        issued = self._issued[invoice.id] = insert_invoice(
            self._session, invoice, details_read=True, saved_details=saved
        )
        return issued

    def issue_invoice_numbered_at_commit(self, invoice: Invoice) -> Invoice:
        """Inserted now under a provisional number no one outside this
        transaction ever sees (unique, as the column needs), numbered by
        :meth:`finish` just before the commit."""
        if invoice.number:
            raise ValueError("an invoice numbered at commit is issued without a number")
        self._number_pending()
        issued = self.issue_invoice(replace(invoice, number=f"~{uuid.uuid4().hex}"))
        self._unnumbered.append(issued.id)
        return replace(issued, number="")

    def attempts(self, invoice_id: str) -> Sequence[ChargeAttempt]:
        if invoice_id in self._issued and invoice_id not in self._attempts_read:
            # Issued in this transaction: its attempts are the ones saved since.
            self._attempts_read.add(invoice_id)
            saved = sorted((k, r) for k, r in self._attempt_rows.items() if k[0] == invoice_id)
            return tuple(charge_attempt_record(values_of(r, CHARGE_ATTEMPT_COLUMNS)) for _, r in saved)
        rows = charge_attempt_rows(self._session, invoice_id, self._row.customer_id)
        self._attempts_read.add(invoice_id)
        self._attempt_rows.update(((r.invoice_id, r.attempt), r) for r in rows)
        return tuple(charge_attempt_record(values_of(r, CHARGE_ATTEMPT_COLUMNS)) for r in rows)

    def save_attempt(self, attempt: ChargeAttempt) -> None:
        if attempt.customer_id != self._row.customer_id:
            raise ValueError("a charge attempt must be the locked subscription's customer's")
        key = (attempt.invoice_id, attempt.attempt)
        row = self._attempt_rows.get(key)
        if row is None and attempt.invoice_id not in self._attempts_read:
            row = self._session.get(ChargeAttemptModel, key)
        self._attempt_rows[key] = write_charge_attempt(self._session, row, attempt)
        # Not flushed here: the row goes with the lock's next statement or
        # its commit, so an attempt saved before the charge and again with
        # its outcome is one INSERT. Before the commit it is in no one
        # else's sight either way.

    def mark_invoice_paid(
        self, invoice_id: str, *, paid_at: datetime, payment_reference: str, payment_method_id: str | None
    ) -> Invoice:
        self._number_pending()
        mark_open_invoice_paid(
            self._session,
            self._row.customer_id,
            invoice_id,
            paid_at=paid_at,
            payment_reference=payment_reference,
            payment_method_id=payment_method_id,
        )
        known = self._issued.get(invoice_id) or self._read.get(invoice_id)
        method_row = self._payment_method_row()
        if (
            known is not None
            and known.status is InvoiceStatus.OPEN
            and (payment_method_id is None or (method_row is not None and method_row.id == payment_method_id))
        ):
            # Issued or read in this transaction, and open until the update
            # above: it is what was issued or read, paid.
            paid = replace(
                known,
                status=InvoiceStatus.PAID,
                paid_at=utc(paid_at, "paid_at"),
                payment_reference=payment_reference,
                payment_method=None
                if method_row is None or payment_method_id is None
                else payment_method_record(values_of(method_row, PAYMENT_METHOD_COLUMNS)),
            )
            if invoice_id in self._issued:
                self._issued[invoice_id] = paid
            self._read[invoice_id] = paid
            return paid
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
        self._number_pending()
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
        """Kept until the block ends (:meth:`write_events`): nothing under
        the lock reads the audit log, and the events go in one statement."""
        if event.customer_id != self._row.customer_id:
            raise ValueError("an event recorded under a subscription lock must be its customer's")
        self._events.append(event)

    def enqueue_mail(self, mail: OutboxMail) -> None:
        """Written in the lock's transaction: sent only if the change is committed."""
        if mail.customer_id != self._row.customer_id:
            raise ValueError("an email queued under a subscription lock must be to its customer")
        add_mail(self._session, [mail])

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

    def redeem_promotion(self, code: PromotionCode, redemption: PromotionRedemption) -> bool:
        if (redemption.customer_id, redemption.subscription_id) != (self._row.customer_id, self._row.id):
            raise ValueError("a redemption recorded under a subscription lock must be its customer's")
        return redeem_promotion(self._session, code, redemption)

    def release_promotion(self, customer_id: str, code: str) -> None:
        if customer_id != self._row.customer_id:
            raise ValueError("only the locked subscription's customer's redemption can be released")
        release_promotion(self._session, customer_id, code)

    def grant_discount(self, percent: int, renewals: int) -> Subscription:
        if not 1 <= percent <= 100 or renewals < 1:
            raise ValueError(f"a discount is 1-100 percent for 1 or more renewals, got {percent}, {renewals}")
        self._row.discount_percent = percent
        self._row.discount_renewals = renewals
        self._session.flush()
        return self.subscription

    def use_retention_discount(self) -> Subscription:
        row = self._row
        row.discount_renewals = max(0, row.discount_renewals - 1)
        if row.discount_renewals == 0:
            row.discount_percent = 0
        self._session.flush()
        return self.subscription


#: Takes what it can of the ids given, one advisory lock each, without
#: waiting; the key is a 64-bit hash of the id in a namespace of its own.
_TAKE_DUE = text(
    "SELECT id FROM unnest(CAST(:ids AS text[])) AS due(id) "
    "WHERE pg_try_advisory_lock(hashtextextended('portal_renewal:' || id, 0))"
)
_RELEASE_DUE = text("SELECT pg_advisory_unlock_all()")


class SQLDueShare:
    """:class:`~flask_customer_portal.storage.DueShare` of
    :meth:`SQLAlchemyStorage.share_due`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._held = False

    def take(self, subscription_ids: Sequence[str]) -> set[str]:
        if not subscription_ids:
            return set()
        taken = set(self._connection.execute(_TAKE_DUE, {"ids": list(subscription_ids)}).scalars())
        self._held = self._held or bool(taken)
        return taken

    def release(self) -> None:
        if self._held:
            self._connection.execute(_RELEASE_DUE)
            self._held = False


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
        add_mail(self._session, [mail])
