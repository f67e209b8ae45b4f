"""Invoices in the SQLAlchemy store: issuing them, their numbers, reading
them, and the billing details they are made out to
(:class:`~flask_customer_portal.storage.BillingStore`'s invoices and
:class:`~flask_customer_portal.storage.BillingDetailsStore`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select, text, update

from ...billing.periods import BILLING_DETAILS_STATUSES
from ...money import Money
from ...storage import BillingDetails, Invoice, Page, StateConflict
from ._base import StoreBase, add_event, insert_if_absent, now_utc, rowcount
from .mapping import (
    BILLING_DETAILS_COLUMNS,
    INVOICE_COLUMNS,
    INVOICE_LINE_COLUMNS,
    PAYMENT_METHOD_COLUMNS,
    billing_details_json,
    billing_details_record,
    invoice_record,
    values_of,
)
from .models import (
    BillingDetailsModel,
    CustomerModel,
    InvoiceLineModel,
    InvoiceModel,
    SequenceModel,
    utc,
    utc_or_none,
)
from .queries import COUNT_INVOICES, GET_INVOICE, LIST_INVOICES, SELECT_INVOICES, invoices, read_invoices

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from ...storage import AuditEvent

__all__ = ["InvoicesMixin", "check_billing_details", "insert_invoice", "next_in_sequence"]

_MAX_PREFIX = 32  # invoice number prefix; leaves room for the digits in String(64)


class InvoicesMixin(StoreBase):
    def list_invoices(self, customer_id: str, *, page: int, per_page: int) -> Page[Invoice]:
        """One page of invoices and their total in one query, whatever the
        size (a second one, the count alone, only for an empty page past the
        first); columns only, without ORM objects, and without lines."""
        if page < 1:
            raise ValueError(f"page must be 1 or more, got {page}")
        if per_page < 1:
            raise ValueError(f"per_page must be 1 or more, got {per_page}")
        session = self._session
        rows = session.execute(
            LIST_INVOICES,
            {"customer_id": customer_id, "limit": per_page, "offset": (page - 1) * per_page},
        ).all()
        if rows:
            total = rows[0][-1]
        elif page == 1:
            total = 0  # no first page: no invoices at all
        else:
            total = session.scalar(COUNT_INVOICES, {"customer_id": customer_id})
        return Page(
            items=tuple(invoice_record(row) for row in rows),
            page=page,
            per_page=per_page,
            total=total or 0,
        )

    def list_invoices_after(
        self, customer_id: str, after: Invoice | None, *, limit: int, with_lines: bool = False
    ) -> Sequence[Invoice]:
        """A keyset page: one query (two with lines) on the billing-history
        index, as fast for the thousandth batch as for the first; one more
        for the credit notes of the batch's invoices that have any."""
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        query = (
            SELECT_INVOICES.where(invoices.c.customer_id == customer_id)
            .order_by(invoices.c.issued_at.desc(), invoices.c.id.desc())
            .limit(limit)
        )
        if after is not None:
            issued_at = utc(after.issued_at, "after.issued_at")
            query = query.where(
                or_(
                    invoices.c.issued_at < issued_at,
                    and_(invoices.c.issued_at == issued_at, invoices.c.id < after.id),
                )
            )
        return read_invoices(self._session, query, with_lines=with_lines, with_credit_notes=True)

    def get_invoice(self, customer_id: str, invoice_id: str) -> Invoice | None:
        """Two queries: the invoice with its card, then its lines (and a
        third for its credit notes, if it has any)."""
        found = read_invoices(
            self._session,
            GET_INVOICE,
            {"invoice_id": invoice_id, "customer_id": customer_id},
            with_credit_notes=True,
        )
        return found[0] if found else None

    def add_invoice(self, invoice: Invoice) -> Invoice:
        """Insert an issued invoice with its lines (see :func:`insert_invoice`)."""
        with self._transaction() as session:
            return insert_invoice(session, invoice)

    def next_invoice_number(self, prefix: str = "INV-") -> str:
        """The next invoice number of the ``prefix`` series: ``INV-000001``, …

        Each prefix is its own gap-free-as-possible series (``CN-`` for
        credit notes, say). Numbers are committed before they are returned,
        so a number is never handed out twice, even if the invoice it was
        meant for is never saved (that leaves a gap, which is legal; reuse
        is not).
        """
        if not 1 <= len(prefix) <= _MAX_PREFIX:
            raise ValueError(f"prefix must be 1 to {_MAX_PREFIX} characters")
        with self._transaction() as session:
            value = next_in_sequence(session, f"invoice_number:{prefix}")
        return f"{prefix}{value:06d}"

    # -- billing details -------------------------------------------------------

    def get_billing_details(self, customer_id: str) -> BillingDetails | None:
        row = self._session.get(BillingDetailsModel, customer_id, populate_existing=True)
        return None if row is None else billing_details_record(values_of(row, BILLING_DETAILS_COLUMNS))

    def save_billing_details(
        self, customer_id: str, details: BillingDetails, *, event: AuditEvent | None = None
    ) -> BillingDetails | None:
        check_billing_details(details)
        updated_at = utc(details.updated_at or now_utc(), "BillingDetails.updated_at")
        with self._transaction() as session:
            if session.get(CustomerModel, customer_id) is None:
                return None
            row = session.get(BillingDetailsModel, customer_id, populate_existing=True, with_for_update=True)
            if row is None:
                row = BillingDetailsModel(customer_id=customer_id)
                session.add(row)
            row.name = details.name
            row.line1 = details.line1
            row.line2 = details.line2
            row.city = details.city
            row.postal_code = details.postal_code
            row.region = details.region
            row.country = details.country
            row.tax_id = details.tax_id
            row.tax_id_scheme = details.tax_id_scheme
            row.updated_at = updated_at
            session.flush()
            add_event(session, event)
            return billing_details_record(values_of(row, BILLING_DETAILS_COLUMNS))

    def add_invoice_billing_details(
        self, customer_id: str, invoice_id: str, details: BillingDetails, *, event: AuditEvent | None = None
    ) -> Invoice | None:
        """One conditional ``UPDATE … WHERE billing_details IS NULL AND
        status IN (open)``: the database lets exactly one caller fill them
        in, and never on an invoice that was paid (or voided) meanwhile."""
        check_billing_details(details)
        with self._transaction() as session:
            result = session.execute(
                update(InvoiceModel)
                .where(
                    InvoiceModel.id == invoice_id,
                    InvoiceModel.customer_id == customer_id,
                    InvoiceModel.billing_details.is_(None),
                    InvoiceModel.status.in_(sorted(BILLING_DETAILS_STATUSES)),
                )
                .values(billing_details=billing_details_json(details))
                .execution_options(synchronize_session=False)
            )
            if rowcount(result) == 1:
                add_event(session, event)
        if rowcount(result) != 1:
            found = self.get_invoice(customer_id, invoice_id)
            if found is None:
                return None
            if found.billing_details is not None:
                raise StateConflict(f"invoice {invoice_id!r} already has billing details")
            raise StateConflict(f"invoice {invoice_id!r} is {found.status}: its billing details are final")
        return self.get_invoice(customer_id, invoice_id)


