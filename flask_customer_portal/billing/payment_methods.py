"""A customer's saved payment methods: adding one through the payment
provider, making one the default, charging a subscription's renewals to
one, and forgetting one.

Paying arrears with a method is reactivation
(:func:`~flask_customer_portal.billing.reactivation.reactivate_subscription`);
these verbs move no money. Card numbers and security codes go to the
provider and nowhere else: only what it gives back (brand, last four,
expiry and its token) is saved.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from .. import signals
from ..capabilities import KeepsDefaultPaymentMethod
from ..errors import PortalError, SubscriptionNotFound
from ..forms.payment import card_expired
from ..payments import CardDetails, MethodDeclined
from ..records import RENEWING_STATUSES
from ..state import PortalState
from ..storage import AuditEvent, Customer, PaymentMethod, Subscription
from .collect import ProviderError
from .notify import announce

__all__ = [
    "DefaultChange",
    "MethodChange",
    "MethodExpired",
    "add_payment_method",
    "change_payment_method",
    "remove_payment_method",
    "set_default_payment_method",
]

logger = logging.getLogger("flask_customer_portal")


def add_payment_method(
    state: PortalState,
    customer: Customer,
    *,
    card: CardDetails | None = None,
    token: str | None = None,
    now: datetime,
) -> PaymentMethod | MethodDeclined:
    """Give the provider raw ``card`` details (test providers only) or a
    ``token`` from its card element, and save the method it makes; or its
    refusal. Raises :class:`~flask_customer_portal.billing.collect.ProviderError`
    when the provider raises instead of answering (nothing is saved)."""
    try:
        if card is not None:
            result = state.payments.attach_card(customer.id, card)
        else:
            result = state.payments.attach_token(customer.id, token or "")
    except Exception as exc:
        # The class only: a provider's message could repeat what it was given.
        logger.error(
            "Payment provider raised %s while adding a card for customer %s", type(exc).__name__, customer.id
        )
        raise ProviderError(type(exc).__name__) from exc
    if isinstance(result, MethodDeclined):
        logger.info("Payment provider declined a new card for customer %s: %s", customer.id, result.reason)
        return result
    method_id = "pm_" + secrets.token_hex(12)
    saved = state.storage.add_payment_method(
        PaymentMethod(
            id=method_id,
            customer_id=customer.id,
            brand=result.brand,
            last4=result.last4,
            exp_month=result.exp_month,
            exp_year=result.exp_year,
            provider_token=result.provider_token,
        ),
        event=AuditEvent(
            customer_id=customer.id,
            action="payment_method.added",
            occurred_at=now,
            subject_id=method_id,
            details={"brand": result.brand, "last4": result.last4},
        ),
    )
    announce(state, signals.payment_method_added, customer, payment_method=saved)
    return saved


class MethodExpired(PortalError):
    """The card has expired: it cannot become the default."""


@dataclass(frozen=True, slots=True)
class DefaultChange:
    """The default as saved, whether it changed (it may have been the
    default already), and the active subscriptions moved to it as asked."""

    method: PaymentMethod
    changed: bool
    moved: tuple[Subscription, ...] = ()


def set_default_payment_method(
    state: PortalState,
    customer: Customer,
    method: PaymentMethod,
    *,
    also_active_subscriptions: bool = False,
    now: datetime,
) -> DefaultChange | None:
    """Make ``method`` the customer's default; with
    ``also_active_subscriptions``, charge the future renewals of each of
    their ``active`` subscriptions to it too (never an ``on_hold`` one,
    whose arrears are paid, not moved; nothing is charged now). Tells the
    merchant (audit log, ``default_payment_method_changed``, and
    ``payment_method_changed`` for each subscription moved).

    ``None`` when the method is no longer the customer's. Raises
    :class:`MethodExpired` for an expired card, and :class:`LookupError`
    when the store keeps no default (``state.capabilities.default_payment_method``)."""
    if not state.capabilities.default_payment_method:
        raise LookupError("the store keeps no default payment method")
    if card_expired(method.exp_month, method.exp_year, now):
        raise MethodExpired(method.id)
    store = cast(KeepsDefaultPaymentMethod, state.storage)
    previous = next((m for m in state.storage.list_payment_methods(customer.id) if m.is_default), None)
    changed = previous is None or previous.id != method.id
    if changed:
        saved = store.set_default_payment_method(
            customer.id,
            method.id,
            event=AuditEvent(
                customer_id=customer.id,
                action="payment_method.default_changed",
                occurred_at=now,
                subject_id=method.id,
                details={
                    "brand": method.brand,
                    "last4": method.last4,
                    "previous_payment_method_id": previous.id if previous is not None else "",
                },
            ),
        )
        if saved is None:
            return None
    else:
        saved = method
    moved: list[Subscription] = []
    if also_active_subscriptions:
        for subscription in state.storage.list_subscriptions(customer.id):
            if subscription.status not in RENEWING_STATUSES:
                continue
            try:
                change = change_payment_method(state, customer, subscription, saved, now=now)
            except SubscriptionNotFound:
                continue  # ended meanwhile
            if change.changed:
                moved.append(change.subscription)
    if changed:
        announce(
            state,
            signals.default_payment_method_changed,
            customer,
            payment_method=saved,
            previous=previous,
            subscriptions=tuple(moved),
        )
    return DefaultChange(method=saved, changed=changed, moved=tuple(moved))


@dataclass(frozen=True, slots=True)
class MethodChange:
    """The subscription as it is now, and whether anything changed (it was
    already charged to that method)."""

    subscription: Subscription
    changed: bool


def change_payment_method(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    method: PaymentMethod,
    *,
    now: datetime,
) -> MethodChange:
    """Charge the future renewals of ``subscription`` to ``method``; tell
    the merchant (audit log, ``payment_method_changed``). Raises
    :class:`~flask_customer_portal.errors.SubscriptionNotFound`."""
    previous = subscription.payment_method
    if previous is not None and previous.id == method.id:
        return MethodChange(subscription=subscription, changed=False)
    updated = state.storage.set_subscription_payment_method(
        customer.id,
        subscription.id,
        method.id,
        event=AuditEvent(
            customer_id=customer.id,
            action="payment_method.changed",
            occurred_at=now,
            subject_id=subscription.id,
            details={
                "payment_method_id": method.id,
                "previous_payment_method_id": previous.id if previous is not None else "",
            },
        ),
    )
    if updated is None:
        raise SubscriptionNotFound(subscription.id)
    announce(state, signals.payment_method_changed, customer, subscription=updated, payment_method=method)
    return MethodChange(subscription=updated, changed=True)


def remove_payment_method(
    state: PortalState, customer: Customer, method: PaymentMethod, *, now: datetime
) -> bool:
    """Forget ``method``; tell the merchant (audit log,
    ``payment_method_removed``). ``False`` when it was not there any more.
    Raises :class:`~flask_customer_portal.storage.PaymentMethodInUse` while
    a current subscription is charged to it."""
    removed = state.storage.remove_payment_method(
        customer.id,
        method.id,
        event=AuditEvent(
            customer_id=customer.id,
            action="payment_method.removed",
            occurred_at=now,
            subject_id=method.id,
            details={"brand": method.brand, "last4": method.last4},
        ),
    )
    if removed:
        announce(state, signals.payment_method_removed, customer, payment_method=method)
    return bool(removed)
