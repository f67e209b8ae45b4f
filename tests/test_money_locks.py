"""The money path over a payment company holds the merchant's database lock
across processes, and never runs without it.

Two portal apps over one database stand for two workers (or two hosts):
each has its own engine, its own SQLAlchemy store and its own Stripe
client, so nothing in one process can hold the other back; only the
database's lock can. The payment is slowed down, so that the second
worker arrives while the first is paying. The same over gunicorn, the
example app and Dodo's fake server is in ``tests/test_locks_across_servers.py``.

A store without that lock (one written before the storage protocol had it)
is refused at start-up in live mode, and its money path is refused
whatever the mode.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import stripe
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import SECRET, make_portal_app
from stripe_support import StripeScenario, invoice_pays, seed_stripe, stripe_client

from flask_customer_portal import ConfigurationError, CustomerPortal
from flask_customer_portal.billing.collect import idempotency_key
from flask_customer_portal.billing.outcomes import PaymentOutcome
from flask_customer_portal.billing.renewal import ReactivationResult, reactivate_subscription
from flask_customer_portal.contrib.composite import BILLING_CORE, CompositeStorage, MappingCustomerIds
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.contrib.stripe import StripeBillingStore, StripePaymentProvider
from flask_customer_portal.production import money_lock_problem
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import StateConflict
from flask_customer_portal.testing import TestPaymentProvider

BUDI = "cus_demo_budi"
#: How long a payment takes at the slowed Stripe: the second worker comes meanwhile.
PAYMENT_TAKES = 0.4


class _SlowStripe(StripePaymentProvider):
    """Stripe's provider in one worker, whose payments take a while, as a
    bank's do. ``asked`` (shared by the workers) notes each payment asked
    of Stripe."""

    def __init__(self, client: stripe.StripeClient, ids: MappingCustomerIds, asked: list[str]) -> None:
        super().__init__(client, publishable_key="pk_test_portal", customer_ids=ids)
        self.asked = asked

    def charge(self, **kwargs: Any) -> Any:
        self.asked.append(kwargs["idempotency_key"])
        time.sleep(PAYMENT_TAKES)
        return super().charge(**kwargs)


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
def scenario(localstripe: stripe.StripeClient) -> StripeScenario:
    return seed_stripe(localstripe)


@pytest.fixture
def asked() -> list[str]:
    return []


@pytest.fixture
def workers(
    db_url: str, localstripe_url: str, scenario: StripeScenario, asked: list[str]
) -> Iterator[list[Flask]]:
    """Two workers of one shop over Stripe: Budi is Stripe's Ava."""
    ids = MappingCustomerIds.from_dict({BUDI: scenario.customer_id})
    apps = []
    for n in range(2):
        client = stripe_client(localstripe_url)
        apps.append(
            make_portal_app(
                db_url,
                payments=_SlowStripe(client, ids, asked),
                demo_data=n == 0,
                wrap_storage=lambda store, client=client: CompositeStorage(
                    store, billing=StripeBillingStore(client), customer_ids=ids
                ),
            )
        )
    yield apps
    _close(apps)


def _reactivate(app: Flask, subscription_id: str, card: str) -> ReactivationResult:
    with app.test_request_context():
        state = get_state(app)
        customer = state.storage.get_customer(BUDI)
        method = state.storage.get_payment_method(BUDI, card)
        assert customer is not None and method is not None
        return reactivate_subscription(state, customer, subscription_id, method)


def _at_once(calls: list[Any]) -> list[Any]:
    """Run the calls in threads released together; their results, or the first error."""
    barrier = threading.Barrier(len(calls), timeout=30)
    results: list[Any] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def run(call: Any) -> None:
        try:
            barrier.wait()
            result = call()
        except BaseException as exc:  # re-raised in the test's thread
            with guard:
                errors.append(exc)
            return
        with guard:
            results.append(result)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_two_workers_reactivating_over_stripe_pay_once(
    workers: list[Flask],
    localstripe: stripe.StripeClient,
    localstripe_url: str,
    scenario: StripeScenario,
    asked: list[str],
) -> None:
    subscription, invoice = scenario.on_hold_subscription_id, scenario.open_invoice_id
    # The lock's row exists, as after any earlier visit: the workers wait on
    # the row's lock itself, not on each other's insert of it.
    with (
        workers[0].app_context(),
        get_state(workers[0]).storage.lock_provider_subscription(BUDI, subscription),
    ):
        pass
    started = time.monotonic()
    results = _at_once([lambda app=app: _reactivate(app, subscription, scenario.card_id) for app in workers])
    outcomes = sorted(result.outcome for result in results)
    # One worker paid; the other waited for the database's lock, then found
    # the subscription active at Stripe and asked for nothing.
    assert outcomes == sorted([PaymentOutcome.PAID, PaymentOutcome.ALREADY_PAID])
    assert time.monotonic() - started >= PAYMENT_TAKES
    key = idempotency_key(invoice, 1)
    assert asked == [key]
    assert [(pay["idempotency_key"], pay["status"]) for pay in invoice_pays(localstripe_url, invoice)] == [
        (key, 200)
    ]
    paid = localstripe.v1.invoices.retrieve(invoice)
    assert paid.status == "paid"
    metadata = paid.to_dict().get("metadata") or {}
    attempts = {k: json.loads(v)["s"] for k, v in metadata.items() if k.startswith("portal_attempt_")}
    assert attempts == {"portal_attempt_1": "succeeded"}
    with workers[1].app_context():
        local = get_state(workers[1]).storage.local  # type: ignore[attr-defined]
        actions = [e.action for e in local.list_events(BUDI)]
    assert actions.count("charge.succeeded") == 1
    assert actions.count("subscription.reactivated") == 1
    assert not [
        a for a in actions if a in ("charge.failed", "charge.declined", "subscription.reactivation_failed")
    ]


