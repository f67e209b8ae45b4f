"""Every read of an invoice gives the same record, on SQLite and PostgreSQL.

The invoice list reads plain columns, a single invoice comes with its lines,
the keyset batches of the exports and the subscription lock read their own
selections: all of them must make the same :class:`Invoice` of the same row,
card, lines and billing details included.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from factories import BIG, JAKARTA, T0, card, customer, invoice, subscription
from test_billing_details import GMBH

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.storage import (
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    PaymentMethod,
)

#: Every field set, ``updated_at`` not in UTC: the store keeps it in UTC.
DETAILS = dataclasses.replace(GMBH, region="Berlin", updated_at=T0.astimezone(JAKARTA))
LINES = (
    InvoiceLine(description="Pro plan", quantity=2, unit_amount=BIG, amount=2 * BIG),
    InvoiceLine(description="Discount", quantity=1, unit_amount=-100, amount=-100),
)


def _seed(store: SQLAlchemyStorage) -> tuple[PaymentMethod, Invoice, Invoice]:
    """A customer with a card, a subscription, and two open invoices of it:
    one with lines, card and billing details, an older one with none."""
    store.add_customer(customer("cus_a"))
    visa = store.add_payment_method(card("pm_visa"))
    store.add_subscription(subscription("sub_1", payment_method=visa))
    bare = invoice(
        "inv_bare",
        status=InvoiceStatus.OPEN,
        issued_at=T0 - timedelta(days=31),
        subscription_id="sub_1",
    )
    full = invoice(
        "inv_full",
        status=InvoiceStatus.OPEN,
        currency="IDR",
        subtotal=2 * BIG - 100,
        tax=BIG // 10,
        total=2 * BIG - 100 + BIG // 10,
        issued_at=T0.astimezone(JAKARTA),
        subscription_id="sub_1",
        payment_reference="ch_123",
        payment_method=visa,
        lines=LINES,
        billing_details=DETAILS,
    )
    return visa, store.add_invoice(bare), store.add_invoice(full)


def test_every_read_makes_the_same_invoice(store: SQLAlchemyStorage) -> None:
    card, added_bare, added_full = _seed(store)

    full = store.get_invoice("cus_a", "inv_full")
    bare = store.get_invoice("cus_a", "inv_bare")
    assert full is not None and bare is not None
    # What was stored, as it was given: lines in order, the card, the details.
    assert full.lines == LINES
    assert full.payment_method == card
    assert full.billing_details == DETAILS
    assert full.billing_details is not None and full.billing_details.updated_at is not None
    assert full.billing_details.updated_at.utcoffset() == timedelta(0)
    assert full.issued_at.utcoffset() == timedelta(0)
    assert (bare.lines, bare.payment_method, bare.billing_details) == ((), None, None)
    # The record an insert returns is the one a read gives.
    assert (added_full, added_bare) == (full, bare)

    # The list page: the same records, without their lines.
    listed = store.list_invoices("cus_a", page=1, per_page=10).items
    assert listed == (dataclasses.replace(full, lines=()), bare)

    # Keyset batches, with and without lines.
    assert store.list_invoices_after("cus_a", None, limit=10, with_lines=True) == (full, bare)
    assert store.list_invoices_after("cus_a", None, limit=10) == listed
    assert store.list_invoices_after("cus_a", full, limit=10, with_lines=True) == (bare,)

    # Under the subscription lock.
    with store.lock_subscription("cus_a", "sub_1") as lock:
        assert lock is not None
        assert lock.get_invoice("inv_full") == full
        assert lock.get_invoice("inv_bare") == bare
        assert lock.open_invoices() == (bare, full)


def test_reads_are_scoped_to_the_customer_and_subscription(store: SQLAlchemyStorage) -> None:
    _seed(store)
    store.add_customer(customer("cus_b"))

    assert store.get_invoice("cus_b", "inv_full") is None
    assert store.list_invoices("cus_b", page=1, per_page=10).items == ()
    assert store.list_invoices_after("cus_b", None, limit=10, with_lines=True) == ()
    with store.lock_subscription("cus_a", "sub_1") as lock:
        assert lock is not None
        assert lock.get_invoice("inv_missing") is None
