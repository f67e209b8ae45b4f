"""The Stripe adapter, offline.

Against localstripe (a fake Stripe server, started by ``localstripe_url``):
customers, cards from ``pm_card_visa`` and test numbers, attach and detach,
Plan-based subscriptions and their invoices, declines when a card is
added, 3-D Secure on an invoice's payment, cancel / undo, and the portal's
pages over it. The shared billing contract runs against it too
(``tests/test_billing_contract.py``).

Against scripted Stripe-shaped responses (``RecordedStripe``), for what
localstripe lacks or what a test must see in detail: Price-based
subscriptions (the current API's shape), the requests of the portal's
whole reactivation path, decline codes, 3-D Secure redirects, Stripe's
answer to a repeated idempotency key, and invoice PDF links. (The test
server in ``tests/localstripe_server.py`` adds ``default_payment_method``
on subscriptions and paying an invoice with a given card to localstripe;
``tests/test_money_locks.py`` reactivates over it.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from portal_fixtures import open_link
from stripe_support import (
    CARD_3DS,
    MONTH,
    NOW,
    WEBHOOK_SECRET,
    RecordedStripe,
    ScriptedStripe,
    StripeScenario,
    make_stripe_portal_app,
    seed_stripe,
    stripe_client,
)

from flask_customer_portal.billing.outcomes import PaymentOutcome
from flask_customer_portal.billing.renewal import reactivate_subscription
from flask_customer_portal.contrib.composite import CompositeStorage, MappingCustomerIds
from flask_customer_portal.contrib.stripe import (
    StripeBillingStore,
    StripePaymentProvider,
    invoice_status,
    subscription_status,
)
from flask_customer_portal.money import Money
from flask_customer_portal.payments import (
    CardDetails,
    ChargeDeclined,
    ChargeFailed,
    ChargeRequiresAction,
    ChargeSucceeded,
    ChargeUnknown,
    DeclineReason,
    MethodAttached,
    MethodDeclined,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    AuditEvent,
    InvoiceStatus,
    PaymentMethod,
    SubscriptionStatus,
)
from flask_customer_portal.testing import csrf_token_from

# -- mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stripe_status", "expected"),
    [
        ("active", SubscriptionStatus.ACTIVE),
        ("trialing", SubscriptionStatus.TRIALING),
        ("past_due", SubscriptionStatus.ON_HOLD),
        ("unpaid", SubscriptionStatus.ON_HOLD),
        ("incomplete", SubscriptionStatus.ON_HOLD),
        ("canceled", SubscriptionStatus.CANCELLED),
        ("incomplete_expired", SubscriptionStatus.CANCELLED),
    ],
)
def test_subscription_statuses(stripe_status: str, expected: SubscriptionStatus) -> None:
    assert subscription_status(stripe_status) is expected


def test_an_unknown_subscription_status_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown Stripe subscription status"):
        subscription_status("exploded")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"status": "draft"}, None),
        ({"status": "open"}, InvoiceStatus.OPEN),
        ({"status": "paid"}, InvoiceStatus.PAID),
        ({"status": "paid", "charge": {"id": "ch_1", "refunded": True}}, InvoiceStatus.REFUNDED),
        ({"status": "void"}, InvoiceStatus.VOID),
        ({"status": "uncollectible"}, InvoiceStatus.VOID),
    ],
)
def test_invoice_statuses(data: dict[str, Any], expected: InvoiceStatus | None) -> None:
    assert invoice_status(data) is expected


def test_the_provider_takes_no_card_details() -> None:
    provider = StripePaymentProvider(stripe_client("http://127.0.0.1:9"), publishable_key="pk_test_x")
    assert provider.accepts_raw_cards is False
    assert provider.is_test is True
    with pytest.raises(TypeError, match="Stripe Elements"):
        provider.attach_card("cus_1", CardDetails("4242424242424242", 12, 2030, "123"))
    live = StripePaymentProvider(
        stripe_client("http://127.0.0.1:9", api_key="sk_live_x"), publishable_key="pk_live_x"
    )
    assert live.is_test is False
    assert live.content_security_policy == {
        "script-src": ("https://js.stripe.com",),
        "frame-src": ("https://js.stripe.com", "https://hooks.stripe.com"),
        "connect-src": ("https://api.stripe.com",),
    }


# -- localstripe ------------------------------------------------------------------------------


@pytest.fixture
def scenario(localstripe: stripe.StripeClient) -> StripeScenario:
    return seed_stripe(localstripe)


@pytest.fixture
def provider(localstripe: stripe.StripeClient) -> StripePaymentProvider:
    return StripePaymentProvider(localstripe, publishable_key="pk_test_portal")


def test_a_card_from_elements_is_attached(
    localstripe: stripe.StripeClient, scenario: StripeScenario, provider: StripePaymentProvider
) -> None:
    result = provider.attach_token(scenario.customer_id, "pm_card_visa")
    assert isinstance(result, MethodAttached)
    assert (result.brand, result.last4, result.exp_month, result.exp_year) == ("visa", "4242", 12, 2030)
    assert result.provider_token.startswith("pm_")
    attached = localstripe.v1.payment_methods.retrieve(result.provider_token)
    assert attached.customer == scenario.customer_id
    # The portal then saves it: the store answers with Stripe's own record.
    store = StripeBillingStore(localstripe)
    saved = store.add_payment_method(
        PaymentMethod("pm_portal_made", scenario.customer_id, "visa", "4242", 12, 2030, result.provider_token)
    )
    assert saved.id == result.provider_token
    assert result.provider_token in [m.id for m in store.list_payment_methods(scenario.customer_id)]


def test_the_audit_event_names_the_card_by_stripes_id(
    localstripe: stripe.StripeClient,
    scenario: StripeScenario,
    provider: StripePaymentProvider,
    sqlite_store: Any,
) -> None:
    from flask_customer_portal.storage import Customer

    sqlite_store.add_customer(Customer("ava", "ava@example.com", "Ava"))
    composite = CompositeStorage(
        sqlite_store,
        billing=StripeBillingStore(localstripe),
        customer_ids=MappingCustomerIds.from_dict({"ava": scenario.customer_id}),
    )
    result = StripePaymentProvider(
        localstripe, publishable_key="pk_test_portal", customer_ids=composite.customer_ids
    ).attach_token("ava", "pm_card_visa")
    assert isinstance(result, MethodAttached)
    event = AuditEvent("ava", "payment_method.added", occurred_at=scenario_now(), subject_id="pm_portal_made")
    saved = composite.add_payment_method(
        PaymentMethod("pm_portal_made", "ava", "visa", "4242", 12, 2030, result.provider_token), event=event
    )
    assert (saved.id, saved.customer_id) == (result.provider_token, "ava")
    assert [e.subject_id for e in sqlite_store.list_events("ava")] == [result.provider_token]


def scenario_now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


@pytest.mark.parametrize("number", ["4000000000000002", "4000000000009995"])
def test_a_card_the_bank_refuses_is_not_attached(
    localstripe: stripe.StripeClient, scenario: StripeScenario, provider: StripePaymentProvider, number: str
) -> None:
    # What Stripe Elements would have made in the browser:
    made = localstripe.v1.payment_methods.create(
        params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    assert provider.attach_token(scenario.customer_id, made.id) == MethodDeclined(DeclineReason.GENERIC)
    assert made.id not in [
        m.id for m in StripeBillingStore(localstripe).list_payment_methods(scenario.customer_id)
    ]


@pytest.mark.parametrize("token", ["pm_doesnotexist", "tok_visa", "", "card_123"])
def test_anything_but_an_existing_payment_method_is_refused(
    scenario: StripeScenario, provider: StripePaymentProvider, token: str
) -> None:
    assert provider.attach_token(scenario.customer_id, token) == MethodDeclined(DeclineReason.GENERIC)


def test_a_customer_without_a_stripe_account_cannot_attach(localstripe: stripe.StripeClient) -> None:
    provider = StripePaymentProvider(
        localstripe, publishable_key="pk_test_portal", customer_ids=MappingCustomerIds.from_dict({})
    )
    assert provider.attach_token("ava", "pm_card_visa") == MethodDeclined(DeclineReason.GENERIC)


def test_a_failed_first_payment_is_open_and_not_a_charge(
    localstripe: stripe.StripeClient, scenario: StripeScenario, provider: StripePaymentProvider
) -> None:
    # The on-hold subscription's invoice: its payment failed, nothing waits for the customer.
    assert provider.find_charge(f"invoice:{scenario.open_invoice_id}:attempt:1") is None
    paid = provider.find_charge(f"invoice:{scenario.paid_invoice_ids[0]}:attempt:1")
    assert isinstance(paid, ChargeSucceeded) and paid.charge_id.startswith("ch_")
    assert provider.find_charge("invoice:in_doesnotexist:attempt:1") is None
    assert provider.find_charge("not-an-invoice-key") is None


def test_a_payment_waiting_for_3d_secure(
    localstripe: stripe.StripeClient, scenario: StripeScenario, provider: StripePaymentProvider
) -> None:
    card = localstripe.v1.payment_methods.create(
        params={"type": "card", "card": {"number": CARD_3DS, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    localstripe.v1.payment_methods.attach(card.id, params={"customer": scenario.customer_id})
    localstripe.v1.customers.update(
        scenario.customer_id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    sub = localstripe.v1.subscriptions.create(
        params={"customer": scenario.customer_id, "items": [{"plan": scenario.plan_id}]}
    )
    store = StripeBillingStore(localstripe)
    found = store.get_subscription(scenario.customer_id, sub.id)
    assert found is not None and found.status is SubscriptionStatus.ON_HOLD
    (invoice,) = list(localstripe.v1.invoices.list(params={"subscription": sub.id}).data)
    waiting = provider.find_charge(f"invoice:{invoice.id}:attempt:1")
    assert isinstance(waiting, ChargeRequiresAction)
    assert waiting.charge_id.startswith("pi_")
    # localstripe sends no redirect URL (Stripe does: see the recorded tests).
    assert waiting.redirect_url == ""


def test_invoices_of_plan_based_subscriptions(
    localstripe: stripe.StripeClient, scenario: StripeScenario
) -> None:
    store = StripeBillingStore(localstripe)
    invoice = store.get_invoice(scenario.customer_id, scenario.paid_invoice_ids[-1])
    assert invoice is not None
    assert invoice.status is InvoiceStatus.PAID
    assert invoice.payment_reference is not None and invoice.payment_reference.startswith("ch_")
    assert invoice.payment_method is not None and invoice.payment_method.last4 == "4242"
    assert store.invoice_pdf_url(scenario.customer_id, invoice.id) is None  # localstripe makes no PDFs
    assert store.invoice_pdf_url(scenario.other_customer_id, invoice.id) is None


def test_stripe_renews_by_itself(localstripe: stripe.StripeClient, scenario: StripeScenario) -> None:
    assert StripeBillingStore(localstripe).subscriptions_due(scenario_now()) == []


# -- the portal's pages over localstripe ------------------------------------------------------


@pytest.fixture
def stripe_app(localstripe: stripe.StripeClient, scenario: StripeScenario, tmp_path: Path) -> Iterator[Flask]:
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        localstripe,
        {"ava": scenario.customer_id, "budi": scenario.other_customer_id},
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _sign_in(app: Flask, customer_id: str = "ava") -> Any:
    client = app.test_client()
    with app.app_context():
        link = app.extensions["customer_portal"].create_session(customer_id).link
    assert open_link(client, link).status_code == 303
    return client


def test_pages_show_what_stripe_has(stripe_app: Flask, scenario: StripeScenario) -> None:
    client = _sign_in(stripe_app)
    page = client.get("/portal/subscriptions")
    assert page.status_code == 200
    assert "Pro" in page.text and "Team" in page.text
    assert client.get(f"/portal/subscriptions/{scenario.active_subscription_id}").status_code == 200
    assert client.get(f"/portal/subscriptions/{scenario.other_subscription_id}").status_code == 404
    invoice = client.get(f"/portal/invoices/{scenario.paid_invoice_ids[0]}")
    assert invoice.status_code == 200
    assert client.get("/portal/invoices").status_code == 200
    budi = _sign_in(stripe_app, "budi")
    assert budi.get(f"/portal/invoices/{scenario.paid_invoice_ids[0]}").status_code == 404


def test_the_payment_page_mounts_stripe_elements(stripe_app: Flask, scenario: StripeScenario) -> None:
    client = _sign_in(stripe_app)
    page = client.get(f"/portal/subscriptions/{scenario.active_subscription_id}/payment-method")
    assert page.status_code == 200
    assert 'data-publishable-key="pk_test_portal"' in page.text
    assert '<script src="https://js.stripe.com/v3/" defer></script>' in page.text
    assert "portal-stripe.js" in page.text
    assert 'name="payment_token"' in page.text
    assert 'name="card_number"' not in page.text and 'name="cvc"' not in page.text
    assert "<script>" not in page.text  # no inline script
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' https://js.stripe.com" in policy
    assert "frame-src 'self' https://js.stripe.com https://hooks.stripe.com" in policy
    assert "connect-src 'self' https://api.stripe.com" in policy
    assert "frame-ancestors 'none'" in policy
    # Card details sent anyway are refused without a look.
    refused = client.post(
        f"/portal/subscriptions/{scenario.active_subscription_id}/payment-method",
        data={
            "csrf_token": csrf_token_from(page.text),
            "intent": "change",
            "payment_method": "new",
            "card_number": "4242424242424242",
            "cvc": "123",
        },
    )
    assert refused.status_code == 400


def test_other_providers_do_not_open_the_policy(client: Any) -> None:
    policy = client.get("/portal/login").headers["Content-Security-Policy"]
    assert "stripe" not in policy
    assert "script-src 'self';" in policy


def test_portal_static_script_is_served(stripe_app: Flask) -> None:
    response = stripe_app.test_client().get("/portal/static/portal-stripe.js")
    assert response.status_code == 200
    assert b"createPaymentMethod" in response.data
    response.close()


def test_cancel_and_undo_through_the_portal(stripe_app: Flask, scenario: StripeScenario) -> None:
    client = _sign_in(stripe_app)
    stripe_api = stripe_client_for(stripe_app)
    path = f"/portal/subscriptions/{scenario.active_subscription_id}"
    token = csrf_token_from(client.get(path).text)
    response = client.post(f"{path}/cancel", data={"csrf_token": token, "confirm": "yes"})
    assert response.status_code == 303, response.status_code
    sub = stripe_api.v1.subscriptions.retrieve(scenario.active_subscription_id)
    # The portal's default: the subscription runs to the end of the paid period.
    assert (sub.status, sub.cancel_at_period_end) == ("active", True)
    token = csrf_token_from(client.get(path).text)
    assert client.post(f"{path}/resume", data={"csrf_token": token}).status_code == 303
    sub = stripe_api.v1.subscriptions.retrieve(scenario.active_subscription_id)
    assert sub.cancel_at_period_end is False
    with stripe_app.app_context():
        events = get_state(stripe_app).storage.local.list_events("ava")  # type: ignore[attr-defined]
    changes = [e for e in events if e.action.startswith("subscription.")]
    assert [e.subject_id for e in changes] == [scenario.active_subscription_id] * 2
    # Another customer's subscription: not found, and untouched at Stripe.
    other = f"/portal/subscriptions/{scenario.other_subscription_id}/cancel"
    assert client.post(other, data={"csrf_token": token, "confirm": "yes"}).status_code == 404
    assert stripe_api.v1.subscriptions.retrieve(scenario.other_subscription_id).cancel_at_period_end is False


def test_plan_changes_over_stripe_need_the_portals_lock(
    stripe_app: Flask, scenario: StripeScenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapter runs the money path but has no plan catalogue, so the
    portal's own plan change is not made over it; Stripe's is
    (``tests/test_plans_stripe.py``), under the portal's lock only: without
    it there is no **Change plan** link, and the plan page is refused as a
    pause the back end cannot make is (403)."""
    import dataclasses

    from flask_customer_portal.billing.plan_change import plan_changes_supported
    from flask_customer_portal.capabilities import capabilities_of

    with stripe_app.app_context():
        state = get_state(stripe_app)
        assert capabilities_of(state.storage).charge
        assert not capabilities_of(state.storage).plans
        assert not plan_changes_supported(state)
        assert capabilities_of(state.storage).provider_plan_change
        monkeypatch.setattr(
            state, "capabilities", dataclasses.replace(state.capabilities, provider_lock=False)
        )
    client = _sign_in(stripe_app)
    path = f"/portal/subscriptions/{scenario.active_subscription_id}"
    page = client.get(path)
    assert page.status_code == 200
    assert f"{path}/plan" not in page.text
    assert client.get(f"{path}/plan").status_code == 403
    form = {"csrf_token": csrf_token_from(page.text), "step": "preview", "plan": scenario.plan_id}
    assert client.post(f"{path}/plan", data=form).status_code == 403


