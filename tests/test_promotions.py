"""Promotion codes: the rules, the store (once per customer, ``max_redemptions``
under any race), and a code at a plan change — in the preview, in the charge,
given back when the charge is declined, refused without telling which codes
exist, and rate limited."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from db_support import in_threads
from factories import T0, customer, subscription
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from portal_fixtures import AVA_PLAN_URL, plan_confirm_form, portal_store
from sqlalchemy import func, select

from flask_customer_portal.billing.promotions import (
    FOREVER_RENEWALS,
    CodeRefusal,
    apply_to_proration,
    later_renewals,
    promotion_discount,
    refusal_message,
)
from flask_customer_portal.billing.proration import prorate
from flask_customer_portal.billing.renewal import renew_subscription
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.contrib.sqla.models import PromotionRedemptionModel
from flask_customer_portal.i18n import gettext
from flask_customer_portal.money import Money
from flask_customer_portal.payments import DeclineReason, TestPaymentProvider
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    Customer,
    InvoiceStatus,
    PaymentMethod,
    Plan,
    PromotionCode,
    PromotionDuration,
    PromotionRedemption,
)
from flask_customer_portal.testing import csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"
BUSINESS = "plan_sync_business_monthly"
INVALID = "This code is not valid. Check it and try again."

# -- the rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"percent_off": 10, "amount_off": Money(100, "USD")},
        {"percent_off": 0},
        {"percent_off": 101},
        {"amount_off": Money(0, "USD")},
        {"percent_off": 10, "duration_periods": 0},
        {"percent_off": 10, "max_redemptions": 0},
    ],
)
def test_a_code_takes_one_kind_of_discount_within_bounds(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"percent_off|amount_off|duration_periods|max_redemptions"):
        PromotionCode("X", **kwargs)


def test_a_code_is_compared_stripped_and_upper_case() -> None:
    assert PromotionCode(" welcome10 ", percent_off=10).key == "WELCOME10"


def test_percent_and_amount_off() -> None:
    ten = PromotionCode("TEN", percent_off=10)
    assert promotion_discount(ten, Money(1999, "USD")) == 200  # 199.9 rounded half up
    five = PromotionCode("FIVE", amount_off=Money(500, "USD"))
    assert promotion_discount(five, Money(1999, "USD")) == 500
    assert promotion_discount(five, Money(300, "USD")) == 300  # never more than the charge
    assert promotion_discount(five, Money(1999, "EUR")) == 0  # another currency
    assert promotion_discount(ten, Money(0, "USD")) == 0


def test_a_code_comes_off_before_account_credit() -> None:
    plan = Plan("p_big", "Pro", "Big", Money(5000, "USD"), "month")
    sub = subscription("s", credit=700, current_period_end=T0 + timedelta(days=30))
    plain = prorate(sub, plan, 1, T0)
    discounted, off = apply_to_proration(plain, PromotionCode("HALF", percent_off=50))
    net = plain.new_charge - plain.unused
    assert off == (net + 1) // 2
    assert discounted.credit_used == 700 and discounted.due_now == net - off - 700
    assert discounted.credit_after == 0
    assert apply_to_proration(plain, None) == (plain, 0)


# -- the store ---------------------------------------------------------------------------


def _redemption(customer_id: str, subscription_id: str, code: str = "WELCOME10") -> PromotionRedemption:
    return PromotionRedemption(code, customer_id, subscription_id, T0)


def _redeem(store: SQLAlchemyStorage, code: PromotionCode, customer_id: str, subscription_id: str) -> bool:
    with store.lock_subscription(customer_id, subscription_id) as lock:
        assert lock is not None
        return lock.redeem_promotion(code, _redemption(customer_id, subscription_id, code.key))


@pytest.fixture
def promo_store(store: SQLAlchemyStorage) -> SQLAlchemyStorage:
    for n in range(4):
        store.add_customer(customer(f"cus_{n}"))
        store.add_subscription(subscription(f"sub_{n}a", f"cus_{n}"))
        store.add_subscription(subscription(f"sub_{n}b", f"cus_{n}"))
    return store


def test_the_store_keeps_codes_and_finds_them_whatever_the_case(promo_store: SQLAlchemyStorage) -> None:
    code = PromotionCode(
        "Welcome10",
        percent_off=10,
        duration=PromotionDuration.REPEATING,
        duration_periods=3,
        expires_at=T0 + timedelta(days=30),
        plan_ids=frozenset({"plan_a", "plan_b"}),
        max_redemptions=100,
    )
    promo_store.add_promotion_code(code)
    found = promo_store.get_promotion_code("welcome10")
    assert found is not None and found.key == "WELCOME10"
    assert (
        found.percent_off,
        found.duration,
        found.duration_periods,
        found.plan_ids,
        found.max_redemptions,
    ) == (
        10,
        PromotionDuration.REPEATING,
        3,
        frozenset({"plan_a", "plan_b"}),
        100,
    )
    assert found.expires_at == code.expires_at
    five = promo_store.add_promotion_code(PromotionCode("FIVE", amount_off=Money(500, "IDR")))
    assert five.amount_off == Money(500, "IDR") and five.percent_off is None
    assert promo_store.get_promotion_code("nope") is None


def test_a_customer_uses_a_code_once_and_can_be_given_it_back(promo_store: SQLAlchemyStorage) -> None:
    code = promo_store.add_promotion_code(PromotionCode("WELCOME10", percent_off=10))
    assert _redeem(promo_store, code, "cus_0", "sub_0a")
    assert not _redeem(promo_store, code, "cus_0", "sub_0b")  # another subscription, same customer
    assert promo_store.promotion_redeemed("cus_0", "welcome10")
    assert not promo_store.promotion_redeemed("cus_1", "WELCOME10")
    assert promo_store.promotion_times_redeemed("WELCOME10") == 1
    with promo_store.lock_subscription("cus_0", "sub_0a") as lock:
        assert lock is not None
        lock.release_promotion("cus_0", "WELCOME10")
    assert not promo_store.promotion_redeemed("cus_0", "WELCOME10")
    assert promo_store.promotion_times_redeemed("WELCOME10") == 0
    assert _redeem(promo_store, code, "cus_0", "sub_0b")


def test_max_redemptions_counts_customers(promo_store: SQLAlchemyStorage) -> None:
    code = promo_store.add_promotion_code(PromotionCode("TWO", percent_off=10, max_redemptions=2))
    assert [_redeem(promo_store, code, f"cus_{n}", f"sub_{n}a") for n in range(4)] == [
        True,
        True,
        False,
        False,
    ]
    assert promo_store.promotion_times_redeemed("TWO") == 2
    assert not promo_store.promotion_redeemed("cus_2", "TWO")


def test_a_loaders_code_gets_a_row_that_counts_it(promo_store: SQLAlchemyStorage) -> None:
    code = PromotionCode("HOOKED", amount_off=Money(100, "USD"), max_redemptions=1)
    assert _redeem(promo_store, code, "cus_0", "sub_0a")
    assert not _redeem(promo_store, code, "cus_1", "sub_1a")
    assert promo_store.promotion_times_redeemed("HOOKED") == 1


def _redemptions(store_app: Flask, code: str) -> int:
    with store_app.app_context():
        session = get_session(store_app)
        return int(session.scalar(select(func.count()).where(PromotionRedemptionModel.code == code)) or 0)


def get_session(app: Flask) -> Any:
    return app.extensions["sqlalchemy"].session


def test_racing_for_the_last_use_one_customer_gets_it(
    store_app: Flask, promo_store: SQLAlchemyStorage
) -> None:
    code = promo_store.add_promotion_code(PromotionCode("LAST", percent_off=10, max_redemptions=1))
    turn = iter(range(4))
    seats = {n: (f"cus_{n}", f"sub_{n}a") for n in range(4)}

    def work() -> bool:
        customer_id, subscription_id = seats[next(turn)]
        return _redeem(
            SQLAlchemyStorage(store_app.extensions["sqlalchemy"]), code, customer_id, subscription_id
        )

    assert sorted(in_threads(store_app, 4, work)) == [False, False, False, True]
    assert promo_store.promotion_times_redeemed("LAST") == 1
    assert _redemptions(store_app, "LAST") == 1


def test_one_customer_racing_from_two_subscriptions_uses_it_once(
    store_app: Flask, promo_store: SQLAlchemyStorage
) -> None:
    code = promo_store.add_promotion_code(PromotionCode("ONCE", percent_off=10))
    subscriptions = iter(["sub_0a", "sub_0b"])

    def work() -> bool:
        return _redeem(
            SQLAlchemyStorage(store_app.extensions["sqlalchemy"]), code, "cus_0", next(subscriptions)
        )

    assert sorted(in_threads(store_app, 2, work)) == [False, True]
    assert promo_store.promotion_times_redeemed("ONCE") == 1
    assert _redemptions(store_app, "ONCE") == 1


# -- at a plan change --------------------------------------------------------------------


def _plan_form(client: FlaskClient, code: str, plan: str = BUSINESS) -> Any:
    token = csrf_token_from(client.get(AVA_PLAN_URL).text)
    return client.post(
        AVA_PLAN_URL, data={"csrf_token": token, "step": "preview", "plan": plan, "promotion_code": code}
    )


def _due(page: str) -> str:
    found = re.search(r"Due now</th><td class=\"num\"><strong>([^<]+)</strong>", page)
    assert found, page
    return found.group(1)


def _add(app: Flask, code: PromotionCode) -> None:
    with app.app_context():
        portal_store(app).add_promotion_code(code)


def test_the_plan_page_asks_for_a_code(ava_client: FlaskClient) -> None:
    page = ava_client.get(AVA_PLAN_URL).text
    assert 'name="promotion_code"' in page and "Promotion code" in page


def test_a_code_is_in_the_preview_and_the_charge_and_used_once(
    app: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    _add(app, PromotionCode("WELCOME10", percent_off=10))
    plain = _due(_plan_form(ava_client, "").text)
    preview = _plan_form(ava_client, " welcome10 ")
    assert preview.status_code == 200, preview.text
    assert "Promotion code WELCOME10" in preview.text
    assert _due(preview.text) != plain
    form = plan_confirm_form(preview.text)
    assert "promotion_code" not in form  # the signed quote carries it
    done = ava_client.post(AVA_PLAN_URL, data=form)
    assert done.status_code == 303, done.text
    with app.app_context():
        store = portal_store(app)
        assert store.promotion_redeemed(AVA, "WELCOME10")
        invoices = [
            i
            for i in store.list_invoices(AVA, page=1, per_page=100).items
            if "plan change" in (i.description or "")
        ]
        invoice = store.get_invoice(AVA, invoices[0].id)
    assert invoice is not None and invoice.status is InvoiceStatus.PAID
    assert any(line.description == "Promotion code WELCOME10 (10% off)" for line in invoice.lines)
    assert sum(line.amount for line in invoice.lines) == invoice.total
    assert [m for k, m in payments.charges if invoice.id in k] == [invoice.total_money]
    # The same confirmation again charges nothing more; a new preview says it was used.
    again = ava_client.post(AVA_PLAN_URL, data=form)
    assert again.status_code in (303, 409)
    assert [m for k, m in payments.charges if invoice.id in k] == [invoice.total_money]


def test_a_used_code_is_refused_next_to_the_field(app: Flask, ava_client: FlaskClient) -> None:
    code = PromotionCode("WELCOME10", percent_off=10)
    _add(app, code)
    with app.app_context():
        store = portal_store(app)
        with store.lock_subscription(AVA, AVA_SUB) as lock:
            assert lock is not None
            assert lock.redeem_promotion(code, _redemption(AVA, AVA_SUB))
    page = _plan_form(ava_client, "WELCOME10")
    assert page.status_code == 422
    assert "You have already used this code." in page.text
    assert 'aria-invalid="true"' in page.text and 'value="WELCOME10"' in page.text


def test_unknown_expired_withdrawn_and_used_up_codes_get_one_answer(
    app: Flask, ava_client: FlaskClient
) -> None:
    past = datetime.now(timezone.utc) - timedelta(days=1)
    _add(app, PromotionCode("EXPIRED", percent_off=10, expires_at=past))
    _add(app, PromotionCode("WITHDRAWN", percent_off=10, active=False))
    answers = set()
    for code in ("NOSUCHCODE", "EXPIRED", "WITHDRAWN", "<script>"):
        page = _plan_form(ava_client, code)
        assert page.status_code == 422
        answers.add(
            re.sub(r'value="[^"]*"', "", page.text.split('id="promotion-code-error">')[1].split("<")[0])
        )
    assert answers == {INVALID}


def test_a_code_for_other_plans_says_so(app: Flask, ava_client: FlaskClient) -> None:
    _add(app, PromotionCode("TEAMONLY", percent_off=10, plan_ids=frozenset({"plan_sync_team_monthly"})))
    _add(app, PromotionCode("RUPIAH", amount_off=Money(100_000, "IDR")))
    for code in ("TEAMONLY", "RUPIAH"):
        page = _plan_form(ava_client, code)
        assert page.status_code == 422 and "This code does not apply to this plan." in page.text


def test_codes_are_rate_limited_per_customer(app: Flask, ava_client: FlaskClient) -> None:
    _add(app, PromotionCode("WELCOME10", percent_off=10))
    for n in range(10):
        assert _plan_form(ava_client, f"GUESS{n}").status_code == 422
    page = _plan_form(ava_client, "WELCOME10")  # even a good code, once the limit is reached
    assert page.status_code == 422 and "Too many codes tried. Try again later." in page.text


def test_a_declined_charge_gives_the_code_back(app: Flask, ava_client: FlaskClient) -> None:
    _add(app, PromotionCode("WELCOME10", percent_off=10))
    with app.app_context():
        store = portal_store(app)
        method = store.get_subscription(AVA, AVA_SUB).payment_method  # type: ignore[union-attr]
        assert method is not None
    bad = TestPaymentProvider.token_for("4000000000000002", charges_decline=DeclineReason.GENERIC)
    with app.app_context():
        card = store.add_payment_method(
            PaymentMethod(
                "pm_bad", AVA, "visa", "0002", 12, datetime.now(timezone.utc).year + 2, provider_token=bad
            )
        )
        store.set_subscription_payment_method(AVA, AVA_SUB, card.id)
    preview = _plan_form(ava_client, "WELCOME10")
    declined = ava_client.post(AVA_PLAN_URL, data=plan_confirm_form(preview.text))
    assert declined.status_code == 402
    with app.app_context():
        assert not portal_store(app).promotion_redeemed(AVA, "WELCOME10")
        assert portal_store(app).promotion_times_redeemed("WELCOME10") == 0


def test_the_merchants_loader_supplies_codes(app: Flask, ava_client: FlaskClient) -> None:
    seen: list[tuple[str, str]] = []

    def loader(who: Customer, code: str) -> PromotionCode | None:
        seen.append((who.id, code))
        return PromotionCode("SPRING", amount_off=Money(500, "USD")) if code == "SPRING" else None

    get_state(app).hooks.promotion_code_loader = loader
    try:
        assert _plan_form(ava_client, "spring").status_code == 200
        assert _plan_form(ava_client, "WINTER").status_code == 422
        assert seen == [(AVA, "SPRING"), (AVA, "WINTER")]

        def broken(who: Customer, code: str) -> PromotionCode | None:
            raise RuntimeError("down")

        get_state(app).hooks.promotion_code_loader = broken
        assert INVALID in _plan_form(ava_client, "SPRING").text
    finally:
        get_state(app).hooks.promotion_code_loader = None


def test_the_code_field_and_its_answers_in_indonesian(app: Flask) -> None:
    with app.test_request_context(), force_locale("id"):
        assert gettext("Promotion code") == "Kode promo"
        assert refusal_message(CodeRefusal.INVALID) == "Kode ini tidak valid. Periksa lalu coba lagi."


def test_how_many_renewals_a_code_carries_on_for() -> None:
    assert later_renewals(PromotionCode("A", percent_off=10)) == 0
    repeating = PromotionCode("B", percent_off=10, duration=PromotionDuration.REPEATING, duration_periods=3)
    assert later_renewals(repeating) == 2
    forever = PromotionCode("C", percent_off=10, duration=PromotionDuration.FOREVER)
    assert later_renewals(forever) == FOREVER_RENEWALS
    amount = PromotionCode("D", amount_off=Money(100, "USD"), duration=PromotionDuration.FOREVER)
    assert later_renewals(amount) == 0


def test_a_repeating_code_takes_its_percent_off_the_next_renewals(
    app: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    _add(
        app,
        PromotionCode("THREE", percent_off=20, duration=PromotionDuration.REPEATING, duration_periods=3),
    )
    preview = _plan_form(ava_client, "THREE")
    assert "THREE also takes 20% off 2 more renewals." in preview.text
    assert ava_client.post(AVA_PLAN_URL, data=plan_confirm_form(preview.text)).status_code == 303
    with app.app_context():
        changed = portal_store(app).get_subscription(AVA, AVA_SUB)
        assert changed is not None
        assert (changed.discount_percent, changed.discount_renewals) == (20, 2)
        result = renew_subscription(get_state(app), AVA, AVA_SUB, now=changed.current_period_end)
    assert result.invoice is not None
    assert result.invoice.total == changed.price.amount - (changed.price.amount * 20 + 50) // 100
    after = portal_store_sub(app)
    assert after.discount_renewals == 1


def portal_store_sub(app: Flask) -> Any:
    with app.app_context():
        return portal_store(app).get_subscription(AVA, AVA_SUB)
