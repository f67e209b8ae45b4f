"""The portal is a guest in the host's transaction: whatever the host has
pending in its own ``db.session`` is never committed, flushed or rolled back
by the portal, and what the portal writes stays written whatever the host
decides. On SQLite (one writer at a time) a host that holds flushed writes
gets a clear error at once instead of a lock wait."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy
from portal_fixtures import make_portal_app, open_link
from sqlalchemy import String, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from example_app.demo import load_demo_data
from flask_customer_portal import CustomerPortal
from flask_customer_portal.contrib.sqla import (
    HostTransactionOpen,
    LinkModel,
    SQLAlchemyStorage,
    SubscriptionModel,
    metadata,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"


class HostModel(DeclarativeBase):
    """The host shop's own tables, on its own metadata."""


class Order(HostModel):
    __tablename__ = "host_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(40))


def _db(app: Flask) -> SQLAlchemy:
    db: SQLAlchemy = app.extensions["sqlalchemy"]
    return db


def _engine(app: Flask) -> Engine:
    with app.app_context():
        return _db(app).engine


def _portal(app: Flask) -> CustomerPortal:
    portal: CustomerPortal = app.extensions["customer_portal"]
    return portal


def _store(app: Flask) -> SQLAlchemyStorage:
    store = get_state(app).storage
    assert isinstance(store, SQLAlchemyStorage)
    return store


def orders(app: Flask) -> int:
    """Committed orders, read on a connection of its own."""
    with _engine(app).connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(Order)) or 0)


def links(app: Flask) -> int:
    with _engine(app).connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(LinkModel)) or 0)


def used_links(app: Flask) -> int:
    with _engine(app).connect() as connection:
        return int(
            connection.scalar(
                select(func.count()).select_from(LinkModel).where(LinkModel.used_at.is_not(None))
            )
            or 0
        )


def _shop(db_url: str) -> Flask:
    app = make_portal_app(db_url, mailer=MemoryMailer(), demo_data=False)
    with app.app_context():
        store = _store(app)
        store.drop_all()  # a shared PostgreSQL database may hold an earlier run's tables
        store.create_all()
        load_demo_data(store)
        HostModel.metadata.drop_all(_db(app).engine)
        HostModel.metadata.create_all(_db(app).engine)
    return app


def _close(app: Flask) -> None:
    get_state(app).shutdown()
    with app.app_context():
        _store(app).drop_all()
        HostModel.metadata.drop_all(_db(app).engine)
        for engine in _db(app).engines.values():
            engine.dispose()


@pytest.fixture
def shop(db_url: str) -> Iterator[Flask]:
    """The demo shop with a table of its own (``host_orders``), on each backend."""
    app = _shop(db_url)
    yield app
    _close(app)


@pytest.fixture
def memory_shop() -> Iterator[Flask]:
    """The demo shop on in-memory SQLite, where Flask-SQLAlchemy gives every
    session the one connection (``StaticPool``)."""
    app = _shop("sqlite://")
    yield app
    _close(app)


# -- what the host can call ------------------------------------------------------------

#: The host's call, and a check (after the host decided) that its write was kept.
WritePath = tuple[Callable[[], None], Callable[[], None]]


def _create_session(app: Flask) -> WritePath:
    made: list[str] = []

    def call() -> None:
        made.append(_portal(app).create_session(AVA).link)

    def check() -> None:
        (link,) = made
        assert open_link(app.test_client(), link).status_code == 303

    return call, check


def _send_invite(app: Flask) -> WritePath:
    mailer = get_state(app).mailer
    assert isinstance(mailer, MemoryMailer)

    def call() -> None:
        _portal(app).send_invite(AVA)

    def check() -> None:
        (message,) = mailer.outbox
        assert message.to == "ava@example.com"
        with app.app_context():
            actions = [event.action for event in _store(app).list_events(AVA)]
        assert "invite.sent" in actions

    return call, check


def _sign_out_everywhere(app: Flask) -> WritePath:
    with app.app_context():
        link = _portal(app).create_session(AVA).link
    client = app.test_client()
    assert open_link(client, link).status_code == 303
    assert client.get("/portal/").status_code == 200

    def call() -> None:
        assert _portal(app).sign_out_everywhere(AVA, staff_id="7") == 1

    def check() -> None:
        assert client.get("/portal/").status_code in (302, 303)
        with app.app_context():
            actions = [event.action for event in _store(app).list_events(AVA)]
        assert "session.signed_out_everywhere" in actions

    return call, check


