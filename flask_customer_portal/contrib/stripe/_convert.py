"""Stripe's objects as the portal's values: statuses, times and ids, shared
by the store, the payment provider and the webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ...storage import (
    BillingDetails,
    CreditNote,
    CreditNoteReason,
    InvoiceLine,
    InvoiceStatus,
    SubscriptionStatus,
    TaxIdScheme,
)

_SUBSCRIPTION_STATUS = {
    "active": SubscriptionStatus.ACTIVE,
    "trialing": SubscriptionStatus.TRIALING,
    "past_due": SubscriptionStatus.ON_HOLD,
    "unpaid": SubscriptionStatus.ON_HOLD,
    "incomplete": SubscriptionStatus.ON_HOLD,
    "canceled": SubscriptionStatus.CANCELLED,
    "incomplete_expired": SubscriptionStatus.CANCELLED,
    "paused": getattr(SubscriptionStatus, "PAUSED", SubscriptionStatus.ON_HOLD),
}

_INVOICE_STATUS = {
    "open": InvoiceStatus.OPEN,
    "paid": InvoiceStatus.PAID,
    "void": InvoiceStatus.VOID,
    "uncollectible": InvoiceStatus.VOID,
}


def subscription_status(stripe_status: str) -> SubscriptionStatus:
    """The portal's status of a Stripe subscription status: ``past_due``,
    ``unpaid`` and ``incomplete`` wait for a payment (``on_hold``)."""
    try:
        return _SUBSCRIPTION_STATUS[stripe_status]
    except KeyError:
        raise ValueError(f"unknown Stripe subscription status {stripe_status!r}") from None


def invoice_status(stripe_invoice: Mapping[str, Any]) -> InvoiceStatus | None:
    """The portal's status of a Stripe invoice; ``None`` for drafts (never
    shown). A paid invoice refunded in full is ``refunded``."""
    status = stripe_invoice.get("status")
    if status == "draft" or status is None:
        return None
    mapped = _INVOICE_STATUS.get(str(status))
    if mapped is None:
        raise ValueError(f"unknown Stripe invoice status {status!r}")
    charge = stripe_invoice.get("charge")
    if mapped is InvoiceStatus.PAID and isinstance(charge, Mapping) and charge.get("refunded"):
        return InvoiceStatus.REFUNDED
    return mapped


def as_dict(value: Any) -> dict[str, Any]:
    """A Stripe object (or a plain mapping) as a dict; ``{}`` for ``None``."""
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        converted: dict[str, Any] = value.to_dict()
        return converted
    return dict(value)


def from_timestamp(value: Any) -> datetime | None:
    """A Stripe timestamp (seconds) as an aware UTC datetime; ``None`` when unset."""
    return None if value in (None, 0, "") else datetime.fromtimestamp(int(value), tz=timezone.utc)


def object_id(value: Any) -> str | None:
    """The id of a field Stripe gives either as an id or expanded to its object."""
    if isinstance(value, Mapping):
        return str(value["id"]) if value.get("id") else None
    return str(value) if value else None


def invoice_subscription_id(data: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills, where the current API version
    (``parent.subscription_details``) or an older one (``subscription``) puts it."""
    parent = data.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return object_id(details.get("subscription")) or object_id(data.get("subscription"))


def stripe_tax_id_type(scheme: TaxIdScheme) -> str:
    """Stripe's ``type`` of a tax ID of ``scheme``: the portal names its
    schemes as Stripe does, so this is the scheme's value."""
    return TaxIdScheme(scheme).value


def tax_id_scheme(stripe_type: Any) -> TaxIdScheme | None:
    """The portal's scheme of a Stripe tax ID ``type``; ``None`` for a type
    the portal does not know (the number is then left off the invoice
    rather than shown under a wrong name)."""
    try:
        return TaxIdScheme(str(stripe_type))
    except ValueError:
        return None


def invoice_billing_details(data: Mapping[str, Any]) -> BillingDetails | None:
    """Who a Stripe invoice is made out to, from the copy Stripe keeps on it
    when it is finalised (``customer_name``, ``customer_address``,
    ``customer_tax_ids``); ``None`` without a name and a first address line."""
    address = data.get("customer_address") or {}
    name, line1 = data.get("customer_name"), address.get("line1")
    if not name or not line1 or not address.get("country"):
        return None
    tax_id, scheme = None, None
    for entry in data.get("customer_tax_ids") or ():
        known = tax_id_scheme(entry.get("type"))
        if known is not None and entry.get("value"):
            tax_id, scheme = str(entry["value"]), known
            break
    return BillingDetails(
        name=str(name),
        line1=str(line1),
        line2=address.get("line2") or None,
        city=address.get("city") or None,
        region=address.get("state") or None,
        postal_code=address.get("postal_code") or None,
        country=str(address["country"]).upper(),
        tax_id=tax_id,
        tax_id_scheme=scheme,
    )


def _reason(value: Any) -> CreditNoteReason | None:
    try:
        return None if value is None else CreditNoteReason(str(value))
    except ValueError:
        return None


def _refunded_by(note: Mapping[str, Any], total: int) -> int:
    """The part of a Stripe credit note paid back to the card: the sum of
    its ``refunds`` (API versions since 2024), else, for an older one with
    a ``refund``, that refund's amount when expanded, or everything not
    settled out of band or credited to the customer's balance."""
    refunds = note.get("refunds")
    if isinstance(refunds, list):
        return sum(int(entry.get("amount_refunded") or 0) for entry in refunds)
    refund = note.get("refund")
    if isinstance(refund, Mapping):
        return int(refund.get("amount") or 0)
    if refund and not note.get("customer_balance_transaction"):
        return total - int(note.get("out_of_band_amount") or 0)
    return 0


def credit_note_record(note: Mapping[str, Any], customer_id: str) -> CreditNote | None:
    """A Stripe credit note as the portal's record; ``None`` for a voided
    one (it no longer takes anything off)."""
    if note.get("status") == "void":
        return None
    total = int(note.get("total") or note.get("amount") or 0)
    if total <= 0:
        return None
    return CreditNote(
        id=str(note["id"]),
        number=str(note.get("number") or note["id"]),
        invoice_id=str(object_id(note.get("invoice")) or ""),
        customer_id=customer_id,
        currency=str(note.get("currency") or "usd").upper(),
        amount=total,
        refunded=min(max(_refunded_by(note, total), 0), total),
        issued_at=from_timestamp(note.get("created")) or datetime.now(timezone.utc),
        reason=_reason(note.get("reason")),
        memo=str(note["memo"]) if note.get("memo") else None,
        lines=tuple(
            InvoiceLine(
                description=str(line.get("description") or ""),
                quantity=int(line.get("quantity") or 1),
                unit_amount=int(line.get("unit_amount") or line.get("amount") or 0),
                amount=int(line.get("amount") or 0),
            )
            for line in (note.get("lines") or {}).get("data") or ()
        ),
    )
