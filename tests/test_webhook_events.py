"""Webhook events handled once: the store's claims, on SQLite and on
PostgreSQL, how a composite store routes them, the per-process fallback and
the ``prune-webhook-events`` command.

The webhook views themselves are tested in ``test_stripe.py`` and
``test_dodo.py``.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from db_support import in_threads
from portal_fixtures import BASE_URL, SECRET
from sqlalchemy import func, insert, select, update

from flask_customer_portal.capabilities import capabilities_of
from flask_customer_portal.contrib._webhooks import LEASE, WebhookEvents
from flask_customer_portal.contrib.composite import BILLING_CORE, CompositeStorage, local_only_members
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage, WebhookEventModel
from flask_customer_portal.storage import AccessStore, WebhookClaim

if TYPE_CHECKING:
    from flask import Flask

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
CLAIMED, HANDLED, IN_PROGRESS = WebhookClaim.CLAIMED, WebhookClaim.HANDLED, WebhookClaim.IN_PROGRESS


def rows(store: SQLAlchemyStorage) -> int:
    session = store._db.session
    return int(session.scalar(select(func.count()).select_from(WebhookEventModel)) or 0)


# -- the SQLAlchemy store -------------------------------------------------------------------


def claim(store: SQLAlchemyStorage, provider: str, event_id: str, now: datetime) -> WebhookClaim:
    return store.claim_webhook_event(provider, event_id, now, lease=LEASE)


def row(store: SQLAlchemyStorage, provider: str, event_id: str) -> tuple[datetime, datetime | None] | None:
    found = store._db.session.execute(
        select(WebhookEventModel.received_at, WebhookEventModel.handled_at).where(
            WebhookEventModel.provider == provider, WebhookEventModel.event_id == event_id
        )
    ).first()
    return None if found is None else (found.received_at, found.handled_at)


def test_an_event_is_claimed_once_then_in_progress_then_handled(store: SQLAlchemyStorage) -> None:
    assert claim(store, "stripe", "evt_1", T0) is CLAIMED
    assert claim(store, "stripe", "evt_1", T0 + timedelta(seconds=5)) is IN_PROGRESS
    assert row(store, "stripe", "evt_1") == (T0, None)
    store.finish_webhook_event("stripe", "evt_1", T0 + timedelta(seconds=7))
    assert row(store, "stripe", "evt_1") == (T0, T0 + timedelta(seconds=7))
    assert claim(store, "stripe", "evt_1", T0 + timedelta(seconds=8)) is HANDLED
    # A handled event is never taken over, however old.
    assert claim(store, "stripe", "evt_1", T0 + timedelta(days=2)) is HANDLED
    # Ids are the provider's: the same id at another provider is another event.
    assert claim(store, "dodo", "evt_1", T0) is CLAIMED
    assert claim(store, "stripe", "evt_2", T0) is CLAIMED
    assert rows(store) == 3


def test_finishing_keeps_the_first_time_and_ignores_unknown_events(store: SQLAlchemyStorage) -> None:
    assert claim(store, "dodo", "msg_1", T0) is CLAIMED
    store.finish_webhook_event("dodo", "msg_1", T0 + timedelta(seconds=1))
    store.finish_webhook_event("dodo", "msg_1", T0 + timedelta(seconds=9))
    assert row(store, "dodo", "msg_1") == (T0, T0 + timedelta(seconds=1))
    store.finish_webhook_event("dodo", "msg_unknown", T0)
    store.finish_webhook_event("stripe", "msg_1", T0)
    assert rows(store) == 1
    assert claim(store, "stripe", "msg_1", T0) is CLAIMED
    with pytest.raises(ValueError, match="timezone-aware"):
        store.finish_webhook_event("dodo", "msg_1", datetime(2026, 12, 1, 8, 0))


def test_an_unfinished_claim_is_taken_over_after_the_lease_and_not_before(store: SQLAlchemyStorage) -> None:
    assert claim(store, "stripe", "evt_dead", T0) is CLAIMED
    assert claim(store, "stripe", "evt_dead", T0 + LEASE - timedelta(seconds=1)) is IN_PROGRESS
    assert row(store, "stripe", "evt_dead") == (T0, None)
    taken_at = T0 + LEASE
    assert claim(store, "stripe", "evt_dead", taken_at) is CLAIMED
    # The claim now counts from its takeover: a lease from then on.
    assert row(store, "stripe", "evt_dead") == (taken_at, None)
    assert claim(store, "stripe", "evt_dead", taken_at + timedelta(seconds=1)) is IN_PROGRESS
    assert claim(store, "stripe", "evt_dead", taken_at + LEASE - timedelta(seconds=1)) is IN_PROGRESS
    store.finish_webhook_event("stripe", "evt_dead", taken_at + timedelta(seconds=2))
    assert claim(store, "stripe", "evt_dead", taken_at + 2 * LEASE) is HANDLED
    # The lease is the caller's: a shorter one makes a claim stale sooner.
    assert claim(store, "dodo", "msg_short", T0) is CLAIMED
    short = timedelta(seconds=30)
    assert store.claim_webhook_event("dodo", "msg_short", T0 + short, lease=short) is CLAIMED
    assert store.claim_webhook_event("dodo", "msg_short", T0 + short, lease=short) is IN_PROGRESS


def test_a_released_claim_can_be_claimed_again(store: SQLAlchemyStorage) -> None:
    assert claim(store, "dodo", "msg_1", T0) is CLAIMED
    store.release_webhook_event("dodo", "msg_1")
    assert rows(store) == 0
    assert claim(store, "dodo", "msg_1", T0 + timedelta(minutes=1)) is CLAIMED
    assert claim(store, "dodo", "msg_1", T0 + timedelta(minutes=2)) is IN_PROGRESS
    # Releasing what was never claimed, or another provider's id, changes nothing.
    store.release_webhook_event("dodo", "msg_unknown")
    store.release_webhook_event("stripe", "msg_1")
    assert claim(store, "dodo", "msg_1", T0 + timedelta(minutes=2)) is IN_PROGRESS
    # A finished event stays handled: a late release (a delivery that took
    # over a claim another one then finished) does not make it new again.
    store.finish_webhook_event("dodo", "msg_1", T0 + timedelta(minutes=3))
    store.release_webhook_event("dodo", "msg_1")
    assert claim(store, "dodo", "msg_1", T0 + timedelta(minutes=4)) is HANDLED


def test_a_claim_needs_an_aware_time_a_lease_and_ids_that_fit(store: SQLAlchemyStorage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        claim(store, "stripe", "evt_1", datetime(2026, 12, 1, 8, 0))
    with pytest.raises(ValueError, match="event_id"):
        claim(store, "stripe", "evt_" + "x" * 300, T0)
    with pytest.raises(ValueError, match="provider"):
        claim(store, "", "evt_1", T0)
    for lease in (timedelta(0), -LEASE):
        with pytest.raises(ValueError, match="lease"):
            store.claim_webhook_event("stripe", "evt_1", T0, lease=lease)
    assert rows(store) == 0
    assert claim(store, "stripe", "evt_1", T0) is CLAIMED


def test_concurrent_claims_of_one_event_give_exactly_one_claimed(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    for round_ in range(3):
        results = in_threads(store_app, 8, partial(claim, store, "stripe", f"evt_race_{round_}", T0))
        assert sorted(results) == sorted([CLAIMED] + [IN_PROGRESS] * 7)
    assert rows(store) == 3


def test_concurrent_takeovers_of_one_stale_claim_give_exactly_one_claimed(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    later = T0 + LEASE + timedelta(seconds=1)
    for round_ in range(3):
        event_id = f"evt_dead_{round_}"
        assert claim(store, "stripe", event_id, T0) is CLAIMED
        store._db.session.rollback()  # end this thread's read before the others write
        results = in_threads(store_app, 8, partial(claim, store, "stripe", event_id, later))
        assert sorted(results) == sorted([CLAIMED] + [IN_PROGRESS] * 7)
        assert row(store, "stripe", event_id) == (later, None)
        store._db.session.rollback()
    assert rows(store) == 3


def test_concurrent_repeats_of_a_handled_event_are_all_handled(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    assert claim(store, "stripe", "evt_done", T0) is CLAIMED
    store.finish_webhook_event("stripe", "evt_done", T0)
    results = in_threads(store_app, 8, partial(claim, store, "stripe", "evt_done", T0 + 2 * LEASE))
    assert results == [HANDLED] * 8


@pytest.mark.slow
def test_a_claim_waits_for_an_open_claim_and_wins_if_it_rolls_back(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    """Decided by the committed row: a claim made while another transaction
    holds an uncommitted one waits for it, and gets the event if that
    transaction rolls back (a worker whose handling failed)."""
    results: list[WebhookClaim] = []

    def claim_in_thread() -> None:
        with store_app.app_context():
            results.append(claim(store, "stripe", "evt_rb", T0))

    with store._db.engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(
            insert(WebhookEventModel).values(provider="stripe", event_id="evt_rb", received_at=T0)
        )
        waiting = threading.Thread(target=claim_in_thread)
        waiting.start()
        waiting.join(timeout=1)
        assert waiting.is_alive(), "the claim did not wait for the open transaction"
        transaction.rollback()
    waiting.join(timeout=30)
    assert results == [CLAIMED]
    assert claim(store, "stripe", "evt_rb", T0) is IN_PROGRESS


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_takeover_waits_for_an_open_takeover(
    store_app: Flask, store: SQLAlchemyStorage, outcome: str
) -> None:
    """A takeover made while another transaction holds an uncommitted one
    of the same claim waits for it: the claim is in progress if that
    transaction commits, and this caller's if it rolls back."""
    assert claim(store, "stripe", "evt_to", T0) is CLAIMED
    store._db.session.rollback()
    later = T0 + LEASE + timedelta(seconds=1)
    results: list[WebhookClaim] = []

    def claim_in_thread() -> None:
        with store_app.app_context():
            results.append(claim(store, "stripe", "evt_to", later + timedelta(seconds=1)))

    with store._db.engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(
            update(WebhookEventModel).where(WebhookEventModel.event_id == "evt_to").values(received_at=later)
        )
        waiting = threading.Thread(target=claim_in_thread)
        waiting.start()
        waiting.join(timeout=1)
        assert waiting.is_alive(), "the takeover did not wait for the open transaction"
        getattr(transaction, outcome)()
    waiting.join(timeout=30)
    assert results == ([IN_PROGRESS] if outcome == "commit" else [CLAIMED])


