"""A plan change made at Stripe through the portal: the portal writes no
receipt itself; Stripe's ``invoice.paid`` for the proration invoice it
issued and charged brings exactly one."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from outbox_support import receipt_rows
from portal_fixtures import sign_in
from stripe_support import NOW, RecordedStripe, ScriptedStripe
from test_plans_stripe import StripePlans, _confirm, _preview, ava_over_recorded_stripe
from test_stripe import _signed

from flask_customer_portal.outbox.sender import ATTACHMENT_HEADER


@pytest.fixture
def plans(recorded_stripe: RecordedStripe) -> StripePlans:
    return StripePlans(ScriptedStripe(recorded_stripe))


@pytest.fixture
def shop(recorded_stripe: RecordedStripe, plans: StripePlans, tmp_path: Path) -> Iterator[Flask]:
    with ava_over_recorded_stripe(recorded_stripe, tmp_path) as app:
        yield app


@pytest.fixture
def ava(shop: Flask) -> FlaskClient:
    client = shop.test_client()
    sign_in(shop, client, "ava")
    return client


def test_a_plan_change_at_stripe_gets_one_receipt_from_stripes_webhook(
    shop: Flask, ava: FlaskClient, plans: StripePlans
) -> None:
    assert _confirm(ava, _preview(ava)).status_code == 303
    [charged] = plans.charges
    assert receipt_rows(shop) == []  # the portal sends none for a change Stripe charged
    # The proration invoice Stripe issued and paid with the change.
    proration = copy.deepcopy(plans.scripted.invoice)
    proration.update(
        id="in_P",
        number="ACME-0043",
        status="paid",
        subtotal=charged,
        total=charged,
        amount_due=charged,
        amount_paid=charged,
        created=NOW,
        metadata={},
        status_transitions={"paid_at": NOW},
        lines={"object": "list", "data": [{"id": "il_P", "description": "Team Plus", "amount": charged}]},
    )
    plans.scripted.server.handle("GET", "/v1/invoices/in_P", lambda request: (200, proration))
    payload = json.dumps(
        {
            "id": "evt_proration",
            "object": "event",
            "type": "invoice.paid",
            "created": int(time.time()),
            "data": {"object": proration},
        }
    )
    for _delivery in range(2):
        posted = shop.test_client().post(
            "/stripe/webhook", data=payload, headers={"Stripe-Signature": _signed(payload)}
        )
        assert posted.status_code == 204
    [row] = receipt_rows(shop)
    assert row.headers[ATTACHMENT_HEADER] == "invoice_pdf:in_P"
    assert "ACME-0043" in row.subject