def _cli(*args: str) -> Callable[[Flask], WritePath]:
    def make(app: Flask) -> WritePath:
        results: list[Any] = []

        def call() -> None:
            # Invoked inside the caller's app context, which the command uses.
            results.append(app.test_cli_runner().invoke(args=["portal", *args]))
            assert results[-1].exit_code == 0, (results[-1].output, results[-1].exception)

        def check() -> None:
            (result,) = results
            if args[0] == "create-session":
                assert open_link(app.test_client(), result.stdout.strip()).status_code == 303
            elif args[0] == "renew-due":
                assert "renewed: 1" in result.output
                with app.app_context():
                    subscription = _store(app).get_subscription(AVA, AVA_SUB)
                assert subscription is not None
                assert subscription.current_period_end > datetime.now(timezone.utc)

        return call, check

    return make


def _due(app: Flask) -> None:
    """Ava's subscription's period ended an hour ago (committed)."""
    with _engine(app).begin() as connection:
        connection.execute(
            update(SubscriptionModel)
            .where(SubscriptionModel.id == AVA_SUB)
            .values(current_period_end=datetime.now(timezone.utc) - timedelta(hours=1))
        )


WRITE_PATHS: dict[str, Callable[[Flask], WritePath]] = {
    "create_session": _create_session,
    "send_invite": _send_invite,
    "sign_out_everywhere": _sign_out_everywhere,
    "cli_create_session": _cli("create-session", AVA),
    "cli_create_session_email": _cli("create-session", AVA, "--email"),
    "cli_renew_due": _cli("renew-due"),
    "cli_prune_webhook_events": _cli("prune-webhook-events"),
}


@pytest.mark.parametrize("path", list(WRITE_PATHS))
@pytest.mark.parametrize("host_decides", ["rollback", "commit"])
def test_a_portal_write_leaves_the_hosts_pending_work_to_the_host(
    shop: Flask, path: str, host_decides: str
) -> None:
    """The host adds an order, calls the portal, then rolls back (or
    commits): the order is discarded (or saved) as the host says, and the
    portal's own write is kept either way."""
    if path == "cli_renew_due":
        _due(shop)
    call, check = WRITE_PATHS[path](shop)
    db = _db(shop)
    with shop.app_context():
        order = Order(reference="A-1")
        db.session.add(order)
        call()
        # Still the host's, still pending: not flushed, not committed.
        assert order in db.session.new
        assert orders(shop) == 0
        if host_decides == "rollback":
            db.session.rollback()
        else:
            db.session.commit()
    assert orders(shop) == (1 if host_decides == "commit" else 0)
    check()


@pytest.mark.parametrize("path", ["create_session", "send_invite", "sign_out_everywhere"])
def test_a_host_that_flushed_its_writes_keeps_them_its_own(shop: Flask, db_url: str, path: str) -> None:
    """On PostgreSQL the portal writes beside the host's open transaction
    and keeps its write when the host rolls back. SQLite lets one
    connection write at a time: the portal refuses at once, writes
    nothing, and the host's transaction is untouched (it still commits)."""
    call, check = WRITE_PATHS[path](shop)
    db = _db(shop)
    links_before = links(shop)
    with shop.app_context():
        db.session.add(Order(reference="A-1"))
        db.session.flush()
        if db_url.startswith("sqlite"):
            started = time.monotonic()
            with pytest.raises(HostTransactionOpen, match=r"commit or roll back db\.session"):
                call()
            assert time.monotonic() - started < 2  # no wait for the lock (5 s)
            db.session.commit()
            assert orders(shop) == 1
            assert links(shop) == links_before
            return
        call()
        db.session.rollback()
    assert orders(shop) == 0
    check()


def test_in_memory_sqlite_shares_one_connection_and_still_leaves_the_host_alone(
    memory_shop: Flask,
) -> None:
    """In-memory SQLite: the portal's session and the host's share one
    connection. Pending host work is left alone; flushed host work is
    neither committed nor rolled back by the portal, which refuses."""
    app = memory_shop
    db = _db(app)
    with app.app_context():
        db.session.add(Order(reference="A-1"))
        link = _portal(app).create_session(AVA).link
        db.session.rollback()
    assert orders(app) == 0
    assert open_link(app.test_client(), link).status_code == 303

    links_before = links(app)
    with app.app_context():
        db.session.add(Order(reference="A-2"))
        db.session.flush()
        _store(app).get_customer(AVA)  # a read on the shared connection
        with pytest.raises(HostTransactionOpen):
            _portal(app).create_session(AVA)
        assert db.session.scalar(select(func.count()).select_from(Order)) == 1
        db.session.commit()
    assert orders(app) == 1
    assert links(app) == links_before


