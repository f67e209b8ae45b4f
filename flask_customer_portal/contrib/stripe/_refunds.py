"""What was paid back of Stripe invoices, read for a whole list at once.

An invoice's refunds are on its charge (``amount_refunded``), and where the
invoice points to that charge depends on the client's API version: before
``2025-03-31`` (Basil) an invoice has a ``charge``, which the list call
expands (``expand[]=data.charge``) at no extra request; since Basil it has
``payments`` instead (expanded too, ``expand[]=data.payments``), whose
payment intents are matched with the customer's charges, read in one
``GET /v1/charges?customer=…`` (100 a page) when a paid invoice of the
list has no expanded charge. A list of any length costs the same few
requests, never one per invoice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import stripe

from ...storage import CreditNote, InvoiceStatus
from ._convert import as_dict, object_id

__all__ = [
    "CHARGES_REMOVED",
    "ChargeRefunds",
    "charge_refunds",
    "invoice_expansions",
    "list_expansions",
    "needs_charges",
    "refunds",
]

#: The API version that replaced an invoice's ``charge`` and
#: ``payment_intent`` with its ``payments``.
CHARGES_REMOVED = "2025-03-31"


def _api_version(client: stripe.StripeClient) -> str:
    """The API version the client sends (``stripe_version``), else the SDK's own."""
    options = getattr(getattr(client, "_requestor", None), "_options", None)
    return str(getattr(options, "stripe_version", None) or stripe.api_version)


def invoice_expansions(client: stripe.StripeClient, *, prefix: str = "") -> list[str]:
    """What a call for an invoice expands so that it carries its charge, or
    the payments that lead to it, for the client's API version; a list
    call's ``prefix`` is ``"data."``."""
    if _api_version(client) < CHARGES_REMOVED:
        return [f"{prefix}charge"]
    return [f"{prefix}payments"]


def list_expansions(client: stripe.StripeClient) -> list[str]:
    """:func:`invoice_expansions` of the invoice list call."""
    return invoice_expansions(client, prefix="data.")


def _payment_ids(data: Mapping[str, Any]) -> set[str]:
    """The ids of the charges and payment intents that paid the invoice."""
    found = {object_id(data.get("charge")), object_id(data.get("payment_intent"))}
    payments = data.get("payments")
    for entry in (payments.get("data") or ()) if isinstance(payments, Mapping) else ():
        if entry.get("status") not in (None, "paid"):
            continue
        payment = entry.get("payment") or {}
        found.update((object_id(payment.get("charge")), object_id(payment.get("payment_intent"))))
    return {value for value in found if value}


def needs_charges(invoices: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a paid invoice among ``invoices`` has no expanded charge but
    payments to look its refunds up by."""
    return any(
        data.get("status") == "paid" and not isinstance(data.get("charge"), Mapping) and _payment_ids(data)
        for data in invoices
    )


#: A refunded charge, by its own id and by its payment intent's: the
#: charge's id and what was refunded of it.
ChargeRefunds = Mapping[str, tuple[str, int]]


def charge_refunds(
    client: stripe.StripeClient, customer_id: str, *, of: Mapping[str, Any] | None = None
) -> ChargeRefunds:
    """What was refunded of each of the customer's refunded charges; only
    of the charges of the invoice ``of`` where it names one payment intent."""
    refunded: dict[str, tuple[str, int]] = {}
    params: dict[str, Any] = {"customer": customer_id, "limit": 100}
    intents = [key for key in _payment_ids(of) if key.startswith("pi_")] if of is not None else []
    if len(intents) == 1:
        params["payment_intent"] = intents[0]
    found = client.v1.charges.list(params=params)  # type: ignore[arg-type]
    for item in found.auto_paging_iter():
        charge = as_dict(item)
        amount = int(charge.get("amount_refunded") or 0)
        if amount <= 0:
            continue
        charge_id = str(charge["id"])
        for key in (charge_id, object_id(charge.get("payment_intent"))):
            if key:
                refunded[key] = (charge_id, amount)
    return refunded


def refunds(
    data: Mapping[str, Any],
    total: int,
    status: InvoiceStatus,
    credit_notes: tuple[CreditNote, ...],
    charges: ChargeRefunds | None = None,
) -> dict[str, Any]:
    """What was paid back: the charge's ``amount_refunded`` where the
    invoice carries its charge, or ``charges`` (:func:`charge_refunds`)
    has its payment, else the credit notes' refunded parts (``0``, or the
    total of a refunded invoice, where neither is known); credited is
    Stripe's ``post_payment_credit_notes_amount``."""
    charge = data.get("charge")
    if isinstance(charge, Mapping):
        refunded = int(charge.get("amount_refunded") or 0)
    elif charges is not None and status is not InvoiceStatus.OPEN:
        # An invoice may name its charge and that charge's payment intent.
        matched = {charges[key] for key in _payment_ids(data) if key in charges}
        refunded = sum(amount for _, amount in matched)
        refunded = max(refunded, sum(note.refunded for note in credit_notes))
    else:
        refunded = sum(note.refunded for note in credit_notes)
    if status is InvoiceStatus.REFUNDED:
        refunded = max(refunded, total)
    credited = max(int(data.get("post_payment_credit_notes_amount") or 0), refunded)
    return {"amount_refunded": refunded, "amount_credited": credited, "credit_notes": credit_notes}
