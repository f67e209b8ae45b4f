"""Webhook events handled once: the store's claims, on SQLite and on
PostgreSQL, how a composite store routes them, the per-process fallback and
the ``prune-webhook-events`` command.

The webhook views themselves are tested in ``test_stripe.py`` and
``test_dodo.py``.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from portal_fixtures import BASE_URL, SECRET
from sqlalchemy import func, insert, select

from flask_customer_portal.contrib._webhooks import WebhookEvents
from flask_customer_portal.contrib.composite import CompositeStorage, local_only_members
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage, WebhookEventModel
from flask_customer_portal.storage import AccessStore, store_supports

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def in_threads(app: Flask, count: int, work: Callable[[], Any]) -> list[Any]:
    """``work`` in ``count`` threads released together, each with its own
    app context (its own session and connection)."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                result = work()
            with lock:
                results.append(result)
        except BaseException as exc:  # re-raised in the test's thread
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    assert len(results) == count
    return results


def rows(store: SQLAlchemyStorage) -> int:
    session = store._db.session
    return int(session.scalar(select(func.count()).select_from(WebhookEventModel)) or 0)


# -- the SQLAlchemy store -------------------------------------------------------------------


def test_an_event_is_claimed_once(store: SQLAlchemyStorage) -> None:
    assert store.claim_webhook_event("stripe", "evt_1", T0) is True
    assert store.claim_webhook_event("stripe", "evt_1", T0 + timedelta(seconds=5)) is False
    assert store.claim_webhook_event("stripe", "evt_1", T0 + timedelta(days=2)) is False
    # Ids are the provider's: the same id at another provider is another event.
    assert store.claim_webhook_event("dodo", "evt_1", T0) is True
    assert store.claim_webhook_event("stripe", "evt_2", T0) is True
    assert rows(store) == 3


def test_a_released_claim_can_be_claimed_again(store: SQLAlchemyStorage) -> None:
    assert store.claim_webhook_event("dodo", "msg_1", T0)
    store.release_webhook_event("dodo", "msg_1")
    assert store.claim_webhook_event("dodo", "msg_1", T0 + timedelta(minutes=5)) is True
    assert store.claim_webhook_event("dodo", "msg_1", T0 + timedelta(minutes=6)) is False
    # Releasing what was never claimed, or another provider's id, changes nothing.
    store.release_webhook_event("dodo", "msg_unknown")
    store.release_webhook_event("stripe", "msg_1")
    assert store.claim_webhook_event("dodo", "msg_1", T0) is False