def test_old_events_are_pruned(store: SQLAlchemyStorage) -> None:
    for days in (40, 31, 29, 1):
        assert claim(store, "stripe", f"evt_{days}", T0 - timedelta(days=days)) is CLAIMED
        store.finish_webhook_event("stripe", f"evt_{days}", T0 - timedelta(days=days))
    assert store.prune_webhook_events(T0 - timedelta(days=30)) == 2
    assert rows(store) == 2
    assert claim(store, "stripe", "evt_29", T0) is HANDLED
    # A pruned id is new again: prune only past the time the provider retries.
    assert claim(store, "stripe", "evt_40", T0) is CLAIMED
    with pytest.raises(ValueError, match="timezone-aware"):
        store.prune_webhook_events(datetime(2026, 1, 1))


def test_the_table_is_made_by_create_all(store: SQLAlchemyStorage) -> None:
    table = WebhookEventModel.__table__
    assert table.name == "portal_webhook_events"
    assert [c.name for c in table.primary_key.columns] == ["provider", "event_id"]
    assert set(table.columns.keys()) == {"provider", "event_id", "received_at", "handled_at"}
    assert table.columns["handled_at"].nullable
    assert not table.columns["received_at"].nullable
    assert rows(store) == 0


def test_the_store_implements_the_protocol_members(store: SQLAlchemyStorage) -> None:
    assert isinstance(store, AccessStore)
    # The capability needs all three: claim_webhook_event, finish_webhook_event, release_webhook_event.
    assert capabilities_of(store).webhook_claims


