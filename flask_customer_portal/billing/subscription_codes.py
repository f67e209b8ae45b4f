"""A promotion code entered on a subscription's own page.

The code becomes the subscription's discount on its next renewals, the way
an accepted retention discount does (``discount_percent`` for
``discount_renewals`` renewals): ``once`` for the next renewal, ``repeating``
for the next ``duration_periods`` renewals, ``forever`` for every one. The
subscription page's "Next invoice" (or, in a trial, what the trial's end
charges) shows it at once.

The rules are those of a code at a plan change
(:mod:`~flask_customer_portal.billing.promotions`): one use per customer,
recorded under the subscription's lock in the transaction that sets the
discount; every attempt counted against the rate limit; unknown, expired,
withdrawn and used-up codes all get one answer; the plan a restriction is
checked against is the one the renewals charge. Two things more:

* Only a percent can be taken off a renewal: an amount off is for one
  charge, so such a code is refused here, with an answer that says to use
  it at a plan change.
* A subscription has one discount at a time. One that still has a discount
  to use (a retention discount, or an earlier code) is refused before any
  code is looked up, and the page does not offer the field: a second code
  would replace what the customer was given, and neither "the larger
  percent" nor "the longer one" is better in every case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..errors import SubscriptionNotFound
from ..records import PromotionCode, PromotionDuration
from ..state import PortalState
from ..storage import AuditEvent, Customer, Plan, Subscription, SubscriptionStatus
from .promotions import (
    FOREVER_RENEWALS,
    CodeRefusal,
    PromotionLock,
    PromotionStore,
    check_code,
    promotion_codes_supported,
    redeem_locked,
)
from .provider_promotions import apply_provider_code, check_provider_code, provider_codes_supported

__all__ = [
    "SubscriptionCode",
    "apply_subscription_code",
    "may_take_code",
    "renewals_on_subscription",
    "subscription_codes_supported",
]

_TAKES_CODES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)


def subscription_codes_supported(state: PortalState) -> bool:
    """Whether codes can be entered on a subscription's page: the store keeps
    codes, and its subscription lock records their use with the discount;
    or the payment company's billing store takes its own codes."""
    return promotion_codes_supported(state) or provider_codes_supported(state)


def may_take_code(subscription: Subscription, now: datetime) -> bool:
    """Whether ``subscription`` can take a code now: ``active`` or
    ``trialing`` and renewing (not set to end, not past its period)."""
    return (
        subscription.status in _TAKES_CODES
        and not subscription.cancel_at_period_end
        and subscription.current_period_end > now
    )


def has_discount(subscription: Subscription) -> bool:
    return subscription.discount_percent > 0 and subscription.discount_renewals > 0


def renewals_on_subscription(code: PromotionCode) -> int:
    """How many renewals ``code`` takes its percent off when entered on a
    subscription (none for an amount off)."""
    if code.percent_off is None:
        return 0
    if code.duration is PromotionDuration.FOREVER:
        return FOREVER_RENEWALS
    if code.duration is PromotionDuration.REPEATING:
        return code.duration_periods
    return 1


@dataclass(frozen=True, slots=True)
class SubscriptionCode:
    """What came of a code entered on a subscription: the subscription with
    its discount, or why not (``refusal`` for the field; ``conflict`` when
    the subscription cannot take a code at all)."""

    subscription: Subscription
    code: PromotionCode | None = None
    refusal: CodeRefusal | None = None
    conflict: bool = False

    @property
    def applied(self) -> bool:
        return self.code is not None


def _renewal_plan(state: PortalState, subscription: Subscription) -> Plan | None:
    """The plan the next renewals charge (a scheduled change's, if any)."""
    plan_id = subscription.scheduled_plan_id or subscription.plan_id
    if plan_id is None:
        return None
    return state.storage.get_plan(plan_id)


def _plan_of(subscription: Subscription) -> Plan:
    """A subscription's own terms, for a code's currency check (a code
    limited to plans never applies to it)."""
    return Plan(
        id="",
        product_name=subscription.product_name,
        name=subscription.plan_name,
        price=subscription.price,
        interval=subscription.interval,
        interval_count=subscription.interval_count,
    )


