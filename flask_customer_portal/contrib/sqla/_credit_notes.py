"""Credit notes in the SQLAlchemy store
(:class:`~flask_customer_portal.storage.CreditNoteStore`): recorded by the
merchant's back office, read with their invoice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import case, literal, select, update

from ...money import Money
from ...storage import CreditNote, InvoiceStatus, StateConflict
from ._base import StoreBase, add_event, insert_if_absent, rowcount
from .mapping import CREDIT_NOTE_COLUMNS, credit_note_lines_json, credit_note_record
from .models import CreditNoteModel, InvoiceModel, utc

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ...storage import AuditEvent

__all__ = ["CreditNotesMixin", "check_credit_note"]

#: Invoices a credit note may reduce: money was taken for them.
_CREDITABLE = (InvoiceStatus.PAID, InvoiceStatus.REFUNDED)


class _AlreadyRecorded(Exception):
    """The credit note's id was recorded meanwhile: undo this attempt."""


def check_credit_note(note: CreditNote) -> None:
    """The arithmetic of a credit note, before anything is written."""
    Money(note.amount, note.currency)  # validates the currency code
    if note.amount <= 0:
        raise ValueError(f"credit note {note.id!r}: amount must be more than 0, got {note.amount}")
    if not 0 <= note.refunded <= note.amount:
        raise ValueError(f"credit note {note.id!r}: refunded {note.refunded} is not within 0..{note.amount}")
    if note.lines and sum(line.amount for line in note.lines) != note.amount:
        raise ValueError(
            f"credit note {note.id!r}: lines add up to {sum(line.amount for line in note.lines)}, "
            f"amount is {note.amount}"
        )


def _recorded(session: Session, credit_note_id: str) -> CreditNote | None:
    columns = [getattr(CreditNoteModel, name) for name in CREDIT_NOTE_COLUMNS]
    row = session.execute(select(*columns).where(CreditNoteModel.id == credit_note_id)).first()
    return None if row is None else credit_note_record(row)


class CreditNotesMixin(StoreBase):
    def add_credit_note(self, credit_note: CreditNote, *, event: AuditEvent | None = None) -> CreditNote:
        """One conditional ``UPDATE`` of the invoice (its sums, and
        ``refunded`` once refunds reach the total) and the credit note's
        ``INSERT``, in one transaction. The ``UPDATE``'s condition keeps the
        credit notes within the invoice's total even when two are recorded
        at once: the database takes them one after the other."""
        note = credit_note
        check_credit_note(note)
        try:
            with self._transaction() as session:
                found = _recorded(session, note.id)
                if found is not None:
                    raise _AlreadyRecorded
                refunded_after = InvoiceModel.amount_refunded + note.refunded
                result = session.execute(
                    update(InvoiceModel)
                    .where(
                        InvoiceModel.id == note.invoice_id,
                        InvoiceModel.customer_id == note.customer_id,
                        InvoiceModel.currency == note.currency,
                        InvoiceModel.status.in_(_CREDITABLE),
                        InvoiceModel.amount_credited + note.amount <= InvoiceModel.total,
                    )
                    .values(
                        amount_credited=InvoiceModel.amount_credited + note.amount,
                        amount_refunded=refunded_after,
                        status=case(
                            (
                                refunded_after >= InvoiceModel.total,
                                literal(InvoiceStatus.REFUNDED, InvoiceModel.status.type),
                            ),
                            else_=InvoiceModel.status,
                        ),
                    )
                    .execution_options(synchronize_session=False)
                )
                if rowcount(result) != 1:
                    raise StateConflict(
                        f"credit note {note.id!r}: invoice {note.invoice_id!r} of {note.customer_id!r} "
                        f"is not a paid {note.currency} invoice with {note.amount} left to credit"
                    )
                inserted = insert_if_absent(
                    session,
                    CreditNoteModel,
                    {
                        "id": note.id,
                        "number": note.number,
                        "invoice_id": note.invoice_id,
                        "customer_id": note.customer_id,
                        "currency": note.currency,
                        "amount": note.amount,
                        "refunded": note.refunded,
                        "issued_at": utc(note.issued_at, "CreditNote.issued_at"),
                        "reason": note.reason,
                        "memo": note.memo,
                        "lines": credit_note_lines_json(note.lines),
                    },
                )
                if not inserted:
                    raise _AlreadyRecorded
                add_event(session, event)
        except _AlreadyRecorded:
            found = _recorded(self._session, note.id)
            if found is None or (found.customer_id, found.invoice_id) != (note.customer_id, note.invoice_id):
                raise StateConflict(f"credit note {note.id!r}: its id or number is already used") from None
            return found
        return note
