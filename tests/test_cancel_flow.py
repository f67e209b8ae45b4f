"""The cancellation flow (reason → retention offer → confirmation), pausing
and resuming, and the per-customer rules that guard them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, open_link, sign_in

from flask_customer_portal import signals
from flask_customer_portal.billing.periods import add_interval, add_months
from flask_customer_portal.billing.renewal import RenewalOutcome, renew_due
from flask_customer_portal.billing.retention import discount_amount
from flask_customer_portal.clock import utcnow
from flask_customer_portal.config import DEFAULTS, load_config
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.formatting import format_date
from flask_customer_portal.money import Money
from flask_customer_portal.offers import (
    REASON_TEXT_MAX_LENGTH,
    CancellationReason,
    DiscountOffer,
    PauseOffer,
    PlanOffer,
    RetentionOffer,
    clean_reason_text,
)
from flask_customer_portal.rules import CustomerRules
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent, Customer, Invoice, Subscription, SubscriptionStatus
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

#: Her subscriptions come due in the later renewal runs here too.
DEWI = "cus_demo_dewi"
AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
AVA_SUB = "sub_demo_ava_sync"
AVA_PAST_SUB = "sub_demo_ava_desktop"
BUDI_SUB = "sub_demo_budi_sync"
AVA_TZ = "America/Los_Angeles"

OfferFunction = Callable[[Customer, Subscription, CancellationReason], "RetentionOffer | None"]


# -- helpers -----------------------------------------------------------------------


@pytest.fixture
def pause_app(tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider) -> Iterator[Flask]:
    """A shop that lets customers pause for up to three months."""
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'pause.db'}",
        mailer=mailer,
        payments=payments,
        CUSTOMER_PORTAL_ALLOW_PAUSE=True,
        CUSTOMER_PORTAL_MAX_PAUSE_MONTHS=3,
    )
    yield app
    get_state(app).shutdown()
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def ava(pause_app: Flask) -> FlaskClient:
    client = pause_app.test_client()
    sign_in(pause_app, client, AVA)
    return client


def _stored(app: Flask, subscription_id: str = AVA_SUB, customer_id: str = AVA) -> Subscription:
    with app.app_context():
        found = get_state(app).storage.get_subscription(customer_id, subscription_id)
    assert found is not None
    return found


def _events(app: Flask, customer_id: str = AVA) -> list[AuditEvent]:
    with app.app_context():
        events = get_state(app).storage.list_events(customer_id)  # type: ignore[attr-defined]
    return [e for e in events if e.action.startswith(("subscription.", "retention_offer."))]


def _without_dewi(app: Flask, charges: list[Any]) -> list[Any]:
    """``charges`` less those for Dewi's invoices (her subscriptions renew in
    the same runs)."""
    with app.app_context():
        theirs = {i.id for i in get_state(app).storage.list_invoices(DEWI, page=1, per_page=1000).items}
    return [charge for charge in charges if charge[0].split(":")[1] not in theirs]


def _invoices(app: Flask, subscription_id: str = AVA_SUB, customer_id: str = AVA) -> list[Invoice]:
    with app.app_context():
        store = get_state(app).storage
        page = store.list_invoices(customer_id, page=1, per_page=100)
        found = [
            store.get_invoice(customer_id, i.id) for i in page.items if i.subscription_id == subscription_id
        ]
    return sorted((i for i in found if i is not None), key=lambda i: i.issued_at)


def _token(client: FlaskClient, path: str = f"/portal/subscriptions/{AVA_SUB}") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    return csrf_token_from(page.text)


def _reason_page(client: FlaskClient, subscription_id: str = AVA_SUB) -> Any:
    return client.get(f"/portal/subscriptions/{subscription_id}/cancel/reason")


def _give_reason(client: FlaskClient, subscription_id: str = AVA_SUB, **data: str) -> Any:
    page = _reason_page(client, subscription_id)
    assert page.status_code == 200, page.status_code
    form = {"csrf_token": csrf_token_from(page.text), **data}
    return client.post(f"/portal/subscriptions/{subscription_id}/cancel/reason", data=form)


def _hidden(html: str, name: str) -> str | None:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    return None if match is None else match.group(1)


def _offer(app: Flask, function: OfferFunction | None) -> None:
    get_state(app).hooks.retention_offer = function


def _rules(app: Flask, rules: CustomerRules) -> None:
    get_state(app).hooks.rules_loader = lambda customer, subscription: rules


def _recorder(*names: str) -> tuple[list[tuple[str, dict[str, Any]]], list[Any]]:
    """Record the named signals; returns the log and the receivers (keep them alive)."""
    log: list[tuple[str, dict[str, Any]]] = []
    receivers = []
    for name in names:

        def receive(sender: Flask, _name: str = name, **extra: Any) -> None:
            log.append((_name, extra))

        getattr(signals, name).connect(receive)
        receivers.append((getattr(signals, name), receive))
    return log, receivers


@pytest.fixture
def recorded() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    log, receivers = _recorder(
        "subscription_cancelled", "subscription_paused", "subscription_resumed", "retention_offer_accepted"
    )
    yield log
    for signal, receiver in receivers:
        signal.disconnect(receiver)


def _pause(client: FlaskClient, months: str = "2", subscription_id: str = AVA_SUB) -> Any:
    token = _token(client, "/portal/subscriptions")
    return client.post(
        f"/portal/subscriptions/{subscription_id}/pause", data={"csrf_token": token, "months": months}
    )


# -- the reason step ------------------------------------------------------------------


def test_the_subscription_page_starts_the_flow_and_offers_a_pause(pause_app: Flask, ava: FlaskClient) -> None:
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}")
    assert f'<form method="get" action="/portal/subscriptions/{AVA_SUB}/cancel/reason">' in page.text
    assert f'action="/portal/subscriptions/{AVA_SUB}/pause"' in page.text
    # Each length says the day it would start again, before the customer chooses.
    now = utcnow()
    # Dates in the customer's own time zone, as the page shows them.
    with pause_app.app_context():
        customer = get_state(pause_app).storage.get_customer("cus_demo_ava")
    assert customer is not None
    for months, label in ((1, "1 month"), (3, "3 months")):
        resumes = format_date(add_interval(now, "month", months), "en", customer.timezone)
        assert f'<option value="{months}">{label}, until {resumes}</option>' in page.text
    assert '<option value="4">' not in page.text


def test_the_reason_page_lists_the_reasons(pause_app: Flask, ava: FlaskClient) -> None:
    page = _reason_page(ava)
    assert page.status_code == 200
    assert '<h1 id="reason-title">Before you cancel Acme Sync</h1>' in page.text
    assert "<legend" in page.text and "Why are you cancelling?" in page.text
    for code, label in (("too_expensive", "It costs too much"), ("other", "Something else")):
        assert f'value="{code}">' in page.text
        assert label in page.text
    assert f'maxlength="{REASON_TEXT_MAX_LENGTH}"' in page.text
    assert _stored(pause_app).cancel_at_period_end is False


def test_a_reason_is_required_and_must_be_one_of_the_list(pause_app: Flask, ava: FlaskClient) -> None:
    before = _stored(pause_app)
    missing = _give_reason(ava, reason_text="just because")
    assert missing.status_code == 422
    assert "Choose the reason that fits best." in missing.text
    assert "just because" in missing.text  # nothing the customer typed is lost
    assert 'aria-describedby="reason-error"' in missing.text

    unknown = _give_reason(ava, reason="free_money")
    assert unknown.status_code == 422
    assert "Choose one of the reasons in the list." in unknown.text
    assert _stored(pause_app) == before
    assert _events(pause_app) == []


def test_a_comment_that_is_too_long_is_refused_and_kept(pause_app: Flask, ava: FlaskClient) -> None:
    text = "a" * (REASON_TEXT_MAX_LENGTH + 1)
    response = _give_reason(ava, reason="other", reason_text=text)
    assert response.status_code == 422
    assert f"Keep it to {REASON_TEXT_MAX_LENGTH} characters or fewer." in response.text
    assert text in response.text
    assert 'value="other" checked' in response.text
    # Exactly the limit is fine.
    assert _give_reason(ava, reason="other", reason_text="b" * REASON_TEXT_MAX_LENGTH).status_code == 200


def test_comments_are_cleaned_of_control_characters() -> None:
    assert clean_reason_text("  too\x00 expen\u202esive\r\nreally\x1b[31m  ") == "too expensive\nreally[31m"
    assert clean_reason_text("\x00\u200f \t") is None
    assert clean_reason_text(None) is None
    assert clean_reason_text("cafe\u0301") == "café"


def test_reason_then_confirm_cancels_and_tells_the_merchant_why(
    pause_app: Flask, ava: FlaskClient, mailer: MemoryMailer, recorded: list[tuple[str, dict[str, Any]]]
) -> None:
    confirm = _give_reason(ava, reason="too_expensive", reason_text="Too much\x07 for me")
    assert confirm.status_code == 200
    assert '<h1 id="confirm-title">Cancel Acme Sync?</h1>' in confirm.text
    assert "retention-offer" not in confirm.text  # no offer function registered
    assert _hidden(confirm.text, "reason") == "too_expensive"
    assert _hidden(confirm.text, "reason_text") == "Too much for me"
    assert _stored(pause_app).cancel_at_period_end is False

    done = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel",
        data={
            "csrf_token": csrf_token_from(confirm.text),
            "confirm": "yes",
            "reason": "too_expensive",
            "reason_text": "Too much for me",
        },
    )
    assert done.status_code == 303
    assert _stored(pause_app).cancel_at_period_end is True
    # Already set to end: the flow explains instead of asking again.
    again = _reason_page(ava)
    assert again.status_code == 409
    assert "This subscription is already set to end on" in again.text
    [event] = _events(pause_app)
    assert event.action == "subscription.cancelled"
    assert event.details == {
        "at_period_end": "true",
        "reason": "too_expensive",
        "reason_text": "Too much for me",
    }
    [(name, kwargs)] = recorded
    assert name == "subscription_cancelled"
    assert kwargs["reason"] == "too_expensive"
    assert kwargs["reason_text"] == "Too much for me"
    assert kwargs["at_period_end"] is True


def test_the_old_direct_post_still_cancels_without_a_reason(
    pause_app: Flask, ava: FlaskClient, recorded: list[tuple[str, dict[str, Any]]]
) -> None:
    token = _token(ava)
    response = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel", data={"csrf_token": token, "confirm": "yes"}
    )
    assert response.status_code == 303
    assert _stored(pause_app).cancel_at_period_end is True
    [event] = _events(pause_app)
    assert event.details == {"at_period_end": "true"}
    [(_name, kwargs)] = recorded
    assert kwargs["reason"] is None and kwargs["reason_text"] is None


def test_the_direct_post_refuses_an_unknown_reason(pause_app: Flask, ava: FlaskClient) -> None:
    token = _token(ava)
    response = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel",
        data={"csrf_token": token, "confirm": "yes", "reason": "nope"},
    )
    assert response.status_code == 422
    assert "Choose one of the reasons in the list." in response.text
    assert _stored(pause_app).cancel_at_period_end is False


def test_the_merchants_own_reasons(tmp_path: Path, mailer: MemoryMailer) -> None:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'reasons.db'}",
        mailer=mailer,
        CUSTOMER_PORTAL_CANCELLATION_REASONS=[("closing", "We are closing the shop"), ("other", "Other")],
    )
    try:
        client = app.test_client()
        sign_in(app, client, AVA)
        page = _reason_page(client)
        assert "We are closing the shop" in page.text
        assert "too_expensive" not in page.text
        assert _give_reason(client, reason="too_expensive").status_code == 422
        assert _give_reason(client, reason="closing").status_code == 200
    finally:
        get_state(app).shutdown()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "non-empty list"),
        ("too_expensive", "non-empty list"),
        ([("Bad Code", "x")], "lower-case"),
        ([("ok", "")], "non-empty string"),
        ([("ok", "A"), ("ok", "B")], "appears twice"),
        ([("ok",)], "(code, label) pairs"),
    ],
)
def test_bad_reason_settings_are_refused_at_start_up(value: Any, message: str) -> None:
    config = {
        **DEFAULTS,
        "SECRET_KEY": "x" * 40,
        "CUSTOMER_PORTAL_BUSINESS_ID": "biz",
        "CUSTOMER_PORTAL_BASE_URL": "https://shop.example.com",
        "CUSTOMER_PORTAL_CANCELLATION_REASONS": value,
    }
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_CANCELLATION_REASONS") as error:
        load_config(config)
    assert message in str(error.value)
    assert load_config(
        {**config, "CUSTOMER_PORTAL_CANCELLATION_REASONS": {"a": "A"}}
    ).cancellation_reasons == (("a", "A"),)
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_MAX_PAUSE_MONTHS"):
        load_config(
            {**config, "CUSTOMER_PORTAL_CANCELLATION_REASONS": None, "CUSTOMER_PORTAL_MAX_PAUSE_MONTHS": 0}
        )


# -- retention offers ---------------------------------------------------------------


def test_a_pause_offer_is_shown_and_taken(
    pause_app: Flask, ava: FlaskClient, mailer: MemoryMailer, recorded: list[tuple[str, dict[str, Any]]]
) -> None:
    seen: list[CancellationReason] = []

    def offer(customer: Customer, subscription: Subscription, reason: CancellationReason) -> RetentionOffer:
        seen.append(reason)
        return PauseOffer(months=2)

    _offer(pause_app, offer)
    now = datetime.now(timezone.utc)
    confirm = _give_reason(ava, reason="temporary", reason_text="back in summer")
    assert confirm.status_code == 200
    assert seen == [CancellationReason("temporary", "I only need a break for a while", "back in summer")]
    assert "Take a break instead?" in confirm.text
    assert "Pause your subscription for 2 months instead of cancelling." in confirm.text
    assert "Pause for 2 months" in confirm.text
    assert "Yes, cancel" in confirm.text  # cancelling is still one click away

    accepted = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel/offer",
        data={
            "csrf_token": csrf_token_from(confirm.text),
            "reason": "temporary",
            "reason_text": "back in summer",
        },
    )
    assert accepted.status_code == 303
    paused = _stored(pause_app)
    assert paused.status is SubscriptionStatus.PAUSED
    assert paused.paused_at is not None and paused.resumes_at == add_months(paused.paused_at, 2)
    assert paused.paused_at - now < timedelta(minutes=1)
    [event] = _events(pause_app)
    assert event.action == "subscription.paused"
    assert event.details["retention_offer"] == "pause"
    assert event.details["reason"] == "temporary"
    assert [name for name, _ in recorded] == ["subscription_paused", "retention_offer_accepted"]
    assert recorded[1][1]["offer"] == PauseOffer(months=2)
    assert recorded[1][1]["reason"].code == "temporary"
    page = ava.get(accepted.headers["Location"])
    assert "Your Acme Sync subscription is paused. It starts again on" in page.text
    get_state(pause_app).wait_for_background_tasks()
    assert [m.subject for m in mailer.outbox] == ["Your Acme Sync subscription is paused"]


def test_a_pause_offer_is_not_shown_where_pausing_is_not_allowed(
    app: Flask, ava_client: FlaskClient, pause_app: Flask, ava: FlaskClient
) -> None:
    # The merchant does not allow pausing (the default shop).
    _offer(app, lambda c, s, r: PauseOffer(months=1))
    confirm = _give_reason(ava_client, reason="temporary")
    assert confirm.status_code == 200
    assert "retention-offer" not in confirm.text
    # Pausing is allowed, but not for this customer.
    _offer(pause_app, lambda c, s, r: PauseOffer(months=1))
    _rules(pause_app, CustomerRules(can_pause=False))
    assert "retention-offer" not in _give_reason(ava, reason="temporary").text
    # Longer than the merchant's maximum.
    _rules(pause_app, CustomerRules())
    _offer(pause_app, lambda c, s, r: PauseOffer(months=4))
    assert "retention-offer" not in _give_reason(ava, reason="temporary").text


def test_a_discount_offer_is_applied_to_the_next_renewals(
    pause_app: Flask,
    ava: FlaskClient,
    payments: TestPaymentProvider,
    recorded: list[tuple[str, dict[str, Any]]],
) -> None:
    _offer(
        pause_app,
        lambda c, s, r: DiscountOffer(percent=25, renewals=2) if r.code == "too_expensive" else None,
    )
    assert "retention-offer" not in _give_reason(ava, reason="other").text
    confirm = _give_reason(ava, reason="too_expensive")
    assert "Stay for less?" in confirm.text
    assert "Stay and get 25% off 2 renewals." in confirm.text
    assert "You pay $14.25 instead of $19.00." in confirm.text
    # The form names no percentage: whatever is added is ignored.
    accepted = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel/offer",
        data={"csrf_token": csrf_token_from(confirm.text), "reason": "too_expensive", "percent": "99"},
    )
    assert accepted.status_code == 303
    stored = _stored(pause_app)
    assert (stored.discount_percent, stored.discount_renewals) == (25, 2)
    assert stored.status is SubscriptionStatus.ACTIVE and not stored.cancel_at_period_end
    [event] = _events(pause_app)
    assert event.action == "retention_offer.accepted"
    assert event.details == {"offer": "discount", "percent": "25", "renewals": "2", "reason": "too_expensive"}
    assert [name for name, _ in recorded] == ["retention_offer_accepted"]
    assert "Your next renewals are 25% off." in ava.get(accepted.headers["Location"]).text

    # While the discount lasts it is not offered again.
    assert "retention-offer" not in _give_reason(ava, reason="too_expensive").text

    # The accepted discount stays visible: on the subscription, in its list
    # and in the preview of the next invoice.
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}").text
    assert '<strong class="subscription-discount">25% off your next 2 renewals</strong>' in page
    assert "Discount: 25% off your next 2 renewals" in page
    assert "25% off your next 2 renewals" in ava.get("/portal/subscriptions").text

    state = get_state(pause_app)
    totals = []
    previews = []
    for _renewal in range(3):
        end = _stored(pause_app).current_period_end
        page = ava.get(f"/portal/subscriptions/{AVA_SUB}").text
        preview = re.search(r"you will be charged ([^.<]+\.\d\d)\.", page)
        assert preview is not None
        previews.append(preview.group(1))
        with pause_app.app_context(), time_machine.travel(end + timedelta(hours=1), tick=False):
            report = renew_due(state)
        assert [r.outcome for r in report.results if r.subscription.customer_id != DEWI] == [
            RenewalOutcome.RENEWED
        ]
        invoice = next(r for r in report.results if r.subscription.customer_id != DEWI).invoice
        assert invoice is not None
        totals.append(invoice.total)
    assert totals == [1425, 1425, 1900]
    # The preview is what each renewal then charged.
    assert previews == ["$14.25", "$14.25", "$19.00"]
    assert "off your next" not in ava.get(f"/portal/subscriptions/{AVA_SUB}").text
    charged = [amount for _key, amount in _without_dewi(pause_app, payments.charges)]
    assert charged == [Money(1425, "USD")] * 2 + [Money(1900, "USD")]
    first, _second, third = _invoices(pause_app)[-3:]
    assert first.lines[-1].description == "Discount (25% off)"
    assert first.lines[-1].amount == -475
    assert first.subtotal == 1425
    assert len(third.lines) == 1
    after = _stored(pause_app)
    assert (after.discount_percent, after.discount_renewals) == (0, 0)


def test_discounts_round_half_up_to_a_minor_unit() -> None:
    assert discount_amount(1900, 25) == 475
    assert discount_amount(999, 15) == 150  # 149.85
    assert discount_amount(15_000_000, 33) == 4_950_000
    assert discount_amount(1, 50) == 1  # 0.5 rounds up
    with pytest.raises(ValueError, match="1 to 99"):
        DiscountOffer(percent=100, renewals=1)
    with pytest.raises(ValueError, match="1 or more"):
        DiscountOffer(percent=10, renewals=0)
    with pytest.raises(ValueError, match="1 or more"):
        PauseOffer(months=0)


def test_a_plan_offer_links_to_the_plan_change_page(pause_app: Flask, ava: FlaskClient) -> None:
    _offer(pause_app, lambda c, s, r: PlanOffer(plan_id="plan_sync_basic", message="Basic costs $9."))
    confirm = _give_reason(ava, reason="too_expensive")
    assert "Switch plans instead?" in confirm.text
    assert "Basic costs $9." in confirm.text
    assert f'href="/portal/subscriptions/{AVA_SUB}/plan?plan=plan_sync_basic"' in confirm.text
    # Not where the customer's rules forbid that plan.
    _rules(pause_app, CustomerRules(allowed_plan_ids=frozenset({"plan_other"})))
    assert "retention-offer" not in _give_reason(ava, reason="too_expensive").text
    # A plan offer is a link, never accepted by POST.
    _rules(pause_app, CustomerRules())
    response = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel/offer",
        data={"csrf_token": csrf_token_from(confirm.text), "reason": "too_expensive"},
    )
    assert response.status_code == 409
    assert "This offer is no longer available. Nothing was changed." in response.text


def test_an_offer_withdrawn_before_it_is_taken_changes_nothing(pause_app: Flask, ava: FlaskClient) -> None:
    _offer(pause_app, lambda c, s, r: DiscountOffer(percent=50, renewals=1))
    confirm = _give_reason(ava, reason="too_expensive")
    before = _stored(pause_app)
    _offer(pause_app, lambda c, s, r: None)
    response = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel/offer",
        data={"csrf_token": csrf_token_from(confirm.text), "reason": "too_expensive"},
    )
    assert response.status_code == 409
    assert _stored(pause_app) == before
    assert _events(pause_app) == []


def test_taking_an_offer_with_a_made_up_reason_is_refused(pause_app: Flask, ava: FlaskClient) -> None:
    _offer(pause_app, lambda c, s, r: DiscountOffer(percent=50, renewals=1))
    before = _stored(pause_app)
    token = _token(ava)
    for reason in ("", "free_money"):
        response = ava.post(
            f"/portal/subscriptions/{AVA_SUB}/cancel/offer", data={"csrf_token": token, "reason": reason}
        )
        assert response.status_code == 422
        assert '<h1 id="reason-title">' in response.text
    assert _stored(pause_app) == before
    assert _events(pause_app) == []


def test_a_cancel_deep_link_starts_at_the_reason_and_returns_after_an_offer(pause_app: Flask) -> None:
    _offer(pause_app, lambda c, s, r: DiscountOffer(percent=10, renewals=1))
    client = pause_app.test_client()
    with pause_app.app_context():
        link = (
            pause_app.extensions["customer_portal"]
            .create_session(
                AVA, return_url="http://shop.test/account", flow="cancel", subscription_id=AVA_SUB
            )
            .link
        )
    landing = open_link(client, link)
    assert landing.headers["Location"] == f"/portal/subscriptions/{AVA_SUB}/cancel/reason"
    confirm = _give_reason(client, reason="too_expensive")
    accepted = client.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel/offer",
        data={"csrf_token": csrf_token_from(confirm.text), "reason": "too_expensive"},
    )
    assert accepted.status_code == 303
    assert accepted.headers["Location"] == "http://shop.test/account"
    assert _stored(pause_app).discount_renewals == 1


def test_a_broken_offer_function_never_stops_a_cancellation(
    pause_app: Flask, ava: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(customer: Customer, subscription: Subscription, reason: CancellationReason) -> RetentionOffer:
        raise RuntimeError("offer service down")

    _offer(pause_app, broken)
    confirm = _give_reason(ava, reason="other")
    assert confirm.status_code == 200
    assert "retention-offer" not in confirm.text
    assert "The retention offer function failed" in caplog.text

    _offer(pause_app, lambda c, s, r: "20% off")  # type: ignore[arg-type, return-value]
    confirm = _give_reason(ava, reason="other")
    assert confirm.status_code == 200
    assert "retention-offer" not in confirm.text
    assert "expected a PauseOffer" in caplog.text


# -- pausing and resuming -----------------------------------------------------------


def test_pause_then_renew_due_does_not_charge_then_resumes_and_renews(
    pause_app: Flask,
    ava: FlaskClient,
    payments: TestPaymentProvider,
    mailer: MemoryMailer,
    recorded: list[tuple[str, dict[str, Any]]],
) -> None:
    before = _stored(pause_app)
    invoices_before = len(_invoices(pause_app))
    response = _pause(ava, "2")
    assert response.status_code == 303
    paused = _stored(pause_app)
    assert paused.status is SubscriptionStatus.PAUSED
    assert paused.paused_at is not None and paused.resumes_at is not None
    assert paused.resumes_at == add_months(paused.paused_at, 2)
    assert (paused.current_period_start, paused.current_period_end) == (
        before.current_period_start,
        before.current_period_end,
    )
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}")
    resumes = format_date(paused.resumes_at, "en", AVA_TZ)
    assert f"Paused until {resumes}" in page.text
    assert "badge-paused" in page.text
    assert f'action="/portal/subscriptions/{AVA_SUB}/unpause"' in page.text
    assert f'action="/portal/subscriptions/{AVA_SUB}/pause"' not in page.text
    assert f"Paused until {resumes}" in ava.get("/portal/subscriptions").text
    [event] = _events(pause_app)
    assert event.action == "subscription.paused"
    assert event.details == {"months": "2", "resumes_at": paused.resumes_at.isoformat()}
    assert recorded[0][0] == "subscription_paused"
    assert recorded[0][1]["resumes_at"] == paused.resumes_at

    state = get_state(pause_app)
    # The paid period ends while paused: nothing is renewed or charged.
    with pause_app.app_context():
        report = renew_due(state, now=before.current_period_end + timedelta(hours=1))
    assert [r for r in report.results if r.subscription.customer_id != DEWI] == []
    assert _without_dewi(pause_app, payments.charges) == []
    assert len(_invoices(pause_app)) == invoices_before
    assert _stored(pause_app).status is SubscriptionStatus.PAUSED

    # A day after resumes_at the job resumes it, as of resumes_at.
    with pause_app.app_context(), time_machine.travel(paused.resumes_at + timedelta(days=1), tick=False):
        report = renew_due(state)
    assert [r.outcome for r in report.results if r.subscription.customer_id != DEWI] == [
        RenewalOutcome.RESUMED
    ]
    resumed = _stored(pause_app)
    paused_for = paused.resumes_at - paused.paused_at
    assert resumed.status is SubscriptionStatus.ACTIVE
    assert resumed.current_period_start == before.current_period_start + paused_for
    assert resumed.current_period_end == before.current_period_end + paused_for
    assert resumed.paused_at is None and resumed.resumes_at is None
    assert _without_dewi(pause_app, payments.charges) == []
    assert recorded[-1][0] == "subscription_resumed"
    assert recorded[-1][1]["automatic"] is True
    resumed_event = _events(pause_app)[-1]
    assert (resumed_event.action, resumed_event.actor, resumed_event.details) == (
        "subscription.resumed",
        "system",
        {"automatic": "true"},
    )

    # At the moved period end it renews and is charged as usual.
    with pause_app.app_context():
        report = renew_due(state, now=resumed.current_period_end + timedelta(minutes=1))
    assert [r.outcome for r in report.results if r.subscription.customer_id != DEWI] == [
        RenewalOutcome.RENEWED
    ]
    assert [amount for _key, amount in _without_dewi(pause_app, payments.charges)] == [Money(1900, "USD")]
    state.wait_for_background_tasks()
    subjects = [m.subject for m in mailer.outbox]
    assert subjects[:2] == [
        "Your Acme Sync subscription is paused",
        "Your Acme Sync subscription is active again",
    ]
    resumed_mail = mailer.outbox[1]
    assert "The pause of your Acme Sync subscription (Pro (monthly)) has ended" in resumed_mail.text
    assert format_date(resumed.current_period_end, "en", AVA_TZ) in resumed_mail.text


def test_a_late_job_still_resumes_as_of_resumes_at_and_renews_in_the_same_run(
    pause_app: Flask, ava: FlaskClient, payments: TestPaymentProvider
) -> None:
    assert _pause(ava, "1").status_code == 303
    paused = _stored(pause_app)
    assert paused.resumes_at is not None
    # The job did not run for a whole year: the moved period is over too.
    with pause_app.app_context():
        report = renew_due(get_state(pause_app), now=paused.resumes_at + timedelta(days=365))
    assert [r.outcome for r in report.results if r.subscription.customer_id != DEWI] == [
        RenewalOutcome.RESUMED,
        RenewalOutcome.RENEWED,
    ]
    assert len(_without_dewi(pause_app, payments.charges)) == 1


def test_the_renew_due_command_reports_resumed_subscriptions(pause_app: Flask, ava: FlaskClient) -> None:
    assert _pause(ava, "1").status_code == 303
    resumes_at = _stored(pause_app).resumes_at
    assert resumes_at is not None
    with time_machine.travel(resumes_at + timedelta(minutes=1), tick=False):
        result = pause_app.test_cli_runner().invoke(args=["portal", "renew-due"])
    assert result.exit_code == 0, result.output
    assert "resumed: 1" in result.output


def test_resume_by_hand_moves_the_period_on_by_the_paused_time(
    pause_app: Flask, ava: FlaskClient, mailer: MemoryMailer, recorded: list[tuple[str, dict[str, Any]]]
) -> None:
    before = _stored(pause_app)
    start = datetime.now(timezone.utc)
    with time_machine.travel(start, tick=False):
        assert _pause(ava, "3").status_code == 303
    with time_machine.travel(start + timedelta(days=10), tick=False):
        later = pause_app.test_client()  # the earlier session has timed out
        sign_in(pause_app, later, AVA)
        token = _token(later)
        response = later.post(f"/portal/subscriptions/{AVA_SUB}/unpause", data={"csrf_token": token})
        assert response.status_code == 303
        page = later.get(response.headers["Location"])
        # Delivered while the clock is where the email was written: a row is
        # due from the moment it was written.
        get_state(pause_app).wait_for_background_tasks()
    resumed = _stored(pause_app)
    assert resumed.status is SubscriptionStatus.ACTIVE
    assert resumed.current_period_end == before.current_period_end + timedelta(days=10)
    assert resumed.current_period_start == before.current_period_start + timedelta(days=10)
    renews = format_date(resumed.current_period_end, "en", AVA_TZ)
    assert f"Your Acme Sync subscription is active again. It renews on {renews}." in page.text
    assert recorded[-1][0] == "subscription_resumed" and recorded[-1][1]["automatic"] is False
    assert _events(pause_app)[-1].details == {"automatic": "false"}
    get_state(pause_app).wait_for_background_tasks()
    # Each email is delivered on its own: not necessarily in the order written.
    assert any("You resumed your Acme Sync subscription" in m.text for m in mailer.outbox)

    # Nothing left to resume.
    token = _token(ava)
    again = ava.post(f"/portal/subscriptions/{AVA_SUB}/unpause", data={"csrf_token": token})
    assert again.status_code == 409
    assert "This subscription is not paused, so there is nothing to resume." in again.text


def test_a_late_resume_by_hand_counts_the_pause_only_until_resumes_at(
    pause_app: Flask, ava: FlaskClient
) -> None:
    before = _stored(pause_app)
    assert _pause(ava, "1").status_code == 303
    paused = _stored(pause_app)
    assert paused.paused_at is not None and paused.resumes_at is not None
    # renew-due has not run for ten days after resumes_at.
    with time_machine.travel(paused.resumes_at + timedelta(days=10), tick=False):
        later = pause_app.test_client()
        sign_in(pause_app, later, AVA)
        token = _token(later)
        assert (
            later.post(f"/portal/subscriptions/{AVA_SUB}/unpause", data={"csrf_token": token}).status_code
            == 303
        )
    resumed = _stored(pause_app)
    assert resumed.current_period_end == before.current_period_end + (paused.resumes_at - paused.paused_at)


@pytest.mark.parametrize("months", ["0", "4", "-1", "two", ""])
def test_a_pause_outside_the_allowed_months_is_refused(
    pause_app: Flask, ava: FlaskClient, months: str
) -> None:
    before = _stored(pause_app)
    response = _pause(ava, months)
    assert response.status_code == 422
    assert "Choose a pause of 1 to 3 months." in response.text
    assert 'aria-describedby="pause-months-error"' in response.text
    assert _stored(pause_app) == before


def test_only_an_active_subscription_can_be_paused(pause_app: Flask, ava: FlaskClient) -> None:
    budi = pause_app.test_client()
    sign_in(pause_app, budi, BUDI)
    on_hold = _stored(pause_app, BUDI_SUB, BUDI)
    assert f"/subscriptions/{BUDI_SUB}/pause" not in budi.get(f"/portal/subscriptions/{BUDI_SUB}").text
    response = _pause(budi, "1", BUDI_SUB)
    assert response.status_code == 409
    # Budi reads Indonesian: "This subscription cannot be paused right now."
    assert "Langganan ini tidak dapat dijeda saat ini." in response.text
    assert _stored(pause_app, BUDI_SUB, BUDI) == on_hold

    response = _pause(ava, "1", AVA_PAST_SUB)  # cancelled
    assert response.status_code == 409

    # Set to end at period end: keep it first, then pause.
    token = _token(ava)
    ava.post(f"/portal/subscriptions/{AVA_SUB}/cancel", data={"csrf_token": token, "confirm": "yes"})
    assert f"/subscriptions/{AVA_SUB}/pause" not in ava.get(f"/portal/subscriptions/{AVA_SUB}").text
    assert _pause(ava, "1").status_code == 409
    assert _stored(pause_app).status is SubscriptionStatus.ACTIVE


def test_a_paused_subscription_can_still_be_cancelled_and_ends_now(
    pause_app: Flask, ava: FlaskClient
) -> None:
    assert _pause(ava, "1").status_code == 303
    confirm = _give_reason(ava, reason="not_using")
    assert "Your subscription will end immediately" in confirm.text
    ava.post(
        f"/portal/subscriptions/{AVA_SUB}/cancel",
        data={"csrf_token": csrf_token_from(confirm.text), "confirm": "yes", "reason": "not_using"},
    )
    cancelled = _stored(pause_app)
    assert cancelled.status is SubscriptionStatus.CANCELLED
    assert cancelled.ended_at is not None
    with pause_app.app_context():
        assert (
            get_state(pause_app).storage.subscriptions_to_resume(cancelled.resumes_at or cancelled.ended_at)
            == ()
        )


def test_pausing_is_off_unless_the_merchant_allows_it(app: Flask, ava_client: FlaskClient) -> None:
    page = ava_client.get(f"/portal/subscriptions/{AVA_SUB}")
    assert "/pause" not in page.text
    response = ava_client.post(
        f"/portal/subscriptions/{AVA_SUB}/pause",
        data={"csrf_token": csrf_token_from(page.text), "months": "1"},
    )
    assert response.status_code == 403
    assert _stored(app).status is SubscriptionStatus.ACTIVE


# -- per-customer rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    "rules", [CustomerRules(billing_only=True), CustomerRules(can_cancel=False, can_pause=False)]
)
def test_rules_hide_the_buttons_and_refuse_the_posts(
    pause_app: Flask, ava: FlaskClient, rules: CustomerRules, mailer: MemoryMailer
) -> None:
    _offer(pause_app, lambda c, s, r: DiscountOffer(percent=10, renewals=1))
    token = _token(ava)
    _rules(pause_app, rules)
    before = _stored(pause_app)
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}")
    assert "/cancel" not in page.text
    assert "/pause" not in page.text
    assert _reason_page(ava).status_code == 403
    assert "Not available for your account" in _reason_page(ava).text
    base = f"/portal/subscriptions/{AVA_SUB}"
    for path, data in (
        ("/cancel/reason", {"reason": "other"}),
        ("/cancel", {"confirm": "yes"}),
        ("/cancel", {"confirm": "yes", "reason": "other"}),
        ("/cancel/offer", {"reason": "too_expensive"}),
        ("/pause", {"months": "1"}),
    ):
        response = ava.post(base + path, data={"csrf_token": token, **data})
        assert response.status_code == 403, path
    assert _stored(pause_app) == before
    assert _events(pause_app) == []
    get_state(pause_app).wait_for_background_tasks()
    assert mailer.outbox == []


def test_resuming_is_allowed_whatever_the_rules(pause_app: Flask, ava: FlaskClient) -> None:
    assert _pause(ava, "1").status_code == 303
    _rules(pause_app, CustomerRules(billing_only=True))
    page = ava.get(f"/portal/subscriptions/{AVA_SUB}")
    assert f'action="/portal/subscriptions/{AVA_SUB}/unpause"' in page.text
    response = ava.post(
        f"/portal/subscriptions/{AVA_SUB}/unpause", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert response.status_code == 303
    assert _stored(pause_app).status is SubscriptionStatus.ACTIVE


# -- the rules every change follows ---------------------------------------------------

_POSTS = {
    "reason": ("/cancel/reason", {"reason": "too_expensive"}),
    "offer": ("/cancel/offer", {"reason": "too_expensive"}),
    "pause": ("/pause", {"months": "1"}),
    "unpause": ("/unpause", {}),
}


@pytest.mark.parametrize("csrf", [None, "", "not-a-token"])
@pytest.mark.parametrize("action", list(_POSTS))
def test_posts_without_a_valid_csrf_token_are_refused(
    pause_app: Flask, ava: FlaskClient, mailer: MemoryMailer, csrf: str | None, action: str
) -> None:
    _offer(pause_app, lambda c, s, r: DiscountOffer(percent=10, renewals=1))
    if action == "unpause":
        assert _pause(ava, "1").status_code == 303
        get_state(pause_app).wait_for_background_tasks()
        mailer.clear()
    before = _stored(pause_app)
    events = _events(pause_app)
    path, data = _POSTS[action]
    if csrf is not None:
        data = {**data, "csrf_token": csrf}
    response = ava.post(f"/portal/subscriptions/{AVA_SUB}{path}", data=data)
    assert response.status_code == 400
    assert _stored(pause_app) == before
    assert _events(pause_app) == events
    get_state(pause_app).wait_for_background_tasks()
    assert mailer.outbox == []


@pytest.mark.parametrize("action", ["offer", "pause", "unpause"])
def test_get_is_not_allowed_for_changes(pause_app: Flask, ava: FlaskClient, action: str) -> None:
    path, _data = _POSTS[action]
    assert ava.get(f"/portal/subscriptions/{AVA_SUB}{path}").status_code == 405


def test_another_customers_subscription_is_a_404_everywhere(pause_app: Flask, mailer: MemoryMailer) -> None:
    _offer(pause_app, lambda c, s, r: PauseOffer(months=1))
    budi = pause_app.test_client()
    sign_in(pause_app, budi, BUDI)
    token = _token(budi, "/portal/subscriptions")
    ava_before = _stored(pause_app)
    assert _reason_page(budi, AVA_SUB).status_code == 404
    for path, data in _POSTS.values():
        response = budi.post(f"/portal/subscriptions/{AVA_SUB}{path}", data={"csrf_token": token, **data})
        assert response.status_code == 404, path
    for odd in ("x" * 300, "sub%00x", "..%2Fsub"):
        for path, data in _POSTS.values():
            response = budi.post(f"/portal/subscriptions/{odd}{path}", data={"csrf_token": token, **data})
            assert response.status_code == 404, (odd, path)
    assert _stored(pause_app) == ava_before
    assert _events(pause_app) == []
    get_state(pause_app).wait_for_background_tasks()
    assert mailer.outbox == []


# -- cost ------------------------------------------------------------------------------


def test_the_flow_pages_take_a_fixed_number_of_queries(
    pause_app: Flask, ava: FlaskClient, count_queries: Callable[..., Any]
) -> None:
    _offer(pause_app, lambda c, s, r: DiscountOffer(percent=10, renewals=1))
    with pause_app.app_context():
        engine = pause_app.extensions["sqlalchemy"].engine
    token = _token(ava)
    with count_queries(engine) as page_queries:
        assert ava.get(f"/portal/subscriptions/{AVA_SUB}").status_code == 200
    with count_queries(engine) as reason_queries:
        assert _reason_page(ava).status_code == 200
    with count_queries(engine) as confirm_queries:
        response = ava.post(
            f"/portal/subscriptions/{AVA_SUB}/cancel/reason",
            data={"csrf_token": token, "reason": "too_expensive"},
        )
        assert response.status_code == 200
    # The signed-in customer (one query) and the subscription (one).
    assert page_queries.count <= 3, page_queries.statements
    assert reason_queries.count <= 3, reason_queries.statements
    assert confirm_queries.count <= 3, confirm_queries.statements
    with count_queries(engine) as pause_queries:
        assert _pause(ava, "1").status_code == 303
    # The page for the token, then the pause: lock, update, event, re-read.
    assert pause_queries.count <= 12, pause_queries.statements


def test_subscription_fields_survive_the_round_trip(pause_app: Flask) -> None:
    with pause_app.app_context():
        store = get_state(pause_app).storage
        ava_sub = store.get_subscription(AVA, AVA_SUB)
        assert ava_sub is not None
        copy = replace(
            ava_sub,
            id="sub_copy",
            status=SubscriptionStatus.PAUSED,
            paused_at=ava_sub.current_period_start,
            resumes_at=ava_sub.current_period_end,
            discount_percent=15,
            discount_renewals=3,
            created_at=ava_sub.current_period_start,
        )
        store.add_subscription(copy)  # type: ignore[attr-defined]
        assert store.get_subscription(AVA, "sub_copy") == copy
        listed = {s.id: s for s in store.list_subscriptions(AVA)}
        assert listed["sub_copy"] == copy
