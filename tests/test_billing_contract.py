"""The billing contract, run against every back end in ``tests/billing_backends.py``.

What the portal's billing pages rely on, whoever keeps the records: the
same scenario (see :mod:`billing_backends`) read back the same way, reads
scoped to one customer, and cancellation / undo / card removal following the
:class:`~flask_customer_portal.storage.BillingStore` rules. Local-only
behaviour (query counts, concurrency, invoice numbering, links, sessions) is
in ``tests/test_storage_contract.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from billing_backends import BACKEND_MARKS, BACKENDS, SUBSCRIPTION_PAYMENT_METHOD, SeededBilling

from flask_customer_portal.storage import (
    InvoiceStatus,
    PaymentMethodInUse,
    PortalStorage,
    StateConflict,
    SubscriptionStatus,
)


@pytest.fixture(params=[pytest.param(name, id=name, marks=BACKEND_MARKS.get(name, [])) for name in BACKENDS])
def billing(request: pytest.FixtureRequest) -> Iterator[SeededBilling]:
    """The portal's storage over each billing back end, with the scenario made."""
    yield from BACKENDS[request.param](request)


def test_the_storage_is_a_portal_storage(billing: SeededBilling) -> None:
    assert isinstance(billing.storage, PortalStorage)


# -- reads ----------------------------------------------------------------------------


def test_subscriptions_current_first_with_their_card(billing: SeededBilling) -> None:
    subscriptions = billing.storage.list_subscriptions(billing.customer_id)
    by_id = {s.id: s for s in subscriptions}
    assert set(by_id) == {billing.active_subscription_id, billing.on_hold_subscription_id}
    active = by_id[billing.active_subscription_id]
    assert active.status is SubscriptionStatus.ACTIVE
    assert active.customer_id == billing.customer_id
    assert not active.cancel_at_period_end
    assert active.current_period_start <= billing.now < active.current_period_end
    assert active.interval == "month" and active.interval_count == 1
    assert active.price.currency == "USD" and active.price.amount > 0
    assert active.product_name and active.plan_name
    assert active.payment_method is not None
    assert (active.payment_method.id, active.payment_method.brand, active.payment_method.last4) == (
        billing.card_id,
        "visa",
        "4242",
    )
    assert active.payment_method.customer_id == billing.customer_id
    assert by_id[billing.on_hold_subscription_id].status is SubscriptionStatus.ON_HOLD
    for value in (active.current_period_start, active.current_period_end):
        assert value.utcoffset() == timedelta(0)


def test_past_subscriptions_come_after_current_ones(billing: SeededBilling) -> None:
    billing.storage.cancel_subscription(
        billing.customer_id, billing.active_subscription_id, at_period_end=False, now=billing.now
    )
    statuses = [s.status for s in billing.storage.list_subscriptions(billing.customer_id)]
    assert statuses == [SubscriptionStatus.ON_HOLD, SubscriptionStatus.CANCELLED]


def test_one_subscription(billing: SeededBilling) -> None:
    found = billing.storage.get_subscription(billing.customer_id, billing.active_subscription_id)
    assert found is not None and found.id == billing.active_subscription_id
    assert found.customer_id == billing.customer_id


def test_invoices_newest_first_without_lines(billing: SeededBilling) -> None:
    page = billing.storage.list_invoices(billing.customer_id, page=1, per_page=50)
    assert page.total == len(page.items)
    ids = [i.id for i in page.items]
    assert set(billing.paid_invoice_ids) | {billing.open_invoice_id} <= set(ids)
    issued = [i.issued_at for i in page.items]
    assert issued == sorted(issued, reverse=True)
    assert all(i.lines == () for i in page.items)
    assert all(i.customer_id == billing.customer_id for i in page.items)
    statuses = {i.id: i.status for i in page.items}
    assert all(statuses[i] is InvoiceStatus.PAID for i in billing.paid_invoice_ids)
    assert statuses[billing.open_invoice_id] is InvoiceStatus.OPEN


def test_invoice_pages(billing: SeededBilling) -> None:
    everything = billing.storage.list_invoices(billing.customer_id, page=1, per_page=50)
    first = billing.storage.list_invoices(billing.customer_id, page=1, per_page=2)
    second = billing.storage.list_invoices(billing.customer_id, page=2, per_page=2)
    assert first.total == second.total == everything.total >= 3
    assert [i.id for i in [*first.items, *second.items]] == [i.id for i in everything.items][:4]
    assert first.has_next and not first.has_prev and second.has_prev


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (1, 0)])
def test_invoice_page_arguments_are_checked(billing: SeededBilling, page: int, per_page: int) -> None:
    with pytest.raises(ValueError, match="page"):
        billing.storage.list_invoices(billing.customer_id, page=page, per_page=per_page)


