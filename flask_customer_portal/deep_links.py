"""Deep links: a dynamic link that lands the customer on one task.

``create_session(customer_id, flow="payment_method_update",
subscription_id="sub_123", return_url="https://shop.example/account")``
makes a link that signs the customer in and opens the page for that task.
The flow and its subscription are part of the link's signed payload, so
they cannot be changed without breaking the signature. When the customer
has done the task, the portal sends them back to ``return_url``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from .auth import PortalSession, issue_session_link, validate_return_url
from .billing.lifecycle import describe, rules_for
from .billing.plan_change import plan_changes_supported
from .clock import utcnow
from .errors import CustomerNotFound
from .state import PortalState
from .storage import AuditEvent, Customer, LinkRecord, Subscription

__all__ = ["Flow", "check_flow", "create_session_link"]


class Flow(str, enum.Enum):
    """What a deep link lands on."""

    #: The subscription's payment method page (change the card, or pay the
    #: arrears of an ``on_hold`` subscription).
    PAYMENT_METHOD_UPDATE = "payment_method_update"
    #: The start of cancelling the subscription.
    CANCEL = "cancel"
    #: Choosing another plan for the subscription.
    PLAN_CHANGE = "plan_change"
    #: The billing history.
    INVOICES = "invoices"

    def __str__(self) -> str:
        return self.value

    @property
    def needs_subscription(self) -> bool:
        return self is not Flow.INVOICES


#: The portal page a plan-change link lands on (by its name in the
#: portal's blueprint).
PLAN_CHANGE_ENDPOINT = "change_plan"


def parse_flow(value: str | None) -> Flow | None:
    """The flow named ``value``; ``None`` for no name or an unknown one."""
    if not value:
        return None
    try:
        return Flow(value)
    except ValueError:
        return None


def check_flow(
    state: PortalState, customer: Customer, flow: str | None, subscription_id: str | None
) -> tuple[Flow | None, Subscription | None]:
    """Check a deep link's flow before the link is made.

    Raises :class:`ValueError` with a message for the merchant's developer
    for an unknown flow, a missing, unknown or foreign subscription, a
    subscription the flow cannot apply to (cancelling an ended one), a
    flow the customer's rules forbid, or a plan change in an app without
    the plan-change page or whose back end cannot change plans.
    """
    if flow is None or flow == "":
        if subscription_id:
            raise ValueError("subscription_id is only used with a flow")
        return None, None
    parsed = parse_flow(flow)
    if parsed is None:
        names = ", ".join(repr(f.value) for f in Flow)
        raise ValueError(f"unknown flow {flow!r}; use one of {names}")
    if not parsed.needs_subscription:
        if subscription_id:
            raise ValueError(f"the {parsed.value!r} flow takes no subscription_id")
        return parsed, None
    if not subscription_id:
        raise ValueError(f"the {parsed.value!r} flow needs a subscription_id")
    if parsed is Flow.PLAN_CHANGE and not plan_changes_supported(state):
        raise ValueError("the 'plan_change' flow needs a back end that can change plans (see plans)")
    subscription = None
    if 0 < len(subscription_id) <= 128 and subscription_id.isprintable():
        subscription = state.storage.get_subscription(customer.id, subscription_id)
    if subscription is None:
        raise ValueError(f"customer {customer.id!r} has no subscription {subscription_id!r}")
    _check_subscription(parsed, customer, subscription)
    return parsed, subscription


def _check_subscription(flow: Flow, customer: Customer, subscription: Subscription) -> None:
    view = describe(subscription, utcnow())
    if not view.is_current:
        raise ValueError(f"subscription {subscription.id!r} has ended")
    rules = rules_for(customer, subscription)
    if flow is Flow.CANCEL:
        if not view.can_cancel:
            raise ValueError(f"subscription {subscription.id!r} is already set to end")
        if not rules.may_cancel:
            raise ValueError(f"the rules for customer {customer.id!r} do not allow cancelling")
    if flow is Flow.PLAN_CHANGE and not rules.may_change_plan:
        raise ValueError(f"the rules for customer {customer.id!r} do not allow a plan change")


def create_session_link(
    state: PortalState,
    customer_id: str,
    return_url: str | None,
    *,
    flow: str | None = None,
    subscription_id: str | None = None,
    actor: str = "merchant",
    details: Mapping[str, str] | None = None,
    save: Callable[[LinkRecord, PortalSession, AuditEvent], None] | None = None,
) -> PortalSession:
    """Check everything first (customer, return URL, deep-link flow), then
    make the link: a refused call leaves nothing behind. ``actor`` and
    ``details`` (who made it, e.g. a staff member's id) go into the
    ``session_link.created`` audit event; ``save`` writes the link and
    that event (:func:`~flask_customer_portal.auth.issue_session_link`)."""
    customer = state.storage.get_customer(customer_id)
    if customer is None or customer.is_erased:
        raise CustomerNotFound(customer_id)
    return_url = validate_return_url(state, return_url)
    checked_flow, subscription = check_flow(state, customer, flow, subscription_id)
    return issue_session_link(
        state,
        customer,
        return_url,
        flow=checked_flow.value if checked_flow is not None else None,
        subscription_id=subscription.id if subscription is not None else None,
        actor=actor,
        details=details,
        save=save,
    )
