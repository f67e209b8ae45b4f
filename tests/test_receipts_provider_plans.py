"""A plan change made at Dodo through the portal: the portal writes no
receipt itself; Dodo's ``payment.succeeded`` for the change's payment
brings exactly one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_dodo import FakeDodo, shared_fake_dodo
from flask import Flask
from outbox_support import receipt_rows
from test_dodo import WEBHOOK_SECRET, Scenario, _sign, seed
from test_plans_dodo import NAMES, PLANS, PRICES, _app, _client, _confirm, _plan_payments, _preview

from flask_customer_portal.contrib.dodo import dodo_webhook_view
from flask_customer_portal.outbox.sender import ATTACHMENT_HEADER
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import Customer


@pytest.fixture
def fake() -> FakeDodo:
    fake = shared_fake_dodo()
    fake.product_prices.update(PRICES)
    fake.product_names.update(NAMES)
    return fake


@pytest.fixture
def scenario(fake: FakeDodo) -> Scenario:
    return seed(fake)


@pytest.fixture
def app(tmp_path: Path, fake: FakeDodo, scenario: Scenario) -> Iterator[Flask]:
    app, db, local = _app(tmp_path / "portal.db", fake, "dodo_plan_receipts")
    app.add_url_rule("/webhooks/dodo", view_func=dodo_webhook_view(WEBHOOK_SECRET), methods=["POST"])
    with app.app_context():
        local.create_all()
        local.add_customer(Customer(id="cus_demo_ava", email="ava@example.com", name="Ava Tan", locale="en"))
        for plan in PLANS:
            local.add_plan(plan)
    yield app
    get_state(app).shutdown()
    with app.app_context():
        db.engine.dispose()


def test_a_plan_change_at_dodo_gets_one_receipt_from_dodos_webhook(
    app: Flask, fake: FakeDodo, scenario: Scenario
) -> None:
    client = _client(app)
    answer = _confirm(client, scenario.ava_sub, _preview(client, scenario.ava_sub))
    assert answer.status_code == 303
    assert receipt_rows(app) == []  # the portal sends none for a change Dodo charged
    [payment] = _plan_payments(fake, scenario.ava_sub)
    body = json.dumps(
        {
            "business_id": "bus_fake",
            "type": "payment.succeeded",
            "timestamp": "2026-11-25T10:00:00Z",
            "data": dict(payment, payload_type="Payment"),
        }
    ).encode()
    for _delivery in range(2):
        posted = app.test_client().post("/webhooks/dodo", data=body, headers=_sign(body, msg_id="msg_plan"))
        assert posted.status_code == 204
    [row] = receipt_rows(app)
    assert row.headers[ATTACHMENT_HEADER] == f"invoice_pdf:{payment['payment_id']}"