def test_one_invoice_with_its_lines(billing: SeededBilling) -> None:
    for invoice_id in [*billing.paid_invoice_ids, billing.open_invoice_id]:
        invoice = billing.storage.get_invoice(billing.customer_id, invoice_id)
        assert invoice is not None and invoice.id == invoice_id
        assert invoice.lines, invoice_id
        assert invoice.total == invoice.subtotal + invoice.tax
        assert invoice.subtotal == sum(line.amount for line in invoice.lines)
        assert invoice.number
        assert invoice.currency == "USD"
    paid = billing.storage.get_invoice(billing.customer_id, billing.paid_invoice_ids[0])
    assert paid is not None and paid.paid_at is not None
    open_invoice = billing.storage.get_invoice(billing.customer_id, billing.open_invoice_id)
    assert open_invoice is not None
    assert open_invoice.subscription_id == billing.on_hold_subscription_id
    assert open_invoice.paid_at is None and open_invoice.payment_reference is None


def test_saved_cards(billing: SeededBilling) -> None:
    methods = billing.storage.list_payment_methods(billing.customer_id)
    assert [(m.id, m.brand, m.last4, m.customer_id) for m in methods] == [
        (billing.card_id, "visa", "4242", billing.customer_id)
    ]
    assert methods[0].exp_year >= 2026 and 1 <= methods[0].exp_month <= 12
    assert methods[0].provider_token
    assert billing.storage.get_payment_method(billing.customer_id, billing.card_id) == methods[0]


# -- scoping ----------------------------------------------------------------------------


def test_another_customers_records_are_not_found(billing: SeededBilling) -> None:
    storage, me = billing.storage, billing.customer_id
    assert storage.get_subscription(me, billing.other_subscription_id) is None
    assert storage.get_payment_method(me, billing.other_card_id) is None
    assert storage.get_invoice(billing.other_customer_id, billing.paid_invoice_ids[0]) is None
    assert storage.get_subscription(billing.other_customer_id, billing.active_subscription_id) is None
    assert [s.id for s in storage.list_subscriptions(billing.other_customer_id)] == [
        billing.other_subscription_id
    ]
    assert [m.id for m in storage.list_payment_methods(billing.other_customer_id)] == [billing.other_card_id]
    assert billing.open_invoice_id not in [
        i.id for i in storage.list_invoices(billing.other_customer_id, page=1, per_page=50).items
    ]


@pytest.mark.parametrize("unknown", ["nothing", "sub_doesnotexist", "in_doesnotexist", "pm_doesnotexist"])
def test_unknown_ids_are_not_found(billing: SeededBilling, unknown: str) -> None:
    storage, me = billing.storage, billing.customer_id
    assert storage.get_subscription(me, unknown) is None
    assert storage.get_invoice(me, unknown) is None
    assert storage.get_payment_method(me, unknown) is None


def test_changes_to_another_customers_records_are_refused(billing: SeededBilling) -> None:
    storage, me, now = billing.storage, billing.customer_id, billing.now
    assert storage.cancel_subscription(me, billing.other_subscription_id, at_period_end=True, now=now) is None
    assert (
        storage.cancel_subscription(me, billing.other_subscription_id, at_period_end=False, now=now) is None
    )
    assert storage.undo_cancellation(me, billing.other_subscription_id, now=now) is None
    assert storage.remove_payment_method(me, billing.other_card_id) is False
    other = storage.get_subscription(billing.other_customer_id, billing.other_subscription_id)
    assert other is not None and other.status is SubscriptionStatus.ACTIVE and not other.cancel_at_period_end
    assert storage.get_payment_method(billing.other_customer_id, billing.other_card_id) is not None


# -- cancellation -----------------------------------------------------------------------


def test_cancel_at_period_end_then_undo(billing: SeededBilling) -> None:
    storage, me, sub, now = billing.storage, billing.customer_id, billing.active_subscription_id, billing.now
    ending = storage.cancel_subscription(me, sub, at_period_end=True, now=now)
    assert ending is not None
    assert (ending.status, ending.cancel_at_period_end) == (SubscriptionStatus.ACTIVE, True)
    with pytest.raises(StateConflict):
        storage.cancel_subscription(me, sub, at_period_end=True, now=now)
    kept = storage.undo_cancellation(me, sub, now=now)
    assert kept is not None
    assert (kept.status, kept.cancel_at_period_end) == (SubscriptionStatus.ACTIVE, False)
    with pytest.raises(StateConflict):
        storage.undo_cancellation(me, sub, now=now)
    reread = storage.get_subscription(me, sub)
    assert reread is not None and not reread.cancel_at_period_end


def test_cancel_now(billing: SeededBilling) -> None:
    storage, me, sub, now = billing.storage, billing.customer_id, billing.active_subscription_id, billing.now
    cancelled = storage.cancel_subscription(me, sub, at_period_end=False, now=now)
    assert cancelled is not None and cancelled.status is SubscriptionStatus.CANCELLED
    assert not cancelled.is_current
    with pytest.raises(StateConflict):
        storage.cancel_subscription(me, sub, at_period_end=False, now=now)
    with pytest.raises(StateConflict):
        storage.undo_cancellation(me, sub, now=now)


def test_an_ending_subscription_can_still_be_cancelled_now(billing: SeededBilling) -> None:
    storage, me, sub, now = billing.storage, billing.customer_id, billing.active_subscription_id, billing.now
    storage.cancel_subscription(me, sub, at_period_end=True, now=now)
    cancelled = storage.cancel_subscription(me, sub, at_period_end=False, now=now)
    assert cancelled is not None and cancelled.status is SubscriptionStatus.CANCELLED