def stripe_client_for(app: Flask) -> stripe.StripeClient:
    storage = get_state(app).storage
    assert isinstance(storage, CompositeStorage)
    billing = storage.billing
    assert isinstance(billing, StripeBillingStore)
    return billing.client


# -- webhooks ---------------------------------------------------------------------------------


def _signed(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


def _event(event_type: str, data: dict[str, Any]) -> str:
    return json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "api_version": "2026-10-28.endive",
            "data": {"object": data},
        }
    )


def test_a_signed_webhook_is_logged_for_the_customer(stripe_app: Flask, scenario: StripeScenario) -> None:
    payload = _event("invoice.paid", {"id": "in_123", "object": "invoice", "customer": scenario.customer_id})
    response = stripe_app.test_client().post(
        "/stripe/webhook", data=payload, headers={"Stripe-Signature": _signed(payload)}
    )
    assert response.status_code == 204
    with stripe_app.app_context():
        events = get_state(stripe_app).storage.local.list_events("ava")  # type: ignore[attr-defined]
    assert [(e.action, e.subject_id, e.provider_reference, e.actor) for e in events] == [
        ("stripe.invoice.paid", "in_123", "evt_1", "system")
    ]


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "t=1,v1=00",
        "wrong-secret",
        "stale",
    ],
)
def test_a_webhook_with_a_bad_signature_is_refused(
    stripe_app: Flask, scenario: StripeScenario, signature: str | None
) -> None:
    payload = _event("invoice.paid", {"id": "in_123", "object": "invoice", "customer": scenario.customer_id})
    headers = {}
    if signature == "wrong-secret":
        headers["Stripe-Signature"] = _signed(payload, secret="whsec_someone_else")
    elif signature == "stale":
        headers["Stripe-Signature"] = _signed(payload, timestamp=int(time.time()) - 3600)
    elif signature is not None:
        headers["Stripe-Signature"] = signature
    response = stripe_app.test_client().post("/stripe/webhook", data=payload, headers=headers)
    assert response.status_code == 400
    with stripe_app.app_context():
        assert get_state(stripe_app).storage.local.list_events("ava") == ()  # type: ignore[attr-defined]


