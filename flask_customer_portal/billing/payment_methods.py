"""A customer's saved payment methods: adding one through the payment
provider, charging a subscription's renewals to one, and forgetting one.

Paying arrears with a method is reactivation
(:func:`~flask_customer_portal.billing.renewal.reactivate_subscription`);
these verbs move no money. Card numbers and security codes go to the
provider and nowhere else: only what it gives back (brand, last four,
expiry and its token) is saved.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from .. import signals
from ..errors import SubscriptionNotFound
from ..payments import CardDetails, MethodDeclined
from ..state import PortalState
from ..storage import AuditEvent, Customer, PaymentMethod, Subscription
from .collect import ProviderError
from .notify import announce

__all__ = ["MethodChange", "add_payment_method", "change_payment_method", "remove_payment_method"]

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
    return state.storage.add_payment_method(
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