def apply_subscription_code(
    state: PortalState, customer: Customer, subscription: Subscription, text: str, *, now: datetime
) -> SubscriptionCode:
    """Make the code ``text`` the discount of the customer's ``subscription``
    on its next renewals, using it once for this customer.

    Raises :class:`~flask_customer_portal.errors.SubscriptionNotFound`."""
    if not subscription_codes_supported(state) or not may_take_code(subscription, now):
        return SubscriptionCode(subscription, conflict=True)
    if has_discount(subscription):
        # Decided before any lookup, so the answer says nothing about the code.
        return SubscriptionCode(subscription, refusal=CodeRefusal.HAS_DISCOUNT)
    if not promotion_codes_supported(state):
        return _apply_at_provider(state, customer, subscription, text, now=now)
    # A plan gone from the catalogue: the subscription's own terms, which a
    # code limited to plans does not apply to.
    plan = _renewal_plan(state, subscription) or _plan_of(subscription)
    check = check_code(state, customer, plan, text, now=now)
    code = check.code
    if code is None:
        return SubscriptionCode(subscription, refusal=check.refusal or CodeRefusal.INVALID)
    renewals = renewals_on_subscription(code)
    if renewals <= 0 or code.percent_off is None:
        return SubscriptionCode(subscription, refusal=CodeRefusal.PLAN_CHANGE_ONLY)
    refused: CodeRefusal | None = None
    with state.storage.lock_subscription(customer.id, subscription.id) as lock:
        if lock is None:
            raise SubscriptionNotFound(subscription.id)
        current = lock.subscription
        if not isinstance(lock, PromotionLock) or not may_take_code(current, now):
            # Changed since the page was read (a cancellation, a hold):
            # nothing is used.
            return SubscriptionCode(current, conflict=True)
        if has_discount(current):
            # Another tab's code or a retention discount came first.
            return SubscriptionCode(current, refusal=CodeRefusal.HAS_DISCOUNT)
        if redeem_locked(lock, code, invoice_id=None, now=now):
            discounted = lock.grant_discount(code.percent_off, renewals)
            lock.record_event(
                AuditEvent(
                    customer_id=current.customer_id,
                    action="subscription.promotion_code_applied",
                    occurred_at=now,
                    subject_id=current.id,
                    details={
                        "code": code.key,
                        "percent": str(code.percent_off),
                        "renewals": str(renewals),
                    },
                )
            )
        else:
            refused = CodeRefusal.INVALID
    if refused is not None:
        # Used up and used by this customer read alike to the lock; only
        # the customer's own use is worth telling them about.
        storage = state.storage
        if isinstance(storage, PromotionStore) and storage.promotion_redeemed(customer.id, code.key):
            refused = CodeRefusal.ALREADY_USED
        return SubscriptionCode(current, refusal=refused)
    return SubscriptionCode(discounted, code=code)


def _apply_at_provider(
    state: PortalState, customer: Customer, subscription: Subscription, text: str, *, now: datetime
) -> SubscriptionCode:
    """The payment company's code, applied by the company under the
    portal's lock of the subscription (an amount off too: the company keeps
    it for the invoices it lasts for)."""
    plan = state.storage.get_plan(subscription.plan_id) if subscription.plan_id else None
    check = check_provider_code(state, customer, plan or _plan_of(subscription), text, now=now)
    found = check.found
    if found is None:
        return SubscriptionCode(subscription, refusal=check.refusal or CodeRefusal.INVALID)
    with state.storage.lock_provider_subscription(customer.id, subscription.id):
        current = state.storage.get_subscription(customer.id, subscription.id)
        if current is None:
            raise SubscriptionNotFound(subscription.id)
        if not may_take_code(current, now):
            return SubscriptionCode(current, conflict=True)
        if has_discount(current):
            return SubscriptionCode(current, refusal=CodeRefusal.HAS_DISCOUNT)
        applied = apply_provider_code(state, customer, current, found, now=now)
    if applied.refusal is not None:
        return SubscriptionCode(applied.subscription, refusal=applied.refusal)
    return SubscriptionCode(applied.subscription, code=found.code)