def test_a_tampered_webhook_is_refused(stripe_app: Flask, scenario: StripeScenario) -> None:
    payload = _event("invoice.paid", {"id": "in_123", "object": "invoice", "customer": scenario.customer_id})
    header = _signed(payload)
    tampered = payload.replace("in_123", "in_999")
    response = stripe_app.test_client().post(
        "/stripe/webhook", data=tampered, headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("event_type", "customer"),
    [("charge.refunded", "ava"), ("customer.subscription.updated", "nobody"), ("customer.created", "ava")],
)
def test_other_webhooks_are_acknowledged_and_not_logged(
    stripe_app: Flask, scenario: StripeScenario, event_type: str, customer: str
) -> None:
    stripe_customer = scenario.customer_id if customer == "ava" else "cus_unknown"
    payload = _event(event_type, {"id": "x_1", "customer": stripe_customer})
    response = stripe_app.test_client().post(
        "/stripe/webhook", data=payload, headers={"Stripe-Signature": _signed(payload)}
    )
    assert response.status_code == 204
    with stripe_app.app_context():
        assert get_state(stripe_app).storage.local.list_events("ava") == ()  # type: ignore[attr-defined]


def test_a_subscription_webhook_reaches_the_merchants_hook(
    tmp_path: Path, localstripe: stripe.StripeClient
) -> None:
    from flask_customer_portal.contrib.stripe import stripe_webhook_blueprint

    seen: list[str] = []
    app = Flask("hook")
    app.register_blueprint(
        stripe_webhook_blueprint(WEBHOOK_SECRET, on_event=lambda e: seen.append(e.type), url="/hook")
    )
    payload = _event("customer.subscription.deleted", {"id": "sub_1"})
    with app.test_request_context():
        pass
    # No portal on this app: an event without a customer needs none.
    response = app.test_client().post("/hook", data=payload, headers={"Stripe-Signature": _signed(payload)})
    assert response.status_code == 204
    assert seen == ["customer.subscription.deleted"]


