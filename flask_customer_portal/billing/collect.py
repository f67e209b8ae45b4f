"""Paying one invoice exactly once: charge attempts, their idempotency keys
and the reconciliation of answers that were lost.

Everything here runs while the invoice's subscription is locked
(:meth:`~flask_customer_portal.storage.ChargeStore.lock_subscription`);
reactivations, renewals and plan changes
(:mod:`flask_customer_portal.billing.renewal`, :mod:`flask_customer_portal.billing.plan_change`)
decide what to pay and what follows from it. Attempt ``n`` of invoice ``I``
is charged with the key ``invoice:I:attempt:n``, and attempt ``n + 1`` is
only made once attempt ``n``'s outcome is known: an attempt whose outcome is
unknown (the provider timed out) is reconciled with
:meth:`~flask_customer_portal.payments.PaymentProvider.find_charge` first.

A payment is only taken as paying its invoice when the provider reports the
invoice's own amount and currency. Any other amount leaves the invoice open
with its attempt recorded as ``amount_mismatch`` (never charged again by the
portal), logs an error and, once committed, sends
:data:`~flask_customer_portal.signals.charge_amount_mismatch` for someone to
look at the payment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from flask import current_app

from .. import signals
from ..money import Money
from ..payments import (
    ChargeDeclined,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeResult,
    ChargeSucceeded,
    ChargeUnknown,
)
from ..state import PortalState
from ..storage import (
    AuditEvent,
    ChargeAttempt,
    ChargeAttemptStatus,
    Customer,
    Invoice,
    InvoiceChargeLock,
    InvoiceStatus,
    PaymentMethod,
    StateConflict,
)
from .outcomes import PaymentOutcome

__all__ = [
    "Collection",
    "ProviderError",
    "announce_mismatch",
    "idempotency_key",
    "reconcile_attempt",
]

logger = logging.getLogger("flask_customer_portal")


class ProviderError(Exception):
    """The payment provider raised instead of answering. Nothing of the try
    was saved; the next try reuses the same idempotency key. The provider's
    exception is the ``__cause__``; the message names only its class, since
    a provider's message may repeat what it was sent."""


@dataclass(frozen=True, slots=True)
class Collection:
    status: PaymentOutcome
    invoice: Invoice
    attempt: ChargeAttempt | None = None
    decline_reason: str | None = None
    redirect_url: str | None = None
    charged: Money | None = None
    """What the provider reported taking, when this very try found that it
    is not the invoice's amount (``None`` when the mismatch was found before:
    the merchant was told then)."""

    @property
    def paid(self) -> bool:
        return self.status is PaymentOutcome.PAID


def idempotency_key(invoice_id: str, attempt: int) -> str:
    """The key of the ``attempt``-th charge of an invoice."""
    return f"invoice:{invoice_id}:attempt:{attempt}"


_STATUS_OF = {
    ChargeSucceeded: ChargeAttemptStatus.SUCCEEDED,
    ChargeDeclined: ChargeAttemptStatus.DECLINED,
    ChargeRequiresAction: ChargeAttemptStatus.REQUIRES_ACTION,
    ChargeFailed: ChargeAttemptStatus.FAILED,
    ChargeUnknown: ChargeAttemptStatus.UNKNOWN,
}


def _resolve(attempt: ChargeAttempt, result: ChargeResult, now: datetime) -> ChargeAttempt:
    status = _STATUS_OF[type(result)]
    reference = None
    reason = None
    if isinstance(result, ChargeSucceeded | ChargeRequiresAction):
        reference = result.charge_id
    elif isinstance(result, ChargeDeclined):
        reference = result.charge_id
        reason = str(result.reason)
    return replace(
        attempt,
        status=status,
        provider_reference=reference,
        decline_reason=reason,
        resolved_at=None if status is ChargeAttemptStatus.UNKNOWN else now,
    )


def _event(
    attempt_or_invoice: ChargeAttempt | Invoice,
    action: str,
    now: datetime,
    actor: str,
    *,
    subject_id: str | None = None,
    reference: str | None = None,
    **details: str,
) -> AuditEvent:
    return AuditEvent(
        customer_id=attempt_or_invoice.customer_id,
        action=action,
        occurred_at=now,
        subject_id=subject_id,
        provider_reference=reference,
        actor=actor,
        details=details,
    )


#: Attempts whose outcome must be asked of the provider before anything else.
_UNSETTLED = (ChargeAttemptStatus.UNKNOWN, ChargeAttemptStatus.REQUIRES_ACTION)


