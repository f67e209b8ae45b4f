"""The account's payment methods page (``GET|POST /portal/payment-methods``,
``POST /portal/payment-methods/<id>/default``): every saved card, which
subscriptions it pays for, the default; adding a card without a
subscription; making one the default. Removing is tested in
``test_payment_methods.py``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import close_app, make_portal_app, sign_in, stored_subscription

from flask_customer_portal import signals
from flask_customer_portal.billing.payment_methods import MethodExpired, set_default_payment_method
from flask_customer_portal.capabilities import capabilities_of
from flask_customer_portal.contrib.composite import CompositeStorage
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent, Customer, PaymentMethod, SubscriptionStatus
from flask_customer_portal.testing import TestPaymentProvider, csrf_token_from

AVA = "cus_demo_ava"
BUDI = "cus_demo_budi"
CHEN = "cus_demo_chen"
AVA_SUB = "sub_demo_ava_sync"
AVA_VISA = "pm_demo_ava_visa"
BUDI_SUB = "sub_demo_budi_sync"
BUDI_CARD = "pm_demo_budi_card"
PAGE = "/portal/payment-methods"

GOOD = "4242424242424242"
DECLINES = "4000000000000002"
MASTERCARD = "5555555555554444"
NEXT_YEAR = str(datetime.now(timezone.utc).year + 1)


def _card(
    number: str = GOOD, *, month: str = "12", year: str = NEXT_YEAR, cvc: str = "123"
) -> dict[str, str]:
    return {"payment_method": "new", "card_number": number, "exp_month": month, "exp_year": year, "cvc": cvc}


def _methods(app: Flask, customer_id: str) -> list[PaymentMethod]:
    with app.app_context():
        return list(get_state(app).storage.list_payment_methods(customer_id))


def _events(app: Flask, customer_id: str) -> list[AuditEvent]:
    with app.app_context():
        events = get_state(app).storage.list_events(customer_id)  # type: ignore[attr-defined]
    return [e for e in events if e.action.startswith("payment_method.")]


def _add_method(app: Flask, customer_id: str, number: str = MASTERCARD, **changes: Any) -> PaymentMethod:
    method = PaymentMethod(
        id=changes.pop("id", f"pm_extra_{customer_id}_{number[-4:]}"),
        customer_id=customer_id,
        brand=changes.pop("brand", "mastercard"),
        last4=number[-4:],
        exp_month=changes.pop("exp_month", 10),
        exp_year=changes.pop("exp_year", datetime.now(timezone.utc).year + 2),
        provider_token=TestPaymentProvider.token_for(number),
    )
    with app.app_context():
        return get_state(app).storage.add_payment_method(method)


def _post(client: FlaskClient, path: str, data: dict[str, str] | None = None) -> Any:
    page = client.get(PAGE)
    assert page.status_code == 200
    return client.post(path, data={"csrf_token": csrf_token_from(page.text), **(data or {})})


def _item(html: str, card: str) -> str:
    """The list item of one saved card."""
    (item,) = [
        part for part in html.split('<li class="account-method"')[1:] if card in part.split("</li>")[0]
    ]
    return item.split("</li>")[0]


def _notice(client: FlaskClient) -> str:
    match = re.search(r'<div class="notice" role="status">([^<]*)</div>', client.get(PAGE).text)
    assert match, "no notice"
    return match.group(1)


@pytest.fixture
def received() -> Iterator[dict[str, list[dict[str, Any]]]]:
    caught: dict[str, list[dict[str, Any]]] = {"added": [], "default": [], "changed": []}
    receivers = {
        "added": signals.payment_method_added,
        "default": signals.default_payment_method_changed,
        "changed": signals.payment_method_changed,
    }
    connected = []
    for name, signal in receivers.items():

        def record(sender: Any, _name: str = name, **kwargs: Any) -> None:
            caught[_name].append(kwargs)

        signal.connect(record)
        connected.append((signal, record))
    try:
        yield caught
    finally:
        for signal, record in connected:
            signal.disconnect(record)


# -- the page ------------------------------------------------------------------------------------


def test_ava_sees_her_cards_what_each_pays_for_and_the_default(app: Flask, ava_client: FlaskClient) -> None:
    spare = _add_method(app, AVA)
    page = ava_client.get(PAGE)
    assert page.status_code == 200
    html = page.text
    assert "<h1>Payment methods</h1>" in html
    # In the navigation, as the current page.
    assert re.search(r'<a href="/portal/payment-methods" aria-current="page">Payment methods</a>', html)
    visa = _item(html, "Visa •••• 4242")
    assert "expires 12/" in visa
    assert 'badge-current">Default<' in visa
    assert f'href="/portal/subscriptions/{AVA_SUB}">Acme Sync</a>' in visa  # pays for it
    assert "/remove" not in visa  # in use: no Remove button, a reason instead
    assert "To remove this card, give its subscriptions another card first." in visa
    assert f'action="/portal/payment-methods/{AVA_VISA}/default"' not in html  # already the default
    spare_part = _item(html, "Mastercard •••• 4444")
    assert "Not used by any subscription" in spare_part
    assert f'action="/portal/payment-methods/{spare.id}/default"' in spare_part
    assert f'action="/portal/payment-methods/{spare.id}/remove"' in spare_part
    assert 'name="also_active_subscriptions" value="1"' in spare_part
    assert "Also charge my active subscription to it from its next renewal" in spare_part
    # Adding a card: the fields of the payment-method form.
    for name in ("card_number", "exp_month", "exp_year", "cvc"):
        assert f'name="{name}"' in html
    assert '<input type="hidden" name="payment_method" value="new">' in html


def test_expired_cards_are_marked_and_cannot_become_the_default(app: Flask, ava_client: FlaskClient) -> None:
    old = _add_method(app, AVA, exp_month=1, exp_year=2020)
    html = ava_client.get(PAGE).text
    part = _item(html, "Mastercard •••• 4444")
    assert 'badge-expired">Expired<' in part
    assert f"/payment-methods/{old.id}/default" not in part
    assert f"/payment-methods/{old.id}/remove" in part


def test_a_customer_without_cards_or_subscriptions_can_add_one(app: Flask, client: FlaskClient) -> None:
    sign_in(app, client, CHEN)
    html = client.get(PAGE).text
    assert "No saved cards yet" in html
    response = _post(client, PAGE, _card())
    assert response.status_code == 303
    assert response.headers["Location"] == PAGE
    (method,) = _methods(app, CHEN)
    assert (method.brand, method.last4, method.is_default) == ("visa", "4242", False)
    assert _notice(client) == "Visa •••• 4242 was added to your account."
    assert [(e.action, e.subject_id) for e in _events(app, CHEN)] == [("payment_method.added", method.id)]


def test_signed_out_visitors_go_to_the_login_page(client: FlaskClient) -> None:
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/portal/login/biz_demo")


def test_budi_reads_the_page_in_indonesian(budi_client: FlaskClient) -> None:
    html = budi_client.get(PAGE).text
    assert "<h1>Metode pembayaran</h1>" in html
    assert 'badge-current">Utama<' in html


@pytest.fixture
def budi_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(app, client, BUDI)
    return client


# -- adding a card ---------------------------------------------------------------------------------


def test_adding_a_card_sends_a_signal_and_moves_no_money(
    app: Flask,
    ava_client: FlaskClient,
    payments: TestPaymentProvider,
    received: dict[str, list[dict[str, Any]]],
) -> None:
    assert _post(ava_client, PAGE, _card(MASTERCARD)).status_code == 303
    assert payments.calls == ["attach_card"]
    assert payments.charges == []
    (added,) = received["added"]
    assert added["customer"].id == AVA and added["payment_method"].last4 == "4444"
    assert stored_subscription(app, AVA, AVA_SUB).payment_method.id == AVA_VISA  # type: ignore[union-attr]


def test_a_declined_card_is_said_once_at_the_top(
    app: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    response = _post(ava_client, PAGE, _card(DECLINES))
    assert response.status_code == 422
    alert = re.search(
        r'<div class="notice payment-problem" role="alert"[^>]*>(.*?)</div>', response.text, re.S
    )
    assert alert is not None
    text = " ".join(re.sub(r"<[^>]+>", " ", alert.group(1)).split())
    assert text == "The card was not added. Nothing was charged. The bank declined the payment."
    assert response.text.count("The bank declined the payment.") == 1
    assert 'value="4000' not in response.text.replace("4000&nbsp;", "")  # the number is never shown back
    assert [m.id for m in _methods(app, AVA)] == [AVA_VISA]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        pytest.param(_card(year="2020"), "exp_year", "The card has expired.", id="expired"),
        pytest.param(_card(month="13"), "exp_month", "Enter the month the card expires", id="month"),
        pytest.param(_card("4242 4242 4242 4241"), "card_number", "Check the card number.", id="luhn"),
        pytest.param(_card(cvc="1"), "cvc", "Enter the 3-digit security code", id="cvc"),
    ],
)
def test_bad_input_is_shown_beside_its_field(
    app: Flask,
    ava_client: FlaskClient,
    payments: TestPaymentProvider,
    data: dict[str, str],
    field: str,
    message: str,
) -> None:
    response = _post(ava_client, PAGE, data)
    assert response.status_code == 422
    match = re.search(rf'<p class="field-message" id="{field}-error">([^<]*)</p>', response.text)
    assert match and match.group(1).startswith(message)
    assert re.search(rf'aria-describedby="[^"]*\b{field}-error"', response.text)
    assert "Please correct the fields marked below. The card was not added." in response.text
    assert payments.calls == []


def test_a_saved_methods_id_is_not_a_new_card_here(app: Flask, ava_client: FlaskClient) -> None:
    assert _post(ava_client, PAGE, {"payment_method": AVA_VISA}).status_code == 400


def test_adding_needs_a_csrf_token(
    app: Flask, ava_client: FlaskClient, payments: TestPaymentProvider
) -> None:
    assert ava_client.post(PAGE, data=_card()).status_code == 400
    assert payments.calls == []


def test_a_double_submit_adds_the_card_twice_within_the_limits(app: Flask, ava_client: FlaskClient) -> None:
    """No money moves, so a second submit is a second card (the customer
    can remove it); the hourly allowance and the most saved cards still hold."""
    page = ava_client.get(PAGE)
    form = {"csrf_token": csrf_token_from(page.text), **_card(MASTERCARD)}
    assert ava_client.post(PAGE, data=form).status_code == 303
    assert ava_client.post(PAGE, data=form).status_code == 303
    assert len(_methods(app, AVA)) == 3


def test_the_card_add_limit_holds_here_too(tmp_path: Path) -> None:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'limited.db'}",
        payments=TestPaymentProvider(),
        CUSTOMER_PORTAL_CARD_ATTACH_LIMIT="2/hour",
    )
    try:
        client = app.test_client()
        sign_in(app, client, CHEN)
        assert _post(client, PAGE, _card()).status_code == 303
        assert _post(client, PAGE, _card(MASTERCARD)).status_code == 303
        refused = _post(client, PAGE, _card())
        assert refused.status_code == 429
        assert "Retry-After" in refused.headers
        assert "You have tried to add too many cards recently" in refused.text
        assert len(_methods(app, CHEN)) == 2
    finally:
        close_app(app)


def test_the_most_saved_cards_holds_here_too(tmp_path: Path) -> None:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'few.db'}", payments=TestPaymentProvider(), CUSTOMER_PORTAL_MAX_SAVED_CARDS=1
    )
    try:
        client = app.test_client()
        sign_in(app, client, AVA)
        refused = _post(client, PAGE, _card(MASTERCARD))
        assert refused.status_code == 422
        assert "You already have 1 saved card, the most an account can keep." in refused.text
        assert len(_methods(app, AVA)) == 1
    finally:
        close_app(app)


# -- making one the default ------------------------------------------------------------------------


def test_making_a_card_the_default(
    app: Flask, ava_client: FlaskClient, received: dict[str, list[dict[str, Any]]]
) -> None:
    spare = _add_method(app, AVA)
    response = _post(ava_client, f"{PAGE}/{spare.id}/default")
    assert response.status_code == 303
    assert response.headers["Location"] == PAGE
    assert [m.id for m in _methods(app, AVA) if m.is_default] == [spare.id]
    assert _notice(ava_client) == "Mastercard •••• 4444 is now your default card."
    # The subscription keeps its card unless asked.
    assert stored_subscription(app, AVA, AVA_SUB).payment_method.id == AVA_VISA  # type: ignore[union-attr]
    (event,) = _events(app, AVA)
    assert (event.action, event.subject_id) == ("payment_method.default_changed", spare.id)
    assert event.details["previous_payment_method_id"] == AVA_VISA
    (sent,) = received["default"]
    assert sent["payment_method"].id == spare.id and sent["previous"].id == AVA_VISA
    assert sent["subscriptions"] == ()
    assert received["changed"] == []


def test_making_it_the_default_of_the_active_subscriptions_too(
    app: Flask,
    ava_client: FlaskClient,
    payments: TestPaymentProvider,
    received: dict[str, list[dict[str, Any]]],
) -> None:
    spare = _add_method(app, AVA)
    response = _post(ava_client, f"{PAGE}/{spare.id}/default", {"also_active_subscriptions": "1"})
    assert response.status_code == 303
    subscription = stored_subscription(app, AVA, AVA_SUB)
    assert subscription.payment_method is not None and subscription.payment_method.id == spare.id
    assert _notice(ava_client) == (
        "Mastercard •••• 4444 is now your default card, and 1 subscription is charged to it from its next renewal."
    )
    assert payments.charges == []  # nothing is charged now
    assert [e.action for e in _events(app, AVA)] == [
        "payment_method.default_changed",
        "payment_method.changed",
    ]
    assert [s.id for s in received["default"][0]["subscriptions"]] == [AVA_SUB]
    assert [c["subscription"].id for c in received["changed"]] == [AVA_SUB]


def test_an_on_hold_subscription_is_never_moved(app: Flask, budi_client: FlaskClient) -> None:
    spare = _add_method(app, BUDI)
    response = _post(budi_client, f"{PAGE}/{spare.id}/default", {"also_active_subscriptions": "1"})
    assert response.status_code == 303
    subscription = stored_subscription(app, BUDI, BUDI_SUB)
    assert subscription.status is SubscriptionStatus.ON_HOLD
    assert subscription.payment_method is not None and subscription.payment_method.id == BUDI_CARD
    assert [m.id for m in _methods(app, BUDI) if m.is_default] == [spare.id]


def test_a_double_submit_changes_the_default_once(app: Flask, ava_client: FlaskClient) -> None:
    spare = _add_method(app, AVA)
    page = ava_client.get(PAGE)
    form = {"csrf_token": csrf_token_from(page.text)}
    assert ava_client.post(f"{PAGE}/{spare.id}/default", data=form).status_code == 303
    assert ava_client.post(f"{PAGE}/{spare.id}/default", data=form).status_code == 303
    assert _notice(ava_client) == "Nothing changed: Mastercard •••• 4444 was already your default card."
    assert [e.action for e in _events(app, AVA)] == ["payment_method.default_changed"]
    assert [m.id for m in _methods(app, AVA) if m.is_default] == [spare.id]


def test_an_expired_card_is_refused_with_a_reason(app: Flask, ava_client: FlaskClient) -> None:
    old = _add_method(app, AVA, exp_month=1, exp_year=2020)
    response = _post(ava_client, f"{PAGE}/{old.id}/default")
    assert response.status_code == 303
    assert _notice(ava_client) == (
        "Mastercard •••• 4444 has expired, so it cannot be your default. Add a new card instead."
    )
    assert [m.id for m in _methods(app, AVA) if m.is_default] == [AVA_VISA]
    assert _events(app, AVA) == []


def test_another_customers_card_is_a_404(app: Flask, ava_client: FlaskClient) -> None:
    for method_id in (BUDI_CARD, "pm_nobody", "x" * 300, "pm\x00"):
        assert _post(ava_client, f"{PAGE}/{method_id}/default").status_code == 404, method_id
    assert [m.id for m in _methods(app, BUDI) if m.is_default] == [BUDI_CARD]
    assert _events(app, AVA) == [] and _events(app, BUDI) == []


def test_the_default_needs_a_post_with_a_csrf_token(app: Flask, ava_client: FlaskClient) -> None:
    spare = _add_method(app, AVA)
    assert ava_client.get(f"{PAGE}/{spare.id}/default").status_code == 405
    assert ava_client.post(f"{PAGE}/{spare.id}/default").status_code == 400
    assert [m.id for m in _methods(app, AVA) if m.is_default] == [AVA_VISA]


# -- removing, from this page ---------------------------------------------------------------------


def test_removing_the_default_that_nothing_uses_leaves_no_default(
    app: Flask, ava_client: FlaskClient
) -> None:
    spare = _add_method(app, AVA)
    assert _post(ava_client, f"{PAGE}/{spare.id}/default").status_code == 303
    with app.app_context():
        # The subscription moves back to the Visa, so the new default is used by nothing.
        get_state(app).storage.set_subscription_payment_method(AVA, AVA_SUB, AVA_VISA)
    response = _post(ava_client, f"{PAGE}/{spare.id}/remove")
    assert response.status_code == 303
    assert response.headers["Location"] == PAGE
    assert [m.id for m in _methods(app, AVA)] == [AVA_VISA]
    assert not any(m.is_default for m in _methods(app, AVA))


def test_removing_a_card_a_live_subscription_uses_is_refused_with_a_reason(
    app: Flask, ava_client: FlaskClient
) -> None:
    response = _post(ava_client, f"{PAGE}/{AVA_VISA}/remove")
    assert response.status_code == 303
    assert _notice(ava_client) == (
        "Visa •••• 4242 is used by a subscription, so it cannot be removed. Give the subscription another card first."
    )
    assert [m.id for m in _methods(app, AVA)] == [AVA_VISA]


# -- the billing verb and the stores ---------------------------------------------------------------


def test_the_verb_refuses_an_expired_card(app: Flask) -> None:
    old = _add_method(app, AVA, exp_month=1, exp_year=2020)
    with app.test_request_context():
        state = get_state(app)
        customer = state.storage.get_customer(AVA)
        assert customer is not None
        with pytest.raises(MethodExpired):
            set_default_payment_method(state, customer, old, now=datetime.now(timezone.utc))


def test_the_sqlalchemy_store_keeps_one_default_per_customer(sqlite_store: SQLAlchemyStorage) -> None:
    store = sqlite_store
    for owner in ("cus_a", "cus_b"):
        store.add_customer(Customer(owner, f"{owner}@example.com", owner))
        for n in (1, 2):
            store.add_payment_method(
                PaymentMethod(f"pm_{owner}_{n}", owner, "visa", f"000{n}", 12, 2040, f"tok{n}")
            )
    assert not any(m.is_default for m in store.list_payment_methods("cus_a"))
    made = store.set_default_payment_method("cus_a", "pm_cus_a_1")
    assert made is not None and made.is_default
    assert store.set_default_payment_method("cus_a", "pm_cus_a_2") is not None
    assert [m.id for m in store.list_payment_methods("cus_a") if m.is_default] == ["pm_cus_a_2"]
    got = store.get_payment_method("cus_a", "pm_cus_a_2")
    assert got is not None and got.is_default
    # Another customer's method: nothing changes, for either customer.
    assert store.set_default_payment_method("cus_a", "pm_cus_b_1") is None
    assert store.set_default_payment_method("cus_a", "pm_nobody") is None
    assert [m.id for m in store.list_payment_methods("cus_a") if m.is_default] == ["pm_cus_a_2"]
    assert not any(m.is_default for m in store.list_payment_methods("cus_b"))
    # A new card is not the default, whatever it says.
    store.add_payment_method(
        PaymentMethod("pm_cus_a_3", "cus_a", "visa", "0003", 12, 2040, "t3", is_default=True)
    )
    assert [m.id for m in store.list_payment_methods("cus_a") if m.is_default] == ["pm_cus_a_2"]


def test_the_default_is_a_capability(sqlite_store: SQLAlchemyStorage) -> None:
    assert capabilities_of(sqlite_store).default_payment_method

    class WithoutDefaults:
        def __init__(self, inner: SQLAlchemyStorage) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "set_default_payment_method":
                raise AttributeError(name)
            return getattr(self._inner, name)

    adapter = WithoutDefaults(sqlite_store)
    composite = CompositeStorage(sqlite_store, billing=adapter)
    assert not composite.portal_capabilities().default_payment_method
    assert composite.set_default_payment_method("cus_a", "pm_x") is None
    assert CompositeStorage(sqlite_store, billing=sqlite_store).portal_capabilities().default_payment_method


def test_without_the_capability_there_is_no_make_default(tmp_path: Path) -> None:
    class NoDefaults(CompositeStorage):
        def portal_capabilities(self) -> Any:
            from dataclasses import replace

            return replace(super().portal_capabilities(), default_payment_method=False)

    app = make_portal_app(
        f"sqlite:///{tmp_path / 'nodefault.db'}",
        payments=TestPaymentProvider(),
        wrap_storage=lambda store: NoDefaults(store, billing=store),
    )
    try:
        client = app.test_client()
        sign_in(app, client, AVA)
        spare = _add_method(app, AVA)
        html = client.get(PAGE).text
        assert "/default" not in html and "Make default" not in html
        assert f"/payment-methods/{spare.id}/remove" in html  # the rest of the page is there
        assert _post(client, f"{PAGE}/{spare.id}/default").status_code == 404
    finally:
        close_app(app)


# -- cost --------------------------------------------------------------------------------------------


def test_the_page_costs_a_fixed_number_of_queries(app: Flask, count_queries: Callable[..., Any]) -> None:
    client = app.test_client()
    sign_in(app, client, AVA)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine

    def measure() -> int:
        with count_queries(engine) as queries:
            assert client.get(PAGE).status_code == 200
        return queries.count

    few = measure()
    for n in range(6):
        _add_method(app, AVA, number=f"555555555555{n:04d}", id=f"pm_many_{n}")
    assert measure() == few <= 6