# -- composite storage ----------------------------------------------------------------------


class _Billing:
    """A billing adapter with the core reads and writes, and (wrongly) a
    claim of its own, which must never be used."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)

    def claim_webhook_event(self, *args: Any, **kwargs: Any) -> WebhookClaim:  # pragma: no cover
        raise AssertionError("claims are the local store's")


for _name in BILLING_CORE:
    setattr(_Billing, _name, lambda self, *a, **k: None)


def test_a_composite_store_claims_in_the_local_store(sqlite_store: SQLAlchemyStorage) -> None:
    composite = CompositeStorage(sqlite_store, billing=_Billing())
    members = {"claim_webhook_event", "finish_webhook_event", "release_webhook_event"}
    assert members <= local_only_members()
    for name in members:
        assert composite.backend_of(name) is sqlite_store
    assert capabilities_of(composite).webhook_claims
    assert composite.claim_webhook_event("dodo", "msg_1", T0, lease=LEASE) is CLAIMED
    assert claim(sqlite_store, "dodo", "msg_1", T0) is IN_PROGRESS
    composite.release_webhook_event("dodo", "msg_1")
    assert claim(sqlite_store, "dodo", "msg_1", T0) is CLAIMED
    composite.finish_webhook_event("dodo", "msg_1", T0)
    assert composite.claim_webhook_event("dodo", "msg_1", T0, lease=LEASE) is HANDLED
    assert composite.prune_webhook_events(T0 + timedelta(days=1)) == 1


class _LocalWithoutClaims:
    """A local store from before claims existed."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def test_a_composite_over_a_store_without_claims_does_not_support_them() -> None:
    composite = CompositeStorage(_LocalWithoutClaims(), billing=_Billing())  # type: ignore[arg-type]
    assert not capabilities_of(composite).webhook_claims


