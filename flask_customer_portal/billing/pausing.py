"""Pausing a subscription and resuming it.

A paused subscription is not renewed or charged. It becomes ``active``
again at its ``resumes_at`` (``flask portal renew-due`` resumes it, however
late that job runs) or earlier when the customer resumes it. Either way
the current period's start and end move on by the time it was paused,
counted from ``paused_at`` to the moment it resumed (``resumes_at`` for an
automatic resume, the click for a manual one, never later than
``resumes_at``): the paid-for time that was
left when it was paused is kept whole, and the next renewal is that much
later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from flask import current_app

from .. import signals
from ..config import PortalConfig
from ..errors import SubscriptionNotFound
from ..outbox import dispatch
from ..rules import CustomerRules
from ..state import PortalState
from ..storage import (
    AuditEvent,
    Customer,
    DueClaimStore,
    OutboxMail,
    StateConflict,
    Subscription,
    SubscriptionStatus,
)
from .notify import email_with_change, send_email, subscription_link
from .periods import add_interval

__all__ = [
    "ResumeReport",
    "can_pause",
    "may_pause",
    "pause_choices",
    "pause_subscription",
    "resume_due",
    "unpause",
    "unpause_subscription",
]

logger = logging.getLogger("flask_customer_portal")


def can_pause(subscription: Subscription, now: datetime) -> bool:
    """Whether the subscription is in a state that can be paused: ``active``,
    not set to end, with its paid period still ahead."""
    return (
        subscription.status is SubscriptionStatus.ACTIVE
        and not subscription.cancel_at_period_end
        and subscription.current_period_end > now
    )


def may_pause(state: PortalState, rules: CustomerRules) -> bool:
    """Whether this customer may pause at all: the merchant allows pauses
    (``CUSTOMER_PORTAL_ALLOW_PAUSE``), the customer's rules do, and the
    store can pause the subscriptions it holds."""
    return state.config.allow_pause and rules.may_pause and state.capabilities.pause


def pause_choices(
    config: PortalConfig,
    subscription: Subscription,
    now: datetime,
    *,
    may_pause: bool,
    pausable_store: bool = True,
) -> tuple[int, ...]:
    """The numbers of months the customer may pause ``subscription`` for
    now; empty when pausing is off, forbidden by their rules, not possible
    in its state, or not something the store can do (``pausable_store``
    false: a billing adapter without pauses)."""
    if not (config.allow_pause and may_pause and can_pause(subscription, now)):
        return ()
    if not pausable_store:
        return ()
    return tuple(range(1, config.max_pause_months + 1))


def pause_subscription(
    state: PortalState,
    customer: Customer,
    subscription_id: str,
    *,
    months: int,
    now: datetime,
    details: dict[str, str] | None = None,
) -> Subscription:
    """Pause for ``months`` calendar months from ``now``; tell the merchant
    (audit log, ``subscription_paused``) and the customer (email).

    Raises :class:`SubscriptionNotFound` and
    :class:`~flask_customer_portal.storage.StateConflict`. The caller checks
    that pausing is allowed and ``months`` within the merchant's maximum.
    """
    resumes_at = add_interval(now, "month", months)
    mail: list[OutboxMail] = []
    if state.capabilities.mail_outbox:
        # Written with the pause: rendered first, from the subscription as
        # the store will leave it.
        expected = replace(
            _read(state, customer, subscription_id),
            status=SubscriptionStatus.PAUSED,
            paused_at=now,
            resumes_at=resumes_at,
        )
        mail = email_with_change(
            state,
            "subscription_paused",
            customer,
            subscription=expected,
            link=subscription_link(state, expected),
        )
    paused = state.storage.pause_subscription(
        customer.id,
        subscription_id,
        now=now,
        resumes_at=resumes_at,
        event=AuditEvent(
            customer_id=customer.id,
            action="subscription.paused",
            occurred_at=now,
            subject_id=subscription_id,
            details={"months": str(months), "resumes_at": resumes_at.isoformat(), **(details or {})},
        ),
        **({"mail": mail} if mail else {}),
    )
    if paused is None:
        raise SubscriptionNotFound(subscription_id)
    signals.subscription_paused.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        subscription=paused,
        resumes_at=resumes_at,
    )
    if not _sent(state, mail):
        send_email(
            state, "subscription_paused", customer, subscription=paused, link=subscription_link(state, paused)
        )
    return paused


def _read(state: PortalState, customer: Customer, subscription_id: str) -> Subscription:
    found = state.storage.get_subscription(customer.id, subscription_id)
    if found is None:
        raise SubscriptionNotFound(subscription_id)
    return found


def _sent(state: PortalState, written: Sequence[OutboxMail]) -> bool:
    """Dispatch the emails the change wrote; ``False`` if it wrote none."""
    dispatch(state, [mail.id for mail in written])
    return bool(written)


def unpause_subscription(
    state: PortalState,
    customer: Customer,
    subscription_id: str,
    *,
    resumed_at: datetime,
    automatic: bool,
) -> Subscription:
    """Make a paused subscription ``active`` as of ``resumed_at`` (its
    period moved on by the paused time); tell the merchant and the customer.

    Raises :class:`SubscriptionNotFound` and
    :class:`~flask_customer_portal.storage.StateConflict` (not paused).
    """
    mail: list[OutboxMail] = []
    # A payment company that bills the subscription itself (no money path
    # of the portal's) sets its dates as it resumes it: the email is
    # written from its answer, after the change, not from a prediction.
    if state.capabilities.mail_outbox and state.capabilities.charge:
        # Written with the change: rendered first, from the subscription as
        # the store will leave it (its period moved on by the paused time).
        current = _read(state, customer, subscription_id)
        paused_for = resumed_at - (current.paused_at or resumed_at)
        expected = replace(
            current,
            status=SubscriptionStatus.ACTIVE,
            current_period_start=current.current_period_start + paused_for,
            current_period_end=current.current_period_end + paused_for,
            paused_at=None,
            resumes_at=None,
        )
        mail = email_with_change(
            state,
            "subscription_resumed",
            customer,
            subscription=expected,
            link=subscription_link(state, expected),
            automatic=automatic,
        )
    resumed = state.storage.unpause_subscription(
        customer.id,
        subscription_id,
        resumed_at=resumed_at,
        event=AuditEvent(
            customer_id=customer.id,
            action="subscription.resumed",
            occurred_at=resumed_at,
            subject_id=subscription_id,
            actor="system" if automatic else "customer",
            details={"automatic": "true" if automatic else "false"},
        ),
        **({"mail": mail} if mail else {}),
    )
    if resumed is None:
        raise SubscriptionNotFound(subscription_id)
    signals.subscription_resumed.send(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        customer=customer,
        subscription=resumed,
        automatic=automatic,
    )
    if not _sent(state, mail):
        send_email(
            state,
            "subscription_resumed",
            customer,
            subscription=resumed,
            link=subscription_link(state, resumed),
            automatic=automatic,
        )
    return resumed


@dataclass(frozen=True, slots=True)
class ResumeReport:
    resumed: tuple[Subscription, ...]
    errors: tuple[tuple[str, str], ...]
    """``(subscription id, error class name)`` of those that raised."""


def resume_due(state: PortalState, now: datetime, *, batch_size: int = 100) -> ResumeReport:
    """Resume every paused subscription whose ``resumes_at`` has come, as of
    its ``resumes_at``. One that the customer resumed in the meantime is
    skipped; one that raises is logged and left for the next run."""
    resumed: list[Subscription] = []
    errors: list[tuple[str, str]] = []
    for subscription in _to_resume(state, now, batch_size):
        customer = state.storage.get_customer(subscription.customer_id)
        if customer is None or subscription.resumes_at is None:  # pragma: no cover - foreign key, query
            continue
        try:
            resumed.append(
                unpause_subscription(
                    state, customer, subscription.id, resumed_at=subscription.resumes_at, automatic=True
                )
            )
        except StateConflict:
            continue  # resumed (or cancelled) since it was listed
        except Exception as exc:
            logger.exception("Resuming subscription %s failed", subscription.id)
            errors.append((subscription.id, type(exc).__name__))
    return ResumeReport(tuple(resumed), tuple(errors))


def _to_resume(state: PortalState, now: datetime, batch_size: int) -> Iterator[Subscription]:
    """Each paused subscription to resume at ``now``, once: keyset pages
    in ``(resumes_at, id)`` order where the store has them (each page one
    read, however far the walk has gone); otherwise the list is read again
    after each batch, and those still paused (failed) are skipped."""
    storage = state.storage
    if state.capabilities.due_claims and isinstance(storage, DueClaimStore):
        after: tuple[datetime, str] | None = None
        while page := storage.subscriptions_to_resume_after(now, after=after, limit=batch_size):
            last = page[-1]
            if last.resumes_at is None:  # pragma: no cover - the query asks for one
                return
            after = (last.resumes_at, last.id)
            yield from page
        return
    seen: set[str] = set()
    while True:
        listed = storage.subscriptions_to_resume(now, limit=batch_size + len(seen))
        due = [s for s in listed if s.id not in seen]
        if not due:
            return
        for subscription in due:
            seen.add(subscription.id)
            yield subscription


def unpause(
    state: PortalState, customer: Customer, subscription: Subscription, *, now: datetime
) -> Subscription:
    """End ``subscription``'s pause now, at the customer's request. A pause
    never lasts past its ``resumes_at``, even when ``flask portal
    renew-due`` has not run yet: that is when it ended. Raises
    :class:`~flask_customer_portal.errors.SubscriptionNotFound` and
    :class:`~flask_customer_portal.storage.StateConflict` (not paused)."""
    resumed_at = min(now, subscription.resumes_at) if subscription.resumes_at else now
    return unpause_subscription(state, customer, subscription.id, resumed_at=resumed_at, automatic=False)
