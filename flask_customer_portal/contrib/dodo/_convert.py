"""Dodo's answers as the portal's records: statuses, dates, card fields
and the records the store builds from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from ...billing.promotions import FOREVER_RENEWALS
from ...capabilities import ProviderPlanPreview
from ...money import Money
from ...payments import DeclineReason
from ...storage import (
    CreditNote,
    Invoice,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyStatus,
    PaymentMethod,
    Subscription,
    SubscriptionStatus,
)

_PAUSED = SubscriptionStatus.__members__.get("PAUSED")

#: Dodo's subscription statuses as the portal's. ``past_due`` (a renewal
#: failed, Dodo is retrying) asks the same of the customer as ``on_hold``: a
#: working payment method. ``failed`` (the first payment never went
#: through), ``expired`` and ``cancelled`` have all ended.
SUBSCRIPTION_STATUSES: Mapping[str, SubscriptionStatus] = {
    "active": SubscriptionStatus.ACTIVE,
    "on_hold": SubscriptionStatus.ON_HOLD,
    "past_due": SubscriptionStatus.ON_HOLD,
    "paused": _PAUSED or SubscriptionStatus.ON_HOLD,
    "cancelled": SubscriptionStatus.CANCELLED,
    "expired": SubscriptionStatus.CANCELLED,
    "failed": SubscriptionStatus.CANCELLED,
}
#: ``pending`` subscriptions (checkout not finished) are not shown at all.
HIDDEN_STATUSES = frozenset({"pending"})

_LICENSE_STATUSES: Mapping[str, LicenseKeyStatus] = {
    "active": LicenseKeyStatus.ACTIVE,
    "expired": LicenseKeyStatus.EXPIRED,
    "disabled": LicenseKeyStatus.REVOKED,
}

#: Payment statuses still waiting for money (shown as open invoices).
_WAITING = frozenset(
    {
        "processing",
        "requires_customer_action",
        "requires_merchant_action",
        "requires_payment_method",
        "requires_confirmation",
        "requires_capture",
        "partially_captured_and_capturable",
    }
)

#: Dodo's ``error_code`` of a failed payment as the portal's decline reasons.
_DECLINES: Mapping[str, DeclineReason] = {
    "INSUFFICIENT_FUNDS": DeclineReason.INSUFFICIENT_FUNDS,
    "EXPIRED_CARD": DeclineReason.EXPIRED_CARD,
    "INCORRECT_CVC": DeclineReason.INCORRECT_CVC,
    "INVALID_CVC": DeclineReason.INCORRECT_CVC,
}


def decline_reason(error_code: str | None) -> DeclineReason:
    """The portal's decline reason for a Dodo ``error_code`` (generic when unknown)."""
    return _DECLINES.get((error_code or "").upper(), DeclineReason.GENERIC)


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def optional_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


def _declared(raw: Any, name: str) -> Any:
    """A field of an SDK model if its type declares it (``Payment`` has
    ``tax``, the list's ``PaymentListResponse`` does not), else ``None``;
    undeclared extras are never read."""
    return getattr(raw, name, None) if name in type(raw).model_fields else None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _year(value: str | None) -> int:
    """A card's expiry year, which Dodo may give as ``"31"`` or ``"2031"``."""
    year = _int(value, 0)
    return 2000 + year if 0 < year < 100 else year


# -- records ------------------------------------------------------------------------------


def payment_method_record(customer_id: str, raw: Any) -> PaymentMethod:
    """A saved payment method of ``customers.retrieve_payment_methods``."""
    card = raw.card
    brand = (card.card_network if card is not None and card.card_network else raw.payment_method) or "card"
    return PaymentMethod(
        id=raw.payment_method_id,
        customer_id=customer_id,
        brand=brand.lower(),
        last4=(card.last4_digits if card is not None and card.last4_digits else "") or "",
        exp_month=_int(card.expiry_month if card is not None else None, 0),
        exp_year=_year(card.expiry_year if card is not None else None),
        provider_token=raw.payment_method_id,
        created_at=optional_utc(raw.last_used_at),
    )


