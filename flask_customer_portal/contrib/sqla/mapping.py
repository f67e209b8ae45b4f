"""Rows to records: the one place where what the SQLAlchemy store reads
becomes the frozen records of :mod:`flask_customer_portal.storage`.

Each record has one function here, and each reads the values of the
record's columns in one order, the names beside it (``CUSTOMER_COLUMNS``
for :func:`customer_record`, …). Those values come from a row of a select
of exactly those columns (:mod:`.queries`, the hot reads), or from an ORM
object of :mod:`.models` through :func:`values_of`; either way the record
is made by the same function. Reads never return ORM objects.

The way back, records to rows, is here too where the store writes more
than a record's own fields (an audit event, a session, the billing details
an invoice keeps as JSON).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...money import Money
from ...storage import (
    ArrearsAttempt,
    AuditEvent,
    BillingDetails,
    ChargeAttempt,
    CreditNote,
    CreditNoteReason,
    Customer,
    Invoice,
    InvoiceLine,
    LicenseKey,
    LicenseKeyInstance,
    LinkRecord,
    MailStatus,
    OutboxMail,
    PaymentMethod,
    Plan,
    PlanChange,
    PortalSessionRecord,
    Subscription,
    TaxIdScheme,
)
from .models import (
    AuditEventModel,
    MailOutboxModel,
    PlanChangeModel,
    PortalSessionModel,
    utc,
    utc_or_none,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "ARREARS_ATTEMPT_COLUMNS",
    "AUDIT_EVENT_COLUMNS",
    "BILLING_DETAILS_COLUMNS",
    "CHARGE_ATTEMPT_COLUMNS",
    "CREDIT_NOTE_COLUMNS",
    "CUSTOMER_COLUMNS",
    "INVOICE_COLUMNS",
    "INVOICE_LINE_COLUMNS",
    "LICENSE_KEY_COLUMNS",
    "LICENSE_KEY_INSTANCE_COLUMNS",
    "LINK_COLUMNS",
    "MAIL_COLUMNS",
    "PAYMENT_METHOD_COLUMNS",
    "PLAN_CHANGE_COLUMNS",
    "PLAN_COLUMNS",
    "SESSION_COLUMNS",
    "SUBSCRIPTION_COLUMNS",
    "arrears_attempt_record",
    "audit_event_record",
    "audit_row",
    "audit_values",
    "billing_details_json",
    "billing_details_record",
    "charge_attempt_record",
    "credit_note_lines_json",
    "credit_note_record",
    "customer_record",
    "invoice_billing_details",
    "invoice_record",
    "license_key_instance_record",
    "license_key_record",
    "link_record",
    "mail_record",
    "mail_row",
    "payment_method_record",
    "plan_change_record",
    "plan_change_row",
    "plan_record",
    "portal_session_row",
    "session_record",
    "subscription_record",
    "subscription_values",
    "values_of",
]


def _field_names(record: type[Any]) -> tuple[str, ...]:
    """The fields of ``record``, in order: the columns of a table that
    holds exactly them."""
    return tuple(field.name for field in fields(record))


def values_of(source: object | None, names: Sequence[str]) -> tuple[Any, ...]:
    """The attributes ``names`` of ``source`` (an ORM object, or a record
    named like the columns) as a row would hold them; all ``None`` for no
    ``source``, like an outer join that found nothing."""
    return tuple(None if source is None else getattr(source, name) for name in names)


# -- customers and their cards ------------------------------------------------

CUSTOMER_COLUMNS = _field_names(Customer)
PAYMENT_METHOD_COLUMNS = _field_names(PaymentMethod)


def customer_record(values: Sequence[Any]) -> Customer:
    return Customer(*values)


def payment_method_record(values: Sequence[Any]) -> PaymentMethod:
    return PaymentMethod(*values)


def _joined_payment_method(row: Sequence[Any], start: int) -> PaymentMethod | None:
    """The payment method in ``row`` from column ``start`` on (``None`` when
    the outer join found none)."""
    values = row[start : start + len(PAYMENT_METHOD_COLUMNS)]
    return None if values[0] is None else payment_method_record(values)


# -- subscriptions and plans ----------------------------------------------------

SUBSCRIPTION_COLUMNS = (
    "id",
    "customer_id",
    "product_name",
    "plan_name",
    "price_amount",
    "price_currency",
    "interval",
    "interval_count",
    "status",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "cancelled_at",
    "ended_at",
    "hold_reason",
    "created_at",
    "plan_id",
    "quantity",
    "scheduled_plan_id",
    "scheduled_quantity",
    "credit",
    "paused_at",
    "resumes_at",
    "discount_percent",
    "discount_renewals",
)


def subscription_record(row: Sequence[Any]) -> Subscription:
    """The values of :data:`SUBSCRIPTION_COLUMNS`, then those of
    :data:`PAYMENT_METHOD_COLUMNS` (all ``None`` without a card)."""
    (
        subscription_id,
        customer_id,
        product_name,
        plan_name,
        price_amount,
        price_currency,
        interval,
        interval_count,
        status,
        current_period_start,
        current_period_end,
        cancel_at_period_end,
        cancelled_at,
        ended_at,
        hold_reason,
        created_at,
        plan_id,
        quantity,
        scheduled_plan_id,
        scheduled_quantity,
        credit,
        paused_at,
        resumes_at,
        discount_percent,
        discount_renewals,
    ) = row[: len(SUBSCRIPTION_COLUMNS)]
    return Subscription(
        id=subscription_id,
        customer_id=customer_id,
        product_name=product_name,
        plan_name=plan_name,
        price=Money(price_amount, price_currency),
        interval=interval,
        interval_count=interval_count,
        status=status,
        current_period_start=current_period_start,
        current_period_end=current_period_end,
        cancel_at_period_end=cancel_at_period_end,
        cancelled_at=cancelled_at,
        ended_at=ended_at,
        payment_method=_joined_payment_method(row, len(SUBSCRIPTION_COLUMNS)),
        hold_reason=hold_reason,
        created_at=created_at,
        plan_id=plan_id,
        quantity=quantity,
        scheduled_plan_id=scheduled_plan_id,
        scheduled_quantity=scheduled_quantity,
        credit=credit,
        paused_at=paused_at,
        resumes_at=resumes_at,
        discount_percent=discount_percent,
        discount_renewals=discount_renewals,
    )


def subscription_values(row: object, payment_method: object | None) -> tuple[Any, ...]:
    """What :func:`subscription_record` reads, from a subscription's ORM
    object and its payment method (an ORM object, a record, or ``None``)."""
    return (*values_of(row, SUBSCRIPTION_COLUMNS), *values_of(payment_method, PAYMENT_METHOD_COLUMNS))


PLAN_COLUMNS = (
    "id",
    "product_name",
    "name",
    "price_amount",
    "price_currency",
    "interval",
    "interval_count",
    "per_seat",
    "min_quantity",
    "max_quantity",
    "active",
    "position",
)


def plan_record(values: Sequence[Any]) -> Plan:
    (
        plan_id,
        product_name,
        name,
        price_amount,
        price_currency,
        interval,
        interval_count,
        per_seat,
        min_quantity,
        max_quantity,
        active,
        position,
    ) = values
    return Plan(
        id=plan_id,
        product_name=product_name,
        name=name,
        price=Money(price_amount, price_currency),
        interval=interval,
        interval_count=interval_count,
        per_seat=per_seat,
        min_quantity=min_quantity,
        max_quantity=max_quantity,
        active=active,
        position=position,
    )


PLAN_CHANGE_COLUMNS = _field_names(PlanChange)


def plan_change_record(values: Sequence[Any]) -> PlanChange:
    return PlanChange(*values)


def plan_change_row(change: PlanChange) -> PlanChangeModel:
    return PlanChangeModel(**{name: getattr(change, name) for name in PLAN_CHANGE_COLUMNS})


# -- invoices and what they are made out to --------------------------------------

BILLING_DETAILS_COLUMNS = _field_names(BillingDetails)


def billing_details_record(values: Sequence[Any]) -> BillingDetails:
    return BillingDetails(*values)


def billing_details_json(details: BillingDetails) -> dict[str, str | None]:
    """``details`` as the JSON object an invoice keeps: strings (ISO 8601
    UTC for ``updated_at``) or ``null``."""
    updated_at = utc_or_none(details.updated_at, "BillingDetails.updated_at")
    return {
        "name": details.name,
        "line1": details.line1,
        "line2": details.line2,
        "city": details.city,
        "postal_code": details.postal_code,
        "region": details.region,
        "country": details.country,
        "tax_id": details.tax_id,
        "tax_id_scheme": None if details.tax_id_scheme is None else TaxIdScheme(details.tax_id_scheme).value,
        "updated_at": None if updated_at is None else updated_at.isoformat(),
    }


def invoice_billing_details(data: dict[str, str | None] | None) -> BillingDetails | None:
    """The billing details an invoice keeps (:func:`billing_details_json`),
    read back as the values of :data:`BILLING_DETAILS_COLUMNS`."""
    if data is None:
        return None
    scheme, updated_at = data.get("tax_id_scheme"), data.get("updated_at")
    return billing_details_record(
        (
            data["name"] or "",
            data["line1"] or "",
            data["country"] or "",
            data.get("line2"),
            data.get("city"),
            data.get("postal_code"),
            data.get("region"),
            data.get("tax_id"),
            None if scheme is None else TaxIdScheme(scheme),
            None if updated_at is None else datetime.fromisoformat(updated_at),
        )
    )


INVOICE_COLUMNS = (
    "id",
    "number",
    "customer_id",
    "status",
    "currency",
    "subtotal",
    "tax",
    "total",
    "issued_at",
    "description",
    "subscription_id",
    "paid_at",
    "payment_reference",
    "billing_details",
    "amount_refunded",
    "amount_credited",
)
INVOICE_LINE_COLUMNS = _field_names(InvoiceLine)


def invoice_record(
    row: Sequence[Any], lines: Iterable[Sequence[Any]] = (), credit_notes: Iterable[CreditNote] = ()
) -> Invoice:
    """The values of :data:`INVOICE_COLUMNS`, then those of
    :data:`PAYMENT_METHOD_COLUMNS` (all ``None`` without a card; columns
    after them are left alone), with ``lines`` made of the values of
    :data:`INVOICE_LINE_COLUMNS`."""
    (
        invoice_id,
        number,
        customer_id,
        status,
        currency,
        subtotal,
        tax,
        total,
        issued_at,
        description,
        subscription_id,
        paid_at,
        payment_reference,
        billing_details,
        amount_refunded,
        amount_credited,
    ) = row[: len(INVOICE_COLUMNS)]
    return Invoice(
        id=invoice_id,
        number=number,
        customer_id=customer_id,
        status=status,
        currency=currency,
        subtotal=subtotal,
        tax=tax,
        total=total,
        issued_at=issued_at,
        description=description,
        subscription_id=subscription_id,
        paid_at=paid_at,
        payment_reference=payment_reference,
        payment_method=_joined_payment_method(row, len(INVOICE_COLUMNS)),
        lines=tuple(InvoiceLine(*line) for line in lines),
        billing_details=invoice_billing_details(billing_details),
        amount_refunded=amount_refunded or 0,
        amount_credited=amount_credited or 0,
        credit_notes=tuple(credit_notes),
    )


#: The columns of ``portal_credit_notes`` that :func:`credit_note_record` reads, in its order.
CREDIT_NOTE_COLUMNS = (
    "id",
    "number",
    "invoice_id",
    "customer_id",
    "currency",
    "amount",
    "refunded",
    "issued_at",
    "reason",
    "memo",
    "lines",
)


def credit_note_lines_json(lines: Iterable[InvoiceLine]) -> list[dict[str, Any]]:
    return [
        {
            "description": line.description,
            "quantity": line.quantity,
            "unit_amount": line.unit_amount,
            "amount": line.amount,
        }
        for line in lines
    ]


def credit_note_record(values: Sequence[Any]) -> CreditNote:
    (
        credit_note_id,
        number,
        invoice_id,
        customer_id,
        currency,
        amount,
        refunded,
        issued_at,
        reason,
        memo,
        lines,
    ) = values
    return CreditNote(
        id=credit_note_id,
        number=number,
        invoice_id=invoice_id,
        customer_id=customer_id,
        currency=currency,
        amount=amount,
        refunded=refunded,
        issued_at=issued_at,
        reason=None if reason is None else CreditNoteReason(reason),
        memo=memo,
        lines=tuple(
            InvoiceLine(
                description=str(line["description"]),
                quantity=int(line["quantity"]),
                unit_amount=int(line["unit_amount"]),
                amount=int(line["amount"]),
            )
            for line in lines or ()
        ),
    )


CHARGE_ATTEMPT_COLUMNS = _field_names(ChargeAttempt)
ARREARS_ATTEMPT_COLUMNS = _field_names(ArrearsAttempt)


def charge_attempt_record(values: Sequence[Any]) -> ChargeAttempt:
    return ChargeAttempt(*values)


def arrears_attempt_record(values: Sequence[Any]) -> ArrearsAttempt:
    return ArrearsAttempt(*values)


# -- licence keys ---------------------------------------------------------------

LICENSE_KEY_COLUMNS = _field_names(LicenseKey)
LICENSE_KEY_INSTANCE_COLUMNS = _field_names(LicenseKeyInstance)


def license_key_record(values: Sequence[Any]) -> LicenseKey:
    return LicenseKey(*values)


def license_key_instance_record(values: Sequence[Any]) -> LicenseKeyInstance:
    return LicenseKeyInstance(*values)


# -- links, sessions and the audit log ------------------------------------------

LINK_COLUMNS = _field_names(LinkRecord)
SESSION_COLUMNS = _field_names(PortalSessionRecord)
AUDIT_EVENT_COLUMNS = _field_names(AuditEvent)


def link_record(values: Sequence[Any]) -> LinkRecord:
    return LinkRecord(*values)


def session_record(values: Sequence[Any]) -> PortalSessionRecord:
    return PortalSessionRecord(*values)


def portal_session_row(record: PortalSessionRecord) -> PortalSessionModel:
    return PortalSessionModel(
        id=record.id,
        customer_id=record.customer_id,
        auth_version=record.auth_version,
        created_at=utc(record.created_at, "PortalSessionRecord.created_at"),
        last_seen_at=utc(record.last_seen_at, "PortalSessionRecord.last_seen_at"),
        revoked_at=utc_or_none(record.revoked_at, "PortalSessionRecord.revoked_at"),
        user_agent=record.user_agent,
        public_id=record.public_id,
        location=record.location,
    )


def audit_event_record(values: Sequence[Any]) -> AuditEvent:
    customer_id, action, occurred_at, subject_id, provider_reference, actor, details = values
    # The row's JSON is the session's object: the record gets its own copy.
    return AuditEvent(customer_id, action, occurred_at, subject_id, provider_reference, actor, dict(details))


def audit_values(event: AuditEvent) -> dict[str, Any]:
    """The columns of ``event``'s row (its id is the database's)."""
    return {
        "customer_id": event.customer_id,
        "action": event.action,
        "occurred_at": utc(event.occurred_at, "AuditEvent.occurred_at"),
        "subject_id": event.subject_id,
        "provider_reference": event.provider_reference,
        "actor": event.actor,
        "details": dict(event.details),
    }


def audit_row(event: AuditEvent) -> AuditEventModel:
    return AuditEventModel(**audit_values(event))


# -- the mail outbox ------------------------------------------------------------

MAIL_COLUMNS = _field_names(OutboxMail)


def mail_record(values: Sequence[Any]) -> OutboxMail:
    return OutboxMail(*values)


def mail_row(mail: OutboxMail) -> MailOutboxModel:
    created_at = utc(mail.created_at, "OutboxMail.created_at")
    return MailOutboxModel(
        id=mail.id,
        kind=mail.kind,
        customer_id=mail.customer_id,
        to=mail.to,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        headers=dict(mail.headers),
        status=MailStatus.PENDING,
        attempts=0,
        next_attempt_at=utc_or_none(mail.next_attempt_at, "OutboxMail.next_attempt_at") or created_at,
        created_at=created_at,
        expires_at=utc_or_none(mail.expires_at, "OutboxMail.expires_at"),
        composed=mail.composed,
        locale=mail.locale,
    )
