"""The plan catalogue and plan changes in the SQLAlchemy store, on SQLite
and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from factories import BIG, UTC, customer, subscription

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.money import Money
from flask_customer_portal.storage import (
    AuditEvent,
    Invoice,
    InvoiceStatus,
    Plan,
    StateConflict,
    Subscription,
)

T0 = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)


def _plan(plan_id: str, amount: int = 1900, **kw: object) -> Plan:
    return dataclasses.replace(Plan(plan_id, "Pro", plan_id, Money(amount, "USD"), "month"), **kw)  # type: ignore[arg-type]


def _setup(store: SQLAlchemyStorage) -> Subscription:
    for customer_id in ("cus_a", "cus_b"):
        store.add_customer(customer(customer_id, name="X", created_at=T0))
    return store.add_subscription(
        subscription(
            "sub_a",
            price=Money(1900, "USD"),
            current_period_start=T0,
            current_period_end=T0 + timedelta(days=31),
            created_at=T0,
            plan_id="monthly",
            quantity=3,
            credit=BIG,
        )
    )


def test_plans_round_trip_active_ones_listed_in_order(store: SQLAlchemyStorage) -> None:
    team = _plan("team", BIG, per_seat=True, min_quantity=2, max_quantity=50, position=5)
    store.add_plan(team)
    store.add_plan(_plan("basic", position=1))
    store.add_plan(_plan("retired", active=False))
    store.add_plan(dataclasses.replace(_plan("other"), product_name="Desktop"))
    assert [p.id for p in store.list_plans("Pro")] == ["basic", "team"]
    assert store.get_plan("team") == team
    assert store.get_plan("retired") is not None  # still readable for its subscribers
    assert store.get_plan("nope") is None
    with pytest.raises(ValueError, match="quantities"):
        store.add_plan(_plan("bad", min_quantity=3, max_quantity=2))


def test_subscriptions_keep_their_plan_fields(store: SQLAlchemyStorage) -> None:
    added = _setup(store)
    assert store.get_subscription("cus_a", "sub_a") == added
    listed = store.list_subscriptions("cus_a")[0]
    assert (listed.plan_id, listed.quantity, listed.credit) == ("monthly", 3, BIG)


def test_scheduling_a_change_is_scoped_audited_and_undone(store: SQLAlchemyStorage) -> None:
    _setup(store)
    event = AuditEvent(customer_id="cus_a", action="subscription.plan_change_scheduled", occurred_at=T0)
    assert (
        store.schedule_plan_change("cus_b", "sub_a", plan_id="basic", quantity=1, now=T0, event=event) is None
    )
    scheduled = store.schedule_plan_change("cus_a", "sub_a", plan_id="basic", quantity=1, now=T0, event=event)
    assert scheduled is not None
    assert (scheduled.scheduled_plan_id, scheduled.scheduled_quantity) == ("basic", 1)
    assert [e.action for e in store.list_events("cus_a")] == ["subscription.plan_change_scheduled"]
    cleared = store.schedule_plan_change("cus_a", "sub_a", plan_id=None, quantity=None, now=T0)
    assert cleared is not None and cleared.scheduled_plan_id is None
    with pytest.raises(StateConflict):
        store.schedule_plan_change("cus_a", "sub_a", plan_id=None, quantity=None, now=T0)
    with pytest.raises(StateConflict):  # the period is over: it is renewing
        store.schedule_plan_change("cus_a", "sub_a", plan_id="basic", quantity=1, now=T0 + timedelta(days=31))


def test_the_lock_changes_plan_voids_and_sets_credit(store: SQLAlchemyStorage) -> None:
    _setup(store)
    store.schedule_plan_change("cus_a", "sub_a", plan_id="basic", quantity=1, now=T0)
    team = _plan("team", 1500, per_seat=True, min_quantity=2, max_quantity=50)
    with store.lock_subscription("cus_a", "sub_a") as lock:
        assert lock is not None
        changed = lock.change_plan(team, 4, credit=250, current_period_end=T0 + timedelta(days=40))
        invoice = lock.issue_invoice(
            Invoice(
                id="in_pc_1",
                number="",
                customer_id="cus_a",
                status=InvoiceStatus.OPEN,
                currency="USD",
                subtotal=100,
                tax=0,
                total=100,
                issued_at=T0,
                description="change",
                subscription_id="sub_a",
            )
        )
        voided = lock.void_invoice(invoice.id)
        with pytest.raises(StateConflict):
            lock.void_invoice(invoice.id)
        assert lock.set_credit(0).credit == 0
        with pytest.raises(ValueError, match="negative"):
            lock.set_credit(-1)
    assert (changed.plan_id, changed.plan_name, changed.price, changed.quantity) == (
        "team",
        "team",
        Money(6000, "USD"),
        4,
    )
    assert changed.scheduled_plan_id is None and changed.credit == 250
    assert voided.status is InvoiceStatus.VOID
    stored = store.get_subscription("cus_a", "sub_a")
    assert stored is not None
    assert (stored.plan_id, stored.credit, stored.current_period_end) == ("team", 0, T0 + timedelta(days=40))