def subscription_record(
    raw: Any, product_name: str | None, methods: Mapping[str, PaymentMethod]
) -> Subscription:
    """A Dodo subscription, its payment method picked from ``methods`` (by id)."""
    status = SUBSCRIPTION_STATUSES.get(raw.status, SubscriptionStatus.ON_HOLD)
    trial_end = _trial_end(raw)
    if status is SubscriptionStatus.ACTIVE and trial_end is not None:
        status = SubscriptionStatus.TRIALING
    name = product_name or raw.product_id
    plan = (raw.metadata or {}).get("plan_name") if isinstance(raw.metadata, Mapping) else None
    ended = None
    if status is SubscriptionStatus.CANCELLED:
        ended = optional_utc(raw.cancelled_at) or utc(raw.next_billing_date)
    hold = None
    if raw.status == "paused" and _PAUSED is None:
        hold = "paused"
    percent, renewals = _percent_off(raw)
    return Subscription(
        id=raw.subscription_id,
        customer_id=raw.customer.customer_id,
        product_name=name,
        plan_name=str(plan) if plan else name,
        price=Money(raw.recurring_pre_tax_amount, raw.currency),
        interval=str(raw.payment_frequency_interval).lower(),
        interval_count=raw.payment_frequency_count,
        status=status,
        current_period_start=utc(raw.created_at) if trial_end is not None else utc(raw.previous_billing_date),
        current_period_end=utc(raw.next_billing_date),
        cancel_at_period_end=bool(raw.cancel_at_next_billing_date)
        and status is not SubscriptionStatus.CANCELLED,
        cancelled_at=optional_utc(raw.cancelled_at),
        ended_at=ended,
        payment_method=methods.get(raw.payment_method_id or ""),
        hold_reason=hold,
        created_at=utc(raw.created_at),
        quantity=raw.quantity,
        paused_at=optional_utc(raw.paused_at),
        plan_id=raw.product_id,
        discount_percent=percent,
        discount_renewals=renewals,
    )


def _percent_off(raw: Any) -> tuple[int, int]:
    """The subscription's first percentage discount at Dodo (a code entered
    at a plan change) and how many more renewals it lasts (Dodo's
    ``cycles_remaining``; unset is every one), as the portal shows a
    discount; ``(0, 0)`` for none or an amount off, which Dodo's invoices
    take off."""
    for discount in sorted(_declared(raw, "discounts") or (), key=lambda d: d.position):
        cycles = discount.cycles_remaining
        if discount.type != "percentage" or (cycles is not None and cycles <= 0):
            continue
        renewals = FOREVER_RENEWALS if cycles is None else min(int(cycles), FOREVER_RENEWALS)
        return min(max(round(discount.amount / 100), 1), 100), renewals
    return 0, 0


#: How far Dodo's first billing date may lie past the trial's last day
#: and still be that trial's end (Dodo rounds the time of day).
_TRIAL_SLACK = timedelta(days=1)


def _trial_end(raw: Any) -> datetime | None:
    """When a Dodo subscription's free trial ends, while it has not yet:
    Dodo has no ``trialing`` status, but a subscription made with
    ``trial_period_days`` is ``active`` with its first billing date at the
    trial's end, and only that date moves on once the first period is
    billed. ``None`` for a subscription without a trial, or past it."""
    days = int(_declared(raw, "trial_period_days") or 0)
    if days <= 0 or raw.status != "active":
        return None
    first_bill = utc(raw.next_billing_date)
    if first_bill > utc(raw.created_at) + timedelta(days=days) + _TRIAL_SLACK:
        return None
    return first_bill


def refund_credit_notes(refunds: Sequence[Any], customer_id: str) -> tuple[CreditNote, ...]:
    """A payment's succeeded refunds, each as a credit note (Dodo issues no
    other document for a refund): numbered by the refund's id, all of it
    paid back, Dodo's free-text reason as its memo; oldest first."""
    notes = [
        CreditNote(
            id=refund.refund_id,
            number=refund.refund_id,
            invoice_id=refund.payment_id,
            customer_id=customer_id,
            currency=str(refund.currency),
            amount=int(refund.amount),
            refunded=int(refund.amount),
            issued_at=utc(refund.created_at),
            memo=refund.reason or None,
        )
        for refund in refunds
        if refund.status == "succeeded" and refund.amount and refund.currency
    ]
    return tuple(sorted(notes, key=lambda note: (note.issued_at, note.id)))


