"""The arrears of subscriptions that the payment provider bills itself
(Dodo Payments): the provider protocol and the attempt log's rules.

:func:`~flask_customer_portal.billing.reactivation.reactivate_subscription` hands such
a subscription's arrears to :meth:`SubscriptionBiller.pay_arrears` under the
store's :meth:`~flask_customer_portal.storage.ProviderLockStore.lock_provider_subscription`.
Each call is an :class:`~flask_customer_portal.storage.ArrearsAttempt`,
recorded before the provider is asked, with a key derived from what is
paid (:func:`arrears_key`); an attempt whose outcome is open is settled
with :meth:`SubscriptionBiller.find_arrears_charge` before anything else.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from ..payments import (
    ChargeDeclined,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeResult,
    ChargeSucceeded,
    ChargeUnknown,
    SubscriptionBiller,
)
from ..storage import ArrearsAttempt, AuditEvent, ChargeAttemptStatus, Subscription

__all__ = ["IN_FLIGHT", "OPEN", "SubscriptionBiller", "arrears_key", "attempt_event", "settled"]


#: Outcomes that leave an attempt open: it is settled with the provider
#: before anything else is tried.
OPEN = frozenset({ChargeAttemptStatus.UNKNOWN, ChargeAttemptStatus.REQUIRES_ACTION})

#: A charge of the subscription this recent that is processing, or paid
#: while the subscription is still ``on_hold``, stops a new attempt, whether
#: or not the portal made it.
IN_FLIGHT = timedelta(days=1)

_STATUS_OF = {
    ChargeSucceeded: ChargeAttemptStatus.SUCCEEDED,
    ChargeDeclined: ChargeAttemptStatus.DECLINED,
    ChargeRequiresAction: ChargeAttemptStatus.REQUIRES_ACTION,
    ChargeFailed: ChargeAttemptStatus.FAILED,
    ChargeUnknown: ChargeAttemptStatus.UNKNOWN,
}


def arrears_key(subscription: Subscription, attempt: int) -> str:
    """The idempotency key of the ``attempt``-th try at ``subscription``'s
    arrears, ``arrears:<subscription id>:<period end>:attempt:<n>``: the
    subscription and the period its arrears are for, never the request."""
    period = subscription.current_period_end.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"arrears:{subscription.id}:{period}:attempt:{attempt}"


def settled(attempt: ArrearsAttempt, result: ChargeResult | None, now: datetime) -> ArrearsAttempt:
    """``attempt`` with the provider's answer about it; ``None`` (the
    provider has no charge of it) is ``failed``: no money moved."""
    if result is None:
        return replace(attempt, status=ChargeAttemptStatus.FAILED, resolved_at=now)
    status = _STATUS_OF[type(result)]
    reference = attempt.provider_reference
    if isinstance(result, ChargeSucceeded | ChargeRequiresAction | ChargeDeclined):
        reference = result.charge_id or reference
    return replace(
        attempt,
        status=status,
        provider_reference=reference,
        decline_reason=str(result.reason) if isinstance(result, ChargeDeclined) else None,
        resolved_at=None if status in OPEN else now,
    )


def attempt_event(attempt: ArrearsAttempt, action: str, now: datetime, actor: str) -> AuditEvent:
    """The audit row of an attempt's outcome (``charge.<status>``) or of
    its settling (``charge.reconciled``)."""
    details = {"idempotency_key": attempt.idempotency_key, "outcome": str(attempt.status)}
    if attempt.payment_method_id:
        details["payment_method_id"] = attempt.payment_method_id
    if attempt.decline_reason:
        details["decline_reason"] = attempt.decline_reason
    return AuditEvent(
        customer_id=attempt.customer_id,
        action=action,
        occurred_at=now,
        subject_id=attempt.subscription_id,
        provider_reference=attempt.provider_reference,
        actor=actor,
        details=details,
    )
