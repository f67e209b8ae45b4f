"""Cancelling a trial where the merchant allows both ways to end
(``CUSTOMER_PORTAL_CANCEL_MODES``): the choice offered, and the one made,
are what happens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from portal_fixtures import sign_in, stored_subscription

from flask_customer_portal.i18n import gettext
from flask_customer_portal.storage import SubscriptionStatus
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

DEWI = "cus_demo_dewi"
DEWI_TRIAL = "sub_demo_dewi_desktop"
POLICY = "Cancel now and we refund the unused days within 5 working days."
BOTH = ("period_end", "immediately")

AppFactory = Callable[..., Flask]


# -- a trial, where the merchant allows both ways to end -----------------------------------


@pytest.fixture
def both(make_app: AppFactory, mailer: MemoryMailer, payments: TestPaymentProvider) -> Flask:
    return make_app(
        mailer=mailer,
        payments=payments,
        CUSTOMER_PORTAL_CANCEL_MODES=BOTH,
        CUSTOMER_PORTAL_REFUND_POLICY=POLICY,
    )


@pytest.fixture
def dewi(both: Flask) -> FlaskClient:
    client = both.test_client()
    sign_in(both, client, DEWI)
    return client


def _cancel(client: FlaskClient, **fields: str) -> Any:
    token = csrf_token_from(client.get(f"/portal/subscriptions/{DEWI_TRIAL}").text)
    return client.post(f"/portal/subscriptions/{DEWI_TRIAL}/cancel", data={"csrf_token": token, **fields})


def test_a_trial_is_cancelled_the_way_its_confirmation_said(both: Flask, dewi: FlaskClient) -> None:
    """Whatever the confirmation tells the customer about a trial's end is
    what cancelling does: never "ends immediately" on the page and a trial
    that runs on in the store."""
    page = _cancel(dewi)
    assert page.status_code == 200
    if 'name="when"' in page.text:
        # A choice: the trial's end is one of them, and each does what it says.
        assert 'value="period_end"' in page.text and 'value="immediately"' in page.text
        assert "At the end of the free trial, on" in page.text
        assert "At the end of the paid period" not in page.text  # nothing was paid for
        assert _cancel(dewi, confirm="yes", when="period_end").status_code == 303
        kept = stored_subscription(both, DEWI, DEWI_TRIAL)
        assert (kept.status, kept.cancel_at_period_end) == (SubscriptionStatus.TRIALING, True)
        return
    said_now = "Your free trial ends immediately" in page.text
    assert _cancel(dewi, confirm="yes").status_code == 303
    after = stored_subscription(both, DEWI, DEWI_TRIAL)
    assert (after.status is SubscriptionStatus.CANCELLED) is said_now, (said_now, after)


def test_a_trial_can_be_ended_now_when_the_merchant_allows_it(
    both: Flask, dewi: FlaskClient, payments: TestPaymentProvider
) -> None:
    assert _cancel(dewi, confirm="yes", when="immediately").status_code == 303
    after = stored_subscription(both, DEWI, DEWI_TRIAL)
    assert after.status is SubscriptionStatus.CANCELLED and after.ended_at is not None
    assert not payments.charges


def test_the_trials_choice_in_indonesian(both: Flask) -> None:
    with both.test_request_context(), force_locale("id"):
        assert gettext("At the end of the free trial, on %(date)s", date="1") == (
            "Di akhir masa uji coba gratis, pada 1"
        )
