"""A promotion code entered on a subscription's page: it becomes the
discount of the next renewals (once, repeating, forever), shows in the next
invoice at once, is used once per customer under the subscription lock
(two tabs, two servers), and is refused with the plan change's answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from portal_fixtures import AVA_PLAN_URL, close_app, make_portal_app, portal_store, sign_in

from flask_customer_portal.billing.promotions import FOREVER_RENEWALS, CodeRefusal, refusal_message
from flask_customer_portal.billing.renewal import renew_subscription
from flask_customer_portal.billing.subscription_codes import renewals_on_subscription
from flask_customer_portal.i18n import gettext
from flask_customer_portal.money import Money
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import PromotionCode, PromotionDuration, Subscription
from flask_customer_portal.testing import csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
URL = f"/portal/subscriptions/{AVA_SUB}"
POST_URL = f"{URL}/promotion-code"
INVALID = "This code is not valid. Check it and try again."


def _add(app: Flask, code: PromotionCode) -> None:
    with app.app_context():
        portal_store(app).add_promotion_code(code)


def _apply(client: FlaskClient, code: str, url: str = URL) -> object:
    token = csrf_token_from(client.get(url).text)
    return client.post(f"{url}/promotion-code", data={"csrf_token": token, "promotion_code": code})


def _sub(app: Flask, customer_id: str = AVA, subscription_id: str = AVA_SUB) -> Subscription:
    with app.app_context():
        found = get_state(app).storage.get_subscription(customer_id, subscription_id)
    assert found is not None
    return found


def _error(page: str) -> str:
    return page.split('id="promotion-code-error">')[1].split("<")[0]


def test_how_many_renewals_a_code_takes_off_on_a_subscription() -> None:
    assert renewals_on_subscription(PromotionCode("A", percent_off=10)) == 1
    three = PromotionCode("B", percent_off=10, duration=PromotionDuration.REPEATING, duration_periods=3)
    assert renewals_on_subscription(three) == 3
    forever = PromotionCode("C", percent_off=10, duration=PromotionDuration.FOREVER)
    assert renewals_on_subscription(forever) == FOREVER_RENEWALS
    assert renewals_on_subscription(PromotionCode("D", amount_off=Money(100, "USD"))) == 0


def test_the_page_asks_for_a_code(ava_client: FlaskClient) -> None:
    page = ava_client.get(URL).text
    assert f'action="{POST_URL}"' in page
    assert 'name="promotion_code"' in page and "Have a promotion code?" in page


def test_a_code_is_the_next_renewals_discount_at_once_and_used_once(
    app: Flask, ava_client: FlaskClient
) -> None:
    before = _sub(app)
    assert (before.discount_percent, before.discount_renewals) == (0, 0)
    done = _apply(ava_client, " welcome10 ")
    assert done.status_code == 303 and done.headers["Location"].endswith(URL)  # type: ignore[attr-defined]
    after = _sub(app)
    assert (after.discount_percent, after.discount_renewals) == (10, 1)
    page = ava_client.get(URL).text
    assert "Promotion code WELCOME10 added." in page
    off = (after.price.amount * 10 + 50) // 100
    assert "Discount: 10% off your next renewal" in page
    assert f"\u2212${off / 100:.2f}" in page
    # One discount at a time: the field gives way to why.
    assert 'name="promotion_code"' not in page
    assert "This subscription already has a discount." in page
    with app.app_context():
        store = portal_store(app)
        assert store.promotion_redeemed(AVA, "WELCOME10")
        assert store.promotion_times_redeemed("WELCOME10") == 1
        events = store.list_customer_events(AVA, page=1, per_page=50).items
        applied = [e for e in events if e.action == "subscription.promotion_code_applied"]
        assert [(e.subject_id, e.details["code"], e.details["renewals"]) for e in applied] == [
            (AVA_SUB, "WELCOME10", "1")
        ]
        result = renew_subscription(get_state(app), AVA, AVA_SUB, now=after.current_period_end)
    assert result.invoice is not None
    assert result.invoice.total == after.price.amount - off
    renewed = _sub(app)
    assert (renewed.discount_percent, renewed.discount_renewals) == (0, 0)
    # Used: refused now, at a plan change too.
    again = _apply(ava_client, "WELCOME10")
    assert again.status_code == 422 and _error(again.text) == "You have already used this code."  # type: ignore[attr-defined]
    token = csrf_token_from(ava_client.get(AVA_PLAN_URL).text)
    preview = ava_client.post(
        AVA_PLAN_URL,
        data={
            "csrf_token": token,
            "step": "preview",
            "plan": "plan_sync_business_monthly",
            "promotion_code": "WELCOME10",
        },
    )
    assert preview.status_code == 422 and "You have already used this code." in preview.text


@pytest.mark.parametrize(
    ("code", "renewals"),
    [
        (PromotionCode("THREE", percent_off=20, duration=PromotionDuration.REPEATING, duration_periods=3), 3),
        (PromotionCode("ALWAYS", percent_off=15, duration=PromotionDuration.FOREVER), FOREVER_RENEWALS),
    ],
)
def test_repeating_and_forever_codes_last_their_renewals(
    app: Flask, ava_client: FlaskClient, code: PromotionCode, renewals: int
) -> None:
    _add(app, code)
    assert _apply(ava_client, code.code).status_code == 303  # type: ignore[attr-defined]
    after = _sub(app)
    assert (after.discount_percent, after.discount_renewals) == (code.percent_off, renewals)


def test_unknown_expired_withdrawn_and_used_up_codes_get_one_answer(
    app: Flask, ava_client: FlaskClient
) -> None:
    past = datetime.now(timezone.utc) - timedelta(days=1)
    _add(app, PromotionCode("EXPIRED", percent_off=10, expires_at=past))
    _add(app, PromotionCode("WITHDRAWN", percent_off=10, active=False))
    used_up = PromotionCode("USEDUP", percent_off=10, max_redemptions=1)
    _add(app, used_up)
    with app.app_context():
        store = portal_store(app)
        dewi_sub = "sub_demo_dewi_sync"
        with store.lock_subscription("cus_demo_dewi", dewi_sub) as lock:
            assert lock is not None
            from flask_customer_portal.storage import PromotionRedemption

            assert lock.redeem_promotion(
                used_up, PromotionRedemption("USEDUP", "cus_demo_dewi", dewi_sub, datetime.now(timezone.utc))
            )
    answers = set()
    for code in ("NOSUCHCODE", "EXPIRED", "WITHDRAWN", "USEDUP", "<script>"):
        page = _apply(ava_client, code)
        assert page.status_code == 422  # type: ignore[attr-defined]
        answers.add(_error(page.text))  # type: ignore[attr-defined]
    assert answers == {INVALID}
    assert (_sub(app).discount_percent, _sub(app).discount_renewals) == (0, 0)


def test_plan_restrictions_amounts_and_an_empty_field(app: Flask, ava_client: FlaskClient) -> None:
    _add(app, PromotionCode("TEAMONLY", percent_off=10, plan_ids=frozenset({"plan_sync_team_monthly"})))
    _add(app, PromotionCode("PROONLY", percent_off=25, plan_ids=frozenset({"plan_sync_pro_monthly"})))
    _add(app, PromotionCode("FIVE", amount_off=Money(500, "USD")))
    page = _apply(ava_client, "TEAMONLY")
    assert page.status_code == 422 and _error(page.text) == "This code does not apply to this plan."  # type: ignore[attr-defined]
    page = _apply(ava_client, "FIVE")
    assert page.status_code == 422  # type: ignore[attr-defined]
    assert _error(page.text) == "This code can only be used when you change plan."  # type: ignore[attr-defined]
    page = _apply(ava_client, "   ")
    assert page.status_code == 422 and _error(page.text) == "Enter a promotion code."  # type: ignore[attr-defined]
    with app.app_context():
        assert portal_store(app).promotion_times_redeemed("FIVE") == 0
    assert _apply(ava_client, "PROONLY").status_code == 303  # type: ignore[attr-defined]
    assert _sub(app).discount_percent == 25


def test_a_subscription_with_a_discount_keeps_it(app: Flask, ava_client: FlaskClient) -> None:
    with app.app_context():
        portal_store(app).set_retention_discount(AVA, AVA_SUB, percent=50, renewals=2)
    token = csrf_token_from(ava_client.get(URL).text)
    page = ava_client.post(POST_URL, data={"csrf_token": token, "promotion_code": "WELCOME10"})
    assert page.status_code == 409
    assert 'role="alert">This subscription already has a discount.' in page.text
    assert (_sub(app).discount_percent, _sub(app).discount_renewals) == (50, 2)
    with app.app_context():
        assert not portal_store(app).promotion_redeemed(AVA, "WELCOME10")


def test_codes_are_rate_limited_per_customer(ava_client: FlaskClient) -> None:
    for n in range(10):
        assert _apply(ava_client, f"GUESS{n}").status_code == 422  # type: ignore[attr-defined]
    page = _apply(ava_client, "WELCOME10")
    assert page.status_code == 422 and _error(page.text) == "Too many codes tried. Try again later."  # type: ignore[attr-defined]


def test_csrf_scoping_and_a_subscription_that_cannot_take_one(app: Flask, ava_client: FlaskClient) -> None:
    assert ava_client.post(POST_URL, data={"promotion_code": "WELCOME10"}).status_code == 400
    token = csrf_token_from(ava_client.get(URL).text)
    other = ava_client.post(
        "/portal/subscriptions/sub_demo_dewi_sync/promotion-code",
        data={"csrf_token": token, "promotion_code": "WELCOME10"},
    )
    assert other.status_code == 404
    with app.app_context():
        store = portal_store(app)
        store.cancel_subscription(AVA, AVA_SUB, at_period_end=True, now=datetime.now(timezone.utc))
    assert 'name="promotion_code"' not in ava_client.get(URL).text
    refused = ava_client.post(POST_URL, data={"csrf_token": token, "promotion_code": "WELCOME10"})
    assert refused.status_code == 409
    assert "A promotion code cannot be added to this subscription now." in refused.text
    with app.app_context():
        assert not portal_store(app).promotion_redeemed(AVA, "WELCOME10")


def test_dewi_uses_welcome10_on_her_trial(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, "cus_demo_dewi")
    url = "/portal/subscriptions/sub_demo_dewi_desktop"
    trial = _sub(app, "cus_demo_dewi", "sub_demo_dewi_desktop")
    assert 'name="promotion_code"' in client.get(url).text
    assert _apply(client, "WELCOME10", url).status_code == 303  # type: ignore[attr-defined]
    page = client.get(url).text
    charged = trial.price.amount - (trial.price.amount * 10 + 50) // 100
    assert f"${charged / 100:.2f} is charged" in page, page


def test_the_answers_in_indonesian(app: Flask) -> None:
    with app.test_request_context(), force_locale("id"):
        assert gettext("Have a promotion code?") == "Punya kode promo?"
        assert (
            refusal_message(CodeRefusal.PLAN_CHANGE_ONLY)
            == "Kode ini hanya bisa dipakai saat mengganti paket."
        )


# -- two tabs, two servers ---------------------------------------------------------------


@pytest.fixture
def two_apps(db_url: str, tmp_path: Path) -> Iterator[list[Flask]]:
    """Two portal apps (two "servers") on one database."""
    url = f"sqlite:///{tmp_path / 'shared.db'}" if db_url.startswith("sqlite") else db_url
    first = make_portal_app(url)
    second = make_portal_app(url, demo_data=False)
    try:
        yield [first, second]
    finally:
        with first.app_context():
            portal_store(first).drop_all()
        close_app(second)
        close_app(first)


def _race(apps: list[Flask], tabs: int) -> list[int]:
    clients = []
    for n in range(tabs):
        app = apps[n % len(apps)]
        client = app.test_client()
        sign_in(app, client, AVA)
        clients.append((client, csrf_token_from(client.get(URL).text)))
    barrier = threading.Barrier(tabs)
    statuses: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def submit(client: FlaskClient, token: str) -> None:
        try:
            barrier.wait(timeout=30)
            response = client.post(POST_URL, data={"csrf_token": token, "promotion_code": "WELCOME10"})
            with guard:
                statuses.append(response.status_code)
        except BaseException as exc:
            with guard:
                errors.append(exc)

    threads = [threading.Thread(target=submit, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return statuses


@pytest.mark.slow
def test_tabs_on_two_apps_use_a_code_once(two_apps: list[Flask]) -> None:
    statuses = _race(two_apps, 6)
    assert sorted(statuses).count(303) == 1 and set(statuses) <= {303, 409, 422}, statuses
    with two_apps[1].app_context():
        store = portal_store(two_apps[1])
        assert store.promotion_times_redeemed("WELCOME10") == 1
        found = store.get_subscription(AVA, AVA_SUB)
        assert found is not None and (found.discount_percent, found.discount_renewals) == (10, 1)
        events = store.list_customer_events(AVA, page=1, per_page=100).items
    assert [e.action for e in events].count("subscription.promotion_code_applied") == 1


def test_a_scheduled_plan_change_is_the_plan_a_restriction_is_checked_against(
    app: Flask, ava_client: FlaskClient
) -> None:
    _add(app, PromotionCode("PROONLY", percent_off=25, plan_ids=frozenset({"plan_sync_pro_monthly"})))
    _add(app, PromotionCode("BASICONLY", percent_off=20, plan_ids=frozenset({"plan_sync_basic_monthly"})))
    with app.app_context():
        portal_store(app).schedule_plan_change(
            AVA, AVA_SUB, plan_id="plan_sync_basic_monthly", quantity=1, now=datetime.now(timezone.utc)
        )
    page = _apply(ava_client, "PROONLY")
    assert page.status_code == 422 and _error(page.text) == "This code does not apply to this plan."  # type: ignore[attr-defined]
    assert _apply(ava_client, "BASICONLY").status_code == 303  # type: ignore[attr-defined]
    assert (_sub(app).discount_percent, _sub(app).discount_renewals) == (20, 1)
