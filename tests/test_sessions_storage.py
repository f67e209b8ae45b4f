"""Store contract of the sessions page and the activity history, on SQLite
and PostgreSQL: which sessions count as live, signing one out scoped to its
customer, and the audit log in pages."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.storage import AuditEvent, Customer, PortalSessionRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import QueryCounter

UTC = timezone.utc
T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
IDLE = timedelta(minutes=30)
MAX_AGE = timedelta(hours=12)


def _customer(customer_id: str) -> Customer:
    return Customer(id=customer_id, email=f"{customer_id}@example.com", name=customer_id, created_at=T0)


def _session(
    record_id: str,
    customer_id: str = "cus_a",
    *,
    created: datetime = T0,
    seen: datetime | None = None,
    **kw: object,
) -> PortalSessionRecord:
    record = PortalSessionRecord(
        id=record_id,
        customer_id=customer_id,
        auth_version=1,
        created_at=created,
        last_seen_at=seen or created,
        user_agent="Mozilla/5.0 (test)",
        public_id=f"pub_{record_id}",
    )
    return dataclasses.replace(record, **kw)  # type: ignore[arg-type]


@pytest.fixture
def two(store: SQLAlchemyStorage) -> SQLAlchemyStorage:
    store.add_customer(_customer("cus_a"))
    store.add_customer(_customer("cus_b"))
    return store


def _live(store: SQLAlchemyStorage, customer_id: str, now: datetime) -> list[str]:
    return [r.id for r in store.list_customer_sessions(customer_id, now, idle_timeout=IDLE, max_age=MAX_AGE)]


# -- live sessions -----------------------------------------------------------------


def test_new_fields_round_trip(two: SQLAlchemyStorage) -> None:
    record = _session("s1", location="Jakarta, Indonesia")
    two.create_portal_session(record)
    assert two.get_portal_session("s1") == record
    found = two.get_session_with_customer("s1")
    assert found is not None
    assert found[0] == record
    old_style = _session("s2", public_id=None)  # made before public ids existed
    two.create_portal_session(old_style)
    assert two.get_portal_session("s2") == old_style


def test_only_live_sessions_are_listed_most_recently_active_first(two: SQLAlchemyStorage) -> None:
    now = T0 + timedelta(hours=2)
    two.create_portal_session(
        _session("quiet", created=T0 + timedelta(hours=1), seen=now - timedelta(minutes=20))
    )
    two.create_portal_session(
        _session("busy", created=T0 + timedelta(hours=1), seen=now - timedelta(seconds=5))
    )
    two.create_portal_session(
        _session("idle", created=T0 + timedelta(hours=1), seen=now - timedelta(minutes=31))
    )
    two.create_portal_session(_session("revoked", created=now, revoked_at=now))
    two.create_portal_session(_session("b", "cus_b", created=now))
    # Exactly at the limits still counts, as in auth.session_is_live.
    two.create_portal_session(_session("edge_idle", created=now - IDLE, seen=now - IDLE))
    two.create_portal_session(_session("edge_age", created=now - MAX_AGE, seen=now))
    two.create_portal_session(_session("too_old", created=now - MAX_AGE - timedelta(seconds=1), seen=now))

    assert _live(two, "cus_a", now) == ["edge_age", "busy", "quiet", "edge_idle"]
    assert _live(two, "cus_b", now) == ["b"]
    assert _live(two, "cus_nobody", now) == []


def test_sessions_of_an_older_auth_version_are_not_live(two: SQLAlchemyStorage) -> None:
    two.create_portal_session(_session("s1"))
    assert _live(two, "cus_a", T0) == ["s1"]
    two.change_email("cus_a", "new@example.com", auth_version=1)  # bumps auth_version
    assert _live(two, "cus_a", T0) == []
    two.create_portal_session(_session("s2", auth_version=2))
    assert _live(two, "cus_a", T0) == ["s2"]


def test_listing_sessions_takes_one_query(
    two: SQLAlchemyStorage, count_queries: Callable[..., QueryCounter]
) -> None:
    for n in range(12):
        two.create_portal_session(_session(f"s{n}", seen=T0 + timedelta(seconds=n)))
    with count_queries() as queries:
        listed = two.list_customer_sessions("cus_a", T0, idle_timeout=IDLE, max_age=MAX_AGE)
    assert queries.count == 1, queries.statements
    assert len(listed) == 12
    assert all(r.created_at.tzinfo is UTC and r.last_seen_at.tzinfo is UTC for r in listed)


# -- signing one session out -----------------------------------------------------------


def test_revoking_a_session_is_scoped_to_its_customer(two: SQLAlchemyStorage) -> None:
    two.create_portal_session(_session("a1"))
    two.create_portal_session(_session("b1", "cus_b"))
    later = T0 + timedelta(minutes=5)
    event = AuditEvent("cus_a", "session.revoked", later, subject_id="pub_b1")

    assert two.revoke_customer_session("cus_a", "pub_b1", later, event=event) is None
    b1 = two.get_portal_session("b1")
    assert b1 is not None
    assert b1.revoked_at is None
    assert two.list_events("cus_a") == ()  # nothing written for a refusal

    event = AuditEvent("cus_a", "session.revoked", later, subject_id="pub_a1")
    revoked = two.revoke_customer_session("cus_a", "pub_a1", later, event=event)
    assert revoked is not None
    assert revoked.id == "a1"
    assert revoked.revoked_at == later
    assert two.list_events("cus_a") == (event,)

    # A second time: nothing to end, nothing recorded, first time kept.
    assert two.revoke_customer_session("cus_a", "pub_a1", later + timedelta(minutes=1), event=event) is None
    again = two.get_portal_session("a1")
    assert again is not None
    assert again.revoked_at == later
    assert len(two.list_events("cus_a")) == 1
    assert two.revoke_customer_session("cus_a", "pub_unknown", later) is None


# -- the audit log in pages ---------------------------------------------------------------


def test_events_come_newest_first_in_pages(two: SQLAlchemyStorage) -> None:
    events = [
        AuditEvent("cus_a", f"test.event_{n}", T0 + timedelta(minutes=n), details={"n": str(n)})
        for n in range(7)
    ]
    # Same moment: the later write comes first.
    tie = AuditEvent("cus_a", "test.tie", T0 + timedelta(minutes=6))
    for event in [*events, tie]:
        two.record_event(event)
    two.record_event(AuditEvent("cus_b", "test.other", T0))

    first = two.list_customer_events("cus_a", page=1, per_page=3)
    assert first.total == 8
    assert first.pages == 3
    assert list(first.items) == [tie, events[6], events[5]]
    last = two.list_customer_events("cus_a", page=3, per_page=3)
    assert list(last.items) == [events[1], events[0]]
    assert two.list_customer_events("cus_a", page=4, per_page=3).items == ()
    assert all(e.occurred_at.tzinfo is UTC for e in first.items)
    assert two.list_customer_events("cus_nobody", page=1, per_page=3).total == 0


@pytest.mark.parametrize(("page", "per_page"), [(0, 10), (-1, 10), (1, 0)])
def test_event_page_arguments_are_checked(two: SQLAlchemyStorage, page: int, per_page: int) -> None:
    with pytest.raises(ValueError, match="must be 1 or more"):
        two.list_customer_events("cus_a", page=page, per_page=per_page)


def test_an_event_page_takes_two_queries_whatever_the_size(
    two: SQLAlchemyStorage, count_queries: Callable[..., QueryCounter]
) -> None:
    for n in range(40):
        two.record_event(AuditEvent("cus_a", "test.event", T0 + timedelta(seconds=n)))
    for per_page in (1, 25):
        with count_queries() as queries:
            page = two.list_customer_events("cus_a", page=1, per_page=per_page)
        assert queries.count == 2, queries.statements
        assert len(page.items) == per_page
