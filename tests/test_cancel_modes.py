"""Cancelling now or at the period's end, the customer's choice where the
merchant allows both (``CUSTOMER_PORTAL_CANCEL_MODES``), and how that key
and ``CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END`` fit together."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, sign_in, stored_subscription

from flask_customer_portal import signals
from flask_customer_portal.config import DEFAULTS, load_config
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.storage import SubscriptionStatus
from flask_customer_portal.testing import MemoryMailer, TestPaymentProvider, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
BUDI_SUB = "sub_demo_budi_sync"
CANCEL = f"/portal/subscriptions/{AVA_SUB}/cancel"
POLICY = "Cancel now and we refund the unused days within 5 working days."
BOTH = ("period_end", "immediately")


def _config(**keys: Any) -> dict[str, Any]:
    return {
        **DEFAULTS,
        "SECRET_KEY": "x" * 40,
        "CUSTOMER_PORTAL_BUSINESS_ID": "biz",
        "CUSTOMER_PORTAL_BASE_URL": "https://shop.example.com",
        **{f"CUSTOMER_PORTAL_{k}": v for k, v in keys.items()},
    }


# -- configuration --------------------------------------------------------------------


def test_by_default_a_cancellation_ends_at_the_period_end_only() -> None:
    config = load_config(_config())
    assert config.cancel_modes == ("period_end",)
    assert config.cancel_at_period_end is True


def test_cancel_at_period_end_false_still_means_immediately() -> None:
    config = load_config(_config(CANCEL_AT_PERIOD_END=False))
    assert config.cancel_modes == ("immediately",)
    assert config.cancel_at_period_end is False


def test_both_modes_put_the_one_cancel_at_period_end_names_first() -> None:
    assert load_config(_config(CANCEL_MODES=BOTH[::-1], REFUND_POLICY=POLICY)).cancel_modes == BOTH
    later_second = load_config(_config(CANCEL_MODES=BOTH, CANCEL_AT_PERIOD_END=False, REFUND_POLICY=POLICY))
    assert later_second.cancel_modes == BOTH[::-1]
    assert later_second.cancel_at_period_end is False


@pytest.mark.parametrize(
    ("keys", "key", "message"),
    [
        ({"CANCEL_MODES": "period_end"}, "CUSTOMER_PORTAL_CANCEL_MODES", "non-empty list"),
        ({"CANCEL_MODES": ()}, "CUSTOMER_PORTAL_CANCEL_MODES", "non-empty list"),
        ({"CANCEL_MODES": ("later",)}, "CUSTOMER_PORTAL_CANCEL_MODES", "unknown mode 'later'"),
        ({"CANCEL_MODES": ("immediately", "immediately")}, "CUSTOMER_PORTAL_CANCEL_MODES", "twice"),
        (
            {"CANCEL_MODES": ("period_end",), "CANCEL_AT_PERIOD_END": False},
            "CUSTOMER_PORTAL_CANCEL_MODES",
            "CANCEL_AT_PERIOD_END = False",
        ),
        ({"CANCEL_AT_PERIOD_END": "false"}, "CUSTOMER_PORTAL_CANCEL_AT_PERIOD_END", "True or False"),
        ({"CANCEL_MODES": BOTH}, "CUSTOMER_PORTAL_REFUND_POLICY", "what a customer who cancels now gets"),
        ({"CANCEL_MODES": BOTH, "REFUND_POLICY": "  "}, "CUSTOMER_PORTAL_REFUND_POLICY", "empty"),
        ({"CANCEL_MODES": BOTH, "REFUND_POLICY": {"id": "Tidak"}}, "CUSTOMER_PORTAL_REFUND_POLICY", "'en'"),
        ({"REFUND_POLICY": 5}, "CUSTOMER_PORTAL_REFUND_POLICY", "a text"),
    ],
)
def test_contradictory_or_unknown_settings_are_refused(keys: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_config(_config(**keys))
    assert error.value.key == key
    assert message in str(error.value)


# -- the confirmation -------------------------------------------------------------------


def _app(tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider, **keys: Any) -> Flask:
    return make_portal_app(
        f"sqlite:///{tmp_path / 'modes.db'}",
        mailer=mailer,
        payments=payments,
        **{f"CUSTOMER_PORTAL_{k}": v for k, v in keys.items()},
    )


@pytest.fixture
def both(tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider) -> Iterator[Flask]:
    app = _app(
        tmp_path,
        mailer,
        payments,
        CANCEL_MODES=BOTH,
        REFUND_POLICY={"en": POLICY, "id": "Batalkan sekarang dan kami kembalikan sisa hari."},
    )
    yield app
    close_app(app)


@pytest.fixture
def ava(both: Flask) -> FlaskClient:
    client = both.test_client()
    sign_in(both, client, AVA)
    return client


def _confirm(client: FlaskClient, **fields: str) -> Any:
    token = csrf_token_from(client.get(f"/portal/subscriptions/{AVA_SUB}").text)
    return client.post(CANCEL, data={"csrf_token": token, **fields})


def test_the_confirmation_offers_both_and_says_what_each_means(ava: FlaskClient) -> None:
    page = _confirm(ava)
    assert page.status_code == 200
    assert 'name="when" id="cancel-when-period_end" value="period_end"' in page.text
    assert 'name="when" id="cancel-when-immediately" value="immediately"' in page.text
    assert "You keep access until then and will not be charged again." in page.text
    assert "Your access ends at once and you will not be charged again. This cannot be undone." in page.text
    assert POLICY in page.text
    assert " checked" not in page.text.split('name="when"', 1)[1].split("</fieldset>")[0]


def test_confirming_without_a_choice_cancels_nothing(both: Flask, ava: FlaskClient) -> None:
    page = _confirm(ava, confirm="yes")
    assert page.status_code == 422
    assert "Choose when the subscription ends." in page.text
    assert stored_subscription(both, AVA, AVA_SUB).cancelled_at is None


def test_an_unknown_choice_cancels_nothing(both: Flask, ava: FlaskClient) -> None:
    page = _confirm(ava, confirm="yes", when="yesterday")
    assert page.status_code == 422
    assert stored_subscription(both, AVA, AVA_SUB).cancelled_at is None


def test_choosing_now_ends_it_now(both: Flask, ava: FlaskClient) -> None:
    seen: list[bool] = []

    def listener(sender: Any, **kw: Any) -> None:
        seen.append(kw["at_period_end"])

    with signals.subscription_cancelled.connected_to(listener):
        response = _confirm(ava, confirm="yes", when="immediately")
    assert response.status_code == 303
    after = stored_subscription(both, AVA, AVA_SUB)
    assert after.status is SubscriptionStatus.CANCELLED
    assert seen == [False]


def test_choosing_the_period_end_keeps_it_until_then(both: Flask, ava: FlaskClient) -> None:
    response = _confirm(ava, confirm="yes", when="period_end")
    assert response.status_code == 303
    after = stored_subscription(both, AVA, AVA_SUB)
    assert (after.status, after.cancel_at_period_end) == (SubscriptionStatus.ACTIVE, True)


def test_the_refund_policy_is_in_the_customers_language(both: Flask) -> None:
    client = both.test_client()
    sign_in(both, client, "cus_demo_budi")
    token = csrf_token_from(client.get(f"/portal/subscriptions/{BUDI_SUB}").text)
    page = client.post(f"/portal/subscriptions/{BUDI_SUB}/cancel", data={"csrf_token": token})
    # Budi's subscription is on hold: it can only end now, so there is no choice.
    assert 'name="when"' not in page.text
    assert "Batalkan sekarang dan kami kembalikan sisa hari." in page.text


def test_only_immediately_needs_no_choice(
    tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider
) -> None:
    app = _app(tmp_path, mailer, payments, CANCEL_MODES=("immediately",))
    try:
        client = app.test_client()
        sign_in(app, client, AVA)
        page = _confirm(client)
        assert 'name="when"' not in page.text
        assert "Your subscription will end immediately" in page.text
        assert _confirm(client, confirm="yes").status_code == 303
        assert stored_subscription(app, AVA, AVA_SUB).status is SubscriptionStatus.CANCELLED
    finally:
        close_app(app)


def test_a_mode_the_merchant_does_not_allow_is_refused(
    tmp_path: Path, mailer: MemoryMailer, payments: TestPaymentProvider
) -> None:
    app = _app(tmp_path, mailer, payments)  # period end only
    try:
        client = app.test_client()
        sign_in(app, client, AVA)
        assert _confirm(client, confirm="yes", when="immediately").status_code == 400
        assert stored_subscription(app, AVA, AVA_SUB).cancelled_at is None
        assert _confirm(client, confirm="yes").status_code == 303
        assert stored_subscription(app, AVA, AVA_SUB).cancel_at_period_end is True
    finally:
        close_app(app)
