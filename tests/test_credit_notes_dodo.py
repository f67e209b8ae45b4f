"""Refunds over Dodo Payments, against the fake Dodo server: a payment's
refunds (as Dodo's API returns them, checked against its SDK's models) are
the invoice's credit notes; a list reads the amounts from one list of the
customer's refunds, and only when a payment was refunded."""

from __future__ import annotations

import pytest
from fake_dodo import FakeDodo, shared_fake_dodo

from flask_customer_portal.contrib.dodo import DodoBilling
from flask_customer_portal.storage import InvoiceStatus


@pytest.fixture
def fake() -> FakeDodo:
    return shared_fake_dodo()


@pytest.fixture
def billing(fake: FakeDodo) -> DodoBilling:
    return DodoBilling(fake.client())


def test_a_partial_and_a_full_refund(fake: FakeDodo, billing: DodoBilling) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    fake.add_customer("cus_y", "y@example.com", "Y")
    partly = fake.add_payment("cus_x", amount=2000, currency="EUR", tax=320, days_ago=3)
    fully = fake.add_payment("cus_x", amount=700, currency="EUR", days_ago=2)
    untouched = fake.add_payment("cus_x", amount=900, currency="EUR", days_ago=1)
    first = fake.add_refund(partly, amount=500, reason="Outage on 3 March", hours_after=1)
    fake.add_refund(partly, amount=300, status="failed", hours_after=2)  # never paid back
    second = fake.add_refund(partly, amount=200, hours_after=3)
    fake.add_refund(fully, amount=700)
    fake.add_refund(fake.add_payment("cus_y", amount=100), amount=100)  # another customer's

    invoice = billing.get_invoice("cus_x", partly)
    assert invoice is not None
    assert (invoice.status, invoice.amount_refunded, invoice.display_status) == (
        InvoiceStatus.PAID,
        700,
        "partially_refunded",
    )
    assert [(n.id, n.amount, n.refunded, n.currency, n.memo) for n in invoice.credit_notes] == [
        (first, 500, 500, "EUR", "Outage on 3 March"),
        (second, 200, 200, "EUR", None),
    ]
    assert all(n.invoice_id == partly and n.customer_id == "cus_x" for n in invoice.credit_notes)

    listed = {i.id: i for i in billing.list_invoices("cus_x", page=1, per_page=10).items}
    assert (listed[partly].amount_refunded, listed[partly].credit_notes) == (700, ())
    assert (listed[fully].status, listed[fully].amount_refunded) == (InvoiceStatus.REFUNDED, 700)
    assert listed[untouched].amount_refunded == 0
    asked = [query for _m, _p, query, _b in fake.calls("GET", "/refunds")]
    assert asked and all(q["customer_id"] == "cus_x" and q["status"] == "succeeded" for q in asked)

    # Another customer's payment is not found, refunds or not.
    assert billing.get_invoice("cus_y", partly) is None


def test_a_list_without_refunds_does_not_ask_for_them(fake: FakeDodo, billing: DodoBilling) -> None:
    fake.add_customer("cus_x", "x@example.com", "X")
    fake.add_payment("cus_x", amount=2000)
    assert billing.list_invoices("cus_x", page=1, per_page=10).items[0].amount_refunded == 0
    assert fake.calls("GET", "/refunds") == []