# -- WebhookEvents: the views' gate ---------------------------------------------------------


class _Boom(Exception):
    pass


def fail_while_handling(events: WebhookEvents, storage: object, event_id: str) -> None:
    with events.handling(storage, event_id) as claimed:
        assert claimed is CLAIMED
        raise _Boom


def handle(events: WebhookEvents, storage: object, event_id: str) -> WebhookClaim:
    with events.handling(storage, event_id) as claimed:
        return claimed


def test_with_claims_the_three_states(sqlite_store: SQLAlchemyStorage) -> None:
    events, other_worker = WebhookEvents("stripe"), WebhookEvents("stripe")
    assert events.lease == LEASE == timedelta(minutes=5)
    with events.handling(sqlite_store, "evt_1") as claimed:
        assert claimed is CLAIMED
        # Another worker (another instance, no shared memory) sees it being handled.
        assert handle(other_worker, sqlite_store, "evt_1") is IN_PROGRESS
        being_handled = row(sqlite_store, "stripe", "evt_1")
        assert being_handled is not None and being_handled[1] is None
    # Finished when the block ended normally.
    handled = row(sqlite_store, "stripe", "evt_1")
    assert handled is not None and handled[1] is not None
    assert handle(other_worker, sqlite_store, "evt_1") is HANDLED
    assert handle(events, sqlite_store, "evt_1") is HANDLED


def test_with_claims_an_early_return_finishes_the_event(sqlite_store: SQLAlchemyStorage) -> None:
    events = WebhookEvents("dodo")

    def view() -> str:
        with events.handling(sqlite_store, "msg_ret") as claimed:
            if claimed is CLAIMED:
                return "handled"
            return "skipped"

    assert [view(), view()] == ["handled", "skipped"]
    assert handle(events, sqlite_store, "msg_ret") is HANDLED