def current_billing_details(session: Session, customer_id: str) -> BillingDetails | None:
    """The customer's billing details as saved now (``None``: none saved)."""
    current = session.get(BillingDetailsModel, customer_id, populate_existing=True)
    return None if current is None else billing_details_record(values_of(current, BILLING_DETAILS_COLUMNS))


def insert_invoice(
    session: Session,
    invoice: Invoice,
    *,
    details_read: bool = False,
    saved_details: BillingDetails | None = None,
) -> Invoice:
    """Insert an issued invoice with its lines.

    Checks the arithmetic first: ``total == subtotal + tax`` and, when
    there are lines, ``subtotal`` is the sum of their amounts. The
    payment method and subscription, if any, must be the customer's own.
    Issued invoices are never updated; corrections are new documents.

    An invoice given without ``billing_details`` gets a copy of the
    customer's current ones (if they saved any), in the same transaction
    (read here, or by the caller: ``details_read`` and ``saved_details``).
    """
    Money(invoice.total, invoice.currency)  # validates the currency code
    if invoice.total != invoice.subtotal + invoice.tax:
        raise ValueError(
            f"invoice {invoice.id!r}: total {invoice.total} != "
            f"subtotal {invoice.subtotal} + tax {invoice.tax}"
        )
    if invoice.lines and sum(line.amount for line in invoice.lines) != invoice.subtotal:
        raise ValueError(
            f"invoice {invoice.id!r}: lines add up to "
            f"{sum(line.amount for line in invoice.lines)}, subtotal is {invoice.subtotal}"
        )
    if invoice.credit_notes or invoice.amount_refunded or invoice.amount_credited:
        # The sums follow the credit notes, which come after the invoice.
        raise ValueError(f"invoice {invoice.id!r}: record its credit notes with add_credit_note()")
    method = invoice.payment_method
    if method is not None and method.customer_id != invoice.customer_id:
        raise ValueError(
            f"payment method {method.id!r} belongs to customer {method.customer_id!r}, "
            f"not to {invoice.customer_id!r}"
        )
    details = invoice.billing_details
    if details is None:
        # ``details_read``: the caller read the saved ones already (``saved_details``).
        details = saved_details if details_read else current_billing_details(session, invoice.customer_id)
    else:
        check_billing_details(details)
    row = InvoiceModel(
        id=invoice.id,
        number=invoice.number,
        customer_id=invoice.customer_id,
        subscription_id=invoice.subscription_id,
        status=invoice.status,
        currency=invoice.currency,
        subtotal=invoice.subtotal,
        tax=invoice.tax,
        total=invoice.total,
        issued_at=utc(invoice.issued_at, "Invoice.issued_at"),
        description=invoice.description,
        paid_at=utc_or_none(invoice.paid_at, "Invoice.paid_at"),
        payment_reference=invoice.payment_reference,
        payment_method_id=None if method is None else method.id,
        billing_details=None if details is None else billing_details_json(details),
    )
    lines = [
        InvoiceLineModel(
            invoice_id=invoice.id,
            position=position,
            description=line.description,
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            amount=line.amount,
        )
        for position, line in enumerate(invoice.lines)
    ]
    session.add(row)
    session.flush()  # the invoice row first: the lines reference it
    session.add_all(lines)
    session.flush()
    return invoice_record(
        (*values_of(row, INVOICE_COLUMNS), *values_of(method, PAYMENT_METHOD_COLUMNS)),
        [values_of(line, INVOICE_LINE_COLUMNS) for line in lines],
    )


