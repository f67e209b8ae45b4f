"""Plan changes made by the payment company (Stripe, Dodo Payments), with
its own proration preview.

The preview's figures are the company's, not the portal's: the quote the
customer confirms is signed with them, and the confirmation, under the
portal's lock of the subscription (in every worker and host on the same
database), asks the company again. A preview that changed since is
shown again and nothing is charged; a subscription already on the plan
asked for (a double submit, a second tab, another instance that got the
lock first) is answered as done and nothing is charged; otherwise the
change is made once, with an idempotency key derived from the change's
id, so a retry of the same call is not a second charge either.

A company that errs or does not answer is :class:`ProviderError` (nothing
was asked to change: its preview failed) or :class:`PlanChangeUnconfirmed`
(the change was asked for and may have been made); in both, confirming
again is safe: the company's own answer of the plan the subscription is on
comes first, and the change's idempotency key is the same.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from flask import current_app

from .. import signals
from ..capabilities import (
    ChangesPlansAtProvider,
    ProviderPlanChangeDeclined,
    ProviderPlanPreview,
    ProviderPromotionCode,
    ProviderPromotionCodeRefused,
)
from ..clock import utcnow
from ..errors import SubscriptionNotFound
from ..state import PortalState
from ..storage import AuditEvent, Customer, Plan, StateConflict, Subscription
from .collect import ProviderError
from .outcomes import PaymentOutcome
from .plan_change import NOW, PlanChangeResult, Quote, change_id_is_valid, plan_change_blocked
from .promotions import CodeRefusal, promotion_codes_supported
from .proration import Proration
from .provider_promotions import preview_discount, provider_plan_change_codes_supported, provider_store

__all__ = [
    "PlanChangeUnconfirmed",
    "ProviderError",
    "change_at_provider",
    "idempotency_key_for",
    "in_catalogue_terms",
    "plan_change_codes",
    "preview_at_provider",
    "preview_at_provider_with_code",
    "proration_of",
    "provider_plan_changes_supported",
]


class PlanChangeUnconfirmed(ProviderError):
    """The company was asked to make the change and did not answer (a
    timeout, a server error): it may have made it, and charged for it."""


def provider_plan_changes_supported(state: PortalState) -> bool:
    """Whether plans are changed at the payment company: its billing store
    previews and makes the change
    (:attr:`~flask_customer_portal.capabilities.Capabilities.provider_plan_change`)
    and the local store can lock its subscriptions across processes."""
    return state.capabilities.provider_plan_change and state.capabilities.provider_lock


def plan_change_codes(state: PortalState) -> str | None:
    """Whose promotion codes a plan change takes: ``"local"`` (the store's or
    the merchant's loader's, applied by the portal), ``"provider"`` (the
    payment company's, applied by it, when it changes the plans), or
    ``None``."""
    if provider_plan_changes_supported(state):
        return "provider" if provider_plan_change_codes_supported(state) else None
    return "local" if promotion_codes_supported(state) else None


def in_catalogue_terms(state: PortalState, subscription: Subscription) -> Subscription:
    """``subscription`` named as your plan catalogue names its plan: a
    company may sell each plan as a product of its own (Dodo does), so
    the product and plan names it gives change with the plan, while the
    catalogue keeps the product the plans belong to."""
    if subscription.plan_id is None:
        return subscription
    plan = state.storage.get_plan(subscription.plan_id)
    if plan is None:
        return subscription
    return replace(subscription, product_name=plan.product_name, plan_name=plan.name)


def _store(state: PortalState) -> ChangesPlansAtProvider:
    if not provider_plan_changes_supported(state) or not isinstance(state.storage, ChangesPlansAtProvider):
        raise StateConflict("unsupported")
    return state.storage


def idempotency_key_for(subscription_id: str, change_id: str) -> str:
    """The key every call for one confirmed change carries."""
    return f"plan_change:{subscription_id}:{change_id}"


def proration_of(subscription: Subscription, preview: ProviderPlanPreview) -> Proration:
    """The company's figures in the shape the plan pages show: its credit
    for unused time, the new plan's prorated price and the total due now;
    the period is the subscription's (the company keeps the cycle)."""
    currency = preview.due_now.currency
    return Proration(
        currency=currency,
        unused=preview.unused.amount,
        new_charge=preview.new_charge.amount,
        credit_used=0,
        due_now=preview.due_now.amount,
        credit_after=0,
        period_start=subscription.current_period_start,
        period_end=subscription.current_period_end,
        seconds_left=1,
        seconds_total=1,
    )


def preview_at_provider(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    at: datetime,
) -> Proration:
    """What the company says the change costs now; raises
    :class:`SubscriptionNotFound` if it is not the customer's."""
    preview = _store(state).preview_provider_plan_change(
        customer.id, subscription.id, plan_id=plan.id, quantity=quantity, at=at
    )
    if preview is None:
        raise SubscriptionNotFound(subscription.id)
    return proration_of(subscription, preview)


def preview_at_provider_with_code(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    plan: Plan,
    quantity: int,
    at: datetime,
    code: ProviderPromotionCode,
) -> tuple[Proration, int] | CodeRefusal:
    """What the company says the change costs now with its code ``code``,
    and what the code took off; or why the code cannot be used: the
    company refused it, the subscription has a discount already, or it
    takes nothing off this change (a plan it does not apply to). Raises
    :class:`SubscriptionNotFound`."""
    try:
        preview = provider_store(state).preview_provider_plan_change_with_code(
            customer.id, subscription.id, plan_id=plan.id, quantity=quantity, at=at, promotion_code_id=code.id
        )
    except ProviderPromotionCodeRefused as exc:
        return CodeRefusal.HAS_DISCOUNT if exc.has_discount else CodeRefusal.INVALID
    if preview is None:
        raise SubscriptionNotFound(subscription.id)
    off = preview_discount(preview)
    if off <= 0:
        return CodeRefusal.NOT_FOR_PLAN
    return proration_of(subscription, preview), off


def change_at_provider(
    state: PortalState,
    customer: Customer,
    subscription_id: str,
    plan: Plan,
    quantity: int,
    *,
    change_id: str,
    quote: Quote,
    priced_at: datetime | None = None,
    actor: str = "customer",
    promotion: ProviderPromotionCode | None = None,
) -> PlanChangeResult:
    """Make the change the customer confirmed with ``quote``, exactly once,
    with the company's code ``promotion`` if the preview applied one (the
    company applies it in the same call, or refuses both: a conflict,
    ``promotion_used``, with nothing charged).

    :attr:`PaymentOutcome.ALREADY_PAID` if the subscription is on the plan
    already; :attr:`PaymentOutcome.AMOUNT_CHANGED` (nothing charged) if the
    company's figures are no longer the quoted ones; else
    :attr:`PaymentOutcome.PAID` once the company made the change, or
    :attr:`PaymentOutcome.DECLINED` (nothing changed) if its payment failed. Raises
    :class:`SubscriptionNotFound` and
    :class:`~flask_customer_portal.storage.StateConflict` (the subscription
    cannot change plan, or the company refused the change)."""
    if not change_id_is_valid(change_id):
        raise ValueError("not a plan change id")
    store = _store(state)
    now = utcnow()
    with state.storage.lock_provider_subscription(customer.id, subscription_id):
        found = state.storage.get_subscription(customer.id, subscription_id)
        if found is None:
            raise SubscriptionNotFound(subscription_id)
        previous = in_catalogue_terms(state, found)
        if (previous.plan_id, previous.quantity) == (plan.id, quantity):
            return PlanChangeResult(PaymentOutcome.ALREADY_PAID, previous, previous)
        blocked = plan_change_blocked(previous, now)
        if blocked is not None:
            raise StateConflict(blocked)
        at = min(priced_at or now, now)
        try:
            preview = _preview_for(state, store, customer, subscription_id, plan, quantity, at, promotion)
        except ProviderPromotionCodeRefused as exc:
            raise StateConflict("promotion_used") from exc
        except (StateConflict, SubscriptionNotFound):
            raise
        except Exception as exc:
            raise ProviderError(type(exc).__name__) from exc
        if preview is None:
            raise SubscriptionNotFound(subscription_id)
        if (preview.from_plan_id, preview.from_quantity) == (plan.id, quantity):
            # As the company has it now, whatever a cache said: done already.
            return PlanChangeResult(PaymentOutcome.ALREADY_PAID, previous, previous)
        fresh = state.storage.get_plan(plan.id) or plan
        if Quote(preview.due_now, fresh.price, fresh.interval, fresh.interval_count) != quote:
            return PlanChangeResult(PaymentOutcome.AMOUNT_CHANGED, previous, previous)
        if promotion is not None and preview_discount(preview) <= 0:
            raise StateConflict("promotion_used")
        key = idempotency_key_for(subscription_id, change_id)
        try:
            if promotion is None:
                made = store.make_provider_plan_change(
                    customer.id,
                    subscription_id,
                    plan_id=plan.id,
                    quantity=quantity,
                    at=at,
                    idempotency_key=key,
                )
            else:
                made = provider_store(state).make_provider_plan_change_with_code(
                    customer.id,
                    subscription_id,
                    plan_id=plan.id,
                    quantity=quantity,
                    at=at,
                    idempotency_key=key,
                    promotion_code_id=promotion.id,
                )
        except ProviderPromotionCodeRefused as exc:
            raise StateConflict("promotion_used") from exc
        except ProviderPlanChangeDeclined as exc:
            state.storage.record_event(
                AuditEvent(
                    customer_id=customer.id,
                    action="subscription.plan_change_failed",
                    occurred_at=now,
                    subject_id=subscription_id,
                    actor=actor,
                    details={"to_plan_id": plan.id, "reason": exc.decline_reason or "declined"},
                )
            )
            return PlanChangeResult(
                PaymentOutcome.DECLINED, previous, previous, decline_reason=exc.decline_reason
            )
        except (StateConflict, SubscriptionNotFound):
            raise
        except Exception as exc:
            raise PlanChangeUnconfirmed(type(exc).__name__) from exc
        if made is None:
            raise SubscriptionNotFound(subscription_id)
        changed = in_catalogue_terms(
            state, state.storage.get_subscription(customer.id, subscription_id) or previous
        )
        state.storage.record_event(
            AuditEvent(
                customer_id=customer.id,
                action="subscription.plan_changed",
                occurred_at=now,
                subject_id=subscription_id,
                actor=actor,
                details={
                    "from_plan_id": previous.plan_id or "",
                    "to_plan_id": plan.id,
                    "quantity": str(quantity),
                    "when": NOW,
                    "amount_due": str(made.due_now.amount),
                    "currency": made.due_now.currency,
                    **({} if promotion is None else {"promotion_code": promotion.code.key}),
                },
            )
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    signals.plan_changed.send(
        app, customer=customer, subscription=changed, previous=previous, invoice=None, when=NOW
    )
    return PlanChangeResult(PaymentOutcome.PAID, changed, previous)


def _preview_for(
    state: PortalState,
    store: ChangesPlansAtProvider,
    customer: Customer,
    subscription_id: str,
    plan: Plan,
    quantity: int,
    at: datetime,
    promotion: ProviderPromotionCode | None,
) -> ProviderPlanPreview | None:
    if promotion is None:
        return store.preview_provider_plan_change(
            customer.id, subscription_id, plan_id=plan.id, quantity=quantity, at=at
        )
    return provider_store(state).preview_provider_plan_change_with_code(
        customer.id,
        subscription_id,
        plan_id=plan.id,
        quantity=quantity,
        at=at,
        promotion_code_id=promotion.id,
    )