def test_with_claims_a_failure_releases_the_claim(sqlite_store: SQLAlchemyStorage) -> None:
    events, other_worker = WebhookEvents("stripe"), WebhookEvents("stripe")
    with pytest.raises(_Boom):
        fail_while_handling(events, sqlite_store, "evt_1")
    assert rows(sqlite_store) == 0
    assert handle(events, sqlite_store, "evt_1") is CLAIMED
    assert handle(other_worker, sqlite_store, "evt_1") is HANDLED
    assert handle(events, sqlite_store, "evt_1") is HANDLED


def test_with_claims_the_lease_is_the_gates(sqlite_store: SQLAlchemyStorage) -> None:
    now = datetime.now(UTC)
    sqlite_store._db.session.execute(
        insert(WebhookEventModel).values(
            provider="dodo", event_id="msg_dead", received_at=now - timedelta(minutes=2)
        )
    )
    sqlite_store._db.session.commit()
    # Two minutes old: in progress with the default lease, stale with one minute.
    assert handle(WebhookEvents("dodo"), sqlite_store, "msg_dead") is IN_PROGRESS
    assert handle(WebhookEvents("dodo", lease=timedelta(minutes=1)), sqlite_store, "msg_dead") is CLAIMED
    assert handle(WebhookEvents("dodo"), sqlite_store, "msg_dead") is HANDLED
    for lease in (timedelta(0), timedelta(seconds=-1)):
        with pytest.raises(ValueError, match="lease"):
            WebhookEvents("dodo", lease=lease)


class _Store:
    """A store whose claims are recorded, and whose finish and release
    may fail."""

    def __init__(self, *, finish_fails: bool = False, release_fails: bool = False) -> None:
        self.calls: list[str] = []
        self.finish_fails = finish_fails
        self.release_fails = release_fails

    def claim_webhook_event(
        self, provider: str, event_id: str, now: datetime, *, lease: timedelta
    ) -> WebhookClaim:
        self.calls.append(f"claim {event_id} {lease}")
        return CLAIMED

    def finish_webhook_event(self, provider: str, event_id: str, now: datetime) -> None:
        self.calls.append(f"finish {event_id}")
        if self.finish_fails:
            raise OSError("database gone at postgresql://portal:hunter2@db")

    def release_webhook_event(self, provider: str, event_id: str) -> None:
        self.calls.append(f"release {event_id}")
        if self.release_fails:
            raise OSError("database gone at postgresql://portal:hunter2@db")


def test_a_failed_release_is_logged_without_hiding_the_error(caplog: pytest.LogCaptureFixture) -> None:
    store = _Store(release_fails=True)
    with pytest.raises(_Boom):
        fail_while_handling(WebhookEvents("dodo"), store, "msg_9")
    assert store.calls == ["claim msg_9 0:05:00", "release msg_9"]
    assert "msg_9" in caplog.text and "OSError" in caplog.text
    assert "hunter2" not in caplog.text and "database gone" not in caplog.text


def test_a_failed_finish_is_logged_and_the_answer_stays_a_success(caplog: pytest.LogCaptureFixture) -> None:
    store = _Store(finish_fails=True)
    with caplog.at_level(logging.ERROR, logger="flask_customer_portal"):
        assert handle(WebhookEvents("stripe", lease=timedelta(minutes=7)), store, "evt_9") is CLAIMED
    assert store.calls == ["claim evt_9 0:07:00", "finish evt_9"]
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "evt_9" in record.getMessage() and "OSError" in record.getMessage()
    assert "0:07:00" in record.getMessage()
    assert "hunter2" not in caplog.text and "database gone" not in caplog.text