def next_in_sequence(session: Session, name: str) -> int:
    """Add one to the counter ``name`` and return the new value.

    A relative ``UPDATE … SET last_value = last_value + 1`` locks the row
    (PostgreSQL) or the database (SQLite) until commit, so concurrent
    callers queue up and each reads its own increment. This is the row
    lock that ``SELECT … FOR UPDATE`` would take, without its blind spot
    on SQLite, where ``FOR UPDATE`` is ignored and a read-then-write
    would hand two callers the same value.
    """
    bump = (
        update(SequenceModel)
        .where(SequenceModel.name == name)
        .values(last_value=SequenceModel.last_value + 1)
        .execution_options(synchronize_session=False)
    )
    if session.get_bind().dialect.update_returning:
        # One round trip: the new value comes back with the UPDATE.
        value = session.scalar(bump.returning(SequenceModel.last_value))
        if value is None:
            _create_sequence(session, name)
            value = session.scalar(bump.returning(SequenceModel.last_value))
        if value is None:  # pragma: no cover - created just above
            raise RuntimeError(f"sequence {name!r} could not be created")
        return int(value)
    if rowcount(session.execute(bump)) != 1:
        _create_sequence(session, name)
        if rowcount(session.execute(bump)) != 1:
            raise RuntimeError(f"sequence {name!r} could not be created")
    value = session.scalar(select(SequenceModel.last_value).where(SequenceModel.name == name))
    if value is None:  # pragma: no cover - the UPDATE above matched it
        raise RuntimeError(f"sequence {name!r} vanished")
    return value