def _amount_matches(invoice: Invoice, result: ChargeSucceeded) -> bool:
    return result.amount.amount == invoice.total and result.amount.currency == invoice.currency


def _flagged(
    lock: InvoiceChargeLock,
    invoice: Invoice,
    attempt: ChargeAttempt,
    charged: Money,
    now: datetime,
    actor: str,
) -> Collection:
    """The provider took ``charged`` for ``invoice``, which is another
    amount: record the attempt as ``amount_mismatch``, leave the invoice
    open and say so in the audit log and the error log (amounts and
    references only)."""
    attempt = replace(attempt, status=ChargeAttemptStatus.AMOUNT_MISMATCH, resolved_at=now)
    lock.save_attempt(attempt)
    lock.record_event(
        _event(
            attempt,
            "charge.amount_mismatch",
            now,
            actor,
            subject_id=invoice.id,
            reference=attempt.provider_reference,
            idempotency_key=attempt.idempotency_key,
            amount=str(invoice.total),
            currency=invoice.currency,
            charged_amount=str(charged.amount),
            charged_currency=charged.currency,
        )
    )
    logger.error(
        "Payment provider reported charging %s %s for invoice %s of %s %s (charge %s); "
        "the invoice is left open and flagged for review",
        charged.amount,
        charged.currency,
        invoice.id,
        invoice.total,
        invoice.currency,
        attempt.provider_reference,
    )
    return Collection(PaymentOutcome.AMOUNT_MISMATCH, invoice, attempt, charged=charged)


def reconcile_attempt(
    state: PortalState,
    lock: InvoiceChargeLock,
    invoice: Invoice,
    last: ChargeAttempt,
    now: datetime,
    actor: str,
) -> Collection:
    """Ask the provider what came of ``last`` (an attempt whose outcome was
    unknown or waiting for the bank, on an open invoice) and record it,
    without charging anything new. ``PAID`` (the invoice is
    marked paid), ``PENDING`` or ``REQUIRES_ACTION`` (still not settled),
    ``AMOUNT_MISMATCH``, or ``DECLINED`` / ``FAILED`` when no money moved
    (the provider declined it, or never saw it)."""
    try:
        found = state.payments.find_charge(last.idempotency_key)
    except Exception as exc:
        raise ProviderError(type(exc).__name__) from exc
    if found is None:
        # The provider never saw the charge: no money moved.
        last = replace(last, status=ChargeAttemptStatus.FAILED, resolved_at=now)
    else:
        last = _resolve(last, found, now)
    lock.save_attempt(last)
    lock.record_event(
        _event(
            last,
            "charge.reconciled",
            now,
            actor,
            subject_id=invoice.id,
            reference=last.provider_reference,
            idempotency_key=last.idempotency_key,
            outcome=str(last.status),
        )
    )
    if isinstance(found, ChargeSucceeded):
        if not _amount_matches(invoice, found):
            return _flagged(lock, invoice, last, found.amount, now, actor)
        return _paid(lock, invoice, last, now, actor)
    if last.status is ChargeAttemptStatus.UNKNOWN:
        return Collection(PaymentOutcome.PENDING, invoice, last)
    if isinstance(found, ChargeRequiresAction):
        return Collection(PaymentOutcome.REQUIRES_ACTION, invoice, last, redirect_url=found.redirect_url)
    if last.status is ChargeAttemptStatus.DECLINED:
        return Collection(PaymentOutcome.DECLINED, invoice, last, decline_reason=last.decline_reason)
    return Collection(PaymentOutcome.FAILED, invoice, last)


