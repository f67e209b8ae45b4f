"""Contract of the SQLAlchemy store, on SQLite and on PostgreSQL.

What the views and billing rules rely on: records come back exactly as
stored (aware UTC, big amounts), reads are scoped to one customer, lists are
ordered and paged in a fixed number of queries, one-time links are used once
even under concurrency, and invoice numbers are never handed out twice.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import pytest
from db_support import in_threads, only_postgresql
from factories import (
    BIG,
    JAKARTA,
    T0,
    UTC,
    card,
    customer,
    invoice,
    license_key,
    link,
    portal_session,
    subscription,
)
from sqlalchemy.exc import IntegrityError, StatementError

from flask_customer_portal.contrib.sqla import (
    CustomerModel,
    PortalModel,
    SQLAlchemyStorage,
    SubscriptionModel,
    metadata,
)
from flask_customer_portal.money import Money
from flask_customer_portal.storage import (
    AuditEvent,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyStatus,
    LinkPurpose,
    PaymentMethod,
    PortalStorage,
    Subscription,
    SubscriptionStatus,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from conftest import QueryCounter
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy


def assert_utc(*values: datetime | None) -> None:
    for value in values:
        assert value is not None
        assert value.tzinfo is UTC, value


def ids(
    records: Sequence[Customer | Subscription | Invoice | PaymentMethod | LicenseKey],
) -> list[str]:
    return [r.id for r in records]


# -- schema ------------------------------------------------------------------------


def test_store_implements_the_protocol(store: SQLAlchemyStorage) -> None:
    assert isinstance(store, PortalStorage)


def test_tables_live_on_the_packages_own_metadata(store_app: Flask) -> None:
    db: SQLAlchemy = store_app.extensions["sqlalchemy"]
    assert PortalModel.metadata is metadata
    assert db.metadata is not metadata
    assert set(metadata.tables) == {
        "portal_customers",
        "portal_payment_methods",
        "portal_subscriptions",
        "portal_invoices",
        "portal_invoice_lines",
        "portal_credit_notes",
        "portal_license_keys",
        "portal_license_key_instances",
        "portal_charge_attempts",
        "portal_links",
        "portal_sessions",
        "portal_audit_events",
        "portal_webhook_events",
        "portal_sequences",
        "portal_billing_details",
        "portal_plans",
        "portal_provider_locks",
        "portal_arrears_attempts",
        "portal_plan_changes",
        "portal_mail_outbox",
        "portal_promotion_codes",
        "portal_promotion_redemptions",
    }


# -- round trips -------------------------------------------------------------------


def test_customer_round_trip(store: SQLAlchemyStorage) -> None:
    ava = customer(
        "cus_ava",
        email="Ava.Smith@Example.com",
        phone="+6281234567890",
        locale="id",
        timezone="Asia/Jakarta",
        auth_version=3,
        created_at=T0.astimezone(JAKARTA),
    )
    returned = store.add_customer(ava)
    stored = store.get_customer("cus_ava")

    assert stored == returned == ava
    assert stored is not None
    assert stored.email == "Ava.Smith@Example.com"  # stored as given
    assert_utc(stored.created_at, returned.created_at)
    assert store.get_customer("cus_nobody") is None


def test_created_at_defaults_to_now(store: SQLAlchemyStorage) -> None:
    before = datetime.now(UTC)
    returned = store.add_customer(customer("cus_a", created_at=None))
    stored = store.get_customer("cus_a")
    assert stored is not None
    assert stored.created_at == returned.created_at
    assert stored.created_at is not None
    assert before <= stored.created_at <= datetime.now(UTC)
    assert_utc(stored.created_at)


def test_subscription_round_trip_with_payment_method(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    visa = store.add_payment_method(card("pm_visa", created_at=T0.astimezone(JAKARTA)))
    on_hold = subscription(
        "sub_1",
        product_name="Pro",
        plan_name="Yearly",
        price=Money(BIG, "IDR"),
        interval="year",
        interval_count=2,
        status=SubscriptionStatus.ON_HOLD,
        current_period_start=T0.astimezone(JAKARTA),
        current_period_end=(T0 + timedelta(days=365)).astimezone(JAKARTA),
        cancel_at_period_end=True,
        cancelled_at=T0 + timedelta(days=3),
        ended_at=T0 + timedelta(days=4),
        payment_method=visa,
        hold_reason="Your card was declined.",
    )
    returned = store.add_subscription(on_hold)
    stored = store.get_subscription("cus_a", "sub_1")

    assert stored == returned == on_hold
    assert stored is not None
    assert stored.price == Money(BIG, "IDR")
    assert stored.status is SubscriptionStatus.ON_HOLD
    assert stored.payment_method == visa
    assert stored.payment_method is not None
    assert_utc(
        stored.current_period_start,
        stored.current_period_end,
        stored.cancelled_at,
        stored.ended_at,
        stored.created_at,
        stored.payment_method.created_at,
    )
    assert store.list_subscriptions("cus_a") == (stored,)


def test_subscription_without_payment_method(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_subscription(subscription("sub_1"))
    stored = store.get_subscription("cus_a", "sub_1")
    assert stored is not None
    assert stored.payment_method is None
    assert stored.cancelled_at is None


def test_a_trialing_subscription_is_kept_ended_and_renewed_as_its_own_state(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    trial_end = T0 + timedelta(days=14)
    trial = subscription("sub_trial", status=SubscriptionStatus.TRIALING, current_period_end=trial_end)
    store.add_subscription(trial)
    store.add_subscription(
        subscription("sub_on_hold", status=SubscriptionStatus.ON_HOLD, current_period_end=T0)
    )
    assert store.get_subscription("cus_a", "sub_trial") == trial
    # Due with its trial's end, like an active subscription with its period's.
    assert ids(store.subscriptions_due(trial_end - timedelta(seconds=1))) == []
    assert ids(store.subscriptions_due(trial_end)) == ["sub_trial"]
    assert ids(store.subscriptions_due_after(trial_end, after=None)) == ["sub_trial"]
    # Cancelled during the trial: it ends with the trial, and can be kept until then.
    ending = store.cancel_subscription("cus_a", "sub_trial", at_period_end=True, now=T0)
    assert ending is not None
    assert (ending.status, ending.cancel_at_period_end) == (SubscriptionStatus.TRIALING, True)
    kept = store.undo_cancellation("cus_a", "sub_trial", now=T0)
    assert kept is not None and not kept.cancel_at_period_end
    with store.lock_subscription("cus_a", "sub_trial") as lock:
        assert lock is not None
        paid = lock.update_subscription(status=SubscriptionStatus.ACTIVE, current_period_start=trial_end)
    assert paid.status is SubscriptionStatus.ACTIVE
    ended = store.cancel_subscription("cus_a", "sub_trial", at_period_end=False, now=T0)
    assert ended is not None and ended.status is SubscriptionStatus.CANCELLED


def test_invoice_round_trip_with_lines(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    visa = store.add_payment_method(card("pm_visa"))
    store.add_subscription(subscription("sub_1", payment_method=visa))
    lines = (
        InvoiceLine(description="Pro plan", quantity=2, unit_amount=BIG, amount=2 * BIG),
        InvoiceLine(description="Discount", quantity=1, unit_amount=-100, amount=-100),
    )
    full = invoice(
        "inv_1",
        number="INV-000042",
        subscription_id="sub_1",
        status=InvoiceStatus.PAID,
        currency="IDR",
        subtotal=2 * BIG - 100,
        tax=BIG // 10,
        total=2 * BIG - 100 + BIG // 10,
        issued_at=T0.astimezone(JAKARTA),
        paid_at=T0 + timedelta(seconds=5),
        payment_reference="ch_123",
        payment_method=visa,
        description="Pro plan — March 2026",
        lines=lines,
    )
    returned = store.add_invoice(full)
    stored = store.get_invoice("cus_a", "inv_1")

    assert stored == returned == full
    assert stored is not None
    assert stored.lines == lines
    assert stored.total_money == Money(2 * BIG - 100 + BIG // 10, "IDR")
    assert_utc(stored.issued_at, stored.paid_at)
    # Lists carry the payment method but not the lines.
    (listed,) = store.list_invoices("cus_a", page=1, per_page=10).items
    assert listed == dataclasses.replace(full, lines=())
    assert listed.payment_method == visa


def test_payment_method_and_license_key_round_trip(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    visa = card("pm_visa", brand="mastercard", last4="4444", exp_month=1, exp_year=2031)
    assert store.add_payment_method(visa) == visa
    assert store.get_payment_method("cus_a", "pm_visa") == visa
    assert store.list_payment_methods("cus_a") == (visa,)

    key = license_key(
        "lk_1",
        status=LicenseKeyStatus.EXPIRED,
        activations=2,
        activation_limit=None,
        expires_at=T0.astimezone(JAKARTA),
    )
    assert store.add_license_key(key) == key
    (stored,) = store.list_license_keys("cus_a")
    assert stored == key
    assert stored.status is LicenseKeyStatus.EXPIRED
    assert stored.activation_limit is None
    assert_utc(stored.expires_at, stored.created_at)


def test_link_round_trip(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    record = link(
        purpose=LinkPurpose.EMAIL_CHANGE,
        created_at=T0.astimezone(JAKARTA),
        expires_at=(T0 + timedelta(minutes=15)).astimezone(JAKARTA),
    )
    store.create_link(record)
    stored = store.get_link(record.token_hash)
    assert stored == record
    assert stored is not None
    assert stored.purpose is LinkPurpose.EMAIL_CHANGE
    assert stored.used_at is None
    assert_utc(stored.created_at, stored.expires_at)
    assert store.get_link("unknown") is None


def test_big_amounts_survive(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_subscription(subscription("sub_1", price=Money(2**62, "IDR")))
    store.add_invoice(invoice("inv_1", subtotal=2**61, tax=2**61 - 1, total=2**62 - 1))
    sub = store.get_subscription("cus_a", "sub_1")
    inv = store.get_invoice("cus_a", "inv_1")
    assert sub is not None
    assert sub.price.amount == 2**62
    assert inv is not None
    assert (inv.subtotal, inv.tax, inv.total) == (2**61, 2**61 - 1, 2**62 - 1)


# -- datetimes -------------------------------------------------------------------------


NAIVE = datetime(2026, 3, 14, 9, 26, 53)  # the point of these tests


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda s: s.add_customer(customer("cus_b", created_at=NAIVE)), id="customer"),
        pytest.param(lambda s: s.add_payment_method(card("pm_1", created_at=NAIVE)), id="card"),
        pytest.param(
            lambda s: s.add_subscription(subscription("sub_1", current_period_end=NAIVE)),
            id="subscription",
        ),
        pytest.param(lambda s: s.add_invoice(invoice("inv_1", paid_at=NAIVE)), id="invoice"),
        pytest.param(lambda s: s.add_license_key(license_key("lk", expires_at=NAIVE)), id="key"),
        pytest.param(lambda s: s.create_link(link(expires_at=NAIVE)), id="link"),
        pytest.param(
            lambda s: s.consume_link("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", NAIVE),
            id="consume_link",
        ),
        pytest.param(lambda s: s.touch_portal_session("ps_1", NAIVE), id="touch"),
        pytest.param(lambda s: s.revoke_portal_session("ps_1", NAIVE), id="revoke"),
        pytest.param(lambda s: s.revoke_customer_sessions("cus_a", NAIVE), id="revoke_all"),
        pytest.param(lambda s: s.record_event(AuditEvent("cus_a", "session.signed_in", NAIVE)), id="audit"),
    ],
)
def test_naive_datetimes_are_refused(
    store: SQLAlchemyStorage, write: Callable[[SQLAlchemyStorage], object]
) -> None:
    store.add_customer(customer("cus_a"))
    with pytest.raises(ValueError, match="timezone-aware"):
        write(store)
    # Nothing half-written, and the session still works.
    assert store.get_customer("cus_b") is None
    assert store.list_payment_methods("cus_a") == ()
    assert store.get_customer("cus_a") is not None


def test_column_type_refuses_naive_datetimes_too(store_app: Flask) -> None:
    db: SQLAlchemy = store_app.extensions["sqlalchemy"]
    db.session.add(
        CustomerModel(
            id="cus_x",
            email="x@example.com",
            email_normalized="x@example.com",
            name="X",
            auth_version=1,
            created_at=NAIVE,
        )
    )
    with pytest.raises(StatementError) as raised:
        db.session.flush()
    assert isinstance(raised.value.orig, ValueError)
    db.session.rollback()


# -- customers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["ava@example.com", "AVA@EXAMPLE.COM", "Ava@Example.Com", "  ava@example.com\n"],
)
def test_email_lookup_ignores_case(store: SQLAlchemyStorage, typed: str) -> None:
    store.add_customer(customer("cus_ava", email="Ava@Example.com"))
    store.add_customer(customer("cus_other", email="other@example.com"))
    found = store.find_customer_by_email(typed)
    assert found is not None
    assert found.id == "cus_ava"


def test_email_lookup_beyond_ascii(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_anne", email="ÄNNE@example.com"))
    found = store.find_customer_by_email("änne@EXAMPLE.com")
    assert found is not None
    assert found.id == "cus_anne"
    assert store.find_customer_by_email("anne@example.com") is None


def test_unknown_email(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_ava", email="ava@example.com"))
    assert store.find_customer_by_email("eve@example.com") is None


def test_email_is_unique_whatever_its_case(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_ava", email="ava@example.com"))
    with pytest.raises(IntegrityError):
        store.add_customer(customer("cus_ava2", email="AVA@example.com"))
    # The failed insert was rolled back; the store keeps working.
    assert store.get_customer("cus_ava2") is None
    store.add_customer(customer("cus_budi", email="budi@example.com"))
    assert store.get_customer("cus_budi") is not None


# -- scoping -----------------------------------------------------------------------------


@pytest.fixture
def two_customers(store: SQLAlchemyStorage) -> SQLAlchemyStorage:
    for owner in ("cus_a", "cus_b"):
        store.add_customer(customer(owner))
        method = store.add_payment_method(card(f"pm_{owner}", owner))
        store.add_subscription(subscription(f"sub_{owner}", owner, payment_method=method))
        store.add_invoice(
            invoice(f"inv_{owner}", owner, subscription_id=f"sub_{owner}", payment_method=method)
        )
        store.add_license_key(license_key(f"lk_{owner}", owner))
    return store


def test_reads_are_scoped_to_the_customer(two_customers: SQLAlchemyStorage) -> None:
    store = two_customers
    assert store.get_subscription("cus_a", "sub_cus_b") is None
    assert store.get_invoice("cus_a", "inv_cus_b") is None
    assert store.get_payment_method("cus_a", "pm_cus_b") is None

    assert ids(store.list_subscriptions("cus_a")) == ["sub_cus_a"]
    assert ids(store.list_invoices("cus_a", page=1, per_page=10).items) == ["inv_cus_a"]
    assert ids(store.list_payment_methods("cus_a")) == ["pm_cus_a"]
    assert ids(store.list_license_keys("cus_a")) == ["lk_cus_a"]

    own = store.get_subscription("cus_a", "sub_cus_a")
    assert own is not None
    assert own.payment_method is not None
    assert own.payment_method.customer_id == "cus_a"


def test_unknown_customer_sees_nothing(two_customers: SQLAlchemyStorage) -> None:
    store = two_customers
    assert store.list_subscriptions("cus_nobody") == ()
    assert store.list_payment_methods("cus_nobody") == ()
    assert store.list_license_keys("cus_nobody") == ()
    page = store.list_invoices("cus_nobody", page=1, per_page=10)
    assert (page.items, page.total, page.pages) == ((), 0, 1)


def test_cannot_attach_another_customers_card(two_customers: SQLAlchemyStorage) -> None:
    store = two_customers
    theirs = card("pm_cus_b", "cus_b")
    with pytest.raises(ValueError, match="belongs to customer"):
        store.add_subscription(subscription("sub_x", "cus_a", payment_method=theirs))
    with pytest.raises(ValueError, match="belongs to customer"):
        store.add_invoice(invoice("inv_x", "cus_a", payment_method=theirs))


def test_database_refuses_another_customers_card(two_customers: SQLAlchemyStorage, store_app: Flask) -> None:
    # Even code that bypasses the store cannot point at someone else's card.
    db: SQLAlchemy = store_app.extensions["sqlalchemy"]
    row = SubscriptionModel(
        id="sub_x",
        customer_id="cus_a",
        product_name="Pro",
        plan_name="Monthly",
        price_amount=1,
        price_currency="USD",
        interval="month",
        interval_count=1,
        status=SubscriptionStatus.ACTIVE,
        current_period_start=T0,
        current_period_end=T0,
        cancel_at_period_end=False,
        payment_method_id="pm_cus_b",
        created_at=T0,
    )
    db.session.add(row)
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_invoice_arithmetic_is_checked(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    with pytest.raises(ValueError, match="total"):
        store.add_invoice(invoice("inv_1", subtotal=100, tax=10, total=100))
    with pytest.raises(ValueError, match="lines add up"):
        store.add_invoice(
            invoice(
                "inv_1",
                subtotal=100,
                tax=0,
                total=100,
                lines=(InvoiceLine("A", 1, 60, 60), InvoiceLine("B", 1, 30, 30)),
            )
        )
    with pytest.raises(ValueError, match="ISO 4217"):
        store.add_invoice(invoice("inv_1", currency="usd"))
    assert store.get_invoice("cus_a", "inv_1") is None


def test_invoice_numbers_are_unique(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_invoice(invoice("inv_1", number="INV-000001"))
    with pytest.raises(IntegrityError):
        store.add_invoice(invoice("inv_2", number="INV-000001"))
    assert store.get_invoice("cus_a", "inv_2") is None


# -- ordering and pages ------------------------------------------------------------------


def test_subscriptions_current_first_then_past_newest_first(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    day = timedelta(days=1)
    for sub_id, status, created in [
        ("sub_active_old", SubscriptionStatus.ACTIVE, T0),
        ("sub_cancelled_new", SubscriptionStatus.CANCELLED, T0 + 3 * day),
        ("sub_on_hold", SubscriptionStatus.ON_HOLD, T0 + 1 * day),
        ("sub_cancelled_old", SubscriptionStatus.CANCELLED, T0 + 2 * day),
        ("sub_active_new", SubscriptionStatus.ACTIVE, T0 + 2 * day),
    ]:
        store.add_subscription(subscription(sub_id, status=status, created_at=created))

    listed = store.list_subscriptions("cus_a")
    assert ids(listed) == [
        "sub_active_new",
        "sub_on_hold",
        "sub_active_old",
        "sub_cancelled_new",
        "sub_cancelled_old",
    ]
    assert [s.is_current for s in listed] == [True, True, True, False, False]


def test_invoices_newest_first_then_by_id(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    for inv_id, issued in [
        ("inv_a", T0),
        ("inv_b", T0 + timedelta(days=30)),
        ("inv_c", T0 + timedelta(microseconds=1)),
        ("inv_d", T0),  # same instant as inv_a: the id decides
    ]:
        store.add_invoice(invoice(inv_id, issued_at=issued))
    page = store.list_invoices("cus_a", page=1, per_page=10)
    assert ids(page.items) == ["inv_b", "inv_c", "inv_d", "inv_a"]


def test_payment_methods_and_keys_newest_first(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    for n in range(3):
        store.add_payment_method(card(f"pm_{n}", created_at=T0 + timedelta(hours=n)))
        store.add_license_key(license_key(f"lk_{n}", created_at=T0 - timedelta(hours=n)))
    assert ids(store.list_payment_methods("cus_a")) == ["pm_2", "pm_1", "pm_0"]
    assert ids(store.list_license_keys("cus_a")) == ["lk_0", "lk_1", "lk_2"]


def add_invoices(store: SQLAlchemyStorage, count: int, customer_id: str = "cus_a") -> list[str]:
    """``count`` invoices paid with a card, one a day; newest first ids."""
    method = card(f"pm_{customer_id}", customer_id)
    if store.get_payment_method(customer_id, method.id) is None:
        store.add_payment_method(method)
    invoice_ids = [f"inv_{customer_id}_{n:04d}" for n in range(count)]
    for n, invoice_id in enumerate(invoice_ids):
        store.add_invoice(
            invoice(
                invoice_id,
                customer_id,
                number=f"INV-{invoice_id}",
                issued_at=T0 + timedelta(days=n),
                payment_method=method,
            )
        )
    return invoice_ids[::-1]


def test_invoice_pages(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_customer(customer("cus_b"))
    newest_first = add_invoices(store, 25)
    add_invoices(store, 3, "cus_b")  # not counted for cus_a

    first = store.list_invoices("cus_a", page=1, per_page=10)
    second = store.list_invoices("cus_a", page=2, per_page=10)
    last = store.list_invoices("cus_a", page=3, per_page=10)
    beyond = store.list_invoices("cus_a", page=4, per_page=10)

    assert ids(first.items) == newest_first[:10]
    assert ids(second.items) == newest_first[10:20]
    assert ids(last.items) == newest_first[20:]
    assert beyond.items == ()
    for page in (first, second, last, beyond):
        assert (page.total, page.pages, page.per_page) == (25, 3, 10)
    assert (first.has_prev, first.has_next) == (False, True)
    assert (second.has_prev, second.has_next) == (True, True)
    assert (last.page, last.has_prev, last.has_next) == (3, True, False)
    assert all(inv.lines == () for inv in first.items)
    assert all(inv.payment_method is not None for inv in first.items)


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (-1, 10), (1, 0)])
def test_invoice_page_arguments_are_checked(
    sqlite_store: SQLAlchemyStorage, page: int, per_page: int
) -> None:
    with pytest.raises(ValueError, match="1 or more"):
        sqlite_store.list_invoices("cus_a", page=page, per_page=per_page)


@pytest.mark.parametrize("invoice_count", [10, 500])
def test_invoice_list_takes_one_query_whatever_the_size(
    store: SQLAlchemyStorage,
    count_queries: Callable[..., QueryCounter],
    invoice_count: int,
) -> None:
    store.add_customer(customer("cus_a"))
    add_invoices(store, invoice_count)

    for page in (1, invoice_count // 10):
        with count_queries() as queries:
            listed = store.list_invoices("cus_a", page=page, per_page=10)
            # Everything a list page shows is loaded already.
            shown = [(i.number, i.total_money, i.payment_method) for i in listed.items]
        assert len(shown) == 10
        assert listed.total == invoice_count
        assert queries.count == 1, queries.statements  # the page, with the count in it

    # An empty page needs the count alone: none past the first page...
    with count_queries() as queries:
        beyond = store.list_invoices("cus_a", page=invoice_count // 10 + 1, per_page=10)
    assert (beyond.items, beyond.total) == ((), invoice_count)
    assert queries.count == 2, queries.statements
    # ...and none at all without invoices.
    store.add_customer(customer("cus_b"))
    with count_queries() as queries:
        empty = store.list_invoices("cus_b", page=1, per_page=10)
    assert (empty.items, empty.total) == ((), 0)
    assert queries.count == 1, queries.statements


def test_other_reads_take_a_fixed_number_of_queries(
    store: SQLAlchemyStorage, count_queries: Callable[..., QueryCounter]
) -> None:
    store.add_customer(customer("cus_a"))
    method = store.add_payment_method(card("pm_1"))
    for n in range(20):
        store.add_subscription(subscription(f"sub_{n}", payment_method=method))
    store.add_invoice(invoice("inv_1", payment_method=method, lines=(InvoiceLine("Pro", 1, 1999, 1999),)))

    with count_queries() as queries:
        subs = store.list_subscriptions("cus_a")
        brands = [s.payment_method.brand for s in subs if s.payment_method]
    assert len(brands) == 20
    assert queries.count == 1, queries.statements

    with count_queries() as queries:
        full = store.get_invoice("cus_a", "inv_1")
    assert full is not None
    assert len(full.lines) == 1
    assert queries.count == 2, queries.statements  # invoice + card, then lines


def test_listed_records_keep_their_types(store: SQLAlchemyStorage) -> None:
    # Lists build their records from plain rows: the enums, booleans, aware
    # datetimes and missing payment methods must come out as from the get_* reads.
    store.add_customer(customer("cus_a"))
    visa = store.add_payment_method(card("pm_visa"))
    store.add_subscription(
        subscription(
            "sub_1", status=SubscriptionStatus.ON_HOLD, cancel_at_period_end=True, payment_method=visa
        )
    )
    store.add_subscription(subscription("sub_2", created_at=T0 - timedelta(days=1)))
    store.add_invoice(invoice("inv_1", status=InvoiceStatus.OPEN, issued_at=T0.astimezone(JAKARTA)))

    subs = store.list_subscriptions("cus_a")
    assert subs == (store.get_subscription("cus_a", "sub_1"), store.get_subscription("cus_a", "sub_2"))
    assert subs[0].status is SubscriptionStatus.ON_HOLD
    assert subs[0].cancel_at_period_end is True
    assert subs[0].payment_method == visa
    assert subs[1].cancel_at_period_end is False
    assert subs[1].payment_method is None
    assert_utc(subs[0].current_period_start, subs[0].current_period_end, subs[0].created_at)

    (listed,) = store.list_invoices("cus_a", page=1, per_page=10).items
    assert listed == store.get_invoice("cus_a", "inv_1")
    assert listed.status is InvoiceStatus.OPEN
    assert listed.payment_method is None
    assert listed.paid_at is None
    assert_utc(listed.issued_at)


def test_lists_show_changes_made_since_the_last_read(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_subscription(subscription("sub_1"))
    assert store.list_subscriptions("cus_a")[0].status is SubscriptionStatus.ACTIVE
    store.cancel_subscription("cus_a", "sub_1", at_period_end=False, now=T0 + timedelta(days=1))
    (cancelled,) = store.list_subscriptions("cus_a")
    assert cancelled.status is SubscriptionStatus.CANCELLED
    assert cancelled.ended_at == T0 + timedelta(days=1)


def test_license_keys_are_counted_per_customer(two_customers: SQLAlchemyStorage) -> None:
    store = two_customers
    for n, status in enumerate(LicenseKeyStatus):
        store.add_license_key(license_key(f"lk_{n}", status=status, created_at=T0 + timedelta(hours=n)))
    assert store.count_license_keys("cus_a") == len(store.list_license_keys("cus_a")) == 5
    assert store.count_license_keys("cus_b") == 1
    assert store.count_license_keys("cus_nobody") == 0


def test_counting_license_keys_takes_one_query(
    store: SQLAlchemyStorage, count_queries: Callable[..., QueryCounter]
) -> None:
    store.add_customer(customer("cus_a"))
    for n in range(30):
        store.add_license_key(license_key(f"lk_{n}"))
    with count_queries() as queries:
        assert store.count_license_keys("cus_a") == 30
    assert queries.count == 1, queries.statements


# -- one-time links ------------------------------------------------------------------------


def test_link_is_used_once(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.create_link(link())
    now = T0 + timedelta(minutes=5)
    assert store.consume_link("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", now) is True
    assert store.consume_link("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", now) is False
    stored = store.get_link("h" * 64)
    assert stored is not None
    assert stored.used_at == now
    assert_utc(stored.used_at)


def test_link_must_match_purpose_and_customer(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_customer(customer("cus_b"))
    store.create_link(link())
    now = T0 + timedelta(minutes=5)
    assert store.consume_link("h" * 64, LinkPurpose.LOGIN_LINK, "cus_a", now) is False
    assert store.consume_link("h" * 64, LinkPurpose.SESSION_LINK, "cus_b", now) is False
    assert store.consume_link("x" * 64, LinkPurpose.SESSION_LINK, "cus_a", now) is False
    # The failed attempts did not use it up.
    stored = store.get_link("h" * 64)
    assert stored is not None
    assert stored.used_at is None
    assert store.consume_link("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", now) is True


def test_expired_link_is_refused(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    expires = T0 + timedelta(hours=24)
    store.create_link(link(expires_at=expires))
    consume = store.consume_link
    assert consume("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", expires) is False
    assert consume("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", expires + timedelta(1)) is False
    # Same instant in another zone is still the expiry instant.
    assert consume("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", expires.astimezone(JAKARTA)) is (False)
    just_before = (expires - timedelta(microseconds=1)).astimezone(JAKARTA)
    assert consume("h" * 64, LinkPurpose.SESSION_LINK, "cus_a", just_before) is True


@only_postgresql
def test_concurrent_consumers_only_one_wins(store_app: Flask, store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    now = T0 + timedelta(minutes=1)
    for attempt in range(5):
        token_hash = f"{attempt:064d}"
        store.create_link(link(token_hash))
        results = in_threads(
            store_app,
            8,
            partial(store.consume_link, token_hash, LinkPurpose.SESSION_LINK, "cus_a", now),
        )
        assert sorted(results) == [False] * 7 + [True]


# -- portal sessions -------------------------------------------------------------------------


def test_portal_session_lifecycle(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_customer(customer("cus_b"))
    for session_id, owner in [("ps_1", "cus_a"), ("ps_2", "cus_a"), ("ps_3", "cus_b")]:
        store.create_portal_session(portal_session(session_id, owner))

    assert store.get_portal_session("ps_1") == portal_session("ps_1")
    assert store.get_portal_session("ps_unknown") is None

    later = (T0 + timedelta(minutes=10)).astimezone(JAKARTA)
    store.touch_portal_session("ps_1", later)
    store.touch_portal_session("ps_1", T0 + timedelta(minutes=1))  # never backwards
    touched = store.get_portal_session("ps_1")
    assert touched is not None
    assert touched.last_seen_at == later
    assert_utc(touched.last_seen_at, touched.created_at)

    logout = T0 + timedelta(minutes=20)
    store.revoke_portal_session("ps_1", logout)
    store.revoke_portal_session("ps_1", logout + timedelta(minutes=5))  # keeps the first
    store.touch_portal_session("ps_1", logout + timedelta(minutes=6))  # revoked: untouched
    revoked = store.get_portal_session("ps_1")
    assert revoked is not None
    assert revoked.revoked_at == logout
    assert revoked.last_seen_at == later

    everywhere = T0 + timedelta(hours=1)
    assert store.revoke_customer_sessions("cus_a", everywhere) == 1  # ps_2; ps_1 already
    assert store.revoke_customer_sessions("cus_a", everywhere) == 0
    ps_2 = store.get_portal_session("ps_2")
    ps_3 = store.get_portal_session("ps_3")
    assert ps_2 is not None
    assert ps_2.revoked_at == everywhere
    assert ps_3 is not None
    assert ps_3.revoked_at is None  # another customer's session lives on


def test_session_with_its_customer_in_one_query(
    store: SQLAlchemyStorage, count_queries: Callable[..., QueryCounter]
) -> None:
    store.add_customer(customer("cus_a", phone="+6281234567890", locale="id", timezone="Asia/Jakarta"))
    store.add_customer(customer("cus_b"))
    store.create_portal_session(portal_session("ps_a"))
    store.create_portal_session(portal_session("ps_b", "cus_b"))

    with count_queries() as queries:
        found = store.get_session_with_customer("ps_a")
    assert queries.count == 1, queries.statements
    assert found == (store.get_portal_session("ps_a"), store.get_customer("cus_a"))
    assert found is not None
    record, owner = found
    assert_utc(record.created_at, record.last_seen_at, owner.created_at)
    assert owner.timezone == "Asia/Jakarta"

    other = store.get_session_with_customer("ps_b")
    assert other is not None
    assert other[1].id == "cus_b"
    assert store.get_session_with_customer("ps_unknown") is None


def test_session_with_customer_is_read_fresh(store: SQLAlchemyStorage) -> None:
    # The caller decides about revoked sessions and old auth versions, so
    # both must be what the database holds now.
    store.add_customer(customer("cus_a"))
    store.create_portal_session(portal_session("ps_1"))
    assert store.get_session_with_customer("ps_1") is not None

    everywhere = T0 + timedelta(minutes=5)
    store.sign_out_everywhere("cus_a", everywhere)
    found = store.get_session_with_customer("ps_1")
    assert found is not None
    record, owner = found
    assert record.revoked_at == everywhere
    assert owner.auth_version == record.auth_version + 1


# -- audit log -----------------------------------------------------------------------------


def test_audit_events_are_appended(store: SQLAlchemyStorage) -> None:
    signed_in = AuditEvent(
        customer_id="cus_a",
        action="session.signed_in",
        occurred_at=T0.astimezone(JAKARTA),
        details={"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
    )
    paid = AuditEvent(
        customer_id="cus_a",
        action="invoice.paid",
        occurred_at=T0 + timedelta(seconds=1),
        subject_id="inv_1",
        provider_reference="ch_123",
        actor="system",
    )
    store.record_event(paid)
    store.record_event(signed_in)
    store.record_event(AuditEvent("cus_b", "session.signed_in", T0))

    events = store.list_events("cus_a")
    assert events == (signed_in, paid)  # in the order they happened
    assert events[0].details == {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}
    assert events[1].details == {}
    assert_utc(*(e.occurred_at for e in events))


# -- invoice numbers ---------------------------------------------------------------------------


def test_invoice_numbers_are_sequential_per_prefix(store: SQLAlchemyStorage) -> None:
    numbers = [store.next_invoice_number() for _ in range(3)]
    assert numbers == ["INV-000001", "INV-000002", "INV-000003"]
    assert store.next_invoice_number("CN-") == "CN-000001"
    assert store.next_invoice_number() == "INV-000004"


def test_invoice_number_is_not_reused_after_rollback(store_app: Flask) -> None:
    db: SQLAlchemy = store_app.extensions["sqlalchemy"]
    store = SQLAlchemyStorage(db)
    assert store.next_invoice_number() == "INV-000001"
    # The host rolls back its own work afterwards: the number stays spent.
    db.session.rollback()
    assert store.next_invoice_number() == "INV-000002"


def test_invoice_number_prefix_is_checked(sqlite_store: SQLAlchemyStorage) -> None:
    with pytest.raises(ValueError, match="prefix"):
        sqlite_store.next_invoice_number("")
    with pytest.raises(ValueError, match="prefix"):
        sqlite_store.next_invoice_number("X" * 33)


@only_postgresql
def test_concurrent_invoice_numbers_are_unique_and_gap_free(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    def take_five() -> list[str]:
        return [store.next_invoice_number() for _ in range(5)]

    # The first callers race to create the sequence row, the rest to bump it.
    batches = in_threads(store_app, 8, take_five)
    numbers = [number for batch in batches for number in batch]
    assert sorted(numbers) == [f"INV-{n:06d}" for n in range(1, 41)]
    for batch in batches:
        assert batch == sorted(batch)  # each caller sees its numbers increase
