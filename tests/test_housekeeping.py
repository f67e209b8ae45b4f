"""``flask portal prune``: expired links, ended sessions and old webhook
events go, in small batches, on SQLite and PostgreSQL, and several hosts
can prune at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from db_support import in_threads
from factories import customer, link, portal_session
from flask import Flask
from portal_fixtures import make_portal_app, open_link, path_of, sign_in
from sqlalchemy import func, select

from flask_customer_portal.capabilities import capabilities_of
from flask_customer_portal.cli import portal_cli
from flask_customer_portal.clock import utcnow
from flask_customer_portal.contrib.composite import CompositeStorage
from flask_customer_portal.contrib.sqla import (
    LinkModel,
    PortalModel,
    PortalSessionModel,
    SQLAlchemyStorage,
    WebhookEventModel,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AccessStore, PruneReport

UTC = timezone.utc
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
IDLE = timedelta(minutes=30)
MAX_AGE = timedelta(hours=12)


def count(store: SQLAlchemyStorage, model: type[PortalModel]) -> int:
    return int(store._db.session.scalar(select(func.count()).select_from(model)) or 0)


def prune(store: SQLAlchemyStorage, *, batch_size: int = 500, now: datetime = NOW) -> PruneReport:
    return store.prune_expired(
        now,
        session_idle_timeout=IDLE,
        session_max_age=MAX_AGE,
        webhook_events_before=now - timedelta(days=30),
        batch_size=batch_size,
    )


def _seed(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    hour = timedelta(hours=1)
    for name, created, expires, used in (
        ("expired_unused", NOW - 30 * hour, NOW - 6 * hour, None),
        ("expired_used", NOW - 30 * hour, NOW - 6 * hour, NOW - 29 * hour),
        ("expires_now", NOW - 24 * hour, NOW, None),
        ("live_used", NOW - hour, NOW + 23 * hour, NOW - timedelta(minutes=50)),
        ("live_unused", NOW - hour, NOW + 23 * hour, None),
    ):
        store.create_link(link(name.ljust(64, "0"), created_at=created, expires_at=expires, used_at=used))
    for name, created, seen, revoked in (
        ("revoked", NOW - 2 * hour, NOW - hour, NOW - hour),
        ("idle", NOW - 3 * hour, NOW - IDLE - timedelta(seconds=1), None),
        ("too_old", NOW - MAX_AGE - timedelta(seconds=1), NOW - timedelta(minutes=1), None),
        ("live", NOW - hour, NOW - timedelta(minutes=5), None),
    ):
        record = portal_session(name)
        store.create_portal_session(
            record.__class__(
                **{**_fields(record), "created_at": created, "last_seen_at": seen, "revoked_at": revoked}
            )
        )
    for event_id, received in (("evt_old", NOW - timedelta(days=31)), ("evt_new", NOW - timedelta(days=29))):
        store.claim_webhook_event("stripe", event_id, received, lease=timedelta(minutes=5))


def _fields(record: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


def test_prune_removes_what_can_never_be_used_again(store: SQLAlchemyStorage) -> None:
    _seed(store)
    report = prune(store)
    assert report == PruneReport(links=3, sessions=3, webhook_events=1)
    assert report.total == 7
    remaining_links = set(store._db.session.scalars(select(LinkModel.token_hash)))
    # A used link stays until it expires, so opening it again says "used".
    assert {h.rstrip("0") for h in remaining_links} == {"live_used", "live_unused"}
    assert set(store._db.session.scalars(select(PortalSessionModel.id))) == {"live"}
    assert set(store._db.session.scalars(select(WebhookEventModel.event_id))) == {"evt_new"}
    # Nothing left to do: a second run (another host, the next cron run) deletes nothing.
    assert prune(store) == PruneReport()


def test_prune_works_in_batches(store: SQLAlchemyStorage, count_queries) -> None:  # type: ignore[no-untyped-def]
    store.add_customer(customer("cus_a"))
    for n in range(7):
        store.create_link(link(f"{n:064d}", expires_at=NOW - timedelta(hours=1)))
    with count_queries() as queries:
        report = prune(store, batch_size=3)
    assert report.links == 7
    assert count(store, LinkModel) == 0
    link_deletes = [
        s for s in queries.statements if s.lstrip().upper().startswith("DELETE FROM PORTAL_LINKS")
    ]
    assert len(link_deletes) == 3  # 3 + 3 + 1: each batch is its own statement and transaction
    assert all("LIMIT" in statement.upper() for statement in link_deletes)
    if store._db.engine.dialect.name == "postgresql":  # hosts pruning at once never wait for each other
        assert all("FOR UPDATE SKIP LOCKED" in statement.upper() for statement in link_deletes)


def test_prune_checks_its_arguments(store: SQLAlchemyStorage) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        prune(store, batch_size=0)
    with pytest.raises(ValueError, match="aware"):
        prune(store, now=datetime(2026, 12, 10))  # naive on purpose
    with pytest.raises(ValueError, match="positive"):
        store.prune_expired(NOW, session_idle_timeout=timedelta(0), session_max_age=MAX_AGE)


def test_prune_without_a_webhook_cut_off_keeps_every_event(store: SQLAlchemyStorage) -> None:
    _seed(store)
    report = store.prune_expired(NOW, session_idle_timeout=IDLE, session_max_age=MAX_AGE)
    assert report.webhook_events == 0
    assert count(store, WebhookEventModel) == 2


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_hosts_pruning_at_once_delete_each_row_once(store_app: Flask, store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    total = 240
    for n in range(total):
        store.create_link(link(f"{n:064d}", expires_at=NOW - timedelta(minutes=n + 1)))
        store.create_portal_session(portal_session(f"ses_{n}"))  # created at T0 of 2026-03: all too old
    reports = in_threads(
        store_app, 4, lambda: prune(SQLAlchemyStorage(store_app.extensions["sqlalchemy"]), batch_size=7)
    )
    assert sum(r.links for r in reports) == total
    assert sum(r.sessions for r in reports) == total
    assert count(store, LinkModel) == 0
    assert count(store, PortalSessionModel) == 0


def test_a_composite_store_prunes_its_local_store(store: SQLAlchemyStorage) -> None:
    from test_composite_storage import BillingOnly  # the adapter the composite tests use

    composite = CompositeStorage(store, billing=BillingOnly(store))
    assert isinstance(composite, AccessStore)
    assert capabilities_of(composite).prune
    _seed(store)
    assert prune(composite).links == 3  # type: ignore[arg-type]


# -- in the portal -----------------------------------------------------------------


@pytest.fixture
def portal_app(tmp_path: Path) -> Iterator[Flask]:
    app = make_portal_app(f"sqlite:///{tmp_path / 'portal.db'}")
    yield app
    get_state(app).shutdown()


def test_the_prune_command_prints_what_went(portal_app: Flask) -> None:
    with portal_app.app_context():
        store = get_state(portal_app).storage
        now = utcnow()
        store.create_link(
            link(
                "a" * 64,
                customer_id="cus_demo_ava",
                created_at=now - timedelta(days=2),
                expires_at=now - timedelta(days=1),
            )
        )
        store.claim_webhook_event("stripe", "evt_old", now - timedelta(days=45), lease=timedelta(minutes=5))
        store.claim_webhook_event("stripe", "evt_new", now - timedelta(days=2), lease=timedelta(minutes=5))
    runner = portal_app.test_cli_runner()
    result = runner.invoke(portal_cli, ["prune"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["links: 1", "sessions: 0", "webhook events: 1", "sent mail: 0"]
    result = runner.invoke(
        portal_cli, ["prune", "--webhook-events-older-than-days", "1", "--batch-size", "1"]
    )
    assert result.output.splitlines() == ["links: 0", "sessions: 0", "webhook events: 1", "sent mail: 0"]
    assert runner.invoke(portal_cli, ["prune", "--batch-size", "0"]).exit_code == 2
    # The older command keeps working for existing cron jobs.
    result = runner.invoke(portal_cli, ["prune-webhook-events"])
    assert (result.exit_code, result.output.strip()) == (0, "pruned: 0")


def test_pruning_signs_nobody_out_and_keeps_used_links_telling(portal_app: Flask) -> None:
    client = portal_app.test_client()
    sign_in(portal_app, client, "cus_demo_ava")
    with portal_app.app_context():
        used = portal_app.extensions["customer_portal"].create_session("cus_demo_ava").link
    assert open_link(portal_app.test_client(), used).status_code == 303
    result = portal_app.test_cli_runner().invoke(portal_cli, ["prune"])
    assert result.exit_code == 0, result.output
    assert client.get("/portal/").status_code == 200  # still signed in
    again = portal_app.test_client().get(path_of(used))
    assert again.status_code == 410  # "already used", not "unknown"


def test_the_prune_command_needs_a_store_that_prunes(portal_app: Flask) -> None:
    state = get_state(portal_app)
    real = state.storage

    class NoPruning:
        def __getattr__(self, name: str) -> object:
            if name == "prune_expired":
                raise AttributeError(name)
            return getattr(real, name)

    state.storage = NoPruning()  # type: ignore[assignment]
    state.capabilities = capabilities_of(state.storage)
    assert not state.capabilities.prune
    result = portal_app.test_cli_runner().invoke(portal_cli, ["prune"])
    assert result.exit_code == 1
    assert "cannot prune" in result.output