def test_an_on_hold_subscription_is_cancelled_now(billing: SeededBilling) -> None:
    storage, me, now = billing.storage, billing.customer_id, billing.now
    cancelled = storage.cancel_subscription(me, billing.on_hold_subscription_id, at_period_end=True, now=now)
    assert cancelled is not None and cancelled.status is SubscriptionStatus.CANCELLED


# -- payment methods --------------------------------------------------------------------


def test_a_card_in_use_cannot_be_removed(billing: SeededBilling) -> None:
    with pytest.raises(PaymentMethodInUse):
        billing.storage.remove_payment_method(billing.customer_id, billing.card_id)
    assert billing.storage.get_payment_method(billing.customer_id, billing.card_id) is not None


def test_a_card_no_subscription_uses_can_be_removed(billing: SeededBilling) -> None:
    storage, me, now = billing.storage, billing.customer_id, billing.now
    storage.cancel_subscription(me, billing.active_subscription_id, at_period_end=False, now=now)
    storage.cancel_subscription(me, billing.on_hold_subscription_id, at_period_end=False, now=now)
    assert storage.remove_payment_method(me, billing.card_id) is True
    assert storage.get_payment_method(me, billing.card_id) is None
    assert list(storage.list_payment_methods(me)) == []
    assert storage.remove_payment_method(me, billing.card_id) is False


def test_a_subscription_is_charged_to_another_saved_card(billing: SeededBilling) -> None:
    billing.require(SUBSCRIPTION_PAYMENT_METHOD)
    storage, me = billing.storage, billing.customer_id
    assert (
        storage.set_subscription_payment_method(me, billing.active_subscription_id, billing.other_card_id)
        is None
    )
    updated = storage.set_subscription_payment_method(me, billing.active_subscription_id, billing.card_id)
    assert updated is not None and updated.payment_method is not None
    assert updated.payment_method.id == billing.card_id


# -- refunds ----------------------------------------------------------------------------


def test_a_partial_refund_reads_back_on_the_invoice_and_in_the_list(billing: SeededBilling) -> None:
    assert billing.refund is not None
    paid_id = billing.paid_invoice_ids[0]
    before = billing.storage.get_invoice(billing.customer_id, paid_id)
    assert before is not None and before.amount_refunded == 0 and before.display_status == "paid"
    billing.refund(paid_id, 100)

    after = billing.storage.get_invoice(billing.customer_id, paid_id)
    assert after is not None
    assert (after.status, after.amount_refunded, after.display_status) == (
        InvoiceStatus.PAID,
        100,
        "partially_refunded",
    )
    listed = {i.id: i for i in billing.storage.list_invoices(billing.customer_id, page=1, per_page=50).items}
    assert listed[paid_id].amount_refunded == 100
    assert all(i.amount_refunded == 0 for i in listed.values() if i.id != paid_id)
    assert billing.storage.get_invoice(billing.other_customer_id, paid_id) is None

    billing.require("credit_notes")
    [note] = after.credit_notes
    assert (note.invoice_id, note.amount, note.refunded, note.currency) == (paid_id, 100, 100, after.currency)


# -- plan changes at the payment company ------------------------------------------------


def test_a_plan_change_at_the_provider_previews_then_changes_once(billing: SeededBilling) -> None:
    from flask_customer_portal.capabilities import ChangesPlansAtProvider, capabilities_of

    billing.require("provider_plan_change")
    storage = billing.storage
    assert capabilities_of(storage).provider_plan_change and isinstance(storage, ChangesPlansAtProvider)
    sub_id, plan_id = billing.active_subscription_id, billing.other_plan_id
    before = storage.get_subscription(billing.customer_id, sub_id)
    assert before is not None and before.plan_id not in (None, plan_id)
    preview = storage.preview_provider_plan_change(
        billing.customer_id, sub_id, plan_id=plan_id, quantity=1, at=billing.now
    )
    assert preview is not None
    assert preview.due_now.currency == before.price.currency and preview.due_now.amount >= 0
    assert (preview.from_plan_id, preview.from_quantity) == (before.plan_id, before.quantity)
    after_preview = storage.get_subscription(billing.customer_id, sub_id)
    assert after_preview is not None and after_preview.plan_id == before.plan_id
    assert (
        storage.preview_provider_plan_change(
            billing.other_customer_id, sub_id, plan_id=plan_id, quantity=1, at=billing.now
        )
        is None
    )
    assert (
        storage.make_provider_plan_change(
            billing.other_customer_id,
            sub_id,
            plan_id=plan_id,
            quantity=1,
            at=billing.now,
            idempotency_key="contract-change-0001",
        )
        is None
    )
    made = storage.make_provider_plan_change(
        billing.customer_id,
        sub_id,
        plan_id=plan_id,
        quantity=1,
        at=billing.now,
        idempotency_key="contract-0002",
    )
    assert made == preview
    changed = storage.get_subscription(billing.customer_id, sub_id)
    assert changed is not None and changed.plan_id == plan_id
