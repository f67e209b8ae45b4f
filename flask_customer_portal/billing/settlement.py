"""Settling plan changes whose payment was left unconfirmed.

A plan change made now charges its proration invoice (``in_pc_…``) and
switches the plan in the same transaction. When the provider's answer is
lost (:class:`~flask_customer_portal.payments.ChargeUnknown`) or the bank
wants a confirmation, the invoice stays open, the plan unchanged, and no
other plan change may start. Such a payment is settled — asked of the
provider with :meth:`~flask_customer_portal.payments.PaymentProvider.find_charge`,
under the subscription's lock — on the customer's next visit (the
subscription and plan pages, any new plan change), before a renewal or a
reactivation of the subscription, and by ``flask portal renew-due`` for
every subscription that has one:

* **the money was taken**: the change is made as the customer confirmed it
  (the plan, seats, price and period recorded with the invoice, see
  :class:`~flask_customer_portal.storage.PlanChange`), if the subscription
  is still what it was when the change was priced — ``active``, on the same
  plan and seats, in the same period, with the same credit. Otherwise (it
  renewed, changed plan, was paused, put on hold or cancelled in the
  meantime, or the change was not recorded) the change is **not** made and
  the amount paid becomes account credit on the subscription, taken off its
  next invoices; :data:`~flask_customer_portal.signals.plan_change_credited`
  tells the merchant, who may refund it instead;
* **no money moved** (the provider declined it or never saw it): the
  invoice is voided and the customer can change plan again;
* **the provider took another amount**: the invoice stays open and flagged
  (see :mod:`flask_customer_portal.billing.collect`);
* **still unknown**: nothing changes until the provider knows. A payment
  still waiting for the bank's confirmation after
  :data:`CONFIRMATION_TIMEOUT` is given up and its invoice voided (the
  portal never sends the customer to confirm a plan change's payment).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from flask import current_app

from .. import signals
from ..clock import utcnow
from ..money import Money
from ..state import PortalState
from ..storage import (
    ChargeAttemptStatus,
    Customer,
    DueClaimStore,
    Invoice,
    KeepsPlanChanges,
    PlanChange,
    Subscription,
    SubscriptionLock,
    SubscriptionStatus,
)
from .collect import Collection, _event, announce_mismatch, reconcile_attempt
from .notify import MailBatch, send_email, subscription_link
from .outcomes import PaymentOutcome
from .promotions import release_invoice_codes
from .receipts import send_receipt

__all__ = [
    "CONFIRMATION_TIMEOUT",
    "INVOICE_PREFIX",
    "SettledPlanChange",
    "SettlementOutcome",
    "SettlementReport",
    "settle_all_plan_changes",
    "settle_plan_changes",
]

logger = logging.getLogger("flask_customer_portal")

#: Ids of proration invoices start with this, so that an unconfirmed one
#: (the provider did not answer) blocks another change until it is settled.
INVOICE_PREFIX = "in_pc_"

#: How long a plan change's payment may wait for the bank's confirmation
#: (3-D Secure) before the change is given up and its invoice voided.
CONFIRMATION_TIMEOUT = timedelta(days=1)


class SettlementOutcome(str, enum.Enum):
    """What settling one unconfirmed plan-change payment came to."""

    #: The money was taken and the plan changed as confirmed.
    CHANGED = "changed"
    #: The money was taken, but the subscription had moved on: credited.
    CREDITED = "credited"
    #: No money moved: the invoice is void.
    VOIDED = "voided"
    #: The provider took another amount: the invoice is open and flagged.
    FLAGGED = "flagged"
    #: The provider does not know yet: nothing changed.
    PENDING = "pending"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class SettledPlanChange:
    outcome: SettlementOutcome
    invoice: Invoice
    subscription: Subscription
    """The subscription afterwards."""
    previous: Subscription
    """The subscription before."""
    collection: Collection | None = None
    reason: str | None = None
    """Why a payment was credited or voided (``"subscription_changed"``,
    ``"not_recorded"``, ``"plan_gone"``; ``"not_charged"``, ``"declined"``,
    ``"not_confirmed"``)."""
    emailed: bool = False
    """The customer's emails (the change's, the receipt) were written under
    the lock, with the settlement."""


def is_plan_change_invoice(invoice: Invoice) -> bool:
    return invoice.id.startswith(INVOICE_PREFIX)


def _settles_here(state: PortalState) -> bool:
    """Plan changes are made by the portal here: the store that holds the
    subscriptions has the lock and the plan catalogue, and the provider
    does not bill subscriptions itself."""
    return (
        not state.provider_capabilities.bills_subscriptions
        and state.capabilities.charge
        and state.capabilities.plans
    )


def _still_as_priced(subscription: Subscription, change: PlanChange) -> bool:
    return (
        subscription.status is SubscriptionStatus.ACTIVE
        and subscription.plan_id == change.from_plan_id
        and subscription.quantity == change.from_quantity
        and subscription.current_period_end == change.from_period_end
        and subscription.credit == change.from_credit
    )


def _void(
    lock: SubscriptionLock,
    invoice: Invoice,
    subscription: Subscription,
    now: datetime,
    actor: str,
    reason: str,
) -> SettledPlanChange:
    voided = lock.void_invoice(invoice.id)
    release_invoice_codes(lock, invoice)
    lock.record_event(
        _event(
            voided,
            "subscription.plan_change_failed",
            now,
            actor,
            subject_id=subscription.id,
            invoice_id=invoice.id,
            reason=reason,
        )
    )
    return SettledPlanChange(SettlementOutcome.VOIDED, voided, subscription, subscription, reason=reason)


def _finish(
    state: PortalState, lock: SubscriptionLock, collection: Collection, now: datetime, actor: str
) -> SettledPlanChange:
    """The payment of ``collection.invoice`` (now paid) was taken: make the
    change as it was confirmed, or credit the amount."""
    invoice = collection.invoice
    previous = lock.subscription
    change = lock.get_plan_change(invoice.id) if isinstance(lock, KeepsPlanChanges) else None
    plan = state.storage.get_plan(change.plan_id) if change is not None else None
    if change is None:
        reason = "not_recorded"
    elif plan is None or plan.price.currency != invoice.currency:
        reason = "plan_gone"
    elif not _still_as_priced(previous, change):
        reason = "subscription_changed"
    else:
        confirmed = replace(plan, price=Money(change.unit_price, invoice.currency))
        changed = lock.change_plan(
            confirmed,
            change.quantity,
            credit=change.credit_after,
            current_period_start=change.period_start,
            current_period_end=change.period_end,
        )
        lock.record_event(
            _event(
                invoice,
                "subscription.plan_changed",
                now,
                actor,
                subject_id=changed.id,
                from_plan_id=change.from_plan_id or "",
                to_plan_id=change.plan_id,
                quantity=str(change.quantity),
                when="now",
                amount_due=str(invoice.total),
                credit_after=str(change.credit_after),
                currency=invoice.currency,
                settled="reconciled",
            )
        )
        return SettledPlanChange(SettlementOutcome.CHANGED, invoice, changed, previous, collection)
    credited = lock.set_credit(previous.credit + invoice.total)
    lock.record_event(
        _event(
            invoice,
            "subscription.plan_change_credited",
            now,
            actor,
            subject_id=previous.id,
            invoice_id=invoice.id,
            to_plan_id=change.plan_id if change is not None else "",
            amount=str(invoice.total),
            currency=invoice.currency,
            reason=reason,
        )
    )
    logger.warning(
        "Plan change payment %s of subscription %s was taken after the subscription moved on (%s); "
        "%s %s credited to it",
        invoice.id,
        previous.id,
        reason,
        invoice.total,
        invoice.currency,
    )
    return SettledPlanChange(SettlementOutcome.CREDITED, invoice, credited, previous, collection, reason)


def settle_locked(
    state: PortalState, lock: SubscriptionLock, now: datetime, actor: str, *, mail: MailBatch | None = None
) -> list[SettledPlanChange]:
    """Settle, under ``lock``, every open plan-change invoice of the locked
    subscription whose payment is not settled. Call :func:`announce` with
    the result once the lock's work is committed. Nothing to do (and
    nothing asked of the store) where the portal makes no plan changes.
    With ``mail`` (written through ``lock``), the emails of each payment
    found taken (the change's email, the receipt) are written with it: a
    second settlement, waiting on the lock, finds the invoice paid and
    writes nothing."""
    settled = _settle_locked(state, lock, now, actor)
    if mail is None or not any(item.outcome in _MONEY_TAKEN for item in settled):
        return settled
    customer = state.storage.get_customer(lock.subscription.customer_id)
    if customer is None:  # pragma: no cover - the subscription's customer exists (foreign key)
        return settled
    emailed = []
    for item in settled:
        if item.outcome in _MONEY_TAKEN:
            _email_settled(state, customer, item, mail)
            item = replace(item, emailed=True)
        emailed.append(item)
    return emailed


#: The outcomes of a payment found taken: each gets its receipt.
_MONEY_TAKEN = (SettlementOutcome.CHANGED, SettlementOutcome.CREDITED)


def _email_settled(
    state: PortalState, customer: Customer, item: SettledPlanChange, mail: MailBatch | None
) -> None:
    """The receipt of a payment found taken, and the change's email if it
    was made."""
    if item.outcome is SettlementOutcome.CHANGED:
        _email_change(state, customer, item, mail)
    send_receipt(state, customer, item.invoice, batch=mail)


def _settle_locked(
    state: PortalState, lock: SubscriptionLock, now: datetime, actor: str
) -> list[SettledPlanChange]:
    settled: list[SettledPlanChange] = []
    if not _settles_here(state) or lock.subscription.plan_id is None:
        return settled
    for invoice in lock.open_invoices():
        if not is_plan_change_invoice(invoice):
            continue
        subscription = lock.subscription
        attempts = lock.attempts(invoice.id)
        last = attempts[-1] if attempts else None
        if last is None:
            # Issued but never sent to the provider: nothing was charged.
            settled.append(_void(lock, invoice, subscription, now, actor, "not_charged"))
            continue
        if last.status in (ChargeAttemptStatus.DECLINED, ChargeAttemptStatus.FAILED):
            settled.append(_void(lock, invoice, subscription, now, actor, "declined"))
            continue
        if last.status not in (ChargeAttemptStatus.UNKNOWN, ChargeAttemptStatus.REQUIRES_ACTION):
            continue  # flagged (another amount taken): someone has to look at it
        collection = reconcile_attempt(state, lock, invoice, last, now, actor)
        if collection.paid:
            settled.append(_finish(state, lock, collection, now, actor))
        elif collection.status in (PaymentOutcome.DECLINED, PaymentOutcome.FAILED):
            settled.append(_void(lock, invoice, subscription, now, actor, "declined"))
        elif collection.status is PaymentOutcome.AMOUNT_MISMATCH:
            settled.append(
                SettledPlanChange(SettlementOutcome.FLAGGED, invoice, subscription, subscription, collection)
            )
        elif (
            collection.status is PaymentOutcome.REQUIRES_ACTION
            and now - last.created_at > CONFIRMATION_TIMEOUT
        ):
            settled.append(_void(lock, invoice, subscription, now, actor, "not_confirmed"))
        else:
            settled.append(
                SettledPlanChange(SettlementOutcome.PENDING, invoice, subscription, subscription, collection)
            )
    return settled


def announce(state: PortalState, customer: Customer, settled: Sequence[SettledPlanChange]) -> None:
    """Tell the merchant's code and the customer what :func:`settle_locked`
    did, once it is committed: as a plan change made now for a change made
    (``invoice_paid``, ``plan_changed``, its email and the receipt),
    ``invoice_paid``, ``plan_change_credited`` and the receipt for a
    credited payment, ``charge_amount_mismatch`` for a flagged one. The
    emails are sent here only when they were not written under the lock."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for item in settled:
        if item.collection is not None:
            announce_mismatch(customer, item.collection)
        if item.outcome not in (SettlementOutcome.CHANGED, SettlementOutcome.CREDITED):
            continue
        invoice = item.invoice
        signals.invoice_paid.send(
            app, customer=customer, invoice=invoice, provider_reference=invoice.payment_reference
        )
        if item.outcome is SettlementOutcome.CREDITED:
            signals.plan_change_credited.send(
                app,
                customer=customer,
                subscription=item.subscription,
                invoice=invoice,
                amount=invoice.total_money,
                reason=item.reason,
            )
        else:
            signals.plan_changed.send(
                app,
                customer=customer,
                subscription=item.subscription,
                previous=item.previous,
                invoice=invoice,
                when="now",
            )
        if not item.emailed:
            _email_settled(state, customer, item, None)


def _email_change(
    state: PortalState, customer: Customer, item: SettledPlanChange, mail: MailBatch | None = None
) -> None:
    send_email(
        state,
        "plan_changed",
        customer,
        batch=mail,
        subscription=item.subscription,
        previous=item.previous,
        invoice=item.invoice,
        scheduled=False,
        link=subscription_link(state, item.subscription),
    )


def _may_have_some(state: PortalState, customer_id: str, subscription_id: str) -> bool:
    """Whether the subscription may have an unsettled plan-change payment:
    one query where the store can list them, else a look under the lock."""
    if not state.capabilities.plan_settlement:
        return True
    pending = state.storage.plan_changes_to_settle(customer_id=customer_id)
    return any(change.subscription_id == subscription_id for change in pending)


def settle_plan_changes(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    *,
    now: datetime | None = None,
    actor: str = "customer",
) -> list[SettledPlanChange]:
    """Settle the subscription's unconfirmed plan-change payments (see the
    module's description), under its lock, and announce what came of them.
    Cheap when there are none: only subscriptions of the plan catalogue can
    have any, and the store is asked before anything is locked."""
    if subscription.plan_id is None or not _settles_here(state):
        return []
    if not _may_have_some(state, customer.id, subscription.id):
        return []
    now = now or utcnow()
    mail = MailBatch(state)
    with state.storage.lock_subscription(customer.id, subscription.id) as lock:
        if lock is None:
            return []
        mail.write_through(lock)
        settled = settle_locked(state, lock, now, actor, mail=mail)
    mail.committed()
    announce(state, customer, settled)
    return settled


@dataclass(slots=True)
class SettlementReport:
    """What one run of :func:`settle_all_plan_changes` did."""

    settled: list[SettledPlanChange] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    """``(subscription id, error class name)`` of subscriptions that raised."""

    def count(self, outcome: SettlementOutcome) -> int:
        return sum(1 for s in self.settled if s.outcome is outcome)


def settle_all_plan_changes(
    state: PortalState, *, now: datetime | None = None, batch_size: int = 100
) -> SettlementReport:
    """Settle every subscription's unconfirmed plan-change payments, once
    per run (``flask portal renew-due`` does, before renewing). Needs the
    store's ``plan_changes_to_settle``; a subscription that raises (the
    provider is down) is logged and left for the next run."""
    now = now or utcnow()
    report = SettlementReport()
    if not _settles_here(state) or not state.capabilities.plan_settlement:
        return report
    # A subscription's changes are all settled under one lock: once each.
    seen: set[tuple[str, str]] = set()
    for change in _to_settle(state, batch_size):
        key = (change.customer_id, change.subscription_id)
        if key in seen:
            continue
        seen.add(key)
        try:
            report.settled.extend(_settle_one(state, change.customer_id, change.subscription_id, now))
        except Exception as exc:
            logger.exception("Settling the plan changes of subscription %s failed", change.subscription_id)
            report.errors.append((change.subscription_id, type(exc.__cause__ or exc).__name__))
    return report


def _to_settle(state: PortalState, batch_size: int) -> Iterator[PlanChange]:
    """Each plan change to settle, once: keyset pages in ``(created_at,
    invoice_id)`` order where the store has them (each page one read,
    however far the walk has gone); otherwise the list is read again after
    each batch, and those already seen (left pending) are skipped."""
    storage = state.storage
    if state.capabilities.due_claims and isinstance(storage, DueClaimStore):
        after: tuple[datetime, str] | None = None
        while page := storage.plan_changes_to_settle_after(after=after, limit=batch_size):
            after = (page[-1].created_at, page[-1].invoice_id)
            yield from page
        return
    seen: set[str] = set()
    while True:
        changes = storage.plan_changes_to_settle(limit=batch_size + len(seen))
        todo = [c for c in changes if c.invoice_id not in seen]
        if not todo:
            return
        for change in todo:
            seen.add(change.invoice_id)
            yield change


def _settle_one(
    state: PortalState, customer_id: str, subscription_id: str, now: datetime
) -> list[SettledPlanChange]:
    customer = state.storage.get_customer(customer_id)
    if customer is None:  # pragma: no cover - the subscription's customer exists (foreign key)
        return []
    mail = MailBatch(state)
    with state.storage.lock_subscription(customer_id, subscription_id) as lock:
        if lock is None:
            return []
        mail.write_through(lock)
        settled = settle_locked(state, lock, now, "system", mail=mail)
    mail.committed()
    announce(state, customer, settled)
    return settled
