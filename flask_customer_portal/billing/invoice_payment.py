"""Paying one open invoice directly, from its own page.

Whether an invoice may be paid here is decided in :func:`refusal`; the
payment itself is :func:`~.collect.pay_invoice` (attempt keys
``invoice:<id>:attempt:<n>``, unknown outcomes reconciled before anything
new is charged), run under a lock that every worker and host respects:

- an invoice of a subscription under
  :meth:`~flask_customer_portal.storage.ChargeStore.lock_subscription` (a
  composite store holds its local provider lock around it);
- an invoice of no subscription under
  :meth:`~flask_customer_portal.storage.InvoiceLockStore.lock_invoice`,
  where the store has it.

The unpaid renewals of an ``on_hold`` subscription are paid together by
reactivating it (:mod:`.renewal`), and a plan change's invoice by settling
that change (:mod:`.settlement`): this module refuses both, so that paying
one invoice never leaves the subscription it belongs to half-done. The
unpaid renewal of a subscription cancelled while on hold is refused too:
it is for a period that will never come (what becomes of it is the
merchant's to decide).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import current_app

from .. import signals
from ..clock import utcnow
from ..money import Money
from ..payments import SubscriptionBiller
from ..state import PortalState
from ..storage import (
    ChargeAttemptStatus,
    Customer,
    Invoice,
    InvoiceChargeLock,
    InvoiceLockStore,
    InvoiceStatus,
    KeepsPlanChanges,
    PaymentMethod,
    Subscription,
    SubscriptionStatus,
)
from .collect import Collection, ProviderError, announce_mismatch, pay_invoice, reconcile_attempt
from .notify import MailBatch
from .outcomes import PaymentOutcome
from .receipts import send_receipt

__all__ = [
    "InvoiceNotFound",
    "InvoicePayment",
    "ProviderError",
    "Refusal",
    "pay_open_invoice",
    "payable",
    "refusal",
    "settle_on_visit",
]


logger = logging.getLogger("flask_customer_portal")


class InvoiceNotFound(LookupError):
    """No such invoice of this customer."""


class Refusal(str, enum.Enum):
    """Why an invoice is not paid from its own page. Nothing is charged."""

    #: Paid or void already.
    NOT_OPEN = "not_open"
    #: An unpaid renewal of an ``on_hold`` subscription: paid by reactivating it.
    REACTIVATE = "reactivate"
    #: An unpaid renewal of a subscription that has ended (cancelled while
    #: on hold): it is for a period the customer will never get.
    ENDED = "ended"
    #: Paid some other way: a plan change's invoice, a subscription the
    #: payment company bills itself, or a store that cannot lock the invoice.
    ELSEWHERE = "elsewhere"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class InvoicePayment:
    """What came of paying an invoice: a ``refused`` reason (nothing was
    tried) or the ``outcome`` of the try."""

    invoice: Invoice
    outcome: PaymentOutcome | None = None
    refused: Refusal | None = None
    decline_reason: str | None = None
    redirect_url: str | None = None

    @property
    def paid(self) -> bool:
        return self.outcome is PaymentOutcome.PAID


def _charges_subscription_invoices(state: PortalState) -> bool:
    """Whether the portal charges subscriptions' invoices itself: a store
    with the subscription lock, and a payment provider that leaves billing
    subscriptions to the portal."""
    payments = state.payments
    billed_elsewhere = isinstance(payments, SubscriptionBiller) and bool(payments.bills_subscriptions)
    return state.capabilities.charge and not billed_elsewhere


def refusal(state: PortalState, customer: Customer, invoice: Invoice) -> Refusal | None:
    """Why ``invoice`` (the customer's own) cannot be paid from its page,
    or ``None`` when it can: read without a lock, for links and pages;
    :func:`pay_open_invoice` decides again under the lock."""
    if invoice.status is not InvoiceStatus.OPEN:
        return Refusal.NOT_OPEN
    if invoice.subscription_id is None:
        return None if state.capabilities.invoice_lock else Refusal.ELSEWHERE
    if not _charges_subscription_invoices(state):
        return Refusal.ELSEWHERE
    subscription = state.storage.get_subscription(customer.id, invoice.subscription_id)
    if subscription is not None and subscription.status is SubscriptionStatus.ON_HOLD:
        return Refusal.REACTIVATE
    if subscription is not None and subscription.status is SubscriptionStatus.CANCELLED:
        return Refusal.ENDED
    return None


def payable(
    state: PortalState,
    customer: Customer,
    invoices: Iterable[Invoice],
    subscriptions: Iterable[Subscription] | None = None,
) -> frozenset[str]:
    """The ids of those of ``invoices`` (the customer's own) that may be
    paid from their page, for links. The customer's ``subscriptions`` are
    read (once, and only when an open invoice belongs to one) unless given."""
    open_ones = [i for i in invoices if i.status is InvoiceStatus.OPEN]
    if not open_ones:
        return frozenset()
    locks_invoices = state.capabilities.invoice_lock
    held: set[str] = set()
    if any(i.subscription_id is not None for i in open_ones):
        if not _charges_subscription_invoices(state):
            open_ones = [i for i in open_ones if i.subscription_id is None]
        else:
            if subscriptions is None:
                subscriptions = state.storage.list_subscriptions(customer.id)
            held = {s.id for s in subscriptions if s.status in _NOT_PAID_HERE}
    return frozenset(
        i.id
        for i in open_ones
        if (i.subscription_id is None and locks_invoices)
        or (i.subscription_id is not None and i.subscription_id not in held)
    )


#: Subscriptions whose open invoices are not paid from their own page.
_NOT_PAID_HERE = frozenset({SubscriptionStatus.ON_HOLD, SubscriptionStatus.CANCELLED})


def _locked_refusal(lock: object, invoice: Invoice, status: SubscriptionStatus | None) -> Refusal | None:
    if invoice.status is not InvoiceStatus.OPEN:
        return Refusal.NOT_OPEN
    if status is SubscriptionStatus.ON_HOLD:
        return Refusal.REACTIVATE
    if status is SubscriptionStatus.CANCELLED:
        return Refusal.ENDED
    if isinstance(lock, KeepsPlanChanges) and lock.get_plan_change(invoice.id) is not None:
        return Refusal.ELSEWHERE
    return None


def pay_open_invoice(
    state: PortalState,
    customer: Customer,
    invoice_id: str,
    method: PaymentMethod,
    *,
    expected: Money | None = None,
    now: datetime | None = None,
    actor: str = "customer",
) -> InvoicePayment:
    """Pay the customer's open invoice ``invoice_id`` with ``method``, at
    most one new charge however many tries run at once. With ``expected``
    (the amount the page showed) nothing is charged unless the invoice's
    total is exactly that.

    Raises :class:`InvoiceNotFound` for anything but the customer's own
    invoice (and for a method that is not theirs), and :class:`ProviderError`
    when the provider raised, with nothing of the try written."""
    if method.customer_id != customer.id:
        raise InvoiceNotFound(invoice_id)
    now = now or utcnow()
    found = state.storage.get_invoice(customer.id, invoice_id)
    if found is None:
        raise InvoiceNotFound(invoice_id)
    if found.subscription_id is not None and not _charges_subscription_invoices(state):
        return InvoicePayment(found, refused=Refusal.ELSEWHERE)
    result: InvoicePayment
    collection: Collection | None = None
    mail = MailBatch(state)
    if found.subscription_id is not None:
        with state.storage.lock_subscription(customer.id, found.subscription_id) as lock:
            if lock is None:
                raise InvoiceNotFound(invoice_id)
            mail.write_through(lock)
            invoice = lock.get_invoice(invoice_id)
            if invoice is None:
                raise InvoiceNotFound(invoice_id)
            refused = _locked_refusal(lock, invoice, lock.subscription.status)
            result, collection = _pay_locked(state, lock, invoice, method, refused, expected, now, actor)
            if result.paid:
                send_receipt(state, customer, result.invoice, batch=mail)
    else:
        storage = state.storage
        if not (state.capabilities.invoice_lock and isinstance(storage, InvoiceLockStore)):
            return InvoicePayment(found, refused=Refusal.ELSEWHERE)
        with storage.lock_invoice(customer.id, invoice_id) as invoice_lock:
            if invoice_lock is None:
                raise InvoiceNotFound(invoice_id)
            mail.write_through(invoice_lock)
            invoice = invoice_lock.invoice
            refused = _locked_refusal(invoice_lock, invoice, None)
            result, collection = _pay_locked(
                state, invoice_lock, invoice, method, refused, expected, now, actor
            )
            if result.paid:
                # In the payment's transaction: the receipt exists exactly
                # when the payment was recorded.
                send_receipt(state, customer, result.invoice, batch=mail)
    mail.committed()
    # Committed: tell the merchant's code.
    if collection is not None:
        announce_mismatch(customer, collection)
    if result.paid:
        signals.invoice_paid.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            customer=customer,
            invoice=result.invoice,
            provider_reference=result.invoice.payment_reference,
        )
    return result


def _pay_locked(
    state: PortalState,
    lock: InvoiceChargeLock,
    invoice: Invoice,
    method: PaymentMethod,
    refused: Refusal | None,
    expected: Money | None,
    now: datetime,
    actor: str,
) -> tuple[InvoicePayment, Collection | None]:
    if refused is Refusal.NOT_OPEN and invoice.status is InvoiceStatus.PAID:
        # Another tab, a double click or a retry paid it a moment ago.
        return InvoicePayment(invoice, outcome=PaymentOutcome.ALREADY_PAID), None
    if refused is not None:
        return InvoicePayment(invoice, refused=refused), None
    if expected is not None and expected != invoice.total_money:
        return InvoicePayment(invoice, outcome=PaymentOutcome.AMOUNT_CHANGED), None
    collection = pay_invoice(state, lock, invoice, method, now, actor)
    return (
        InvoicePayment(
            collection.invoice,
            outcome=collection.status,
            decline_reason=collection.decline_reason,
            redirect_url=collection.redirect_url,
        ),
        collection,
    )


#: A last attempt in one of these left the customer told to check back.
_UNSETTLED = (ChargeAttemptStatus.UNKNOWN, ChargeAttemptStatus.REQUIRES_ACTION)


def settle_on_visit(
    state: PortalState, customer: Customer, invoice: Invoice, *, now: datetime | None = None
) -> Invoice:
    """``invoice`` (the customer's own, as read for a page) once its payment
    is settled: an open invoice of no subscription whose last charge got no
    answer (the customer was told to check back) is asked of the provider
    under its lock, and recorded as what came of it (paid, with its receipt;
    or no money moved, open to pay again). Nothing new is ever charged here,
    and a provider that still cannot say leaves it as it was. Invoices of a
    subscription are settled by the subscription's own runs."""
    storage = state.storage
    if (
        invoice.status is not InvoiceStatus.OPEN
        or invoice.subscription_id is not None
        or not (state.capabilities.invoice_lock and isinstance(storage, InvoiceLockStore))
    ):
        return invoice
    now = now or utcnow()
    mail = MailBatch(state)
    collection: Collection | None = None
    try:
        with storage.lock_invoice(customer.id, invoice.id) as lock:
            if lock is None:
                return invoice
            current = lock.invoice
            attempts = lock.attempts(current.id)
            last = attempts[-1] if attempts else None
            if current.status is not InvoiceStatus.OPEN or last is None or last.status not in _UNSETTLED:
                return current
            mail.write_through(lock)
            collection = reconcile_attempt(state, lock, current, last, now, "customer")
            if collection.paid:
                send_receipt(state, customer, collection.invoice, batch=mail)
    except ProviderError:
        logger.warning("Payment provider did not answer for invoice %s; it is settled later", invoice.id)
        return invoice
    mail.committed()
    announce_mismatch(customer, collection)
    if collection.paid:
        signals.invoice_paid.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            customer=customer,
            invoice=collection.invoice,
            provider_reference=collection.invoice.payment_reference,
        )
    return collection.invoice