# -- webhooks: each event handled once ----------------------------------------------------------


@pytest.fixture
def webhook_app(tmp_path: Path) -> Iterator[Flask]:
    """A portal over Stripe for webhooks only: the webhook never calls Stripe."""
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}", stripe_client("http://127.0.0.1:9"), {"ava": "cus_ava"}
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def _paid_event(event_id: str) -> tuple[str, dict[str, str]]:
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            # Not ``invoice.paid``: its receipt would read the invoice at Stripe.
            "type": "invoice.payment_succeeded",
            "created": int(time.time()),
            "data": {"object": {"id": "in_123", "object": "invoice", "customer": "cus_ava"}},
        }
    )
    return payload, {"Stripe-Signature": _signed(payload)}


def _logged(app: Flask) -> list[str]:
    with app.app_context():
        events = get_state(app).storage.local.list_events("ava")  # type: ignore[attr-defined]
    return [str(e.provider_reference) for e in events]


def test_a_redelivered_event_is_logged_and_passed_on_once(webhook_app: Flask) -> None:
    from flask_customer_portal.contrib.stripe import stripe_webhook_blueprint

    seen: list[str] = []
    # Another blueprint, with nothing in memory: another worker, or a restart.
    webhook_app.register_blueprint(
        stripe_webhook_blueprint(
            WEBHOOK_SECRET,
            url="/stripe/webhook-2",
            name="second_worker",
            customer_ids=MappingCustomerIds.from_dict({"ava": "cus_ava"}),
            on_event=lambda event: seen.append(event.id),
        )
    )
    payload, headers = _paid_event("evt_twice")
    client = webhook_app.test_client()
    answers = [
        client.post(url, data=payload, headers=headers).status_code
        for url in ("/stripe/webhook", "/stripe/webhook-2", "/stripe/webhook")
    ]
    assert answers == [204, 204, 204]
    assert _logged(webhook_app) == ["evt_twice"]
    assert seen == []
    other, other_headers = _paid_event("evt_other")
    assert client.post("/stripe/webhook-2", data=other, headers=other_headers).status_code == 204
    assert seen == ["evt_other"]
    assert _logged(webhook_app) == ["evt_twice", "evt_other"]


def test_concurrent_deliveries_of_one_event_are_logged_once(webhook_app: Flask) -> None:
    payload, headers = _paid_event("evt_race")
    count = 6
    barrier = threading.Barrier(count)
    statuses: list[int] = []
    lock = threading.Lock()

    def deliver() -> None:
        client = webhook_app.test_client()
        barrier.wait(timeout=30)
        status = client.post("/stripe/webhook", data=payload, headers=headers).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=deliver) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # One delivery handled it; each other one found it handled (204) or
    # still being handled (409, Stripe delivers it again later).
    assert len(statuses) == count
    assert 204 in statuses and set(statuses) <= {204, 409}
    assert _logged(webhook_app) == ["evt_race"]
    assert client_post(webhook_app, "/stripe/webhook", payload, headers) == 204


