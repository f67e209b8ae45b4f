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
    recorded_stripe.respond("GET", "/v1/charges", {"object": "list", "has_more": False, "data": []})
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
    recorded_stripe.respond("GET", "/v1/charges", {"object": "list", "has_more": False, "data": []})
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


def _listed(n: int, **kw: Any) -> dict[str, Any]:
    """Invoice ``n`` of a list at an API version since 2025-03-31: no
    ``charge``, its payment intent in the expanded ``payments``."""
    listed = _invoice(id=f"in_L{n:02d}", number=f"L-{n:04d}", created=NOW - 86400 * (n + 1), **kw)
    del listed["charge"]
    listed["payments"] = {
        "object": "list",
        "data": [{"status": "paid", "payment": {"type": "payment_intent", "payment_intent": f"pi_L{n:02d}"}}],
    }
    return listed


def _charge(n: int, refunded: int) -> dict[str, Any]:
    return {
        "id": f"ch_L{n:02d}",
        "object": "charge",
        "amount": 1190,
        "amount_refunded": refunded,
        "refunded": refunded >= 1190,
        "payment_intent": f"pi_L{n:02d}",
    }


def test_the_list_shows_refunds_with_one_request_for_every_charge(recorded_stripe: RecordedStripe) -> None:
    invoices = [_listed(n) for n in range(30)] + [_listed(30, status="open", status_transitions={})]
    recorded_stripe.respond("GET", "/v1/invoices", {"object": "list", "has_more": False, "data": invoices})
    charges = [_charge(n, {3: 100, 7: 1190}.get(n, 0)) for n in range(30)]
    recorded_stripe.respond("GET", "/v1/charges", {"object": "list", "has_more": False, "data": charges})
    store = StripeBillingStore(make_client(recorded_stripe.url))

    page = store.list_invoices("cus_R", page=1, per_page=50)
    shown = {invoice.id: (invoice.display_status, invoice.amount_refunded) for invoice in page.items}
    assert shown["in_L03"] == ("partially_refunded", 100)
    assert shown["in_L07"] == ("refunded", 1190)
    assert shown["in_L05"] == ("paid", 0)
    assert shown["in_L30"] == ("open", 0)
    # One list call with the payments expanded, one for the charges: never one per invoice.
    [listed] = recorded_stripe.sent("GET", "/v1/invoices")
    assert listed.params["expand[0]"] == "data.payments"
    [asked] = recorded_stripe.sent("GET", "/v1/charges")
    assert asked.params["customer"] == "cus_R"
    assert len(recorded_stripe.requests) == 2

    # The export reads the same way.
    recorded_stripe.respond("GET", "/v1/payment_methods", {"object": "list", "has_more": False, "data": []})
    recorded_stripe.respond("GET", "/v1/customers/cus_R", {"id": "cus_R", "object": "customer"})
    exported = store.list_invoices_after("cus_R", None, limit=100, with_lines=True)
    assert {i.id: i.display_status for i in exported}["in_L03"] == "partially_refunded"


def test_no_charges_are_read_without_a_paid_invoice(recorded_stripe: RecordedStripe) -> None:
    recorded_stripe.respond(
        "GET",
        "/v1/invoices",
        {"object": "list", "has_more": False, "data": [_listed(1, status="open", status_transitions={})]},
    )
    store = StripeBillingStore(make_client(recorded_stripe.url))
    assert [i.display_status for i in store.list_invoices("cus_R", page=1, per_page=10).items] == ["open"]
    assert recorded_stripe.sent("GET", "/v1/charges") == []


def test_an_older_api_version_expands_the_charge_in_the_list(recorded_stripe: RecordedStripe) -> None:
    older = _invoice(charge={"id": "ch_R", "object": "charge", "amount_refunded": 250, "refunded": False})
    recorded_stripe.respond("GET", "/v1/invoices", {"object": "list", "has_more": False, "data": [older]})
    client = stripe.StripeClient(
        "sk_test_portal",
        base_addresses={"api": recorded_stripe.url},
        stripe_version="2024-06-20",
        max_network_retries=0,
    )
    [shown] = StripeBillingStore(client).list_invoices("cus_R", page=1, per_page=10).items
    assert (shown.display_status, shown.amount_refunded) == ("partially_refunded", 250)
    [listed] = recorded_stripe.sent("GET", "/v1/invoices")
    assert listed.params["expand[0]"] == "data.charge"
    assert recorded_stripe.sent("GET", "/v1/charges") == []


def test_localstripe_lists_a_partial_refund(localstripe: stripe.StripeClient) -> None:
    scenario: StripeScenario = seed_stripe(localstripe)
    paid_id = scenario.paid_invoice_ids[0]
    charge = localstripe.v1.invoices.retrieve(paid_id).charge
    localstripe.v1.refunds.create(
        params={"charge": charge if isinstance(charge, str) else charge.id, "amount": 100}
    )
    page = StripeBillingStore(localstripe).list_invoices(scenario.customer_id, page=1, per_page=100)
    assert {i.id: i.display_status for i in page.items}[paid_id] == "partially_refunded"


def test_the_invoice_page_reads_its_refund_from_its_payments_charge(recorded_stripe: RecordedStripe) -> None:
    recorded_stripe.respond("GET", "/v1/invoices/in_L04", _listed(4))
    recorded_stripe.respond(
        "GET", "/v1/charges", {"object": "list", "has_more": False, "data": [_charge(4, 300)]}
    )
    found = StripeBillingStore(make_client(recorded_stripe.url)).get_invoice("cus_R", "in_L04")
    assert found is not None and (found.display_status, found.amount_refunded) == ("partially_refunded", 300)
    [read] = recorded_stripe.sent("GET", "/v1/invoices/in_L04")
    assert read.params["expand[0]"] == "payments"
    [asked] = recorded_stripe.sent("GET", "/v1/charges")
    assert (asked.params["customer"], asked.params["payment_intent"]) == ("cus_R", "pi_L04")
