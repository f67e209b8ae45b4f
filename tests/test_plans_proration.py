"""Proration arithmetic: to the second, one rounding rule, whole rupiah."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from flask_customer_portal.billing.periods import add_months
from flask_customer_portal.billing.plan_change import plan_change_blocked
from flask_customer_portal.billing.proration import (
    apply_credit,
    is_upgrade,
    prorate,
    rounding_quantum,
    share,
)
from flask_customer_portal.money import Money
from flask_customer_portal.storage import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)

UTC = timezone.utc
START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)  # 31 days
SECONDS = 31 * 86400


PRO_PRICE = Money(1900, "USD")


def sub(price: Money = PRO_PRICE, **kw: Any) -> Subscription:
    return replace(
        Subscription(
            id="sub_1",
            customer_id="cus_1",
            product_name="Sync",
            plan_name="Pro",
            price=price,
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.ACTIVE,
            current_period_start=START,
            current_period_end=END,
            plan_id="pro",
        ),
        **kw,
    )


def plan(plan_id: str, amount: int, currency: str = "USD", interval: str = "month", **kw: Any) -> Plan:
    return Plan(plan_id, "Sync", plan_id.title(), Money(amount, currency), interval, **kw)


def test_rounding_quantum_is_the_smallest_unit_shown() -> None:
    assert rounding_quantum("USD") == 1
    assert rounding_quantum("IDR") == 100  # sen are never shown: whole rupiah
    assert rounding_quantum("JPY") == 1


def test_share_rounds_half_up_once() -> None:
    assert share(1000, 1, 3, "USD") == 333  # 333.33
    assert share(1000, 2, 3, "USD") == 667  # 666.67
    assert share(1, 1, 2, "USD") == 1  # 0.5 rounds up
    assert share(3, 1, 2, "USD") == 2  # 1.5 rounds up
    assert share(1900, 0, SECONDS, "USD") == 0
    assert share(1900, SECONDS, SECONDS, "USD") == 1900
    # IDR: Rp150.000 for a third of the period is Rp50.000, never 49.999,67.
    assert share(15_000_000, 1, 3, "IDR") == 5_000_000
    assert share(10_000, 1, 3, "IDR") == 3_300  # Rp33,33 → Rp33
    with pytest.raises(ValueError, match="cannot take 2/1"):
        share(100, 2, 1, "USD")


def test_upgrade_halfway_credits_the_old_plan_and_charges_the_new_one_for_the_rest() -> None:
    now = START + timedelta(seconds=SECONDS // 2)
    p = prorate(sub(), plan("business", 4900), 1, now)
    assert (p.unused, p.new_charge, p.due_now, p.credit_after) == (950, 2450, 1500, 0)
    assert (p.period_start, p.period_end) == (START, END)
    assert not p.resets_period


def test_exact_second_boundaries() -> None:
    at_start = prorate(sub(), plan("business", 4900), 1, START)
    assert (at_start.unused, at_start.new_charge, at_start.due_now) == (1900, 4900, 3000)
    one_second_left = prorate(sub(), plan("business", 4900), 1, END - timedelta(seconds=1))
    assert one_second_left.seconds_left == 1
    assert (one_second_left.unused, one_second_left.new_charge, one_second_left.due_now) == (0, 0, 0)
    at_end = prorate(sub(), plan("business", 4900), 1, END)
    assert at_end.seconds_left == 0 and at_end.due_now == 0
    # Fractions of a second do not count: 10:00:00.9 is 10:00:00.
    a = prorate(sub(), plan("business", 4900), 1, START + timedelta(days=10))
    b = prorate(sub(), plan("business", 4900), 1, START + timedelta(days=10, microseconds=900_000))
    assert a == b


def test_downgrade_leaves_credit_never_a_negative_charge() -> None:
    now = START + timedelta(seconds=SECONDS // 2)
    p = prorate(sub(), plan("basic", 900), 1, now)
    assert (p.unused, p.new_charge, p.due_now, p.credit_after) == (950, 450, 0, 500)


def test_existing_credit_pays_first_then_the_card() -> None:
    now = START + timedelta(seconds=SECONDS // 2)
    p = prorate(sub(credit=400), plan("business", 4900), 1, now)
    assert (p.credit_used, p.due_now, p.credit_after) == (400, 1100, 0)
    p = prorate(sub(credit=5000), plan("business", 4900), 1, now)
    assert (p.credit_used, p.due_now, p.credit_after) == (1500, 0, 3500)


def test_seat_quantity_changes() -> None:
    team = plan("team", 1500, per_seat=True, min_quantity=2, max_quantity=50)
    now = START + timedelta(seconds=SECONDS // 2)
    on_team = sub(price=Money(3 * 1500, "USD"), plan_id="team", quantity=3)
    more = prorate(on_team, team, 5, now)
    assert (more.unused, more.new_charge, more.due_now) == (2250, 3750, 1500)
    assert is_upgrade(on_team, team, 5)
    fewer = prorate(on_team, team, 2, now)
    assert (fewer.due_now, fewer.credit_after) == (0, 750)
    assert not is_upgrade(on_team, team, 2)


def test_monthly_to_yearly_starts_a_new_period_now() -> None:
    now = START + timedelta(days=10)
    p = prorate(sub(), plan("pro_yearly", 19000, interval="year"), 1, now)
    assert p.resets_period
    assert (p.period_start, p.period_end) == (now, add_months(now, 12))
    assert p.unused == share(1900, 21 * 86400, SECONDS, "USD") == 1287
    assert p.new_charge == 19000 and p.due_now == 19000 - 1287
    # Direction is by the price of a year: $190 a year is less than 12 times $19.
    assert not is_upgrade(sub(), plan("pro_yearly", 19000, interval="year"), 1)
    assert not is_upgrade(sub(), plan("even", 22800, interval="year"), 1)  # equal: not an upgrade
    assert is_upgrade(sub(), plan("more", 22801, interval="year"), 1)


def test_month_end_periods_count_their_real_seconds() -> None:
    # 31 January → 28 February: a 28-day period; halfway is 14 days in.
    jan31 = datetime(2026, 1, 31, 12, tzinfo=UTC)
    feb28 = add_months(jan31, 1)
    assert feb28 == datetime(2026, 2, 28, 12, tzinfo=UTC)
    s = sub(current_period_start=jan31, current_period_end=feb28)
    p = prorate(s, plan("business", 4900), 1, jan31 + timedelta(days=14))
    assert (p.unused, p.new_charge, p.due_now) == (950, 2450, 1500)


def test_idr_prorations_are_whole_rupiah() -> None:
    idr = sub(price=Money(15_000_000, "IDR"), plan_id="pro_idr")
    now = START + timedelta(days=10, hours=7, minutes=13, seconds=29)
    p = prorate(idr, plan("basic_idr", 7_500_000, "IDR"), 1, now)
    for amount in (p.unused, p.new_charge, p.credit_after):
        assert amount % 100 == 0, amount
    up = prorate(idr, plan("pro_idr_yearly", 150_000_000, "IDR", interval="year"), 1, now)
    assert up.due_now % 100 == 0 and up.due_now > 0
    with pytest.raises(ValueError, match="is in USD"):
        prorate(idr, plan("business", 4900), 1, now)  # another currency


def test_apply_credit_takes_at_most_the_subtotal() -> None:
    invoice = Invoice(
        id="in_1",
        number="",
        customer_id="cus_1",
        status=InvoiceStatus.OPEN,
        currency="USD",
        subtotal=900,
        tax=0,
        total=900,
        issued_at=START,
        description="Sync",
        lines=(InvoiceLine("Sync", 1, 900, 900),),
    )
    part, left = apply_credit(invoice, 500, "Account credit")
    assert (part.subtotal, part.total, left) == (400, 400, 0)
    assert part.lines[-1] == InvoiceLine("Account credit", 1, -500, -500)
    whole, left = apply_credit(invoice, 1200, "Account credit")
    assert (whole.total, left) == (0, 300)
    assert sum(line.amount for line in whole.lines) == whole.subtotal
    same, left = apply_credit(invoice, 0, "Account credit")
    assert same is invoice and left == 0


def test_only_an_active_subscription_within_its_period_may_change_plan() -> None:
    now = START + timedelta(days=3)
    assert plan_change_blocked(sub(), now) is None
    assert plan_change_blocked(sub(status=SubscriptionStatus.ON_HOLD), now) == "on_hold"
    assert plan_change_blocked(sub(status=SubscriptionStatus.CANCELLED), now) == "cancelled"
    assert plan_change_blocked(sub(status=SubscriptionStatus.PAUSED), now) == "paused"
    assert plan_change_blocked(sub(cancel_at_period_end=True), now) == "ending"
    assert plan_change_blocked(sub(), END) == "renewing"
    assert plan_change_blocked(sub(plan_id=None), now) == "no_plan"