def client_post(app: Flask, url: str, payload: str, headers: dict[str, str]) -> int:
    return app.test_client().post(url, data=payload, headers=headers).status_code


def _second_worker(app: Flask, on_event: Any, url: str = "/stripe/webhook-2") -> None:
    """Another webhook blueprint on ``app``, with nothing in memory (another
    worker) and its own ``on_event``."""
    from flask_customer_portal.contrib.stripe import stripe_webhook_blueprint

    app.register_blueprint(
        stripe_webhook_blueprint(
            WEBHOOK_SECRET,
            url=url,
            name="worker_" + url.rsplit("/", 1)[-1].replace("-", "_"),
            customer_ids=MappingCustomerIds.from_dict({"ava": "cus_ava"}),
            on_event=on_event,
        )
    )


def test_a_repeat_while_the_event_is_being_handled_is_answered_409(webhook_app: Flask) -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow_on_event(event: Any) -> None:
        seen.append(event.id)
        started.set()
        assert release.wait(timeout=30)

    _second_worker(webhook_app, slow_on_event)
    payload, headers = _paid_event("evt_slow")
    first: list[int] = []
    worker = threading.Thread(
        target=lambda: first.append(client_post(webhook_app, "/stripe/webhook-2", payload, headers))
    )
    worker.start()
    try:
        assert started.wait(timeout=30)
        repeat = webhook_app.test_client().post("/stripe/webhook", data=payload, headers=headers)
        assert repeat.status_code == 409
        assert repeat.get_data(as_text=True) == "event being handled, deliver it again later"
        assert client_post(webhook_app, "/stripe/webhook-2", payload, headers) == 409
    finally:
        release.set()
        worker.join(timeout=30)
    assert first == [204]
    assert seen == ["evt_slow"]
    assert _logged(webhook_app) == ["evt_slow"]
    # Once the first delivery finished, a repeat is answered 204.
    assert client_post(webhook_app, "/stripe/webhook", payload, headers) == 204
    assert client_post(webhook_app, "/stripe/webhook-2", payload, headers) == 204
    assert seen == ["evt_slow"]
    assert _logged(webhook_app) == ["evt_slow"]


def _claim_left_by_a_dead_worker(app: Flask, event_id: str, age: timedelta) -> None:
    from sqlalchemy import insert

    from flask_customer_portal.contrib.sqla import WebhookEventModel

    with app.app_context():
        session = app.extensions["sqlalchemy"].session
        session.execute(
            insert(WebhookEventModel).values(
                provider="stripe", event_id=event_id, received_at=datetime.now(timezone.utc) - age
            )
        )
        session.commit()


def test_a_claim_left_by_a_dead_worker_is_taken_over_after_the_lease(webhook_app: Flask) -> None:
    seen: list[str] = []
    _second_worker(webhook_app, lambda event: seen.append(event.id))
    # Within the lease the claim may still be a live worker's: 409.
    _claim_left_by_a_dead_worker(webhook_app, "evt_young", timedelta(minutes=1))
    young, young_headers = _paid_event("evt_young")
    assert client_post(webhook_app, "/stripe/webhook-2", young, young_headers) == 409
    assert seen == [] and _logged(webhook_app) == []
    # Past the lease (5 minutes) its worker died: the next delivery handles it.
    _claim_left_by_a_dead_worker(webhook_app, "evt_dead", timedelta(minutes=5, seconds=1))
    payload, headers = _paid_event("evt_dead")
    assert client_post(webhook_app, "/stripe/webhook-2", payload, headers) == 204
    assert seen == ["evt_dead"]
    assert _logged(webhook_app) == ["evt_dead"]
    assert client_post(webhook_app, "/stripe/webhook-2", payload, headers) == 204
    assert client_post(webhook_app, "/stripe/webhook", payload, headers) == 204
    assert seen == ["evt_dead"]
    assert _logged(webhook_app) == ["evt_dead"]


def test_the_lease_is_an_argument_of_the_blueprint(webhook_app: Flask) -> None:
    from flask_customer_portal.contrib.stripe import stripe_webhook_blueprint

    webhook_app.register_blueprint(
        stripe_webhook_blueprint(
            WEBHOOK_SECRET,
            url="/stripe/webhook-short",
            name="short_lease",
            customer_ids=MappingCustomerIds.from_dict({"ava": "cus_ava"}),
            lease=timedelta(seconds=30),
        )
    )
    _claim_left_by_a_dead_worker(webhook_app, "evt_short", timedelta(minutes=1))
    payload, headers = _paid_event("evt_short")
    assert client_post(webhook_app, "/stripe/webhook", payload, headers) == 409
    assert client_post(webhook_app, "/stripe/webhook-short", payload, headers) == 204
    assert _logged(webhook_app) == ["evt_short"]
    with pytest.raises(ValueError, match="lease"):
        stripe_webhook_blueprint(WEBHOOK_SECRET, lease=timedelta(0))


