"""A sign-in is one transaction: the link used up, the browser's previous
session ended, the new session and the audit event written together, or
none of them (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from db_support import in_threads
from factories import T0, customer, link, portal_session
from flask import Flask
from portal_fixtures import make_portal_app, path_of
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from flask_customer_portal import signals
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import AuditEvent, LinkPurpose, LinkUse, PortalSessionRecord
from flask_customer_portal.testing import csrf_token_from

USE = LinkUse("h" * 64, LinkPurpose.SESSION_LINK)


def _record(session_id: str, customer_id: str = "cus_a", minutes: int = 5) -> PortalSessionRecord:
    at = T0 + timedelta(minutes=minutes)
    return dataclasses.replace(portal_session(session_id, customer_id), created_at=at, last_seen_at=at)


def _event(customer_id: str = "cus_a") -> AuditEvent:
    return AuditEvent(
        customer_id=customer_id, action="session.signed_in", occurred_at=T0, details={"method": "x"}
    )


# -- the store ---------------------------------------------------------------------------------


def test_start_portal_session_does_the_four_writes(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.create_link(link())
    store.create_portal_session(portal_session("ps_old"))
    record = _record("ps_new")
    assert store.start_portal_session(record, link=USE, replaces="ps_old", event=_event()) is True

    used = store.get_link("h" * 64)
    assert used is not None
    assert used.used_at == record.created_at
    assert store.get_portal_session("ps_new") == record
    old = store.get_portal_session("ps_old")
    assert old is not None
    assert old.revoked_at == record.created_at
    assert [e.action for e in store.list_events("cus_a")] == ["session.signed_in"]


def test_start_portal_session_writes_nothing_when_the_link_is_not_usable(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.add_customer(customer("cus_b"))
    store.create_link(link())
    store.create_link(link("e" * 64, expires_at=T0 + timedelta(minutes=1)))
    store.create_portal_session(portal_session("ps_old"))
    refused = [
        (_record("ps_1", "cus_b"), USE),  # another customer's link
        (_record("ps_2"), LinkUse("h" * 64, LinkPurpose.LOGIN_LINK)),  # another purpose
        (_record("ps_3"), LinkUse("x" * 64, LinkPurpose.SESSION_LINK)),  # unknown
        (_record("ps_4"), LinkUse("e" * 64, LinkPurpose.SESSION_LINK)),  # expired
    ]
    for record, use in refused:
        assert store.start_portal_session(record, link=use, replaces="ps_old", event=_event()) is False
        assert store.get_portal_session(record.id) is None
    # The first use wins; using it again writes nothing either.
    assert store.start_portal_session(_record("ps_5"), link=USE, event=_event()) is True
    assert store.start_portal_session(_record("ps_6"), link=USE, replaces="ps_5", event=_event()) is False
    assert store.get_portal_session("ps_6") is None
    assert store.get_portal_session("ps_old").revoked_at is None  # type: ignore[union-attr]
    assert store.get_portal_session("ps_5").revoked_at is None  # type: ignore[union-attr]
    assert len(store.list_events("cus_a")) == 1


def test_a_failed_write_leaves_the_link_unused(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.create_link(link())
    store.create_portal_session(portal_session("ps_old"))
    # A session id that exists already: the insert fails after the link's
    # UPDATE and the revocation ran in the same transaction.
    with pytest.raises(IntegrityError):
        store.start_portal_session(_record("ps_old"), link=USE, replaces="ps_old", event=_event())
    unused = store.get_link("h" * 64)
    assert unused is not None
    assert unused.used_at is None
    assert store.get_portal_session("ps_old").revoked_at is None  # type: ignore[union-attr]
    assert store.list_events("cus_a") == ()
    assert store.start_portal_session(_record("ps_new"), link=USE, event=_event()) is True


def test_without_a_link_it_starts_a_session(store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    assert store.start_portal_session(_record("ps_1")) is True
    assert store.get_portal_session("ps_1") == _record("ps_1")
    assert store.list_events("cus_a") == ()


def test_one_commit(store_app: Flask, store: SQLAlchemyStorage) -> None:
    store.add_customer(customer("cus_a"))
    store.create_link(link())
    store.create_portal_session(portal_session("ps_old"))
    commits: list[object] = []
    engine = store_app.extensions["sqlalchemy"].engine
    listener = partial(_append, commits)
    event.listen(engine, "commit", listener)
    try:
        store.start_portal_session(_record("ps_new"), link=USE, replaces="ps_old", event=_event())
    finally:
        event.remove(engine, "commit", listener)
    assert len(commits) == 1


def _append(into: list[object], connection: object) -> None:
    into.append(connection)


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_concurrent_sign_ins_with_one_link_start_one_session(
    store_app: Flask, store: SQLAlchemyStorage
) -> None:
    store.add_customer(customer("cus_a"))
    for attempt in range(3):
        use = LinkUse(f"{attempt:064d}", LinkPurpose.SESSION_LINK)
        store.create_link(link(use.token_hash))
        ids = iter(range(8))

        def start(use: LinkUse = use, attempt: int = attempt, ids: Iterator[int] = ids) -> bool:
            return store.start_portal_session(_record(f"ps_{attempt}_{next(ids)}"), link=use, event=_event())

        assert sorted(in_threads(store_app, 8, start)) == [False] * 7 + [True]
    assert len(store.list_events("cus_a")) == 3
    live = store.list_customer_sessions(
        "cus_a", T0 + timedelta(minutes=6), idle_timeout=timedelta(hours=1), max_age=timedelta(days=1)
    )
    assert len(live) == 3


# -- the portal --------------------------------------------------------------------------------


class _WithoutStartPortalSession:
    """A store written before ``start_portal_session`` existed."""

    def __init__(self, inner: SQLAlchemyStorage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "start_portal_session":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _portal_app(tmp_path: Path, *, old_store: bool) -> Flask:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'portal.db'}",
        demo_data=False,
        wrap_storage=_WithoutStartPortalSession if old_store else None,
    )
    with app.app_context():
        get_state(app).storage.add_customer(customer("cus_a"))  # type: ignore[attr-defined]
    return app


@pytest.fixture(params=[False, True], ids=["store-with-it", "store-without-it"])
def portal_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    app = _portal_app(tmp_path, old_store=request.param)
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_pressing_the_button_signs_in_once(portal_app: Flask) -> None:
    with portal_app.app_context():
        the_link = path_of(portal_app.extensions["customer_portal"].create_session("cus_a").link)
    used: list[Any] = []
    signed_in: list[Any] = []
    with (
        signals.link_used.connected_to(partial(_collect, used), portal_app),
        signals.signed_in.connected_to(partial(_collect, signed_in), portal_app),
    ):
        first, second = portal_app.test_client(), portal_app.test_client()
        pages = [first.get(the_link), second.get(the_link)]
        assert first.post(the_link, data={"csrf_token": csrf_token_from(pages[0].text)}).status_code == 303
        late = second.post(the_link, data={"csrf_token": csrf_token_from(pages[1].text)})
    assert late.status_code == 410
    assert first.get("/portal/").status_code == 200
    assert second.get("/portal/").status_code == 302
    assert len(used) == len(signed_in) == 1
    with portal_app.app_context():
        storage = get_state(portal_app).storage
        events = [e.action for e in storage.list_events("cus_a")]  # type: ignore[attr-defined]
    assert events.count("session.signed_in") == 1


def test_signing_in_again_ends_the_previous_session(portal_app: Flask) -> None:
    client = portal_app.test_client()
    for _ in range(2):
        with portal_app.app_context():
            the_link = path_of(portal_app.extensions["customer_portal"].create_session("cus_a").link)
        page = client.get(the_link)
        assert client.post(the_link, data={"csrf_token": csrf_token_from(page.text)}).status_code == 303
    with portal_app.app_context():
        live = get_state(portal_app).storage.list_customer_sessions(
            "cus_a", datetime.now(timezone.utc), idle_timeout=timedelta(hours=1), max_age=timedelta(days=1)
        )
    assert len(live) == 1


def _collect(into: list[Any], sender: Any, **extra: Any) -> None:
    into.append(extra)
