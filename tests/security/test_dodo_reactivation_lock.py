"""Issue 15, item 3: paying an ``on_hold`` subscription's arrears over a
provider that bills subscriptions itself (Dodo Payments, through the fake
Dodo server) asks the provider once, whatever the number of submits,
threads or workers — the same lock and idempotency discipline as the local
store. And the lock a composite store takes for a billing back end without
a lock across processes (Stripe) holds across workers too."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from fake_dodo import FakeDodo, shared_fake_dodo
from flask import Flask
from flask.testing import FlaskClient
from portal_fixtures import make_portal_app, sign_in
from sqlalchemy import text

from flask_customer_portal.billing.outcomes import PaymentOutcome
from flask_customer_portal.billing.renewal import ReactivationResult, reactivate_subscription
from flask_customer_portal.contrib.composite import BILLING_CORE, CompositeStorage, MappingCustomerIds
from flask_customer_portal.contrib.dodo import DodoBilling, DodoCompositeStorage, DodoPaymentProvider
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import csrf_token_from

BUDI = "cus_demo_budi"
DODO_BUDI = "cus_dodo_budi"
UPDATE_PAYMENT_METHOD = r"/subscriptions/[^/]+/update-payment-method"


@pytest.fixture
def fake() -> FakeDodo:
    return shared_fake_dodo()


def _seed(fake: FakeDodo) -> tuple[str, str]:
    """Budi at Dodo: a saved card and an ``on_hold`` subscription whose
    renewal failed two days ago. Returns (subscription id, card id)."""
    fake.add_customer(DODO_BUDI, "budi@example.com", "Budi Santoso")
    card = fake.add_payment_method(DODO_BUDI, last4="0341")
    subscription = fake.add_subscription(
        DODO_BUDI, amount=15000000, currency="IDR", status="on_hold", payment_method_id=card
    )
    fake.add_payment(
        DODO_BUDI,
        amount=15000000,
        currency="IDR",
        status="failed",
        subscription_id=subscription,
        days_ago=2,
        error_code="INSUFFICIENT_FUNDS",
    )
    return subscription, card


def _portal(db_url: str, fake: FakeDodo, *, demo_data: bool, provider: Any = None) -> Flask:
    billing = DodoBilling(fake.client())
    return make_portal_app(
        db_url,
        payments=provider or DodoPaymentProvider(billing),
        demo_data=demo_data,
        wrap_storage=lambda store: DodoCompositeStorage(
            store, billing=billing, customer_ids=MappingCustomerIds.from_dict({BUDI: DODO_BUDI})
        ),
    )


def _close(apps: list[Flask]) -> None:
    for app in apps:
        get_state(app).shutdown()
    with apps[0].app_context():
        storage = get_state(apps[0]).storage
        getattr(storage, "local", storage).drop_all()
    for app in apps:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def workers(db_url: str, fake: FakeDodo) -> Iterator[list[Flask]]:
    """Two portal apps over one database and the fake Dodo: two workers
    (processes) of one shop, each with its own connections and SDK client."""
    apps = [_portal(db_url, fake, demo_data=n == 0) for n in range(2)]
    yield apps
    _close(apps)


def _payment_page(app: Flask, subscription_id: str) -> tuple[FlaskClient, str]:
    """A browser signed in as Budi on ``app``, on the payment-method page."""
    client = app.test_client()
    sign_in(app, client, BUDI)
    page = client.get(f"/portal/subscriptions/{subscription_id}/payment-method")
    assert page.status_code == 200
    return client, csrf_token_from(page.text)


def _submit(client: FlaskClient, token: str, subscription_id: str, card: str) -> Any:
    return client.post(
        f"/portal/subscriptions/{subscription_id}/payment-method",
        data={"csrf_token": token, "payment_method": card, "intent": "reactivate"},
    )


def _reactivate(app: Flask, subscription_id: str, card: str) -> ReactivationResult:
    with app.test_request_context():
        state = get_state(app)
        customer = state.storage.get_customer(BUDI)
        method = state.storage.get_payment_method(BUDI, card)
        assert customer is not None and method is not None
        return reactivate_subscription(state, customer, subscription_id, method)


def _arrears_payments(fake: FakeDodo, subscription_id: str) -> list[dict[str, Any]]:
    """The payments of the subscription's arrears (the failed renewal that
    put it on hold had no payment method)."""
    return [
        p
        for p in fake.payments.values()
        if p["subscription_id"] == subscription_id and p["payment_method_id"] is not None
    ]


def _attempts(app: Flask) -> list[tuple[Any, ...]]:
    with app.app_context():
        db = app.extensions["sqlalchemy"]
        rows = db.session.execute(
            text(
                "SELECT attempt, idempotency_key, status, provider_reference FROM portal_arrears_attempts "
                "WHERE customer_id = :c ORDER BY attempt"
            ),
            {"c": BUDI},
        )
        return [tuple(row) for row in rows]


@pytest.mark.slow
def test_item3_concurrent_reactivation_submits_over_dodo_make_one_charge(
    workers: list[Flask], fake: FakeDodo
) -> None:
    subscription, card = _seed(fake)
    fake.arrears_outcome = "processing"
    # The lock's row exists, as after any earlier visit: the submits wait on
    # the row's lock itself, not on each other's insert of it.
    with (
        workers[0].app_context(),
        get_state(workers[0]).storage.lock_provider_subscription(BUDI, subscription),
    ):
        pass
    submits = 8
    browsers = [_payment_page(workers[n % 2], subscription) for n in range(submits)]
    barrier = threading.Barrier(submits)
    statuses: list[int] = []
    guard = threading.Lock()

    def submit(client: FlaskClient, token: str) -> None:
        barrier.wait(timeout=30)
        status = _submit(client, token, subscription, card).status_code
        with guard:
            statuses.append(status)

    threads = [threading.Thread(target=submit, args=browser) for browser in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Every submit is told the payment is being confirmed (202), none is a 5xx.
    assert statuses == [202] * submits
    # Dodo was asked once, and charged once.
    calls = fake.calls("POST", UPDATE_PAYMENT_METHOD)
    assert len(calls) == 1
    charges = _arrears_payments(fake, subscription)
    assert [p["status"] for p in charges] == ["processing"]
    # The attempt was recorded with a key made of what is paid, and Dodo got that key.
    [(number, key, status, _)] = _attempts(workers[1])
    assert (number, status) == (1, "unknown")
    assert key.startswith(f"arrears:{subscription}:") and key.endswith(":attempt:1")
    assert fake.idempotency_keys == [(f"/subscriptions/{subscription}/update-payment-method", key)]

    # The charge goes through at Dodo: later submits, on either worker, find
    # the subscription active and ask Dodo for nothing.
    fake.settle(charges[0]["payment_id"])
    for app in workers:
        assert _reactivate(app, subscription, card).outcome is PaymentOutcome.ALREADY_PAID
    client, token = browsers[0]
    later = _submit(client, token, subscription, card)
    assert later.status_code == 303
    assert later.headers["Location"].endswith(f"/subscriptions/{subscription}/reactivated")
    assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 1
    assert len(_arrears_payments(fake, subscription)) == 1
    assert [row[2] for row in _attempts(workers[0])] == ["succeeded"]


class _DiesAfterTheCall(DodoPaymentProvider):
    """Dodo's provider in a worker that dies once, right after Dodo took
    the request and before the portal could record its answer."""

    died = False

    def pay_arrears(self, **kwargs: Any) -> Any:
        answer = super().pay_arrears(**kwargs)
        if not self.died:
            self.died = True
            raise RuntimeError("worker killed")
        return answer


@pytest.mark.parametrize(("outcome", "answer", "calls"), [("processing", 202, 1), ("failed", 422, 2)])
def test_item3_a_retry_after_a_lost_answer_is_not_charged_again(
    tmp_path: Any, fake: FakeDodo, outcome: str, answer: int, calls: int
) -> None:
    """The worker dies after Dodo took the call: the portal's record of the
    attempt is rolled back. A charge still processing is waited for; one
    that already ended is asked about with the same key, which Dodo answers
    as the first time, without a second payment."""
    subscription, card = _seed(fake)
    fake.arrears_outcome = outcome
    app = _portal(
        f"sqlite:///{tmp_path / 'portal.db'}",
        fake,
        demo_data=True,
        provider=_DiesAfterTheCall(DodoBilling(fake.client())),
    )
    try:
        client, token = _payment_page(app, subscription)
        # The provider raised: nothing of the try was kept (502, still on hold).
        assert _submit(client, token, subscription, card).status_code == 502
        assert _submit(client, token, subscription, card).status_code == answer
        assert len(_arrears_payments(fake, subscription)) == 1
        assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == calls
        keys = {key for _, key in fake.idempotency_keys}
        assert len(keys) == 1
        [key] = keys
        assert key.startswith(f"arrears:{subscription}:") and key.endswith(":attempt:1")
        recorded = [] if outcome == "processing" else [(1, key, "declined")]
        assert [row[:3] for row in _attempts(app)] == recorded
    finally:
        _close([app])


class _DodoGoesAwayAfterTheCall(DodoPaymentProvider):
    """Dodo takes the call, then cannot be read for a moment."""

    def __init__(self, billing: DodoBilling, fake: FakeDodo) -> None:
        super().__init__(billing)
        self.fake = fake

    def pay_arrears(self, **kwargs: Any) -> Any:
        answer = super().pay_arrears(**kwargs)
        self.fake.fail("GET", r"/subscriptions", 503)
        return answer


def test_item3_a_charge_whose_subscription_cannot_be_read_back_is_kept_and_not_repeated(
    tmp_path: Any, fake: FakeDodo
) -> None:
    subscription, card = _seed(fake)
    app = _portal(
        f"sqlite:///{tmp_path / 'portal.db'}",
        fake,
        demo_data=True,
        provider=_DodoGoesAwayAfterTheCall(DodoBilling(fake.client()), fake),
    )
    try:
        # Dodo charged and made the subscription active, but the portal
        # could not see it: "being confirmed", with the attempt kept.
        assert _reactivate(app, subscription, card).outcome is PaymentOutcome.PENDING
        assert fake.subscriptions[subscription]["status"] == "active"
        assert _reactivate(app, subscription, card).outcome is PaymentOutcome.ALREADY_PAID
        assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 1
        assert len(_arrears_payments(fake, subscription)) == 1
        assert [row[2] for row in _attempts(app)] == ["succeeded"]
    finally:
        _close([app])


def test_item3_an_unanswered_call_that_charged_nothing_is_tried_again_once(
    workers: list[Flask], fake: FakeDodo
) -> None:
    subscription, card = _seed(fake)
    # Dodo errs (5xx) before doing anything: the outcome is unknown.
    fake.fail("POST", UPDATE_PAYMENT_METHOD, 503)
    assert _reactivate(workers[0], subscription, card).outcome is PaymentOutcome.PENDING
    assert _arrears_payments(fake, subscription) == []
    # The next submit asks Dodo what came of it: no payment since, so
    # nothing was charged and attempt 2 is made — once.
    assert _reactivate(workers[1], subscription, card).outcome is PaymentOutcome.PAID
    assert _reactivate(workers[0], subscription, card).outcome is PaymentOutcome.ALREADY_PAID
    assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 2
    assert len(_arrears_payments(fake, subscription)) == 1
    [(_, first), (_, second)] = fake.idempotency_keys
    assert first.endswith(":attempt:1") and second.endswith(":attempt:2")
    assert first.rsplit(":", 1)[0] == second.rsplit(":", 1)[0]
    assert [row[1:3] for row in _attempts(workers[0])] == [(first, "failed"), (second, "succeeded")]


def test_item3_a_pending_bank_confirmation_is_shown_again_not_charged_again(
    workers: list[Flask], fake: FakeDodo
) -> None:
    subscription, card = _seed(fake)
    fake.arrears_outcome = "requires_customer_action"
    first = _reactivate(workers[0], subscription, card)
    again = _reactivate(workers[1], subscription, card)
    assert first.outcome is again.outcome is PaymentOutcome.REQUIRES_ACTION
    assert again.redirect_url == first.redirect_url
    assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 1
    # Once the bank refused it, a new attempt may charge the card.
    [payment] = _arrears_payments(fake, subscription)
    fake.settle(payment["payment_id"], "failed")
    fake.arrears_outcome = "succeeded"
    assert _reactivate(workers[1], subscription, card).outcome is PaymentOutcome.PAID
    assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 2
    assert [row[2] for row in _attempts(workers[0])] == ["declined", "succeeded"]


# -- a composite store over a back end with no lock across processes (Stripe) -----------------


class _PerProcessLock:
    """A billing back end with the money path whose own lock holds nothing
    across workers (as a ``threading.Lock`` would): it only notes who is
    inside."""

    def __init__(self) -> None:
        self.inside: list[str] = []
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        if name in BILLING_CORE:
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    @contextmanager
    def lock_subscription(self, customer_id: str, subscription_id: str) -> Iterator[Any]:
        self.inside.append(threading.current_thread().name)
        self.entered.set()
        try:
            yield object()
        finally:
            self.inside.remove(threading.current_thread().name)

    def subscriptions_due(self, now: Any, *, limit: int = 100) -> list[Any]:
        return []


def test_item3_a_composite_store_holds_its_money_lock_across_workers(db_url: str) -> None:
    apps = [make_portal_app(db_url, demo_data=n == 0) for n in range(2)]
    backends = [_PerProcessLock(), _PerProcessLock()]
    composites = [
        CompositeStorage(get_state(app).storage, billing=backend)
        for app, backend in zip(apps, backends, strict=True)
    ]
    assert all(isinstance(get_state(app).storage, SQLAlchemyStorage) for app in apps)
    second_done = threading.Event()

    def second_worker() -> None:
        with apps[1].app_context(), composites[1].lock_subscription("cus_stripe", "sub_1"):
            pass
        second_done.set()

    try:
        with apps[0].app_context(), composites[0].lock_subscription("cus_stripe", "sub_1") as lock:
            assert lock is not None
            worker = threading.Thread(target=second_worker, name="second worker")
            worker.start()
            # The second worker waits for the database lock: it never gets
            # into the back end's lock while the first is inside.
            assert not backends[1].entered.wait(timeout=0.3)
        worker.join(timeout=30)
        assert second_done.is_set() and backends[1].entered.is_set()
    finally:
        _close(apps)


def test_item3_a_new_card_is_not_sent_to_dodos_page_while_the_arrears_are_being_paid(
    workers: list[Flask], fake: FakeDodo
) -> None:
    """Dodo charges the arrears on its own new-method page too: while the
    portal's payment of them is still processing, "A new card" keeps the
    customer in the portal with the same answer a second submit gets
    (202), and Dodo is asked for no payment page. Once the subscription is
    active again, the page is offered as before."""
    subscription, card = _seed(fake)
    fake.arrears_outcome = "processing"
    client, token = _payment_page(workers[0], subscription)
    assert _submit(client, token, subscription, card).status_code == 202
    assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 1

    other, other_token = _payment_page(workers[1], subscription)
    new_card = other.post(
        f"/portal/subscriptions/{subscription}/payment-method",
        data={"csrf_token": other_token, "payment_method": "new", "intent": "reactivate"},
    )
    assert new_card.status_code == 202
    assert "Location" not in new_card.headers
    assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 1

    fake.settle(_arrears_payments(fake, subscription)[0]["payment_id"])
    after = other.post(
        f"/portal/subscriptions/{subscription}/payment-method",
        data={"csrf_token": other_token, "payment_method": "new", "intent": "reactivate"},
    )
    assert after.status_code == 303
    assert after.headers["Location"].endswith(f"/subscriptions/{subscription}/reactivated")
    assert len(fake.calls("POST", UPDATE_PAYMENT_METHOD)) == 1


def _plan_change_calls(fake: FakeDodo, subscription_id: str) -> list[str]:
    """The order in which Dodo was asked to preview and to make the
    subscription's plan changes."""
    names = {
        f"/subscriptions/{subscription_id}/change-plan/preview": "preview",
        f"/subscriptions/{subscription_id}/change-plan": "change",
    }
    return [names[path] for method, path, _, _ in fake.requests if method == "POST" and path in names]