def test_an_event_whose_handling_failed_is_handled_when_stripe_retries(
    webhook_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = get_state(webhook_app).storage.local  # type: ignore[attr-defined]
    record_event = local.record_event
    failures = [OSError("the database went away")]

    def record_or_fail(event: Any) -> None:
        if failures:
            raise failures.pop()
        record_event(event)

    monkeypatch.setattr(local, "record_event", record_or_fail)
    payload, headers = _paid_event("evt_retry")
    client = webhook_app.test_client()
    with pytest.raises(OSError, match="went away"):
        client.post("/stripe/webhook", data=payload, headers=headers)
    assert _logged(webhook_app) == []
    assert client.post("/stripe/webhook", data=payload, headers=headers).status_code == 204
    assert client.post("/stripe/webhook", data=payload, headers=headers).status_code == 204
    assert _logged(webhook_app) == ["evt_retry"]


def test_without_the_portal_repeats_are_remembered_by_the_process() -> None:
    from flask_customer_portal.contrib.stripe import stripe_webhook_blueprint

    seen: list[str] = []

    def on_event(event: Any) -> None:
        seen.append(event.id)
        if len(seen) == 1:
            raise RuntimeError("the merchant's hook failed")

    app = Flask("hook_only")
    app.config["TESTING"] = True
    app.register_blueprint(stripe_webhook_blueprint(WEBHOOK_SECRET, on_event=on_event, url="/hook"))
    repeats: list[int] = []

    def on_event_answering_a_repeat(event: Any) -> None:
        # A repeat reaching this process while it handles the event.
        repeats.append(app.test_client().post("/hook-2", data=payload, headers=headers).status_code)
        on_event(event)

    app.register_blueprint(
        stripe_webhook_blueprint(
            WEBHOOK_SECRET, on_event=on_event_answering_a_repeat, url="/hook-2", name="hook_2"
        )
    )
    payload = json.dumps(
        {
            "id": "evt_sub",
            "object": "event",
            "type": "customer.subscription.deleted",
            "created": int(time.time()),
            "data": {"object": {"id": "sub_1"}},
        }
    )
    headers = {"Stripe-Signature": _signed(payload)}
    client = app.test_client()
    with pytest.raises(RuntimeError):
        client.post("/hook", data=payload, headers=headers)
    assert [client.post("/hook", data=payload, headers=headers).status_code for _ in range(2)] == [204, 204]
    assert seen == ["evt_sub", "evt_sub"]
    # Another blueprint remembers for itself: handling, handled.
    assert client.post("/hook-2", data=payload, headers=headers).status_code == 204
    assert repeats == [409]
    assert seen == ["evt_sub", "evt_sub", "evt_sub"]
    assert client.post("/hook-2", data=payload, headers=headers).status_code == 204
    assert seen == ["evt_sub", "evt_sub", "evt_sub"]


# -- scripted Stripe responses ------------------------------------------------------------------


@pytest.fixture
def scripted(recorded_stripe: RecordedStripe) -> ScriptedStripe:
    return ScriptedStripe(recorded_stripe)


@pytest.fixture
def recorded_app(
    recorded_stripe: RecordedStripe, scripted: ScriptedStripe, tmp_path: Path
) -> Iterator[Flask]:
    app = make_stripe_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}", stripe_client(recorded_stripe.url), {"ava": "cus_R"}
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_a_price_based_subscription_in_the_current_api_shape(
    recorded_stripe: RecordedStripe, scripted: Any
) -> None:
    store = StripeBillingStore(stripe_client(recorded_stripe.url))
    sub = store.get_subscription("cus_R", "sub_R")
    assert sub is not None
    assert (sub.product_name, sub.plan_name) == ("Team", "Team (per seat)")
    assert sub.price == Money(3000, "EUR")
    assert (sub.interval, sub.interval_count) == ("year", 1)
    assert sub.status is SubscriptionStatus.ON_HOLD
    assert sub.current_period_end.timestamp() == NOW + MONTH
    # No method of its own: Stripe charges the customer's default.
    assert sub.payment_method is not None and sub.payment_method.id == "pm_good"
    assert store.get_subscription("cus_other", "sub_R") is None
    invoice = store.get_invoice("cus_R", "in_R")
    assert invoice is not None
    assert (invoice.number, invoice.subtotal, invoice.tax, invoice.total) == ("ACME-0042", 3000, 570, 3570)
    assert invoice.description == "2 x Team (per seat)"
    assert [(line.quantity, line.unit_amount, line.amount) for line in invoice.lines] == [(2, 1500, 3000)]


def test_listing_subscriptions_takes_the_same_requests_however_many(
    recorded_stripe: RecordedStripe, scripted: ScriptedStripe
) -> None:
    store = StripeBillingStore(stripe_client(recorded_stripe.url))
    store.list_subscriptions("cus_R")  # products are read once per store
    for count in (1, 5):
        subscriptions = [dict(scripted.subscription, id=f"sub_{n}") for n in range(count)]
        recorded_stripe.respond("GET", "/v1/subscriptions", scripted._list(subscriptions))
        before = len(recorded_stripe.requests)
        assert len(store.list_subscriptions("cus_R")) == count
        sent = [(r.method, r.path) for r in recorded_stripe.requests[before:]]
        assert sent == [
            ("GET", "/v1/subscriptions"),
            ("GET", "/v1/payment_methods"),
            ("GET", "/v1/customers/cus_R"),
        ]


def test_a_subscription_is_charged_to_another_card(
    recorded_stripe: RecordedStripe, scripted: ScriptedStripe
) -> None:
    store = StripeBillingStore(stripe_client(recorded_stripe.url))
    updated = store.set_subscription_payment_method("cus_R", "sub_R", "pm_new")
    assert updated is not None and updated.payment_method is not None
    assert updated.payment_method.id == "pm_new"
    (sent,) = recorded_stripe.sent("POST", "/v1/subscriptions/sub_R")
    assert sent.params == {"default_payment_method": "pm_new"}
    assert store.set_subscription_payment_method("cus_R", "sub_R", "pm_unknown") is None
    assert store.set_subscription_payment_method("cus_other", "sub_R", "pm_new") is None
    assert len(recorded_stripe.sent("POST", "/v1/subscriptions/sub_R")) == 1


def test_the_pdf_link_goes_to_stripes_pdf(recorded_app: Flask) -> None:
    client = _sign_in(recorded_app)
    page = client.get("/portal/invoices/in_R")
    assert page.status_code == 200
    assert "/portal/invoices/in_R/pdf" in page.text
    response = client.get("/portal/invoices/in_R/pdf")
    assert response.status_code == 303
    assert response.headers["Location"] == "https://pay.stripe.com/invoice/acct_1/in_R/pdf"
    assert client.get("/portal/invoices/in_other/pdf").status_code == 404


def _provider(server: RecordedStripe) -> StripePaymentProvider:
    return StripePaymentProvider(stripe_client(server.url), publishable_key="pk_test_portal")