# -- a store without the lock ------------------------------------------------------------------


class _WithoutProviderLocks:
    """A complete store of the kind written before the storage protocol had
    ``lock_provider_subscription``: everything of the SQLAlchemy store but that."""

    def __init__(self, store: SQLAlchemyStorage) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "lock_provider_subscription":
            raise AttributeError(name)
        return getattr(self._store, name)


class _ChargingBilling:
    """A billing back end with the money path; notes whether it was entered."""

    def __init__(self) -> None:
        self.entered = False

    def __getattr__(self, name: str) -> Any:
        if name in BILLING_CORE:
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    @contextmanager
    def lock_subscription(self, customer_id: str, subscription_id: str) -> Iterator[Any]:
        self.entered = True
        yield object()

    def subscriptions_due(self, now: Any, *, limit: int = 100) -> list[Any]:
        return []


class _BillingOnly:
    """A billing back end without the money path (as Dodo's store)."""

    def __getattr__(self, name: str) -> Any:
        if name in BILLING_CORE:
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class _BillsItself(TestPaymentProvider):
    """A provider that bills subscriptions itself (as Dodo's does)."""

    bills_subscriptions = True


class _Live(TestPaymentProvider):
    is_test = False


class _LiveBillsItself(_BillsItself):
    is_test = False


LIVE: dict[str, Any] = {
    "CUSTOMER_PORTAL_MODE": "live",
    "SECRET_KEY": "k" * 16 + "0123456789abcdef0123",
    "SESSION_COOKIE_SECURE": True,
    "MAIL_SERVER": "smtp.example.com",
    "MAIL_USE_TLS": True,
    "CUSTOMER_PORTAL_SINGLE_PROCESS": True,
}


def _host(tmp_path: Path, **config: Any) -> tuple[Flask, SQLAlchemyStorage]:
    app = Flask("money_locks")
    app.config.update(
        SECRET_KEY=SECRET,
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'portal.db'}",
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="https://shop.example.com",
    )
    app.config.update(config)
    return app, SQLAlchemyStorage(SQLAlchemy(app))


@pytest.fixture
def hosts() -> Iterator[list[Flask]]:
    apps: list[Flask] = []
    yield apps
    for app in apps:
        if "customer_portal" in app.extensions:
            get_state(app).shutdown()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def test_a_composite_without_the_lock_refuses_the_money_path(sqlite_store: SQLAlchemyStorage) -> None:
    billing = _ChargingBilling()
    composite = CompositeStorage(_WithoutProviderLocks(sqlite_store), billing=billing)  # type: ignore[arg-type]
    assert composite.locks_across_processes is False
    with pytest.raises(StateConflict), composite.lock_subscription("cus_demo_ava", "sub_1"):
        pass  # pragma: no cover - never entered
    assert billing.entered is False
    with pytest.raises(StateConflict):
        composite.lock_provider_subscription("cus_demo_ava", "sub_1")
    # Over the SQLAlchemy store the lock is there, and the block runs.
    locked = CompositeStorage(sqlite_store, billing=_ChargingBilling())
    assert locked.locks_across_processes is True
    with locked.lock_subscription("cus_demo_ava", "sub_1") as lock:
        assert lock is not None


@pytest.mark.parametrize(
    ("storage_of", "payments"),
    [
        pytest.param(
            lambda store: CompositeStorage(_WithoutProviderLocks(store), billing=_ChargingBilling()),
            _Live(),
            id="composite over a charging back end",
        ),
        pytest.param(
            lambda store: CompositeStorage(_WithoutProviderLocks(store), billing=_BillingOnly()),
            _LiveBillsItself(),
            id="composite, provider bills itself",
        ),
        pytest.param(
            lambda store: _WithoutProviderLocks(store), _LiveBillsItself(), id="provider bills itself"
        ),
    ],
)
def test_live_mode_refuses_a_money_path_without_the_lock(
    tmp_path: Path, hosts: list[Flask], storage_of: Any, payments: Any
) -> None:
    app, store = _host(tmp_path, **LIVE)
    hosts.append(app)
    with pytest.raises(ConfigurationError) as refused:
        CustomerPortal(app, storage=storage_of(store), payments=payments)
    assert refused.value.key == "storage"
    assert "lock_provider_subscription" in str(refused.value)
    assert "customer_portal" not in app.extensions


def test_live_mode_starts_with_the_sqlalchemy_store_as_the_local_store(
    tmp_path: Path, hosts: list[Flask]
) -> None:
    app, store = _host(tmp_path, **LIVE)
    hosts.append(app)
    composite = CompositeStorage(store, billing=_ChargingBilling())
    CustomerPortal(app, storage=composite, payments=_Live())
    assert get_state(app).storage is composite
    assert money_lock_problem(store, _LiveBillsItself()) is None


def test_test_mode_starts_warns_and_refuses_when_money_would_move(
    tmp_path: Path, hosts: list[Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app, store = _host(tmp_path)
    hosts.append(app)
    billing = _ChargingBilling()
    with caplog.at_level(logging.WARNING, logger="flask_customer_portal"):
        CustomerPortal(app, storage=CompositeStorage(_WithoutProviderLocks(store), billing=billing))
    assert "without a lock that holds across processes" in caplog.text
    with app.app_context():
        store.create_all()
        lines = app.test_cli_runner().invoke(args=["portal", "check"]).output.splitlines()
        (line,) = [line for line in lines if "money lock:" in line]
        assert line.startswith("FAIL") and "lock_provider_subscription" in line
        with pytest.raises(StateConflict), get_state(app).storage.lock_subscription("cus_demo_ava", "sub_1"):
            pass  # pragma: no cover - never entered
    assert billing.entered is False