#: The counter taken and the invoice numbered in one statement (PostgreSQL):
#: ``f"{prefix}{value:06d}"``, at least six digits, zero-padded. Written out
#: because the two tables meet only through the counter's one row, which
#: SQLAlchemy's check for forgotten joins would refuse.
_NUMBER_INVOICE = text(
    "WITH bumped AS ("
    "UPDATE portal_sequences SET last_value = last_value + 1 "
    "WHERE name = :name RETURNING last_value) "
    "UPDATE portal_invoices SET number = CAST(:prefix AS VARCHAR) || CASE "
    "WHEN bumped.last_value < 1000000 THEN lpad(CAST(bumped.last_value AS TEXT), 6, '0') "
    "ELSE CAST(bumped.last_value AS TEXT) END "
    "FROM bumped WHERE portal_invoices.id = :invoice_id AND portal_invoices.customer_id = :customer_id "
    "RETURNING portal_invoices.number"
)


def number_invoice(session: Session, invoice_id: str, customer_id: str, prefix: str = "INV-") -> str:
    """Give the invoice, inserted in this transaction, the next number of
    the ``prefix`` series; the counter's row stays locked until the commit.

    On PostgreSQL the counter is taken and the invoice numbered in one
    statement (the counter's ``UPDATE`` in a ``WITH``): one round trip
    between the counter's lock and the commit (three statements the first
    time a series is used). Elsewhere, two.
    """
    name = f"invoice_number:{prefix}"
    if session.get_bind().dialect.name == "postgresql":
        params = {"name": name, "prefix": prefix, "invoice_id": invoice_id, "customer_id": customer_id}
        number = session.scalar(_NUMBER_INVOICE, params)
        if number is None:
            # No counter yet: made (or a concurrent maker's waited for), then taken.
            _create_sequence(session, name)
            number = session.scalar(_NUMBER_INVOICE, params)
        if number is None:
            # The invoice is not there: this raises, and the transaction,
            # the counter's increment with it, rolls back.
            raise StateConflict(f"invoice {invoice_id!r} is not in this transaction to be numbered")
        return str(number)
    key = (InvoiceModel.id == invoice_id, InvoiceModel.customer_id == customer_id)
    number = f"{prefix}{next_in_sequence(session, name):06d}"
    result = session.execute(
        update(InvoiceModel).where(*key).values(number=number).execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        raise StateConflict(f"invoice {invoice_id!r} is not in this transaction to be numbered")
    return number


def _create_sequence(session: Session, name: str) -> None:
    """Create the counter at 0 unless a concurrent caller just did (the
    caller's retry then sees theirs)."""
    insert_if_absent(session, SequenceModel, {"name": name, "last_value": 0})


def check_billing_details(details: BillingDetails) -> None:
    """Refuse details no form would produce: the store keeps what it is given."""
    if not details.name.strip() or not details.line1.strip():
        raise ValueError("billing details need a name and a first address line")
    if len(details.country) != 2 or not details.country.isascii() or not details.country.isupper():
        raise ValueError(f"country must be an upper-case ISO 3166-1 alpha-2 code, got {details.country!r}")
    if (details.tax_id is None) != (details.tax_id_scheme is None):
        raise ValueError("a tax ID and its scheme are set together or not at all")