def test_paying_an_invoice_sends_the_card_and_the_idempotency_key(
    recorded_stripe: RecordedStripe, scripted: ScriptedStripe
) -> None:
    result = _provider(recorded_stripe).charge(
        customer_id="cus_R",
        provider_token="pm_new",
        amount=Money(3570, "EUR"),
        idempotency_key="invoice:in_R:attempt:1",
        invoice_id="in_R",
        description="ACME-0042",
    )
    assert result == ChargeSucceeded("ch_R", Money(3570, "EUR"))
    (pay,) = scripted.pays()
    assert pay.params == {"payment_method": "pm_new", "off_session": "true"}
    assert pay.headers["idempotency-key"] == "invoice:in_R:attempt:1"


def test_a_paid_invoice_is_never_paid_again(
    recorded_stripe: RecordedStripe, scripted: ScriptedStripe
) -> None:
    provider = _provider(recorded_stripe)
    kwargs: dict[str, Any] = {
        "customer_id": "cus_R",
        "provider_token": "pm_new",
        "amount": Money(3570, "EUR"),
        "invoice_id": "in_R",
        "description": "ACME-0042",
    }
    first = provider.charge(idempotency_key="invoice:in_R:attempt:1", **kwargs)
    again = provider.charge(idempotency_key="invoice:in_R:attempt:1", **kwargs)
    later = provider.charge(idempotency_key="invoice:in_R:attempt:2", **kwargs)
    assert first == again == later == ChargeSucceeded("ch_R", Money(3570, "EUR"))
    assert len(scripted.pays()) == 1
    assert provider.find_charge("invoice:in_R:attempt:1") == first


def test_stripe_replays_a_repeated_key(recorded_stripe: RecordedStripe, scripted: ScriptedStripe) -> None:
    # A retry after a lost answer: Stripe answers the same key with the
    # first response (recorded here), and the provider reads it the same way.
    scripted.pay_outcome = "insufficient_funds"
    provider = _provider(recorded_stripe)
    kwargs: dict[str, Any] = {
        "customer_id": "cus_R",
        "provider_token": "pm_new",
        "amount": Money(3570, "EUR"),
        "description": "ACME-0042",
        "idempotency_key": "invoice:in_R:attempt:1",
        "invoice_id": "in_R",
    }
    first = provider.charge(**kwargs)
    replayed = provider.charge(**kwargs)
    assert first == replayed == ChargeDeclined(DeclineReason.INSUFFICIENT_FUNDS, "ch_declined")
    assert [p.headers["idempotency-key"] for p in scripted.pays()] == ["invoice:in_R:attempt:1"] * 2


def test_3d_secure_sends_the_customer_to_stripe(
    recorded_stripe: RecordedStripe, scripted: ScriptedStripe
) -> None:
    scripted.pay_outcome = "3ds"
    result = _provider(recorded_stripe).charge(
        customer_id="cus_R",
        provider_token="pm_new",
        amount=Money(3570, "EUR"),
        idempotency_key="invoice:in_R:attempt:1",
        invoice_id="in_R",
        description="ACME-0042",
    )
    assert result == ChargeRequiresAction("pi_R", "https://hooks.stripe.com/3d_secure_2/hosted?pi=pi_R")
    # Without a redirect of its own, Stripe's hosted invoice page does 3-D Secure.
    scripted.invoice["payment_intent"]["next_action"] = {"type": "use_stripe_sdk"}
    found = _provider(recorded_stripe).find_charge("invoice:in_R:attempt:1")
    assert found == ChargeRequiresAction("pi_R", "https://invoice.stripe.com/i/acct_1/in_R")


def test_no_answer_from_stripe_is_unknown(recorded_stripe: RecordedStripe, scripted: ScriptedStripe) -> None:
    scripted.pay_outcome = "error"
    result = _provider(recorded_stripe).charge(
        customer_id="cus_R",
        provider_token="pm_new",
        amount=Money(3570, "EUR"),
        idempotency_key="invoice:in_R:attempt:1",
        invoice_id="in_R",
        description="ACME-0042",
    )
    assert result == ChargeUnknown("invoice:in_R:attempt:1")


@pytest.mark.parametrize(
    ("customer_id", "amount", "invoice_id", "key"),
    [
        ("cus_other", Money(3570, "EUR"), "in_R", "invoice:in_R:attempt:1"),
        ("cus_R", Money(3569, "EUR"), "in_R", "invoice:in_R:attempt:1"),
        ("cus_R", Money(3570, "USD"), "in_R", "invoice:in_R:attempt:1"),
        ("cus_R", Money(3570, "EUR"), "renewal-2026-03", "renewal-2026-03"),
        ("cus_R", Money(3570, "EUR"), "in_missing", "invoice:in_missing:attempt:1"),
    ],
)
def test_only_the_customers_open_invoice_at_its_amount_is_paid(
    recorded_stripe: RecordedStripe,
    scripted: ScriptedStripe,
    customer_id: str,
    amount: Money,
    invoice_id: str,
    key: str,
) -> None:
    result = _provider(recorded_stripe).charge(
        customer_id=customer_id,
        provider_token="pm_new",
        amount=amount,
        idempotency_key=key,
        invoice_id=invoice_id,
        description="x",
    )
    assert isinstance(result, ChargeFailed) and not result.retryable
    assert scripted.pays() == []


# -- the portal's reactivation over scripted Stripe --------------------------------------------


def _reactivate(app: Flask, method_id: str = "pm_new") -> Any:
    with app.test_request_context():
        state = get_state(app)
        customer = state.storage.get_customer("ava")
        method = state.storage.get_payment_method("ava", method_id)
        assert customer is not None and method is not None
        return reactivate_subscription(state, customer, "sub_R", method)


def _events(app: Flask) -> list[AuditEvent]:
    """Ava's audit events of billing and money (not of signing in)."""
    money = ("payment_method.", "charge.", "invoice.", "subscription.")
    with app.app_context():
        events = get_state(app).storage.local.list_events("ava")  # type: ignore[attr-defined]
    return [e for e in events if e.action.startswith(money)]