def invoice_record(
    raw: Any, names: Mapping[str, str], open_ids: frozenset[str], refunds: Sequence[Any] | None = None
) -> Invoice:
    """A Dodo payment as the portal's invoice: described by its
    subscription's product name (``names``), ``open`` while it waits for
    money or is in ``open_ids`` (:func:`open_payment_ids`). Its refunds are
    those of the payment itself (a retrieved payment has them), else
    ``refunds`` (read for a list); a fully refunded payment has given back
    its total even when neither is at hand."""
    status_name = raw.status or "processing"
    if status_name == "succeeded":
        status = InvoiceStatus.REFUNDED if raw.refund_status == "full" else InvoiceStatus.PAID
    elif status_name in _WAITING or raw.payment_id in open_ids:
        status = InvoiceStatus.OPEN
    else:
        status = InvoiceStatus.VOID
    tax = _declared(raw, "tax") or 0
    method = None
    if _declared(raw, "payment_method_id") and raw.card_last_four:
        method = PaymentMethod(
            id=raw.payment_method_id,
            customer_id=raw.customer.customer_id,
            brand=(raw.card_network or raw.payment_method or "card").lower(),
            last4=raw.card_last_four,
            exp_month=_int(raw.card_exp_month, 0),
            exp_year=_year(raw.card_exp_year),
            provider_token=raw.payment_method_id,
        )
    paid_at = None
    if status in (InvoiceStatus.PAID, InvoiceStatus.REFUNDED):
        paid_at = utc(_declared(raw, "updated_at") or raw.created_at)
    return Invoice(
        id=raw.payment_id,
        number=raw.invoice_id or raw.payment_id,
        customer_id=raw.customer.customer_id,
        status=status,
        currency=raw.currency,
        subtotal=raw.total_amount - tax,
        tax=tax,
        total=raw.total_amount,
        issued_at=utc(raw.created_at),
        description=names.get(raw.subscription_id or "", "") or raw.payment_id,
        subscription_id=raw.subscription_id,
        paid_at=paid_at,
        payment_reference=raw.payment_id if paid_at is not None else None,
        payment_method=method,
        **_refunded(raw, refunds),
    )


def _refunded(raw: Any, refunds: Sequence[Any] | None) -> dict[str, Any]:
    own = _declared(raw, "refunds")
    notes = refund_credit_notes(own if own is not None else refunds or (), raw.customer.customer_id)
    refunded = sum(note.refunded for note in notes)
    if raw.refund_status == "full":
        refunded = max(refunded, raw.total_amount)
    return {
        "amount_refunded": refunded,
        "amount_credited": refunded,
        # The invoice's own page carries them; a list, only the sums.
        "credit_notes": notes if own is not None else (),
    }


def open_payment_ids(payments: Sequence[Any], on_hold: set[str]) -> frozenset[str]:
    """The failed payment that an ``on_hold`` subscription still owes:
    its newest payment, if that one failed. Older failed tries were
    superseded by a retry and show as void."""
    newest: dict[str, Any] = {}
    for payment in payments:
        sid = payment.subscription_id
        if sid in on_hold and (sid not in newest or payment.created_at > newest[sid].created_at):
            newest[sid] = payment
    return frozenset(p.payment_id for p in newest.values() if p.status == "failed")


def license_key_record(raw: Any, product_names: Mapping[str, str]) -> LicenseKey:
    return LicenseKey(
        id=raw.id,
        customer_id=raw.customer_id,
        key=raw.key,
        product_name=product_names.get(raw.product_id, raw.product_id),
        status=_LICENSE_STATUSES.get(raw.status, LicenseKeyStatus.INACTIVE),
        activations=raw.instances_count,
        activation_limit=raw.activations_limit,
        expires_at=optional_utc(raw.expires_at),
        created_at=utc(raw.created_at),
    )


def plan_preview_of(charge: Any, plan_id: str) -> ProviderPlanPreview:
    """Dodo's ``immediate_charge`` as the portal shows it: the new plan's
    prorated price (its line items), the credit for the old plan's unused
    time (what the total leaves of it) and the total due now."""
    summary = charge.summary
    currency = summary.currency
    new_charge = sum(
        round(item.unit_price * item.quantity * item.proration_factor)
        for item in charge.line_items
        if getattr(item, "type", None) == "subscription" and getattr(item, "product_id", None) == plan_id
    )
    due = max(int(summary.total_amount), 0)
    return ProviderPlanPreview(
        due_now=Money(due, currency),
        unused=Money(max(new_charge - due, 0), currency),
        new_charge=Money(max(new_charge, due), currency),
        effective_at=utc(charge.effective_at),
    )