def test_a_claim_needs_an_aware_time_and_ids_that_fit(store: SQLAlchemyStorage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.claim_webhook_event("stripe", "evt_1", datetime(2026, 12, 1, 8, 0))
    with pytest.raises(ValueError, match="event_id"):
        store.claim_webhook_event("stripe", "evt_" + "x" * 300, T0)
    with pytest.raises(ValueError, match="provider"):
        store.claim_webhook_event("", "evt_1", T0)
    assert rows(store) == 0
    assert store.claim_webhook_event("stripe", "evt_1", T0) is True


def test_concurrent_claims_of_one_event_give_exactly_one_true(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    for round_ in range(3):
        claim = partial(store.claim_webhook_event, "stripe", f"evt_race_{round_}", T0)
        results = in_threads(store_app, 8, claim)
        assert sorted(results) == [False] * 7 + [True]
    assert rows(store) == 3


def test_a_claim_waits_for_an_open_claim_and_wins_if_it_rolls_back(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    """Decided by the committed row: a claim made while another transaction
    holds an uncommitted one waits for it, and gets the event if that
    transaction rolls back (a worker whose handling failed)."""
    results: list[bool] = []

    def claim() -> None:
        with store_app.app_context():
            results.append(store.claim_webhook_event("stripe", "evt_rb", T0))

    with store._db.engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(
            insert(WebhookEventModel).values(provider="stripe", event_id="evt_rb", received_at=T0)
        )
        waiting = threading.Thread(target=claim)
        waiting.start()
        waiting.join(timeout=1)
        assert waiting.is_alive(), "the claim did not wait for the open transaction"
        transaction.rollback()
    waiting.join(timeout=30)
    assert results == [True]
    assert store.claim_webhook_event("stripe", "evt_rb", T0) is False


def test_old_events_are_pruned(store: SQLAlchemyStorage) -> None:
    for days in (40, 31, 29, 1):
        assert store.claim_webhook_event("stripe", f"evt_{days}", T0 - timedelta(days=days))
    assert store.prune_webhook_events(T0 - timedelta(days=30)) == 2
    assert rows(store) == 2
    assert store.claim_webhook_event("stripe", "evt_29", T0) is False
    # A pruned id is new again: prune only past the time the provider retries.
    assert store.claim_webhook_event("stripe", "evt_40", T0) is True
    with pytest.raises(ValueError, match="timezone-aware"):
        store.prune_webhook_events(datetime(2026, 1, 1))


def test_the_table_is_made_by_create_all(store: SQLAlchemyStorage) -> None:
    table = WebhookEventModel.__table__
    assert table.name == "portal_webhook_events"
    assert [c.name for c in table.primary_key.columns] == ["provider", "event_id"]
    assert "payload" not in table.columns
    assert rows(store) == 0


def test_the_store_implements_the_protocol_members(store: SQLAlchemyStorage) -> None:
    assert isinstance(store, AccessStore)
    assert store_supports(store, "claim_webhook_event")
    assert store_supports(store, "release_webhook_event")


# -- composite storage ----------------------------------------------------------------------


class _Billing:
    """A billing adapter with the core reads and writes, and (wrongly) a
    claim of its own, which must never be used."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)

    def claim_webhook_event(self, *args: Any) -> bool:  # pragma: no cover - never called
        raise AssertionError("claims are the local store's")


for _name in (
    "list_subscriptions",
    "get_subscription",
    "list_invoices",
    "get_invoice",
    "list_payment_methods",
    "get_payment_method",
    "add_payment_method",
    "remove_payment_method",
    "set_subscription_payment_method",
    "cancel_subscription",
    "undo_cancellation",
):
    setattr(_Billing, _name, lambda self, *a, **k: None)


def test_a_composite_store_claims_in_the_local_store(sqlite_store: SQLAlchemyStorage) -> None:
    composite = CompositeStorage(sqlite_store, billing=_Billing())
    assert {"claim_webhook_event", "release_webhook_event"} <= local_only_members()
    assert composite.backend_of("claim_webhook_event") is sqlite_store
    assert store_supports(composite, "claim_webhook_event")
    assert composite.claim_webhook_event("dodo", "msg_1", T0) is True
    assert sqlite_store.claim_webhook_event("dodo", "msg_1", T0) is False
    composite.release_webhook_event("dodo", "msg_1")
    assert sqlite_store.claim_webhook_event("dodo", "msg_1", T0) is True
    assert composite.prune_webhook_events(T0 + timedelta(days=1)) == 1


class _LocalWithoutClaims:
    """A local store from before claims existed."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def test_a_composite_over_a_store_without_claims_does_not_support_them() -> None:
    composite = CompositeStorage(_LocalWithoutClaims(), billing=_Billing())  # type: ignore[arg-type]
    assert not store_supports(composite, "claim_webhook_event")


# -- WebhookEvents: the views' gate ---------------------------------------------------------


class _Boom(Exception):
    pass


def fail_while_handling(events: WebhookEvents, storage: object, event_id: str) -> None:
    with events.handling(storage, event_id) as first:
        assert first
        raise _Boom


def test_with_claims_a_failure_releases_the_claim(sqlite_store: SQLAlchemyStorage) -> None:
    events, other_worker = WebhookEvents("stripe"), WebhookEvents("stripe")
    with pytest.raises(_Boom):
        fail_while_handling(events, sqlite_store, "evt_1")
    with events.handling(sqlite_store, "evt_1") as first:
        assert first
    # Another worker (another instance, no shared memory) sees it handled.
    with other_worker.handling(sqlite_store, "evt_1") as first:
        assert not first
    with events.handling(sqlite_store, "evt_1") as first:
        assert not first


def test_a_failed_release_is_logged_without_hiding_the_error(
    sqlite_store: SQLAlchemyStorage, caplog: pytest.LogCaptureFixture
) -> None:
    class Store:
        def claim_webhook_event(self, provider: str, event_id: str, received_at: datetime) -> bool:
            return True

        def release_webhook_event(self, provider: str, event_id: str) -> None:
            raise OSError("database gone")

    with pytest.raises(_Boom):
        fail_while_handling(WebhookEvents("dodo"), Store(), "msg_9")
    assert "msg_9" in caplog.text and "OSError" in caplog.text
    assert "database gone" not in caplog.text


def test_without_claims_each_process_remembers_what_it_handled() -> None:
    events = WebhookEvents("stripe", remembered=2)
    store_without_claims = object()
    with pytest.raises(_Boom):
        fail_while_handling(events, store_without_claims, "evt_1")
    for expected in (True, False):
        with events.handling(None, "evt_1") as first:
            assert first is expected
    with events.handling(None, "evt_2") as first:
        assert first
    with events.handling(None, "evt_3") as first:
        assert first
    # Only the newest ``remembered`` ids are kept.
    with events.handling(None, "evt_1") as first:
        assert first


def test_without_claims_concurrent_deliveries_in_one_process_are_handled_once() -> None:
    events = WebhookEvents("dodo")
    count = 6
    barrier = threading.Barrier(count)
    repeats_answered = threading.Semaphore(0)
    handled: list[bool] = []
    lock = threading.Lock()

    def deliver() -> None:
        barrier.wait(timeout=30)
        with events.handling(None, "msg_race") as first:
            if first:
                # Still handling while every other delivery arrives.
                for _ in range(count - 1):
                    assert repeats_answered.acquire(timeout=10)
            else:
                repeats_answered.release()
            with lock:
                handled.append(first)

    threads = [threading.Thread(target=deliver) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(handled) == [False] * (count - 1) + [True]


# -- the command ----------------------------------------------------------------------------


def test_the_prune_command(sqlite_app: Flask, sqlite_store: SQLAlchemyStorage) -> None:
    from flask_customer_portal import CustomerPortal
    from flask_customer_portal.cli import portal_cli

    sqlite_app.config.update(
        SECRET_KEY=SECRET,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL=BASE_URL,
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
    )
    portal = CustomerPortal(sqlite_app, storage=sqlite_store)
    now = datetime.now(UTC)
    sqlite_store.claim_webhook_event("stripe", "evt_old", now - timedelta(days=45))
    sqlite_store.claim_webhook_event("stripe", "evt_new", now - timedelta(days=2))
    runner = sqlite_app.test_cli_runner()
    result = runner.invoke(portal_cli, ["prune-webhook-events"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "pruned: 1"
    result = runner.invoke(portal_cli, ["prune-webhook-events", "--older-than-days", "1"])
    assert result.output.strip() == "pruned: 1"
    assert runner.invoke(portal_cli, ["prune-webhook-events", "--older-than-days", "0"]).exit_code == 2
    portal.get_state(sqlite_app).shutdown()
