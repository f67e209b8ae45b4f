"""Refunds and credit notes over Stripe: a refund on the invoice's charge
against localstripe (which refunds charges but has no credit notes), and
Stripe's credit notes from recorded responses shaped as the API documents
them."""

from __future__ import annotations

import time
from typing import Any

import stripe
from stripe_support import RecordedStripe, StripeScenario, seed_stripe
from stripe_support import stripe_client as make_client

from flask_customer_portal.contrib.stripe import StripeBillingStore
from flask_customer_portal.contrib.stripe._convert import credit_note_record
from flask_customer_portal.storage import CreditNoteReason, InvoiceStatus

NOW = int(time.time())


def test_a_partial_refund_of_the_charge_shows_on_the_invoice(localstripe: stripe.StripeClient) -> None:
    scenario: StripeScenario = seed_stripe(localstripe)
    store = StripeBillingStore(localstripe)
    paid_id = scenario.paid_invoice_ids[0]
    before = store.get_invoice(scenario.customer_id, paid_id)
    assert before is not None and before.status is InvoiceStatus.PAID and before.amount_refunded == 0
    charge = localstripe.v1.invoices.retrieve(paid_id).charge
    charge_id = charge if isinstance(charge, str) else charge.id
    localstripe.v1.refunds.create(params={"charge": charge_id, "amount": 100})

    after = StripeBillingStore(localstripe).get_invoice(scenario.customer_id, paid_id)
    assert after is not None
    assert (after.amount_refunded, after.display_status) == (100, "partially_refunded")
    assert after.credit_notes == ()  # localstripe keeps none


def _invoice(**kw: Any) -> dict[str, Any]:
    return {
        "id": "in_R",
        "object": "invoice",
        "customer": "cus_R",
        "number": "R-0001",
        "status": "paid",
        "currency": "eur",
        "subtotal": 1000,
        "total": 1190,
        "created": NOW - 86400,
        "status_transitions": {"paid_at": NOW - 86000},
        "charge": "ch_R",
        "lines": {"object": "list", "data": [{"description": "Pro", "quantity": 1, "amount": 1000}]},
        "post_payment_credit_notes_amount": 0,
        **kw,
    }


def _credit_note(note_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": note_id,
        "object": "credit_note",
        "number": f"R-0001-CN-{note_id[-2:]}",
        "invoice": "in_R",
        "customer": "cus_R",
        "currency": "eur",
        "amount": 595,
        "total": 595,
        "created": NOW - 3600,
        "status": "issued",
        "type": "post_payment",
        "reason": "product_unsatisfactory",
        "memo": None,
        "out_of_band_amount": None,
        "customer_balance_transaction": None,
        "refunds": [{"amount_refunded": 595, "refund": "re_1"}],
        "lines": {
            "object": "list",
            "data": [{"description": "Half of Pro", "quantity": 1, "unit_amount": 500, "amount": 500}],
        },
        **kw,
    }


def test_stripes_credit_notes_are_read_with_the_invoice(recorded_stripe: RecordedStripe) -> None:
    recorded_stripe.respond("GET", "/v1/invoices/in_R", _invoice(post_payment_credit_notes_amount=895))
    recorded_stripe.respond(
        "GET",
        "/v1/credit_notes",
        {
            "object": "list",
            "has_more": False,
            "data": [
                _credit_note(
                    "cn_02",
                    created=NOW - 60,
                    amount=300,
                    total=300,
                    reason=None,
                    refunds=[],
                    customer_balance_transaction="cbtxn_1",
                    memo="Credit for next month",
                ),
                _credit_note("cn_01"),
                _credit_note("cn_03", status="void"),
            ],
        },
    )
    store = StripeBillingStore(make_client(recorded_stripe.url))
    found = store.get_invoice("cus_R", "in_R")
    assert found is not None
    assert [n.number for n in found.credit_notes] == ["R-0001-CN-01", "R-0001-CN-02"]
    first, second = found.credit_notes
    assert (first.amount, first.refunded, first.reason, first.currency) == (
        595,
        595,
        CreditNoteReason.PRODUCT_UNSATISFACTORY,
        "EUR",
    )
    assert first.lines[0].description == "Half of Pro"
    assert (second.refunded, second.memo) == (0, "Credit for next month")
    assert (found.amount_refunded, found.amount_credited) == (595, 895)
    assert found.display_status == "partially_refunded"
    [asked] = recorded_stripe.sent("GET", "/v1/credit_notes")
    assert asked.params["invoice"] == "in_R"

    # Another customer's invoice is not found, and its notes are never asked for.
    assert store.get_invoice("cus_other", "in_R") is None
    assert len(recorded_stripe.sent("GET", "/v1/credit_notes")) == 1


def test_an_invoice_without_credit_notes_costs_no_request_for_them(recorded_stripe: RecordedStripe) -> None:
    recorded_stripe.respond("GET", "/v1/invoices/in_R", _invoice())
    found = StripeBillingStore(make_client(recorded_stripe.url)).get_invoice("cus_R", "in_R")
    assert found is not None and found.credit_notes == () and found.amount_refunded == 0
    assert recorded_stripe.sent("GET", "/v1/credit_notes") == []


def test_older_credit_notes_with_a_single_refund() -> None:
    older = _credit_note("cn_09", refunds=None, refund="re_9", out_of_band_amount=95)
    del older["refunds"]
    note = credit_note_record(older, "cus_R")
    assert note is not None and note.refunded == 500
    expanded = credit_note_record({**older, "refund": {"id": "re_9", "amount": 200}}, "cus_R")
    assert expanded is not None and expanded.refunded == 200
    assert credit_note_record(_credit_note("cn_10", total=0, amount=0), "cus_R") is None
    odd = credit_note_record(_credit_note("cn_11", reason="something_new"), "cus_R")
    assert odd is not None and odd.reason is None