def test_an_unfinished_event_is_handled_again_after_the_lease(
    sqlite_store: SQLAlchemyStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim that could not be finished runs out after its lease: the
    event is then handled again (twice rather than never)."""

    def fail(*args: Any) -> None:
        raise OSError("database went away")

    monkeypatch.setattr(sqlite_store, "finish_webhook_event", fail)
    assert handle(WebhookEvents("stripe"), sqlite_store, "evt_lost") is CLAIMED
    monkeypatch.undo()
    found = row(sqlite_store, "stripe", "evt_lost")
    assert found is not None
    received_at, handled_at = found
    assert handled_at is None
    expires_at = received_at + LEASE
    assert claim(sqlite_store, "stripe", "evt_lost", expires_at - timedelta(seconds=1)) is IN_PROGRESS
    assert claim(sqlite_store, "stripe", "evt_lost", expires_at) is CLAIMED


def test_a_store_without_all_three_members_is_not_used() -> None:
    class WithoutFinish:
        def claim_webhook_event(self, *args: Any, **kwargs: Any) -> WebhookClaim:  # pragma: no cover
            raise AssertionError("a store without finish_webhook_event is not asked")

        def release_webhook_event(self, *args: Any) -> None:  # pragma: no cover
            raise AssertionError("a store without finish_webhook_event is not asked")

    events = WebhookEvents("stripe")
    assert handle(events, WithoutFinish(), "evt_1") is CLAIMED
    assert handle(events, WithoutFinish(), "evt_1") is HANDLED
    for missing in ("claim_webhook_event", "finish_webhook_event", "release_webhook_event"):
        store = _Store()
        setattr(store, missing, None)
        handle(WebhookEvents("stripe"), store, "evt_2")
        assert store.calls == []
    store = _Store()
    handle(WebhookEvents("stripe"), store, "evt_2")
    assert store.calls == ["claim evt_2 0:05:00", "finish evt_2"]


def test_without_claims_each_process_has_the_three_states() -> None:
    events = WebhookEvents("stripe", remembered=2)
    store_without_claims = object()
    with pytest.raises(_Boom):
        fail_while_handling(events, store_without_claims, "evt_1")
    with events.handling(None, "evt_1") as claimed:
        assert claimed is CLAIMED
        assert handle(events, None, "evt_1") is IN_PROGRESS
        assert handle(events, store_without_claims, "evt_1") is IN_PROGRESS
    assert handle(events, None, "evt_1") is HANDLED
    # Another process (another instance) knows nothing of it.
    assert handle(WebhookEvents("stripe"), None, "evt_1") is CLAIMED
    assert handle(events, None, "evt_2") is CLAIMED
    assert handle(events, None, "evt_3") is CLAIMED
    # Only the newest ``remembered`` ids are kept.
    assert handle(events, None, "evt_1") is CLAIMED
    assert handle(events, None, "evt_3") is HANDLED


def test_without_claims_concurrent_deliveries_in_one_process_are_handled_once() -> None:
    events = WebhookEvents("dodo")
    count = 6
    barrier = threading.Barrier(count)
    repeats_answered = threading.Semaphore(0)
    handled: list[WebhookClaim] = []
    lock = threading.Lock()

    def deliver() -> None:
        barrier.wait(timeout=30)
        with events.handling(None, "msg_race") as claimed:
            if claimed is CLAIMED:
                # Still handling while every other delivery arrives.
                for _ in range(count - 1):
                    assert repeats_answered.acquire(timeout=10)
            else:
                repeats_answered.release()
            with lock:
                handled.append(claimed)

    threads = [threading.Thread(target=deliver) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(handled) == sorted([CLAIMED] + [IN_PROGRESS] * (count - 1))
    assert handle(events, None, "msg_race") is HANDLED


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
    claim(sqlite_store, "stripe", "evt_old", now - timedelta(days=45))
    claim(sqlite_store, "stripe", "evt_new", now - timedelta(days=2))
    runner = sqlite_app.test_cli_runner()
    result = runner.invoke(portal_cli, ["prune-webhook-events"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "pruned: 1"
    result = runner.invoke(portal_cli, ["prune-webhook-events", "--older-than-days", "1"])
    assert result.output.strip() == "pruned: 1"
    assert runner.invoke(portal_cli, ["prune-webhook-events", "--older-than-days", "0"]).exit_code == 2
    portal.get_state(sqlite_app).shutdown()