# -- portal requests while the host has work pending -----------------------------------------


def _pending_order_before_portal_posts(
    app: Flask, *, flush: bool = False, commit_after: bool = False
) -> None:
    db = _db(app)

    @app.before_request
    def add_order() -> None:
        if request.method == "POST" and request.path.startswith("/portal/"):
            db.session.add(Order(reference=f"R-{request.path[:30]}"))
            if flush:
                db.session.flush()

    if commit_after:

        @app.after_request
        def commit(response: Any) -> Any:
            db.session.commit()
            return response


def test_portal_requests_never_commit_the_hosts_pending_work(shop: Flask) -> None:
    """A host ``before_request`` adds an order without committing; the
    portal's POSTs (sign in with a link, sign out) write their own records,
    and the order is the host's to keep or drop: dropped here, at the end
    of each request."""
    _pending_order_before_portal_posts(shop)
    with shop.app_context():
        link = _portal(shop).create_session(AVA).link
    client = shop.test_client()
    assert open_link(client, link).status_code == 303
    assert client.get("/portal/").status_code == 200
    assert orders(shop) == 0
    page = client.get("/portal/sessions")
    assert page.status_code == 200
    assert client.post("/portal/logout", data={"csrf_token": csrf_token_from(page.text)}).status_code == 200
    assert client.get("/portal/").status_code in (302, 303)
    assert orders(shop) == 0
    with shop.app_context():
        actions = [event.action for event in _store(shop).list_events(AVA)]
    assert "session.signed_in" in actions


def test_a_host_that_commits_after_the_portal_request_keeps_its_order(shop: Flask) -> None:
    _pending_order_before_portal_posts(shop, commit_after=True)
    with shop.app_context():
        link = _portal(shop).create_session(AVA).link
    client = shop.test_client()
    assert open_link(client, link).status_code == 303
    assert client.get("/portal/").status_code == 200
    assert orders(shop) == 1


def test_a_portal_request_after_the_host_flushed(shop: Flask, db_url: str) -> None:
    """On PostgreSQL the sign-in goes through and the host's order is
    dropped with the host's session; on SQLite the request fails with the
    clear error, and no link is used up."""
    _pending_order_before_portal_posts(shop, flush=True)
    with shop.app_context():
        link = _portal(shop).create_session(AVA).link
    client = shop.test_client()
    if db_url.startswith("sqlite"):
        with pytest.raises(HostTransactionOpen):
            open_link(client, link)
        assert used_links(shop) == 0
    else:
        assert open_link(client, link).status_code == 303
        assert client.get("/portal/").status_code == 200
    assert orders(shop) == 0


# -- the store's own session ends with the app context -----------------------------------------


def test_the_portals_session_is_closed_when_the_app_context_ends(shop: Flask) -> None:
    engine = _engine(shop)
    with shop.app_context():
        link = _portal(shop).create_session(AVA).link
        _store(shop).get_customer(AVA)
        assert engine.pool.checkedout() >= 1  # type: ignore[attr-defined]
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    client = shop.test_client()
    assert open_link(client, link).status_code == 303
    assert client.get("/portal/").status_code == 200
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with shop.app_context():
        _store(shop).get_customer(AVA)
        _store(shop).close_db_session()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert _store(shop).get_customer(AVA) is not None  # a new one


def test_the_portals_tables_may_live_on_a_bind_of_their_own(tmp_path: Path) -> None:
    """``metadata.info["bind_key"]`` puts the portal's tables on one of
    Flask-SQLAlchemy's binds: the store reads and writes there."""
    metadata.info["bind_key"] = "billing"
    try:
        app = make_portal_app(
            f"sqlite:///{tmp_path / 'shop.db'}",
            SQLALCHEMY_BINDS={"billing": f"sqlite:///{tmp_path / 'billing.db'}"},
        )
        try:
            with app.app_context():
                db = _db(app)
                link = _portal(app).create_session(AVA).link
                with db.engines["billing"].connect() as connection:
                    assert connection.scalar(select(func.count()).select_from(LinkModel)) == 1
                with db.engine.connect() as connection:
                    assert not db.engine.dialect.has_table(connection, "portal_links")
            assert open_link(app.test_client(), link).status_code == 303
        finally:
            get_state(app).shutdown()
            with app.app_context():
                for engine in _db(app).engines.values():
                    engine.dispose()
    finally:
        del metadata.info["bind_key"]
