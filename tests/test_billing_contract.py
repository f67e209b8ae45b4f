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


# -- the payment company's promotion codes at a plan change -------------------------------


def test_a_provider_code_at_a_plan_change_lowers_the_charge_and_is_used_once(billing: SeededBilling) -> None:
    from flask_customer_portal.capabilities import (
        ProviderPlanPreview,
        ProviderPromotionCodeRefused,
        TakesProviderPlanChangeCodes,
        capabilities_of,
    )

    billing.require("provider_plan_change_codes")
    storage, me, other = billing.storage, billing.customer_id, billing.other_customer_id
    assert capabilities_of(storage).provider_plan_change_codes
    assert isinstance(storage, TakesProviderPlanChangeCodes)
    sub_id, plan_id, now = billing.active_subscription_id, billing.other_plan_id, billing.now

    assert storage.find_provider_promotion_code(me, "NOSUCHCODE") is None
    assert storage.find_provider_promotion_code("nobody", billing.promotion_code) is None
    found = storage.find_provider_promotion_code(me, billing.promotion_code)
    assert found is not None and found.code.active and found.code.percent_off == 10

    plain = storage.preview_provider_plan_change(me, sub_id, plan_id=plan_id, quantity=1, at=now)
    coded = storage.preview_provider_plan_change_with_code(
        me, sub_id, plan_id=plan_id, quantity=1, at=now, promotion_code_id=found.id
    )
    assert plain is not None and coded is not None
    assert plain.due_now.amount > 0
    assert coded.discount is not None and coded.discount.amount > 0
    assert coded.discount.currency == coded.due_now.currency == plain.due_now.currency
    assert coded.due_now.amount == plain.due_now.amount - coded.discount.amount < plain.due_now.amount
    unchanged = storage.get_subscription(me, sub_id)
    assert unchanged is not None and unchanged.plan_id != plan_id, "a preview changes nothing"

    # Another customer's subscription, with a code this customer may use: not found.
    assert (
        storage.preview_provider_plan_change_with_code(
            other, sub_id, plan_id=plan_id, quantity=1, at=now, promotion_code_id=found.id
        )
        is None
    )
    assert (
        storage.make_provider_plan_change_with_code(
            other,
            sub_id,
            plan_id=plan_id,
            quantity=1,
            at=now,
            idempotency_key="contract-code-0001",
            promotion_code_id=found.id,
        )
        is None
    )
    invoices_before = storage.list_invoices(me, page=1, per_page=50).total

    def make() -> object:
        return storage.make_provider_plan_change_with_code(
            me,
            sub_id,
            plan_id=plan_id,
            quantity=1,
            at=now,
            idempotency_key="contract-code-0002",
            promotion_code_id=found.id,
        )

    first = make()
    assert isinstance(first, ProviderPlanPreview)
    assert first.due_now == coded.due_now and first.discount == coded.discount
    # The repeat makes no second change: the same answer again, or the code
    # refused because the subscription has it now.
    try:
        again = make()
    except ProviderPromotionCodeRefused as refused:
        again = refused
    if isinstance(again, ProviderPromotionCodeRefused):
        assert again.has_discount
    else:
        assert again == first
    changed = storage.get_subscription(me, sub_id)
    assert changed is not None and changed.plan_id == plan_id
    # One change, so at most one charge for it, however often it is asked for.
    assert storage.list_invoices(me, page=1, per_page=50).total - invoices_before <= 1


# -- paying a one-off invoice under its lock ---------------------------------------------


def test_a_one_off_invoice_is_paid_under_its_lock(billing: SeededBilling) -> None:
    from flask_customer_portal.capabilities import LocksInvoices, capabilities_of
    from flask_customer_portal.storage import ChargeAttempt, ChargeAttemptStatus, InvoiceLockStore

    billing.require("invoice_lock")
    storage, me, now = billing.storage, billing.customer_id, billing.now
    assert capabilities_of(storage).invoice_lock
    assert isinstance(storage, LocksInvoices) and isinstance(storage, InvoiceLockStore)
    assert billing.one_off_invoice is not None and billing.take_payment is not None
    invoice_id = billing.one_off_invoice()
    made = storage.get_invoice(me, invoice_id)
    assert made is not None and (made.status, made.subscription_id) == (InvoiceStatus.OPEN, None), made

    with storage.lock_invoice(billing.other_customer_id, invoice_id) as lock:
        assert lock is None
    with storage.lock_invoice(me, "in_doesnotexist") as lock:
        assert lock is None
    with storage.lock_invoice(me, invoice_id) as lock:
        assert lock is not None
        held = lock.invoice
        assert (held.id, held.status, held.subscription_id) == (invoice_id, InvoiceStatus.OPEN, None)
        assert held.total == 14900 and held.lines
        assert list(lock.attempts(invoice_id)) == []
        attempt = ChargeAttempt(
            invoice_id=invoice_id,
            attempt=1,
            idempotency_key=f"invoice:{invoice_id}:attempt:1",
            customer_id=me,
            amount=held.total,
            currency=held.currency,
            status=ChargeAttemptStatus.UNKNOWN,
            created_at=now,
            payment_method_id=billing.card_id,
        )
        lock.save_attempt(attempt)
        reference = billing.take_payment(invoice_id)
        paid = lock.mark_invoice_paid(
            invoice_id, paid_at=now, payment_reference=reference, payment_method_id=billing.card_id
        )
        assert paid.status is InvoiceStatus.PAID
        with pytest.raises(ValueError, match="own"):
            lock.attempts(billing.open_invoice_id)

    after = storage.get_invoice(me, invoice_id)
    assert after is not None and after.status is InvoiceStatus.PAID and after.paid_at is not None
    assert storage.get_invoice(billing.other_customer_id, invoice_id) is None
    with storage.lock_invoice(me, invoice_id) as lock:
        assert lock is not None and lock.invoice.status is InvoiceStatus.PAID


# -- trials -------------------------------------------------------------------------------


def test_a_subscription_in_its_trial_reads_back_as_trialing_until_its_end(billing: SeededBilling) -> None:
    billing.require("trials")
    assert billing.trialing_subscription is not None
    sub_id = billing.trialing_subscription(14)
    found = billing.storage.get_subscription(billing.customer_id, sub_id)
    assert found is not None and found.status is SubscriptionStatus.TRIALING
    assert found.is_current
    assert found.current_period_start <= billing.now < found.current_period_end
    # The trial's end is the first period's end: 14 days after it began.
    assert abs(found.current_period_end - found.current_period_start - timedelta(days=14)) <= timedelta(
        days=1
    )
    assert found.current_period_end.utcoffset() == timedelta(0)
    listed = {s.id: s.status for s in billing.storage.list_subscriptions(billing.customer_id)}
    assert listed[sub_id] is SubscriptionStatus.TRIALING
    assert billing.storage.get_subscription(billing.other_customer_id, sub_id) is None