@pytest.mark.parametrize("held", [False, True], ids=["alone", "inside-your-lock"])
def test_concurrent_plan_changes_over_dodo_take_turns_across_workers(
    workers: list[Flask], fake: FakeDodo, held: bool
) -> None:
    """``DodoBilling.change_plan`` (the merchant's code, in any worker)
    previews and changes under the portal's lock of the subscription, as a
    reactivation does: eight changes at once on two workers reach Dodo one
    preview-and-change after another, never interleaved. Called inside the
    lock the merchant took itself, it does not take it again (no deadlock)."""
    fake.add_customer(DODO_BUDI, "budi@example.com", "Budi Santoso")
    card = fake.add_payment_method(DODO_BUDI, last4="0341")
    subscription = fake.add_subscription(DODO_BUDI, amount=1900, payment_method_id=card)
    changes = 8
    fake.product_prices.update({f"pdt_{n}": 1900 + 100 * n for n in range(changes)})
    barrier = threading.Barrier(changes)
    errors: list[BaseException] = []

    def change(app: Flask, number: int) -> None:
        storage = get_state(app).storage
        assert isinstance(storage, DodoCompositeStorage)
        billing = storage.billing
        assert isinstance(billing, DodoBilling)
        barrier.wait(timeout=30)
        try:
            with app.app_context():
                if held:
                    with storage.lock_provider_subscription(BUDI, subscription):
                        billing.change_plan(DODO_BUDI, subscription, product_id=f"pdt_{number}")
                else:
                    billing.change_plan(DODO_BUDI, subscription, product_id=f"pdt_{number}")
        except BaseException as exc:  # reported below, with the calls made
            errors.append(exc)

    for app in workers:
        billing = cast(DodoBilling, cast(DodoCompositeStorage, get_state(app).storage).billing)
        preview = billing.preview_plan_change

        def slow_preview(*args: Any, _preview: Any = preview, **kwargs: Any) -> Any:
            # The gap between the preview and the change another caller
            # would slip into without the lock.
            answer = _preview(*args, **kwargs)
            time.sleep(0.05)
            return answer

        billing.preview_plan_change = slow_preview  # type: ignore[method-assign]
    threads = [threading.Thread(target=change, args=(workers[n % 2], n)) for n in range(changes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert _plan_change_calls(fake, subscription) == ["preview", "change"] * changes
