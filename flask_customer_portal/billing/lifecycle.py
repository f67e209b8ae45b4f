"""What may happen to a subscription, and the moves that end one or keep it.

A subscription is ``trialing`` (see :mod:`.trials`), ``active``, ``paused``,
``on_hold`` (its renewal was not paid) or ``cancelled``. :func:`describe` says what the customer sees at a
moment (a subscription set to end is shown as ended once its date has
passed, however late ``flask portal renew-due`` runs); the
``can_*`` answers of :class:`SubscriptionView` and :func:`rules_for` (the
merchant's per-customer rules) are the guards every page and every POST
asks. :func:`cancel` and :func:`undo_cancellation` are the moves; pausing
is in :mod:`.pausing`, paying and renewing in :mod:`.renewal`, plan changes
in :mod:`.plan_change`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from flask import g

from .. import signals
from ..config import CANCEL_AT_PERIOD_END_MODE, CANCEL_IMMEDIATELY_MODE
from ..errors import SubscriptionNotFound
from ..offers import CancellationReason
from ..records import RENEWING_STATUSES
from ..rules import CustomerRules
from ..state import PortalState, get_state
from ..storage import AuditEvent, Customer, StateConflict, Subscription, SubscriptionStatus
from .notify import announce, email_with_change, subscription_link
from .trials import TrialSummary, trial_summary

__all__ = [
    "LifecycleResult",
    "SubscriptionView",
    "cancel",
    "cancel_choices",
    "describe",
    "ends_at_period_end",
    "rules_for",
    "undo_cancellation",
]


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    """A subscription as the customer sees it at one moment.

    A subscription set to end at period end stays ``active`` in storage
    until ``flask portal renew-due`` finishes it. Once its date has passed it
    is shown as ended, however late that job runs, and can no longer be
    kept.
    """

    subscription: Subscription
    status: SubscriptionStatus
    """The status to show (``cancelled`` once a set end date has passed)."""
    renews_at: datetime | None = None
    """Next renewal, for an active subscription that is not set to end."""
    ends_at: datetime | None = None
    """When a subscription that is set to end will end (still ahead)."""
    ended_at: datetime | None = None
    """When a past subscription ended."""
    unpaid_since: datetime | None = None
    """For an ``on_hold`` subscription: when the renewal that failed was due."""
    resumes_at: datetime | None = None
    """For a ``paused`` subscription: when it becomes active again."""
    trial_ends_at: datetime | None = None
    """For a ``trialing`` subscription that is not set to end: when its
    trial ends and its first period is charged."""

    @property
    def is_current(self) -> bool:
        return self.ended_at is None

    @property
    def paused(self) -> bool:
        return self.status is SubscriptionStatus.PAUSED

    @property
    def can_cancel(self) -> bool:
        return self.is_current and self.ends_at is None

    @property
    def can_undo(self) -> bool:
        return self.ends_at is not None

    @property
    def on_hold(self) -> bool:
        return self.status is SubscriptionStatus.ON_HOLD

    @property
    def trial(self) -> TrialSummary | None:
        """The trial's end and what will be charged then, while trialing."""
        if self.status is not SubscriptionStatus.TRIALING:
            return None
        return trial_summary(self.subscription)


def describe(subscription: Subscription, now: datetime) -> SubscriptionView:
    """What the customer should see for ``subscription`` at ``now``."""
    if subscription.status is SubscriptionStatus.CANCELLED:
        ended = subscription.ended_at or subscription.cancelled_at or subscription.current_period_end
        return SubscriptionView(subscription, SubscriptionStatus.CANCELLED, ended_at=ended)
    if subscription.status is SubscriptionStatus.ON_HOLD:
        return SubscriptionView(
            subscription, SubscriptionStatus.ON_HOLD, unpaid_since=subscription.current_period_end
        )
    if subscription.status is SubscriptionStatus.PAUSED:
        return SubscriptionView(subscription, SubscriptionStatus.PAUSED, resumes_at=subscription.resumes_at)
    running = (
        SubscriptionStatus.TRIALING
        if subscription.status is SubscriptionStatus.TRIALING
        else SubscriptionStatus.ACTIVE
    )
    if subscription.cancel_at_period_end:
        if subscription.current_period_end > now:
            return SubscriptionView(subscription, running, ends_at=subscription.current_period_end)
        return SubscriptionView(
            subscription, SubscriptionStatus.CANCELLED, ended_at=subscription.current_period_end
        )
    if running is SubscriptionStatus.TRIALING:
        return SubscriptionView(subscription, running, trial_ends_at=subscription.current_period_end)
    return SubscriptionView(
        subscription, SubscriptionStatus.ACTIVE, renews_at=subscription.current_period_end
    )