def pay_invoice(
    state: PortalState,
    lock: InvoiceChargeLock,
    invoice: Invoice,
    method: PaymentMethod,
    now: datetime,
    actor: str,
) -> Collection:
    """Pay ``invoice`` with ``method``, at most one new charge, under ``lock``."""
    if invoice.status is not InvoiceStatus.OPEN:
        raise StateConflict(f"invoice {invoice.id!r} is {invoice.status}, not open")
    provider = state.payments
    attempts = lock.attempts(invoice.id)
    last = attempts[-1] if attempts else None

    if last is not None and last.status is ChargeAttemptStatus.AMOUNT_MISMATCH:
        # Money was taken for this invoice already, in another amount: never again.
        return Collection(PaymentOutcome.AMOUNT_MISMATCH, invoice, last)
    if last is not None and last.status in _UNSETTLED:
        settled = reconcile_attempt(state, lock, invoice, last, now, actor)
        if settled.status not in (PaymentOutcome.DECLINED, PaymentOutcome.FAILED):
            return settled
        last = settled.attempt

    number = 1 if last is None else last.attempt + 1
    attempt = ChargeAttempt(
        invoice_id=invoice.id,
        attempt=number,
        idempotency_key=idempotency_key(invoice.id, number),
        customer_id=invoice.customer_id,
        amount=invoice.total,
        currency=invoice.currency,
        status=ChargeAttemptStatus.UNKNOWN,
        created_at=now,
        payment_method_id=method.id,
    )
    lock.save_attempt(attempt)
    try:
        result = provider.charge(
            customer_id=invoice.customer_id,
            provider_token=method.provider_token,
            amount=invoice.total_money,
            idempotency_key=attempt.idempotency_key,
            invoice_id=invoice.id,
            description=f"{invoice.number} {invoice.description}",
        )
    except Exception as exc:
        raise ProviderError(type(exc).__name__) from exc
    attempt = _resolve(attempt, result, now)
    if isinstance(result, ChargeSucceeded) and not _amount_matches(invoice, result):
        return _flagged(lock, invoice, attempt, result.amount, now, actor)
    lock.save_attempt(attempt)
    lock.record_event(
        _event(
            attempt,
            f"charge.{attempt.status}",
            now,
            actor,
            subject_id=invoice.id,
            reference=attempt.provider_reference,
            idempotency_key=attempt.idempotency_key,
            amount=str(attempt.amount),
            currency=attempt.currency,
            payment_method_id=method.id,
            **({"decline_reason": attempt.decline_reason} if attempt.decline_reason else {}),
        )
    )
    if isinstance(result, ChargeSucceeded):
        return _paid(lock, invoice, attempt, now, actor)
    if isinstance(result, ChargeDeclined):
        return Collection(PaymentOutcome.DECLINED, invoice, attempt, decline_reason=str(result.reason))
    if isinstance(result, ChargeRequiresAction):
        return Collection(PaymentOutcome.REQUIRES_ACTION, invoice, attempt, redirect_url=result.redirect_url)
    if isinstance(result, ChargeFailed):
        logger.warning("Payment provider error on invoice %s: %s", invoice.id, result.message)
        return Collection(PaymentOutcome.FAILED, invoice, attempt)
    logger.warning(
        "No answer from the payment provider for %s; it will be reconciled", attempt.idempotency_key
    )
    return Collection(PaymentOutcome.PENDING, invoice, attempt)


def _paid(
    lock: InvoiceChargeLock, invoice: Invoice, attempt: ChargeAttempt, now: datetime, actor: str
) -> Collection:
    paid = lock.mark_invoice_paid(
        invoice.id,
        paid_at=now,
        payment_reference=attempt.provider_reference or attempt.idempotency_key,
        payment_method_id=attempt.payment_method_id,
    )
    lock.record_event(
        _event(paid, "invoice.paid", now, actor, subject_id=paid.id, reference=paid.payment_reference)
    )
    return Collection(PaymentOutcome.PAID, paid, attempt)


def _paid_from_credit(lock: InvoiceChargeLock, invoice: Invoice, now: datetime, actor: str) -> Collection:
    """Settle an invoice that the customer's credit paid in full: no charge."""
    paid = lock.mark_invoice_paid(
        invoice.id, paid_at=now, payment_reference=f"credit:{invoice.id}", payment_method_id=None
    )
    lock.record_event(
        _event(paid, "invoice.paid", now, actor, subject_id=paid.id, reference=paid.payment_reference)
    )
    return Collection(PaymentOutcome.PAID, paid)


def announce_mismatch(customer: Customer, collection: Collection) -> None:
    """Tell the merchant's code (the
    :data:`~flask_customer_portal.signals.charge_amount_mismatch` signal)
    about a mismatch this try found; call it once the lock's work is
    committed. Nothing is sent for a mismatch found before."""
    if collection.status is not PaymentOutcome.AMOUNT_MISMATCH or collection.charged is None:
        return
    signals.charge_amount_mismatch.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        invoice=collection.invoice,
        expected=collection.invoice.total_money,
        charged=collection.charged,
        provider_reference=collection.attempt.provider_reference if collection.attempt else None,
    )


# -- mail -------------------------------------------------------------------------------
