"""``flask portal renew-due`` and ``flask portal prune`` from cron on every
host at once.

The renewal walk reads each due subscription once (keyset pages) and pays
the same number of statements for each, however large the batch. Several
runner processes on one PostgreSQL share the work without renewing
anything twice; one killed with ``SIGKILL`` right after the provider took
its money leaves a subscription that the next run finishes with the same
idempotency key, so the provider is asked again and charges nothing new.
The payment provider and the mailer of the runner processes keep their
records in the database (``tests/renewal_support.py``), which outlive the
processes that wrote them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from db_support import only_postgresql
from flask import Flask
from portal_fixtures import close_app, make_portal_app
from renewal_support import charges, ledger, ledger_tables, mails, seed_due_subscriptions
from sqlalchemy import create_engine, func, insert, select, update
from sqlalchemy.engine import Engine

from flask_customer_portal.billing.pausing import resume_due
from flask_customer_portal.billing.renewal import RenewalOutcome, renew_due
from flask_customer_portal.billing.settlement import settle_all_plan_changes
from flask_customer_portal.clock import utcnow
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.contrib.sqla.models import (
    AuditEventModel,
    ChargeAttemptModel,
    InvoiceModel,
    LinkModel,
    PlanChangeModel,
    PortalSessionModel,
    SubscriptionModel,
)
from flask_customer_portal.payments import ChargeResult, ChargeUnknown, TestPaymentProvider
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import ChargeAttemptStatus, InvoiceStatus, LinkPurpose, SubscriptionStatus
from flask_customer_portal.testing import MemoryMailer

ROOT = Path(__file__).resolve().parent.parent
#: A runner process gets this long before the test gives up on it.
RUNNER_TIMEOUT = 240


# -- cost per subscription ------------------------------------------------------------


@pytest.fixture
def renewal_app(db_url: str) -> Iterator[Flask]:
    app = make_portal_app(db_url, demo_data=False, payments=TestPaymentProvider(), mailer=MemoryMailer())
    with app.app_context():
        store = SQLAlchemyStorage(app.extensions["sqlalchemy"])
        store.drop_all()
        store.create_all()
    yield app
    with app.app_context():
        SQLAlchemyStorage(app.extensions["sqlalchemy"]).drop_all()
    close_app(app)


def _walk(app: Flask, count: int, due_at: datetime, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    """Renew ``count`` due subscriptions in pages of 10: (statements per
    renewal, page reads, subscriptions the pages returned)."""
    from sqlalchemy import event

    engine = app.extensions["sqlalchemy"].engine
    dialect = engine.dialect.name
    seed_due_subscriptions(engine, count, due_at=due_at, prefix=f"n{count}_")
    storage = get_state(app).storage
    pages: list[int] = []
    read_page = storage.subscriptions_due_after

    def spy(*args: Any, **kwargs: Any) -> Any:
        page = read_page(*args, **kwargs)
        pages.append(len(page))
        return page

    monkeypatch.setattr(storage, "subscriptions_due_after", spy)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        report = renew_due(get_state(app), now=due_at + timedelta(minutes=1), batch_size=10)
    finally:
        event.remove(engine, "before_cursor_execute", record)
        monkeypatch.undo()
    assert report.count(RenewalOutcome.RENEWED) == count, report.errors
    walk = [s for s in statements if "ORDER BY portal_subscriptions.current_period_end" in s]
    # Per page on PostgreSQL: the page's subscriptions are taken from the
    # other runs, and let go once renewed.
    shared = [s for s in statements if "pg_try_advisory_lock" in s or "pg_advisory_unlock_all" in s]
    if dialect == "postgresql":
        assert len(shared) == 2 * (len(walk) - 1), statements
    # Once: the invoice-number counter is made (and bumped again) by the
    # first invoice ever issued.
    made = 2 * sum(1 for s in statements if s.startswith("INSERT INTO portal_sequences"))
    # Before the walk: the plan changes to settle and the pauses to resume.
    per_renewal, rest = divmod(len(statements) - len(walk) - len(shared) - made - 2, count)
    assert rest == 0, statements
    return per_renewal, len(walk), sum(pages)


def test_statements_per_renewal_do_not_grow_with_the_batch(
    renewal_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    with renewal_app.app_context():
        dialect = renewal_app.extensions["sqlalchemy"].engine.dialect.name
        # The second batch falls due before the first one's next period ends.
        small = _walk(renewal_app, 10, datetime(2031, 1, 1, tzinfo=timezone.utc), monkeypatch)
        large = _walk(renewal_app, 60, datetime(2030, 1, 1, tzinfo=timezone.utc), monkeypatch)
    # Each subscription is read once, in pages of 10 (and one empty page).
    assert small[1:] == (2, 10)
    assert large[1:] == (7, 60)
    # The same statements for each renewal, however many there are. On
    # PostgreSQL the invoice is issued in a transaction of its own, before
    # the charge, so that runners never wait on the invoice-number counter.
    # Nine of them are the receipt's: reading its customer, writing its row
    # and, as this process delivers it here, sending it with its PDF (the
    # row claimed, the customer and the invoice read again, the outcome).
    assert small[0] == large[0] == (20 if dialect == "sqlite" else 24)


@only_postgresql
def test_runs_share_the_due_pages_and_a_dead_run_lets_go(db_url: str) -> None:
    """What one run took, another cannot take until the first lets go: when
    its page is done, or when it dies (its connection closes). Nothing
    waits."""
    apps = [make_portal_app(db_url, demo_data=False) for _ in range(2)]
    ids = [f"sub_share_{n}" for n in range(5)]
    try:
        stores = []
        for app in apps:
            with app.app_context():
                stores.append(SQLAlchemyStorage(app.extensions["sqlalchemy"]))
        with apps[0].app_context(), stores[0].share_due() as first:
            assert first is not None
            assert first.take(ids[:3]) == set(ids[:3])
            with apps[1].app_context(), stores[1].share_due() as second:
                assert second is not None
                assert second.take(ids) == set(ids[3:])
                first.release()
                assert second.take(ids[:3]) == set(ids[:3])
                assert first.take(ids) == set()
            # The second run ended: what it took is free again.
            assert first.take(ids) == set(ids)

        def dies() -> None:
            with apps[1].app_context(), stores[1].share_due() as dying:
                assert dying is not None and dying.take(ids) == set(ids)
                raise RuntimeError("the run dies")

        with pytest.raises(RuntimeError):
            dies()
        with apps[0].app_context(), stores[0].share_due() as again:
            assert again is not None
            # The server lets go once it sees the connection closed: at
            # once, but in its own time.
            deadline = time.monotonic() + 10
            while (taken := again.take(ids)) != set(ids) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert taken == set(ids)
    finally:
        for app in apps:
            close_app(app)


def test_runs_share_pages_on_postgresql_only(renewal_app: Flask) -> None:
    """SQLite has one writer at a time: its runs have nothing to share."""
    storage = get_state(renewal_app).storage
    with renewal_app.app_context(), storage.share_due() as share:  # type: ignore[attr-defined]
        dialect = renewal_app.extensions["sqlalchemy"].engine.dialect.name
        assert (share is None) == (dialect == "sqlite")


class _NoAnswer(TestPaymentProvider):
    """The provider still has no answer for a lost charge: a plan change
    paid with it stays to settle, run after run."""

    __test__ = False

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        return ChargeUnknown(idempotency_key)


def _counting(engine: Engine) -> tuple[list[str], Callable[[], None]]:
    from sqlalchemy import event

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return statements, lambda: event.remove(engine, "before_cursor_execute", record)


def _resume_walk(app: Flask, count: int, due_at: datetime) -> tuple[int, int, int]:
    """Resume ``count`` paused subscriptions in pages of 10: (statements per
    resume, page reads, subscriptions the pages returned)."""
    engine = app.extensions["sqlalchemy"].engine
    prefix = f"p{count}_"
    seed_due_subscriptions(engine, count, due_at=due_at + timedelta(days=30), prefix=prefix)
    with engine.begin() as connection:
        connection.execute(
            update(SubscriptionModel)
            .where(SubscriptionModel.id.like(f"sub_{prefix}%"))
            .values(
                status=SubscriptionStatus.PAUSED,
                paused_at=due_at - timedelta(days=20),
                resumes_at=due_at - timedelta(seconds=1),
            )
        )
    statements, stop = _counting(engine)
    try:
        report = resume_due(get_state(app), due_at, batch_size=10)
    finally:
        stop()
    assert len(report.resumed) == count, report.errors
    pages = [s for s in statements if "ORDER BY portal_subscriptions.resumes_at" in s]
    per_resume, rest = divmod(len(statements) - len(pages), count)
    assert rest == 0, statements
    return per_resume, len(pages), count


def test_statements_per_resume_do_not_grow_with_the_batch(renewal_app: Flask) -> None:
    with renewal_app.app_context():
        small = _resume_walk(renewal_app, 10, datetime(2031, 1, 1, tzinfo=timezone.utc))
        large = _resume_walk(renewal_app, 60, datetime(2030, 1, 1, tzinfo=timezone.utc))
    # Each paused subscription is read once, in pages of 10 (and one empty page).
    assert small[1] == 2
    assert large[1] == 7
    assert small[0] == large[0]


def _seed_plan_changes(engine: Engine, count: int, at: datetime, prefix: str) -> None:
    """``count`` subscriptions each with a plan change whose payment's
    answer was lost: its invoice open, its one attempt of unknown outcome."""
    seed_due_subscriptions(engine, count, due_at=at + timedelta(days=30), prefix=prefix)
    invoices, attempts, changes = [], [], []
    for n in range(1, count + 1):
        customer_id, subscription_id = f"cus_{prefix}{n:05d}", f"sub_{prefix}{n:05d}"
        invoice_id = f"in_pc_{prefix}{n:05d}"
        invoices.append(
            {
                "id": invoice_id,
                "number": f"INV-{prefix}{n:05d}",
                "customer_id": customer_id,
                "subscription_id": subscription_id,
                "status": InvoiceStatus.OPEN,
                "currency": "USD",
                "subtotal": 500,
                "tax": 0,
                "total": 500,
                "issued_at": at,
                "description": "Plan change",
            }
        )
        attempts.append(
            {
                "invoice_id": invoice_id,
                "attempt": 1,
                "idempotency_key": f"invoice:{invoice_id}:attempt:1",
                "customer_id": customer_id,
                "payment_method_id": f"pm_{prefix}{n:05d}",
                "amount": 500,
                "currency": "USD",
                "status": ChargeAttemptStatus.UNKNOWN,
                "created_at": at,
            }
        )
        changes.append(
            {
                "invoice_id": invoice_id,
                "customer_id": customer_id,
                "subscription_id": subscription_id,
                "plan_id": "plan_team",
                "quantity": 1,
                "unit_price": 2900,
                "period_start": at - timedelta(days=1),
                "period_end": at + timedelta(days=29),
                "credit_after": 0,
                "from_plan_id": "plan_pro",
                "from_quantity": 1,
                "from_period_end": at + timedelta(days=29),
                "from_credit": 0,
                "priced_at": at,
                "created_at": at + timedelta(seconds=n // 3),
            }
        )
    with engine.begin() as connection:
        connection.execute(
            update(SubscriptionModel)
            .where(SubscriptionModel.id.like(f"sub_{prefix}%"))
            .values(plan_id="plan_pro")
        )
        connection.execute(insert(InvoiceModel.__table__), invoices)
        connection.execute(insert(ChargeAttemptModel.__table__), attempts)
        connection.execute(insert(PlanChangeModel.__table__), changes)


def _settle_walk(app: Flask, count: int, at: datetime) -> tuple[int, int, int]:
    """Add ``count`` plan changes that stay unsettled and settle all there
    are, in pages of 10: (statements per change, page reads, changes the
    pages returned)."""
    engine = app.extensions["sqlalchemy"].engine
    _seed_plan_changes(engine, count, at, f"c{count}_")
    storage = get_state(app).storage
    returned: list[int] = []
    read_page = storage.plan_changes_to_settle_after

    def spy(*args: Any, **kwargs: Any) -> Any:
        page = read_page(*args, **kwargs)
        returned.append(len(page))
        return page

    storage.plan_changes_to_settle_after = spy  # type: ignore[method-assign]
    statements, stop = _counting(engine)
    try:
        report = settle_all_plan_changes(get_state(app), now=at + timedelta(minutes=1), batch_size=10)
    finally:
        stop()
        del storage.plan_changes_to_settle_after
    settled = len(report.settled)
    assert [str(s.outcome) for s in report.settled] == ["pending"] * settled, report.errors
    assert settled == sum(returned)
    pages = [s for s in statements if "ORDER BY portal_plan_changes.created_at" in s]
    per_change, rest = divmod(len(statements) - len(pages), settled)
    assert rest == 0, statements
    return per_change, len(pages), sum(returned)


def test_statements_per_plan_change_settled_do_not_grow_with_the_batch(db_url: str) -> None:
    app = make_portal_app(db_url, demo_data=False, payments=_NoAnswer(), mailer=MemoryMailer())
    try:
        with app.app_context():
            store = SQLAlchemyStorage(app.extensions["sqlalchemy"])
            store.drop_all()
            store.create_all()
            # Left unsettled, they stay on the list: the walk still reads each once.
            small = _settle_walk(app, 10, datetime(2031, 1, 1, tzinfo=timezone.utc))
            large = _settle_walk(app, 60, datetime(2030, 1, 1, tzinfo=timezone.utc))
            store.drop_all()
    finally:
        close_app(app)
    assert small[1:] == (2, 10)
    # The first walk's ten are still unsettled, and come first.
    assert large[1:] == (8, 70)
    assert small[0] == large[0]


# -- several runners ----------------------------------------------------------------------


def _runner(database: RunnerDatabase, command: str = "renew-due", **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # fixed arguments
        [sys.executable, "-m", "flask", "--app", "renewal_support:create_runner_app", "portal", command],
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
            "RENEWAL_DATABASE_URL": database.url,
            **database.env,
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=RUNNER_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"a runner took more than {RUNNER_TIMEOUT} s:\n{out}\n{err}")
    return process.returncode, out + err


def _counted(output: str, name: str) -> int:
    found = re.search(rf"^{name}: (\d+)$", output, re.MULTILINE)
    return int(found.group(1)) if found else 0


@dataclass
class RunnerDatabase:
    """Empty portal tables for runner processes, and the ledger they write."""

    url: str
    engine: Engine
    ledger: Engine
    env: dict[str, str]


@pytest.fixture
def runner_database(db_url: str, tmp_path: Path) -> Iterator[RunnerDatabase]:
    app = make_portal_app(db_url, demo_data=False)
    with app.app_context():
        store = SQLAlchemyStorage(app.extensions["sqlalchemy"])
        store.drop_all()
        store.create_all()
    close_app(app)
    ledger_url = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    database = RunnerDatabase(
        db_url, create_engine(db_url), create_engine(ledger_url), {"RENEWAL_LEDGER_URL": ledger_url}
    )
    ledger_tables(database.ledger)
    yield database
    ledger.drop_all(database.ledger)
    database.ledger.dispose()
    database.engine.dispose()
    app = make_portal_app(db_url, demo_data=False)
    with app.app_context():
        SQLAlchemyStorage(app.extensions["sqlalchemy"]).drop_all()
    close_app(app)


def _assert_each_renewed_once(
    database: RunnerDatabase, count: int, declining_every: int, due_at: datetime
) -> None:
    declined = count // declining_every
    with database.ledger.connect() as connection:
        kept = connection.execute(select(charges.c.idempotency_key, charges.c.invoice_id)).all()
        emails = connection.execute(select(mails.c.recipient, mails.c.subject)).all()
    with database.engine.connect() as connection:
        statuses = Counter(
            connection.execute(select(SubscriptionModel.status, SubscriptionModel.current_period_end)).all()
        )
        invoices = connection.execute(
            select(InvoiceModel.id, InvoiceModel.subscription_id, InvoiceModel.status)
        ).all()
        attempts = connection.execute(select(ChargeAttemptModel.invoice_id, ChargeAttemptModel.attempt)).all()
        events = Counter(connection.execute(select(AuditEventModel.action, AuditEventModel.subject_id)).all())
    # Every subscription moved on by one period, or is on hold.
    assert sum(n for (status, _), n in statuses.items() if status is SubscriptionStatus.ON_HOLD) == declined
    renewed = [
        end for (status, end), n in statuses.items() for _ in range(n) if status is SubscriptionStatus.ACTIVE
    ]
    assert len(renewed) == count - declined
    assert all(end > due_at + timedelta(days=27) for end in renewed)
    # One invoice per subscription, one attempt and one kept charge per invoice.
    assert len(invoices) == count
    assert len({subscription for _, subscription, _ in invoices}) == count
    assert Counter(status for _, _, status in invoices) == {
        InvoiceStatus.PAID: count - declined,
        InvoiceStatus.OPEN: declined,
    }
    assert sorted(attempts) == sorted((invoice_id, 1) for invoice_id, _, _ in invoices)
    assert sorted(invoice for _, invoice in kept) == sorted(invoice_id for invoice_id, _, _ in invoices)
    assert all(key.endswith(":attempt:1") for key, _ in kept)
    # The audit log tells each story once.
    assert sum(1 for (action, _), n in events.items() if action == "invoice.issued" and n == 1) == count
    assert {
        n for (action, _), n in events.items() if action in ("invoice.issued", "subscription.renewed")
    } == {1}
    assert sum(1 for action, _ in events if action == "subscription.renewed") == count - declined
    assert sum(1 for action, _ in events if action == "subscription.put_on_hold") == declined
    # And each customer whose card declined was told once; each renewed one
    # got one receipt.
    receipts = [recipient for recipient, subject in emails if subject.startswith("Receipt for invoice")]
    told = [recipient for recipient, subject in emails if not subject.startswith("Receipt for invoice")]
    assert len(told) == declined
    assert len(set(told)) == declined
    assert len(receipts) == len(set(receipts)) == count - declined
    assert not set(receipts) & set(told)


@pytest.mark.slow
@only_postgresql
def test_three_runners_one_killed_renew_each_subscription_once(
    runner_database: RunnerDatabase,
) -> None:
    database = runner_database
    count, declining_every = 600, 10
    due_at = utcnow() - timedelta(hours=1)
    seed_due_subscriptions(database.engine, count, declining_every=declining_every, due_at=due_at)

    # The one that dies starts first, so that it is well into the batch.
    runners = [_runner(database, RENEWAL_DIE_AFTER="30"), _runner(database), _runner(database)]
    finished = [_finish(runner) for runner in runners]

    assert [code for code, _ in finished] == [-signal.SIGKILL, 0, 0], finished
    with database.engine.connect() as connection:
        by_runner = Counter(connection.execute(select(charges.c.pid)).scalars())
        paid = set(
            connection.execute(
                select(InvoiceModel.id).where(InvoiceModel.status == InvoiceStatus.PAID)
            ).scalars()
        )
        in_flight = [
            invoice_id
            for invoice_id, declined in connection.execute(select(charges.c.invoice_id, charges.c.declined))
            if not declined and invoice_id not in paid
        ]
        killed_charges = set(
            connection.execute(
                select(charges.c.invoice_id).where(charges.c.pid == runners[0].pid, charges.c.declined == 0)
            ).scalars()
        )
    # The three shared the work, and the killed one died with a charge the
    # provider made and the portal never recorded: still in flight, unless a
    # survivor came to that subscription after the kill and settled it.
    assert len(by_runner) == 3, by_runner
    assert len(in_flight) <= 1, in_flight
    assert set(in_flight) <= killed_charges
    renewed_by_survivors = sum(_counted(out, "renewed") for _, out in finished)
    assert renewed_by_survivors < count - count // declining_every

    code, output = _finish(_runner(database))

    assert code == 0, output
    # What was left in flight, and nothing else, is finished by the last run.
    assert _counted(output, "renewed") == len(in_flight), output
    _assert_each_renewed_once(database, count, declining_every, due_at)
    with database.ledger.connect() as connection:
        asked_again = (
            connection.execute(select(charges.c.invoice_id).where(charges.c.asked > 1)).scalars().all()
        )
    # A later run (a survivor or the last) asked the provider with the same
    # key, and was answered with the charge already made: exactly once, for
    # the killed runner's last charge.
    assert len(asked_again) == 1, asked_again
    assert asked_again[0] in killed_charges
    assert not in_flight or asked_again == in_flight


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_runners_on_sqlite_renew_each_subscription_once(runner_database: RunnerDatabase) -> None:
    database = runner_database
    count, declining_every = 150, 10
    due_at = utcnow() - timedelta(hours=1)
    seed_due_subscriptions(database.engine, count, declining_every=declining_every, due_at=due_at)

    finished = [_finish(runner) for runner in [_runner(database), _runner(database)]]

    assert [code for code, _ in finished] == [0, 0], finished
    assert sum(_counted(out, "renewed") for _, out in finished) == count - count // declining_every
    _assert_each_renewed_once(database, count, declining_every, due_at)


@pytest.mark.slow
@only_postgresql
def test_three_prune_runners_delete_each_row_once(runner_database: RunnerDatabase) -> None:
    database = runner_database
    seed_due_subscriptions(database.engine, 10)
    now = utcnow()
    links = [
        {
            "token_hash": f"{n:064x}",
            "purpose": LinkPurpose.LOGIN_LINK,
            "customer_id": f"cus_{n % 10 + 1:05d}",
            "created_at": now - timedelta(days=3),
            "expires_at": now - timedelta(days=2),
        }
        for n in range(6000)
    ]
    sessions = [
        {
            "id": f"ses_{n:06d}",
            "customer_id": f"cus_{n % 10 + 1:05d}",
            "auth_version": 1,
            "created_at": now - timedelta(days=400),
            "last_seen_at": now - timedelta(days=400),
        }
        for n in range(3000)
    ]
    with database.engine.begin() as connection:
        connection.execute(insert(LinkModel.__table__), links)
        connection.execute(insert(PortalSessionModel.__table__), sessions)

    runners = [_runner(database, "prune") for _ in range(3)]
    finished = [_finish(runner) for runner in runners]

    assert [code for code, _ in finished] == [0, 0, 0], finished
    # Each row deleted, and counted, by exactly one of them.
    assert sum(_counted(out, "links") for _, out in finished) == len(links)
    assert sum(_counted(out, "sessions") for _, out in finished) == len(sessions)
    with database.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(LinkModel)) == 0
        assert connection.scalar(select(func.count()).select_from(PortalSessionModel)) == 0
