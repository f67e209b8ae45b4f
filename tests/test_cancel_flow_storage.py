"""Storage contract of pausing, resuming and retention discounts, on SQLite
and on PostgreSQL: what the cancellation flow and ``renew-due`` rely on."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from factories import T0, UTC, customer, subscription

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.storage import (
    AuditEvent,
    StateConflict,
    Subscription,
    SubscriptionStatus,
)

if TYPE_CHECKING:
    from flask import Flask


def _setup(store: SQLAlchemyStorage, **kw: object) -> Subscription:
    for customer_id in ("cus_a", "cus_b"):
        store.add_customer(customer(customer_id, name=customer_id))
    return store.add_subscription(subscription("sub_a", **kw))


def _event(action: str) -> AuditEvent:
    return AuditEvent(customer_id="cus_a", action=action, occurred_at=T0, subject_id="sub_a")


def test_pause_and_unpause_move_the_period_by_the_paused_time(store: SQLAlchemyStorage) -> None:
    _setup(store)
    now = T0 + timedelta(days=10)
    resumes_at = T0 + timedelta(days=70)
    paused = store.pause_subscription("cus_a", "sub_a", now=now, resumes_at=resumes_at, event=_event("p"))
    assert paused is not None
    assert paused.status is SubscriptionStatus.PAUSED
    assert (paused.paused_at, paused.resumes_at) == (now, resumes_at)
    assert paused.paused_at is not None and paused.paused_at.tzinfo is UTC
    assert store.subscriptions_to_resume(resumes_at - timedelta(microseconds=1)) == ()
    assert [s.id for s in store.subscriptions_to_resume(resumes_at)] == ["sub_a"]
    assert store.subscriptions_due(T0 + timedelta(days=400)) == ()  # paused is never due

    # Another customer's id, or resuming before the pause began: refused.
    assert store.unpause_subscription("cus_b", "sub_a", resumed_at=resumes_at) is None
    with pytest.raises(StateConflict):
        store.unpause_subscription("cus_a", "sub_a", resumed_at=now - timedelta(seconds=1))

    resumed = store.unpause_subscription("cus_a", "sub_a", resumed_at=resumes_at, event=_event("r"))
    assert resumed is not None
    assert resumed.status is SubscriptionStatus.ACTIVE
    assert resumed.current_period_start == T0 + timedelta(days=60)
    assert resumed.current_period_end == T0 + timedelta(days=91)
    assert (resumed.paused_at, resumed.resumes_at) == (None, None)
    assert [e.action for e in store.list_events("cus_a")] == ["p", "r"]
    with pytest.raises(StateConflict):
        store.unpause_subscription("cus_a", "sub_a", resumed_at=resumes_at)


@pytest.mark.parametrize(
    ("change", "now_offset"),
    [
        ({"status": SubscriptionStatus.ON_HOLD}, 1),
        ({"status": SubscriptionStatus.CANCELLED}, 1),
        ({"cancel_at_period_end": True}, 1),
        ({}, 31),  # the paid period is over: it is due, not pausable
    ],
    ids=["on_hold", "cancelled", "ending", "period_over"],
)
def test_only_an_active_subscription_with_time_left_can_be_paused(
    store: SQLAlchemyStorage, change: dict[str, object], now_offset: int
) -> None:
    before = _setup(store, **change)
    now = T0 + timedelta(days=now_offset)
    with pytest.raises(StateConflict):
        store.pause_subscription(
            "cus_a", "sub_a", now=now, resumes_at=now + timedelta(days=30), event=_event("p")
        )
    assert store.get_subscription("cus_a", "sub_a") == before
    assert store.list_events("cus_a") == ()


def test_pause_is_scoped_to_the_customer_and_needs_a_later_resume(store: SQLAlchemyStorage) -> None:
    before = _setup(store)
    now = T0 + timedelta(days=1)
    assert store.pause_subscription("cus_b", "sub_a", now=now, resumes_at=now + timedelta(days=9)) is None
    with pytest.raises(StateConflict):
        store.pause_subscription("cus_a", "sub_a", now=now, resumes_at=now)
    assert store.get_subscription("cus_a", "sub_a") == before


def test_retention_discount_is_set_and_used_up_under_the_lock(store: SQLAlchemyStorage) -> None:
    _setup(store)
    assert store.set_retention_discount("cus_b", "sub_a", percent=20, renewals=2) is None
    with pytest.raises(ValueError, match="1-99 percent"):
        store.set_retention_discount("cus_a", "sub_a", percent=100, renewals=1)
    discounted = store.set_retention_discount("cus_a", "sub_a", percent=20, renewals=2, event=_event("d"))
    assert discounted is not None
    assert (discounted.discount_percent, discounted.discount_renewals) == (20, 2)
    for left, percent in ((1, 20), (0, 0), (0, 0)):
        with store.lock_subscription("cus_a", "sub_a") as lock:
            assert lock is not None
            used = lock.use_retention_discount()
        assert (used.discount_percent, used.discount_renewals) == (percent, left)
    assert store.get_subscription("cus_a", "sub_a") == used


def test_a_cancelled_subscription_gets_no_discount(store: SQLAlchemyStorage) -> None:
    _setup(store, status=SubscriptionStatus.CANCELLED)
    with pytest.raises(StateConflict):
        store.set_retention_discount("cus_a", "sub_a", percent=20, renewals=1, event=_event("d"))
    assert store.list_events("cus_a") == ()


def test_two_resumes_at_once_resume_once(store_app: Flask, store: SQLAlchemyStorage) -> None:
    _setup(store)
    store.pause_subscription("cus_a", "sub_a", now=T0, resumes_at=T0 + timedelta(days=30))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def resume() -> None:
        with store_app.app_context():
            barrier.wait(timeout=30)
            try:
                store.unpause_subscription("cus_a", "sub_a", resumed_at=T0 + timedelta(days=5))
                outcomes.append("resumed")
            except StateConflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict", "resumed"]
    resumed = store.get_subscription("cus_a", "sub_a")
    assert resumed is not None
    assert resumed.current_period_end == T0 + timedelta(days=36)  # moved once, not twice