def ends_at_period_end(
    state: PortalState, subscription: Subscription, now: datetime, mode: str | None = None
) -> bool:
    """Whether cancelling now keeps the subscription until its period ends:
    the customer's ``mode`` (one of :func:`cancel_choices`), else the
    merchant's first mode (``CUSTOMER_PORTAL_CANCEL_MODES``, or
    ``CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END``), and only for an active
    subscription whose period is still ahead (an ``on_hold`` one ends now;
    a trial ends with its trial, uncharged). The store applies the same rule
    when it cancels, in its conditional update."""
    chosen = mode or state.config.cancel_modes[0]
    return (
        chosen == CANCEL_AT_PERIOD_END_MODE
        and subscription.status in RENEWING_STATUSES
        and subscription.current_period_end > now
    )


def cancel_choices(state: PortalState, subscription: Subscription, now: datetime) -> tuple[str, ...]:
    """The ways the customer may end ``subscription`` now, in the order
    offered: both of the merchant's modes only where they differ (an
    active subscription with paid time ahead, or a trial with days left:
    :func:`ends_at_period_end` keeps either until then); otherwise the one
    way it would end."""
    modes = state.config.cancel_modes
    if len(modes) > 1 and not (
        subscription.status in RENEWING_STATUSES and subscription.current_period_end > now
    ):
        return (CANCEL_IMMEDIATELY_MODE,)
    return modes


_ALLOW_ALL = CustomerRules()


def rules_for(customer: Customer, subscription: Subscription | None = None) -> CustomerRules:
    """The rules for ``customer`` (and ``subscription``) in this request.

    Asks the merchant's :meth:`~flask_customer_portal.CustomerPortal.rules_loader`
    once per request and subscription; without one, everything is allowed.
    """
    loader = get_state().hooks.rules_loader
    if loader is None:
        return _ALLOW_ALL
    cache: dict[tuple[str, str | None], CustomerRules] = g.setdefault("_customer_portal_rules", {})
    key = (customer.id, subscription.id if subscription is not None else None)
    if key not in cache:
        rules = loader(customer, subscription)
        if not isinstance(rules, CustomerRules):
            raise TypeError("the portal's rules_loader must return a CustomerRules")
        cache[key] = rules
    return cache[key]


@dataclass(frozen=True, slots=True)
class LifecycleResult:
    """What a move did: ``done``, with the subscription as it is now;
    refused, with ``view`` (the subscription as it is now) saying why."""

    done: bool
    subscription: Subscription
    view: SubscriptionView


def _current(state: PortalState, customer: Customer, subscription_id: str, now: datetime) -> LifecycleResult:
    found = state.storage.get_subscription(customer.id, subscription_id)
    if found is None:
        raise SubscriptionNotFound(subscription_id)
    return LifecycleResult(False, found, describe(found, now))