def test_reactivation_pays_the_open_invoice_once(recorded_app: Flask, scripted: ScriptedStripe) -> None:
    result = _reactivate(recorded_app)
    assert result.outcome is PaymentOutcome.PAID
    assert result.subscription.status is SubscriptionStatus.ACTIVE
    assert result.subscription.customer_id == "ava"
    assert result.invoice is not None and result.invoice.status is InvoiceStatus.PAID
    (pay,) = scripted.pays()
    assert pay.headers["idempotency-key"] == "invoice:in_R:attempt:1"
    assert pay.params["payment_method"] == "pm_new"
    # The attempt log is in the invoice's metadata, the card on the subscription.
    attempt = json.loads(scripted.invoice["metadata"]["portal_attempt_1"])
    assert (attempt["s"], attempt["r"], attempt["pm"], attempt["a"]) == ("succeeded", "ch_R", "pm_new", 3570)
    assert scripted.subscription["default_payment_method"] == "pm_new"
    assert scripted.subscription["metadata"]["portal_hold_reason"] == ""
    actions = [e.action for e in _events(recorded_app)]
    assert actions == ["charge.succeeded", "invoice.paid", "subscription.reactivated"]
    # A second click: nothing more is paid.
    assert _reactivate(recorded_app).outcome is PaymentOutcome.ALREADY_PAID
    assert len(scripted.pays()) == 1


def test_a_declined_reactivation_keeps_the_subscription_on_hold(
    recorded_app: Flask, scripted: ScriptedStripe
) -> None:
    scripted.pay_outcome = "insufficient_funds"
    result = _reactivate(recorded_app)
    assert result.outcome is PaymentOutcome.DECLINED
    assert result.decline_reason == "insufficient_funds"
    assert result.subscription.status is SubscriptionStatus.ON_HOLD
    assert result.subscription.hold_reason == "insufficient_funds"
    assert json.loads(scripted.invoice["metadata"]["portal_attempt_1"])["s"] == "declined"
    assert [e.action for e in _events(recorded_app)] == [
        "charge.declined",
        "subscription.reactivation_failed",
    ]
    # The next try is attempt 2, with its own key.
    scripted.pay_outcome = "paid"
    assert _reactivate(recorded_app).outcome is PaymentOutcome.PAID
    assert [p.headers["idempotency-key"] for p in scripted.pays()] == [
        "invoice:in_R:attempt:1",
        "invoice:in_R:attempt:2",
    ]


def test_3d_secure_during_reactivation_is_not_tried_twice(
    recorded_app: Flask, scripted: ScriptedStripe
) -> None:
    scripted.pay_outcome = "3ds"
    first = _reactivate(recorded_app)
    assert first.outcome is PaymentOutcome.REQUIRES_ACTION
    assert first.redirect_url == "https://hooks.stripe.com/3d_secure_2/hosted?pi=pi_R"
    again = _reactivate(recorded_app)
    assert again.outcome is PaymentOutcome.REQUIRES_ACTION
    assert len(scripted.pays()) == 1  # reconciled with find_charge, not paid again


def test_an_unanswered_payment_is_reconciled_before_the_next_try(
    recorded_app: Flask, scripted: ScriptedStripe
) -> None:
    scripted.pay_outcome = "error"
    assert _reactivate(recorded_app).outcome is PaymentOutcome.PENDING
    assert json.loads(scripted.invoice["metadata"]["portal_attempt_1"])["s"] == "unknown"
    scripted.pay_outcome = "paid"
    assert _reactivate(recorded_app).outcome is PaymentOutcome.PAID
    # Stripe had not paid it (still open): attempt 1 failed, attempt 2 paid.
    assert json.loads(scripted.invoice["metadata"]["portal_attempt_1"])["s"] == "failed"
    assert [p.headers["idempotency-key"] for p in scripted.pays()] == [
        "invoice:in_R:attempt:1",
        "invoice:in_R:attempt:2",
    ]


# -- the payment-method page over scripted Stripe ----------------------------------------------


def _pay_with_new_card(client: Any) -> Any:
    page = client.get("/portal/subscriptions/sub_R/payment-method")
    assert page.status_code == 200
    return client.post(
        "/portal/subscriptions/sub_R/payment-method",
        data={
            "csrf_token": csrf_token_from(page.text),
            "intent": "reactivate",
            "payment_method": "new",
            "payment_token": "pm_new",  # what portal-stripe.js posts after Elements made it
        },
    )


def test_a_new_card_from_elements_pays_the_arrears(recorded_app: Flask, scripted: ScriptedStripe) -> None:
    client = _sign_in(recorded_app)
    response = _pay_with_new_card(client)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/portal/subscriptions/sub_R/reactivated")
    (attach,) = scripted.server.sent("POST", "/v1/payment_methods/pm_new/attach")
    assert attach.params == {"customer": "cus_R"}
    (pay,) = scripted.pays()
    assert (pay.params["payment_method"], pay.headers["idempotency-key"]) == (
        "pm_new",
        "invoice:in_R:attempt:1",
    )
    assert scripted.subscription["status"] == "active"
    assert scripted.subscription["default_payment_method"] == "pm_new"
    actions = [e.action for e in _events(recorded_app)]
    assert actions == ["payment_method.added", "charge.succeeded", "invoice.paid", "subscription.reactivated"]
    added = next(e for e in _events(recorded_app) if e.action == "payment_method.added")
    assert added.subject_id == "pm_new"


def test_3d_secure_on_the_page_redirects_to_stripe(recorded_app: Flask, scripted: ScriptedStripe) -> None:
    scripted.pay_outcome = "3ds"
    response = _pay_with_new_card(_sign_in(recorded_app))
    assert response.status_code == 303
    assert response.headers["Location"] == "https://hooks.stripe.com/3d_secure_2/hosted?pi=pi_R"


def test_a_decline_on_the_page_is_shown(recorded_app: Flask, scripted: ScriptedStripe) -> None:
    scripted.pay_outcome = "insufficient_funds"
    response = _pay_with_new_card(_sign_in(recorded_app))
    assert response.status_code == 422
    assert "declined" in response.text
    assert scripted.subscription["status"] == "past_due"
