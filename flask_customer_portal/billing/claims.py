"""Walking what is due, so that ``flask portal renew-due`` can run from cron
on every host at once.

Where the store claims what it renews
(:class:`~flask_customer_portal.storage.DueClaimStore`, the SQLAlchemy
store), a run reads the due subscriptions a keyset page at a time, in
``(current_period_end, id)`` order, and claims each one before renewing it:
on PostgreSQL a subscription another run (or a paying customer) holds is
skipped at once instead of waited for, and one renewed meanwhile is no
longer due, so two runs never renew the same period and never wait on each
other. Each page costs one read however far the walk has gone, and no
subscription is read again. Where the store can share the walk
(:meth:`~flask_customer_portal.storage.DueClaimStore.share_due`: advisory
locks on PostgreSQL), a run first takes the page's subscriptions that no
other run has taken, in one statement, and renews only those: runs that
start together split the pages between them instead of each trying every
subscription, and what they take is let go once the page is done (or when a
run dies). Taking holds no row: the claim still decides, so exactly-once
rests on it alone. A run that left subscriptions to others walks once more
at the end, over what is still due: what a run that died had taken and not
renewed is renewed then, not only by the next run.

A store without claims lists its due subscriptions again after each batch
and locks each one (:meth:`~flask_customer_portal.storage.ChargeStore.lock_subscription`);
those renewed leave the list, so only those still due after their turn
are read again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from ..state import PortalState
from ..storage import DueClaimStore, DueShare, Subscription, SubscriptionLock, SubscriptionStatus

__all__ = ["LockTaker", "Renew", "each_due"]

#: Takes a subscription's lock for one transaction of its renewal.
LockTaker = Callable[[], AbstractContextManager[SubscriptionLock | None]]
#: Renews ``subscription`` under the locks the taker gives, issuing its
#: invoice in a transaction of its own when told to; returns the
#: subscription as it is afterwards (``None`` if nothing was done).
Renew = Callable[[Subscription, LockTaker, bool], Subscription | None]


def each_due(state: PortalState, now: datetime, batch_size: int, renew: Renew) -> None:
    """Call ``renew`` once for each subscription due at ``now``."""
    storage = state.storage
    if state.capabilities.due_claims and isinstance(storage, DueClaimStore):
        _claimed(storage, now, batch_size, renew)
    else:
        _listed(state, now, batch_size, renew)


def _claimed(storage: DueClaimStore, now: datetime, batch_size: int, renew: Renew) -> None:
    issue_apart = storage.claims_in_parallel()
    # Once per run: one renewed for a period that is still over (it was
    # several behind) comes again in the walk, and waits for the next run.
    seen: set[str] = set()
    with storage.share_due() as share:
        left_to_others = _walk(storage, share, now, batch_size, renew, issue_apart, seen)
        if left_to_others:
            # What other runs took and have not renewed yet (one that died
            # let go of the rest of its page) is still due: one more walk,
            # which reads only what is left, takes what they let go.
            _walk(storage, share, now, batch_size, renew, issue_apart, seen)


def _walk(
    storage: DueClaimStore,
    share: DueShare | None,
    now: datetime,
    batch_size: int,
    renew: Renew,
    issue_apart: bool,
    seen: set[str],
) -> bool:
    """One walk over the due subscriptions, renewing those this run takes;
    whether it left any to other runs."""
    left = False
    after: tuple[datetime, str] | None = None
    while page := storage.subscriptions_due_after(now, after=after, limit=batch_size):
        after = (page[-1].current_period_end, page[-1].id)
        fresh = [s for s in page if s.id not in seen]
        if share is not None and fresh:
            # What another run took is its to renew: this one goes on to
            # the next page instead of trying each one of them.
            taken = share.take([s.id for s in fresh])
            left = left or len(taken) < len(fresh)
            fresh = [s for s in fresh if s.id in taken]
        seen.update(s.id for s in fresh)
        for subscription in fresh:

            def claim(s: Subscription = subscription) -> AbstractContextManager[SubscriptionLock | None]:
                return storage.claim_due_subscription(s.customer_id, s.id, now)

            renew(subscription, claim, issue_apart)
        if share is not None:
            share.release()
    return left


def _listed(state: PortalState, now: datetime, batch_size: int, renew: Renew) -> None:
    storage = state.storage
    seen: set[str] = set()
    still_due: set[str] = set()
    while True:
        listed = storage.subscriptions_due(now, limit=batch_size + len(still_due))
        due = [s for s in listed if s.id not in seen]
        if not due:
            return
        for subscription in due:
            seen.add(subscription.id)

            def lock(s: Subscription = subscription) -> AbstractContextManager[SubscriptionLock | None]:
                return storage.lock_subscription(s.customer_id, s.id)

            after = renew(subscription, lock, False) or subscription
            if after.status is SubscriptionStatus.ACTIVE and after.current_period_end <= now:
                still_due.add(subscription.id)
