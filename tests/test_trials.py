"""Free trials: the trial's end and first charge shown, cancelling during the
trial without a charge, and the first period charged when the trial ends
(``active`` when paid, ``on_hold`` when declined)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from factories import subscription
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import portal_store, sign_in, stored_subscription
from stripe_support import NOW as STRIPE_NOW
from stripe_support import RecordedStripe, ScriptedStripe, stripe_client

from flask_customer_portal.billing.lifecycle import describe
from flask_customer_portal.billing.renewal import RenewalOutcome, renew_due, renew_subscription
from flask_customer_portal.billing.trials import (
    charge_at_trial_end,
    renews_when_due,
    status_after_payment,
    trial_summary,
)
from flask_customer_portal.contrib.stripe import StripeBillingStore
from flask_customer_portal.contrib.stripe._convert import subscription_status
from flask_customer_portal.money import Money
from flask_customer_portal.payments import DeclineReason, TestPaymentProvider
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import InvoiceStatus, PaymentMethod, SubscriptionStatus
from flask_customer_portal.testing import csrf_token_from

CHEN = "cus_demo_chen"
TRIAL = "sub_trial_chen"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
TRIAL_END = NOW + timedelta(days=10)


# -- the rules ---------------------------------------------------------------------------


def test_stripe_trialing_is_its_own_status() -> None:
    assert subscription_status("trialing") is SubscriptionStatus.TRIALING
    assert subscription_status("active") is SubscriptionStatus.ACTIVE


def test_a_trial_shows_its_end_not_a_renewal() -> None:
    trial = subscription("sub_t", status=SubscriptionStatus.TRIALING, current_period_end=TRIAL_END)
    view = describe(trial, NOW)
    assert view.status is SubscriptionStatus.TRIALING
    assert view.trial_ends_at == TRIAL_END and view.renews_at is None
    assert view.can_cancel and view.is_current
    assert view.trial is not None and view.trial.charge == Money(1999, "USD")
    assert not view.trial.ends_subscription


def test_a_trial_cancelled_at_its_end_charges_nothing_and_can_be_kept() -> None:
    trial = subscription(
        "sub_t", status=SubscriptionStatus.TRIALING, current_period_end=TRIAL_END, cancel_at_period_end=True
    )
    view = describe(trial, NOW)
    assert view.status is SubscriptionStatus.TRIALING and view.ends_at == TRIAL_END and view.can_undo
    assert view.trial is not None and view.trial.ends_subscription and view.trial.charge == Money(0, "USD")
    assert describe(trial, TRIAL_END).status is SubscriptionStatus.CANCELLED


def test_the_first_charge_takes_discount_then_credit() -> None:
    trial = subscription(
        "sub_t", status=SubscriptionStatus.TRIALING, discount_percent=25, discount_renewals=1
    )
    assert charge_at_trial_end(trial) == Money(1999 - 500, "USD")
    assert charge_at_trial_end(replace(trial, credit=499)) == Money(1000, "USD")
    assert charge_at_trial_end(replace(trial, credit=10_000)) == Money(0, "USD")


def test_only_running_subscriptions_renew_when_due() -> None:
    for status, expected in [
        (SubscriptionStatus.TRIALING, True),
        (SubscriptionStatus.ACTIVE, True),
        (SubscriptionStatus.ON_HOLD, False),
        (SubscriptionStatus.PAUSED, False),
        (SubscriptionStatus.CANCELLED, False),
    ]:
        s = subscription("sub_t", status=status, current_period_end=NOW)
        assert renews_when_due(s, NOW) is expected, status
        assert renews_when_due(s, NOW - timedelta(seconds=1)) is False
    assert (
        status_after_payment(subscription("a", status=SubscriptionStatus.TRIALING))
        is SubscriptionStatus.ACTIVE
    )
    assert status_after_payment(subscription("a")) is None
    assert trial_summary(subscription("a")) is None


# -- with the store ----------------------------------------------------------------------


def _card(
    app: Flask, number: str = "4242424242424242", decline: DeclineReason | None = None
) -> PaymentMethod:
    token = (
        TestPaymentProvider.token_for(number, charges_decline=decline)
        if decline
        else TestPaymentProvider.token_for(number)
    )
    with app.app_context():
        return portal_store(app).add_payment_method(
            PaymentMethod(
                id="pm_chen",
                customer_id=CHEN,
                brand="visa",
                last4=number[-4:],
                exp_month=12,
                exp_year=NOW.year + 3,
                provider_token=token,
            )
        )


def _start_trial(app: Flask, method: PaymentMethod) -> None:
    with app.app_context():
        portal_store(app).add_subscription(
            subscription(
                TRIAL,
                CHEN,
                status=SubscriptionStatus.TRIALING,
                current_period_start=NOW - timedelta(days=4),
                current_period_end=TRIAL_END,
                created_at=NOW - timedelta(days=4),
                payment_method=method,
            )
        )


def _invoices(app: Flask) -> list[tuple[str, InvoiceStatus, int]]:
    with app.app_context():
        page = portal_store(app).list_invoices(CHEN, page=1, per_page=100)
    return [(i.id, i.status, i.total) for i in page.items]


def test_the_trials_end_charges_the_first_period(app: Flask, payments: TestPaymentProvider) -> None:
    _start_trial(app, _card(app))
    with app.app_context():
        state = get_state(app)
        early = renew_subscription(state, CHEN, TRIAL, now=TRIAL_END - timedelta(seconds=1))
        assert early.outcome is RenewalOutcome.SKIPPED
        assert _invoices(app) == []
        result = renew_due(state, now=TRIAL_END + timedelta(minutes=1))
    assert [r.outcome for r in result.results if r.subscription.id == TRIAL] == [RenewalOutcome.RENEWED]
    after = stored_subscription(app, CHEN, TRIAL)
    assert after.status is SubscriptionStatus.ACTIVE
    assert after.current_period_start == TRIAL_END
    assert after.current_period_end > TRIAL_END + timedelta(days=27)
    [(invoice_id, status, total)] = _invoices(app)
    assert (status, total) == (InvoiceStatus.PAID, 1999)
    assert [m for k, m in payments.charges if invoice_id in k] == [Money(1999, "USD")]


def test_a_declined_first_charge_puts_it_on_hold(app: Flask) -> None:
    _start_trial(app, _card(app, "4000000000000002", DeclineReason.GENERIC))
    with app.app_context():
        result = renew_subscription(get_state(app), CHEN, TRIAL, now=TRIAL_END)
    assert result.outcome is RenewalOutcome.ON_HOLD
    assert stored_subscription(app, CHEN, TRIAL).status is SubscriptionStatus.ON_HOLD
    [(_, status, total)] = _invoices(app)
    assert (status, total) == (InvoiceStatus.OPEN, 1999)


@pytest.fixture
def chen(app: Flask, client: FlaskClient) -> FlaskClient:
    _start_trial(app, _card(app))
    sign_in(app, client, CHEN)
    return client


def test_the_page_shows_the_trial_end_and_the_first_charge(chen: FlaskClient) -> None:
    page = chen.get(f"/portal/subscriptions/{TRIAL}").text
    assert "Free trial until" in page and "$19.99" in page
    assert "badge-trialing" in page and "Renews on" not in page
    assert "Trial ends on" in chen.get("/portal/subscriptions").text


def test_the_page_in_indonesian(chen: FlaskClient) -> None:
    page = chen.get(f"/portal/subscriptions/{TRIAL}", headers={"Accept-Language": "id"}).text
    assert "Uji coba gratis hingga" in page and "Free trial until" not in page


def test_cancelling_during_the_trial_charges_nothing(
    app: Flask, chen: FlaskClient, payments: TestPaymentProvider
) -> None:
    path = f"/portal/subscriptions/{TRIAL}/cancel"
    token = csrf_token_from(chen.get(f"/portal/subscriptions/{TRIAL}").text)
    confirm = chen.post(path, data={"csrf_token": token})
    assert "Your free trial ends on" in confirm.text and "you will not be charged" in confirm.text
    done = chen.post(path, data={"csrf_token": token, "confirm": "yes"})
    assert done.status_code in (200, 303)
    cancelled = stored_subscription(app, CHEN, TRIAL)
    assert cancelled.cancel_at_period_end and cancelled.status is SubscriptionStatus.TRIALING
    page = chen.get(f"/portal/subscriptions/{TRIAL}").text
    assert "you will not be charged" in page
    charged = len(payments.charges)
    with app.app_context():
        result = renew_subscription(get_state(app), CHEN, TRIAL, now=TRIAL_END)
    assert result.outcome is RenewalOutcome.ENDED
    assert stored_subscription(app, CHEN, TRIAL).status is SubscriptionStatus.CANCELLED
    assert _invoices(app) == []
    assert len(payments.charges) == charged


# -- over Stripe (recorded responses) ---------------------------------------------------
#
# localstripe has no trials (a subscription created with ``trial_end`` stays
# ``incomplete`` there, its period unchanged), so Stripe's trialing
# subscription is served as recorded responses: ``status: trialing``, its
# items' period ending with ``trial_end``, as Stripe sends it.


def test_a_stripe_trial_is_trialing_with_its_end(recorded_stripe: RecordedStripe) -> None:
    scripted = ScriptedStripe(recorded_stripe)
    trial_end = STRIPE_NOW + 7 * 86400
    scripted.subscription["status"] = "trialing"
    scripted.subscription["trial_start"] = STRIPE_NOW - 86400
    scripted.subscription["trial_end"] = trial_end
    item = scripted.subscription["items"]["data"][0]
    item["current_period_start"] = STRIPE_NOW - 86400
    item["current_period_end"] = trial_end
    found = StripeBillingStore(stripe_client(recorded_stripe.url)).get_subscription("cus_R", "sub_R")
    assert found is not None and found.status is SubscriptionStatus.TRIALING
    assert int(found.current_period_end.timestamp()) == trial_end
    view = describe(found, datetime.fromtimestamp(STRIPE_NOW, tz=timezone.utc))
    assert view.trial is not None and view.trial.ends_at == found.current_period_end
    assert view.trial.charge == found.price and view.can_cancel