def cancel(
    state: PortalState,
    customer: Customer,
    subscription: Subscription,
    *,
    reason: CancellationReason | None,
    now: datetime,
    mode: str | None = None,
) -> LifecycleResult:
    """Cancel ``subscription``: at the end of its period where
    :func:`ends_at_period_end` says so (for the customer's ``mode``, one of
    :func:`cancel_choices`; ``None`` is the merchant's first), else now.
    A ``mode`` the merchant does not allow raises :class:`ValueError`. Then the
    ``subscription_cancelled`` signal and the customer's email. Refused
    (not done) when it is already set to end or has ended, however the
    customer's pages looked. Raises :class:`SubscriptionNotFound`."""
    if mode is not None and mode not in state.config.cancel_modes:
        raise ValueError(f"cancel mode {mode!r} is not allowed")
    view = describe(subscription, now)
    if not view.can_cancel:
        return LifecycleResult(False, subscription, view)
    later = ends_at_period_end(state, subscription, now, mode)
    details = {"at_period_end": "true" if later else "false"}
    if reason is not None:
        details["reason"] = reason.code
        if reason.text:
            details["reason_text"] = reason.text
    # The email is written with the cancellation, so it is rendered first,
    # from what the store will make of the subscription (the same rule).
    if later:
        expected = replace(subscription, cancel_at_period_end=True, cancelled_at=now)
    else:
        expected = replace(
            subscription,
            status=SubscriptionStatus.CANCELLED,
            cancel_at_period_end=False,
            cancelled_at=now,
            ended_at=now,
        )
    mail = email_with_change(
        state,
        "subscription_cancelled",
        customer,
        subscription=expected,
        at_period_end=later,
        link=subscription_link(state, expected),
    )
    try:
        cancelled = state.storage.cancel_subscription(
            customer.id,
            subscription.id,
            at_period_end=(mode or state.config.cancel_modes[0]) == CANCEL_AT_PERIOD_END_MODE,
            now=now,
            event=AuditEvent(
                customer_id=customer.id,
                action="subscription.cancelled",
                occurred_at=now,
                subject_id=subscription.id,
                details=details,
            ),
            **({"mail": mail} if mail else {}),
        )
    except StateConflict:
        return _current(state, customer, subscription.id, now)
    if cancelled is None:
        raise SubscriptionNotFound(subscription.id)
    at_period_end = cancelled.status is not SubscriptionStatus.CANCELLED
    announce(
        state,
        signals.subscription_cancelled,
        customer,
        subscription=cancelled,
        at_period_end=at_period_end,
        reason=None if reason is None else reason.code,
        reason_text=None if reason is None else reason.text,
        email="subscription_cancelled",
        email_context={
            "subscription": cancelled,
            "at_period_end": at_period_end,
            "link": subscription_link(state, cancelled),
        },
        written=mail,
    )
    return LifecycleResult(True, cancelled, describe(cancelled, now))


def undo_cancellation(
    state: PortalState, customer: Customer, subscription_id: str, *, now: datetime
) -> LifecycleResult:
    """Keep a subscription that was set to end, while its end is ahead;
    then the ``cancellation_undone`` signal and the customer's email.
    Refused (not done) when it is not set to end or has ended. Raises
    :class:`SubscriptionNotFound`."""
    mail = []
    if state.capabilities.mail_outbox:
        # Written with the change: rendered first, from the subscription
        # as the store will leave it.
        current = state.storage.get_subscription(customer.id, subscription_id)
        if current is None:
            raise SubscriptionNotFound(subscription_id)
        expected = replace(current, cancel_at_period_end=False, cancelled_at=None)
        mail = email_with_change(
            state,
            "cancellation_undone",
            customer,
            subscription=expected,
            link=subscription_link(state, expected),
        )
    try:
        kept = state.storage.undo_cancellation(
            customer.id,
            subscription_id,
            now=now,
            event=AuditEvent(
                customer_id=customer.id,
                action="subscription.cancellation_undone",
                occurred_at=now,
                subject_id=subscription_id,
            ),
            **({"mail": mail} if mail else {}),
        )
    except StateConflict:
        return _current(state, customer, subscription_id, now)
    if kept is None:
        raise SubscriptionNotFound(subscription_id)
    announce(
        state,
        signals.cancellation_undone,
        customer,
        subscription=kept,
        email="cancellation_undone",
        email_context={"subscription": kept, "link": subscription_link(state, kept)},
        written=mail,
    )
    return LifecycleResult(True, kept, describe(kept, now))
