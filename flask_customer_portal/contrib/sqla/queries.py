"""The hot reads of the SQLAlchemy store: columns straight into records.

The reads behind every signed-in request and the most visited pages select
plain table columns (Core, no ORM entities): each row goes straight into a
frozen record (:mod:`.mapping`), with no ORM object to build and no
identity map to refresh, so what they return is always as fresh as the
statement. Each select names its columns in the order of the record's
``*_COLUMNS`` in :mod:`.mapping`, so a slice of a row is what the record's
function reads.

These statements are built once, with bound parameters: building a
statement of some twenty columns costs more than running it from
SQLAlchemy's compiled cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, case, func, select

from ...storage import InvoiceStatus, SubscriptionStatus
from .mapping import (
    CREDIT_NOTE_COLUMNS,
    CUSTOMER_COLUMNS,
    INVOICE_COLUMNS,
    INVOICE_LINE_COLUMNS,
    PAYMENT_METHOD_COLUMNS,
    SESSION_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    credit_note_record,
    invoice_record,
)
from .models import (
    CreditNoteModel,
    CustomerModel,
    InvoiceLineModel,
    InvoiceModel,
    LicenseKeyModel,
    PaymentMethodModel,
    PortalSessionModel,
    SubscriptionModel,
    TZDateTime,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session
    from sqlalchemy.sql import ColumnElement, Executable, FromClause

    from ...storage import CreditNote, Invoice

__all__ = [
    "COUNT_INVOICES",
    "COUNT_LICENSE_KEYS",
    "GET_INVOICE",
    "GET_SUBSCRIPTION_INVOICE",
    "LIST_CUSTOMER_SESSIONS",
    "LIST_INVOICES",
    "LIST_SUBSCRIPTIONS",
    "OPEN_SUBSCRIPTION_INVOICES",
    "SELECT_INVOICES",
    "SESSION_WITH_CUSTOMER",
    "invoices",
    "portal_sessions",
    "read_invoices",
    "session_columns",
]

_customers = CustomerModel.__table__
_payment_methods = PaymentMethodModel.__table__
_subscriptions = SubscriptionModel.__table__
_license_keys = LicenseKeyModel.__table__
portal_sessions = PortalSessionModel.__table__
invoices = InvoiceModel.__table__
_invoice_lines = InvoiceLineModel.__table__
_credit_notes = CreditNoteModel.__table__


def _columns(table: FromClause, names: Sequence[str]) -> tuple[ColumnElement[Any], ...]:
    return tuple(table.c[name] for name in names)


_customer_columns = _columns(_customers, CUSTOMER_COLUMNS)
session_columns = _columns(portal_sessions, SESSION_COLUMNS)
_payment_method_columns = _columns(_payment_methods, PAYMENT_METHOD_COLUMNS)
_subscription_columns = _columns(_subscriptions, SUBSCRIPTION_COLUMNS)
_invoice_columns = _columns(invoices, INVOICE_COLUMNS)
_invoice_line_columns = _columns(_invoice_lines, INVOICE_LINE_COLUMNS)


def _payment_method_join(owner: FromClause) -> ColumnElement[bool]:
    """The payment method of an ``owner`` row (a subscription or an
    invoice), by ``(id, customer_id)`` like the foreign key."""
    return and_(
        _payment_methods.c.id == owner.c.payment_method_id,
        _payment_methods.c.customer_id == owner.c.customer_id,
    )


# -- sessions, subscriptions, licence keys ------------------------------------

SESSION_WITH_CUSTOMER = (
    select(*session_columns, *_customer_columns)
    .select_from(portal_sessions.join(_customers, _customers.c.id == portal_sessions.c.customer_id))
    .where(portal_sessions.c.id == bindparam("session_id"))
)
#: A session signs its customer in while it is unrevoked, of the customer's
#: current auth version, and within both time limits (see ``auth.py``).
LIST_CUSTOMER_SESSIONS = (
    select(*session_columns)
    .select_from(portal_sessions.join(_customers, _customers.c.id == portal_sessions.c.customer_id))
    .where(
        portal_sessions.c.customer_id == bindparam("customer_id"),
        portal_sessions.c.revoked_at.is_(None),
        portal_sessions.c.auth_version == _customers.c.auth_version,
        portal_sessions.c.last_seen_at >= bindparam("seen_since", type_=TZDateTime()),
        portal_sessions.c.created_at >= bindparam("created_since", type_=TZDateTime()),
    )
    .order_by(
        portal_sessions.c.last_seen_at.desc(), portal_sessions.c.created_at.desc(), portal_sessions.c.id
    )
)
LIST_SUBSCRIPTIONS = (
    select(*_subscription_columns, *_payment_method_columns)
    .select_from(_subscriptions.outerjoin(_payment_methods, _payment_method_join(_subscriptions)))
    .where(_subscriptions.c.customer_id == bindparam("customer_id"))
    .order_by(
        # Current ones first, then past ones.
        case((_subscriptions.c.status == SubscriptionStatus.CANCELLED, 1), else_=0),
        _subscriptions.c.created_at.desc(),
        _subscriptions.c.id.desc(),
    )
)
COUNT_LICENSE_KEYS = (
    select(func.count())
    .select_from(_license_keys)
    .where(_license_keys.c.customer_id == bindparam("customer_id"))
)


# -- invoices -----------------------------------------------------------------

COUNT_INVOICES = (
    select(func.count()).select_from(invoices).where(invoices.c.customer_id == bindparam("customer_id"))
)
#: Every read of invoices: their columns with the card joined (see
#: :func:`~.mapping.invoice_record`), then, where lines are wanted, one
#: :data:`_INVOICE_LINES` for all the invoices found (see :func:`read_invoices`).
SELECT_INVOICES = select(*_invoice_columns, *_payment_method_columns).select_from(
    invoices.outerjoin(_payment_methods, _payment_method_join(invoices))
)
#: One page of a customer's invoice ids, newest first: read from the
#: billing-history index alone, so the rows an ``OFFSET`` skips are index
#: entries, not invoices joined to their cards.
_INVOICE_PAGE_IDS = (
    select(invoices.c.id)
    .where(invoices.c.customer_id == bindparam("customer_id"))
    .order_by(invoices.c.issued_at.desc(), invoices.c.id.desc())
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)
#: A page of a customer's invoices, each row ending with the count of all
#: of them (a scalar subquery the database runs once): the page and the
#: total in one round trip.
LIST_INVOICES = (
    SELECT_INVOICES.add_columns(COUNT_INVOICES.scalar_subquery())
    # The page's ids are the customer's (the subquery is scoped to them):
    # each row is then found by its primary key.
    .where(invoices.c.id.in_(_INVOICE_PAGE_IDS))
    .order_by(invoices.c.issued_at.desc(), invoices.c.id.desc())
)
GET_INVOICE = SELECT_INVOICES.where(
    invoices.c.id == bindparam("invoice_id"), invoices.c.customer_id == bindparam("customer_id")
)
_SUBSCRIPTION_INVOICES = SELECT_INVOICES.where(
    invoices.c.subscription_id == bindparam("subscription_id"),
    invoices.c.customer_id == bindparam("customer_id"),
)
#: A subscription's open invoices, oldest first.
OPEN_SUBSCRIPTION_INVOICES = _SUBSCRIPTION_INVOICES.where(invoices.c.status == InvoiceStatus.OPEN).order_by(
    invoices.c.issued_at, invoices.c.id
)
GET_SUBSCRIPTION_INVOICE = _SUBSCRIPTION_INVOICES.where(invoices.c.id == bindparam("invoice_id"))
_INVOICE_LINES = (
    select(_invoice_lines.c.invoice_id, *_invoice_line_columns)
    .where(_invoice_lines.c.invoice_id.in_(bindparam("invoice_ids", expanding=True)))
    .order_by(_invoice_lines.c.invoice_id, _invoice_lines.c.position)
)


_CREDITED = INVOICE_COLUMNS.index("amount_credited")
_CREDIT_NOTES = (
    select(*_columns(_credit_notes, CREDIT_NOTE_COLUMNS))
    .where(_credit_notes.c.invoice_id.in_(bindparam("invoice_ids", expanding=True)))
    .order_by(_credit_notes.c.invoice_id, _credit_notes.c.issued_at, _credit_notes.c.id)
)


def read_invoices(
    session: Session,
    statement: Executable,
    params: dict[str, Any] | None = None,
    *,
    with_lines: bool = True,
    with_credit_notes: bool = False,
) -> tuple[Invoice, ...]:
    """The invoices a select of :data:`SELECT_INVOICES` finds, in its order,
    with their lines read in one more query and the credit notes of those
    that have any in another (none when it finds nothing)."""
    rows = session.execute(statement, params).all()
    lines: dict[str, list[Sequence[Any]]] = {}
    notes: dict[str, list[CreditNote]] = {}
    if with_lines and rows:
        for invoice_id, *line in session.execute(_INVOICE_LINES, {"invoice_ids": [row[0] for row in rows]}):
            lines.setdefault(invoice_id, []).append(line)
    # Only invoices with credit notes have any to read: most have none, and
    # then this costs no query at all.
    credited = [row[0] for row in rows if row[_CREDITED]] if with_credit_notes else []
    if credited:
        for values in session.execute(_CREDIT_NOTES, {"invoice_ids": credited}):
            note = credit_note_record(values)
            notes.setdefault(note.invoice_id, []).append(note)
    return tuple(invoice_record(row, lines.get(row[0], ()), notes.get(row[0], ())) for row in rows)
