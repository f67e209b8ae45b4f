"""Charge attempts and the paid update, as every lock that charges an
invoice writes them: a subscription's lock and an invoice's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select, update

from ...storage import InvoiceStatus, StateConflict
from ._base import FRESH, rowcount
from .models import ChargeAttemptModel, InvoiceModel, utc, utc_or_none

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

    from ...storage import ChargeAttempt

__all__ = ["charge_attempt_rows", "mark_open_invoice_paid", "write_charge_attempt"]


def charge_attempt_rows(session: Session, invoice_id: str, customer_id: str) -> Sequence[ChargeAttemptModel]:
    """The attempts to charge ``invoice_id`` (the customer's), first to last."""
    return session.scalars(
        select(ChargeAttemptModel)
        .where(ChargeAttemptModel.invoice_id == invoice_id, ChargeAttemptModel.customer_id == customer_id)
        .order_by(ChargeAttemptModel.attempt)
        .execution_options(**FRESH)
    ).all()


def write_charge_attempt(
    session: Session, row: ChargeAttemptModel | None, attempt: ChargeAttempt
) -> ChargeAttemptModel:
    """``attempt`` written onto its ``row``, or onto a new row added to
    ``session`` when there is none yet; returns the row. Not flushed."""
    if row is None:
        row = ChargeAttemptModel(
            invoice_id=attempt.invoice_id,
            attempt=attempt.attempt,
            idempotency_key=attempt.idempotency_key,
            customer_id=attempt.customer_id,
            created_at=utc(attempt.created_at, "ChargeAttempt.created_at"),
        )
        session.add(row)
    elif row.idempotency_key != attempt.idempotency_key:
        raise ValueError("an attempt's idempotency key never changes")
    row.payment_method_id = attempt.payment_method_id
    row.amount = attempt.amount
    row.currency = attempt.currency
    row.status = attempt.status
    row.decline_reason = attempt.decline_reason
    row.provider_reference = attempt.provider_reference
    row.resolved_at = utc_or_none(attempt.resolved_at, "ChargeAttempt.resolved_at")
    return row


def mark_open_invoice_paid(
    session: Session,
    customer_id: str,
    invoice_id: str,
    *,
    paid_at: datetime,
    payment_reference: str,
    payment_method_id: str | None,
) -> None:
    """Mark the customer's invoice paid if it is still open; a
    :class:`~flask_customer_portal.storage.StateConflict` otherwise."""
    result = session.execute(
        update(InvoiceModel)
        .where(
            InvoiceModel.id == invoice_id,
            InvoiceModel.customer_id == customer_id,
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
