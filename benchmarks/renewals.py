"""Benchmark 8: ``flask portal renew-due`` at scale.

Two parts:

* **Cost per subscription, SQLite, one runner** (in this process, the
  test payment provider): 1,000 and then 4,000 subscriptions due at once,
  against a bare hand-written renewal on the same database and tables —
  per subscription one transaction that reads it, issues its invoice and
  line, records the charge, moves the period on and appends to the audit
  log, with no lock beyond SQLite's own. The portal's figure should be flat
  (4,000 cost per subscription what 1,000 do) and close to the bare one.
* **Several runners, PostgreSQL** (separate ``flask portal renew-due``
  processes, as cron on several hosts starts them): 10,000 subscriptions
  due at once, first one runner, then three at once on a fresh copy of the
  same data. The test payment provider keeps every charge in a table
  (``tests/renewal_support.py``), so the run is checked, not only timed:
  every subscription renewed, with exactly one invoice and one charge.
  Goal: three runners finish in at most 120 s.

PostgreSQL is a throwaway cluster (``tests/pg.py``, fsync off). Times
include starting the processes (about a second each).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import Engine

from benchmarks._timing import verdict
from flask_customer_portal.billing.renewal import RenewalOutcome, renew_due
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.contrib.sqla.models import (
    AuditEventModel,
    ChargeAttemptModel,
    InvoiceLineModel,
    InvoiceModel,
    SubscriptionModel,
)
from flask_customer_portal.payments import TestPaymentProvider
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import ChargeAttemptStatus, InvoiceStatus, SubscriptionStatus
from flask_customer_portal.testing import MemoryMailer
from tests.portal_fixtures import close_app, make_portal_app
from tests.renewal_support import DUE_AT, charges, ledger_tables, seed_due_subscriptions

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 120.0
RUN_AT = DUE_AT + timedelta(minutes=1)


@dataclass(frozen=True)
class SQLiteResult:
    count: int
    portal_ms: float
    bare_ms: float

    @property
    def ratio(self) -> float:
        return self.portal_ms / self.bare_ms


@dataclass(frozen=True)
class Run:
    """One timed run: wall-clock seconds, the runner processes' CPU seconds
    (user + system, all of them together) and the load average at its start
    and end."""

    seconds: float
    cpu_seconds: float
    load: tuple[float, float]
    server_cpu_seconds: float | None = None
    """The database server's CPU seconds (its backends'), where readable."""
    counter_waits: tuple[int, int] = (0, 0)
    """Samples of the runners' backends (every 20 ms) waiting for the
    invoice-number counter's row, and samples of them in a transaction."""

    def per_renewal_ms(self, count: int) -> tuple[float, float]:
        return self.seconds * 1000 / count, self.cpu_seconds * 1000 / count


@dataclass(frozen=True)
class RunnersResult:
    count: int
    one_runner_s: float
    three_runners_s: float

    @property
    def speedup(self) -> float:
        return self.one_runner_s / self.three_runners_s


def run(*, sqlite_counts: tuple[int, ...] = (1_000, 4_000), postgres_count: int = 10_000) -> None:
    print("\n## 8. renew-due: cost per subscription (SQLite) and three runners (PostgreSQL)")
    results = [_sqlite(count) for count in sqlite_counts]
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"Flat: {last.count:,} cost {last.portal_ms / first.portal_ms:.2f}× per subscription "
            f"what {first.count:,} do (bare: {last.bare_ms / first.bare_ms:.2f}×)"
        )
    _postgres(postgres_count)


# -- SQLite, one runner -------------------------------------------------------------


def _sqlite(count: int) -> SQLiteResult:
    with tempfile.TemporaryDirectory() as directory:
        portal_ms = _portal_sqlite(Path(directory) / "portal.sqlite3", count)
    with tempfile.TemporaryDirectory() as directory:
        bare_ms = _bare_sqlite(Path(directory) / "bare.sqlite3", count)
    result = SQLiteResult(count, portal_ms, bare_ms)
    print(
        f"SQLite, {count:,} due: portal {portal_ms:.2f} ms per subscription "
        f"({portal_ms * count / 1000:.1f} s), bare {bare_ms:.2f} ms: {result.ratio:.2f}×"
    )
    return result


def _portal_sqlite(path: Path, count: int) -> float:
    app = make_portal_app(
        f"sqlite:///{path}", demo_data=False, payments=TestPaymentProvider(), mailer=MemoryMailer()
    )
    engine = None
    try:
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
            # The file's default settings, not the test suite's (which skips fsync).
            event.remove(engine, "connect", _no_fsync_listener())
            engine.dispose()
            seed_due_subscriptions(engine, count)
            started = time.perf_counter()
            report = renew_due(get_state(app), now=RUN_AT)
            elapsed = time.perf_counter() - started
        renewed = report.count(RenewalOutcome.RENEWED)
        if renewed != count or report.errors:
            raise AssertionError(f"renewed {renewed} of {count}: {report.errors[:3]}")
        return elapsed * 1000 / count
    finally:
        close_app(app)


def _no_fsync_listener() -> object:
    from tests import portal_fixtures

    return portal_fixtures._no_fsync


def _bare_sqlite(path: Path, count: int) -> float:
    """The same rows written by hand: one transaction per subscription."""
    app = make_portal_app(f"sqlite:///{path}", demo_data=False)
    with app.app_context():
        SQLAlchemyStorage(app.extensions["sqlalchemy"]).create_all()
    close_app(app)
    engine = create_engine(f"sqlite:///{path}")
    try:
        seed_due_subscriptions(engine, count)
        started = time.perf_counter()
        _bare_renewals(engine)
        return (time.perf_counter() - started) * 1000 / count
    finally:
        engine.dispose()


def _bare_renewals(engine: Engine) -> None:
    subscriptions = SubscriptionModel.__table__
    due = select(subscriptions.c.id, subscriptions.c.customer_id, subscriptions.c.payment_method_id).where(
        subscriptions.c.status == SubscriptionStatus.ACTIVE,
        subscriptions.c.current_period_end <= RUN_AT,
    )
    with engine.connect() as connection:
        rows = connection.execute(due).all()
    for number, (subscription_id, customer_id, method_id) in enumerate(rows, start=1):
        invoice_id = f"in_bare_{number}"
        with engine.begin() as connection:
            end = connection.execute(
                select(subscriptions.c.current_period_end).where(subscriptions.c.id == subscription_id)
            ).scalar_one()
            connection.execute(
                insert(InvoiceModel.__table__).values(
                    id=invoice_id,
                    number=f"INV-{number:06d}",
                    customer_id=customer_id,
                    subscription_id=subscription_id,
                    status=InvoiceStatus.PAID,
                    currency="USD",
                    subtotal=1900,
                    tax=0,
                    total=1900,
                    issued_at=RUN_AT,
                    description="Pro — Monthly",
                    paid_at=RUN_AT,
                    payment_reference=f"ch_{number}",
                    payment_method_id=method_id,
                )
            )
            connection.execute(
                insert(InvoiceLineModel.__table__).values(
                    invoice_id=invoice_id,
                    position=0,
                    description="Pro",
                    quantity=1,
                    unit_amount=1900,
                    amount=1900,
                )
            )
            connection.execute(
                insert(ChargeAttemptModel.__table__).values(
                    invoice_id=invoice_id,
                    attempt=1,
                    idempotency_key=f"invoice:{invoice_id}:attempt:1",
                    customer_id=customer_id,
                    payment_method_id=method_id,
                    amount=1900,
                    currency="USD",
                    status=ChargeAttemptStatus.SUCCEEDED,
                    created_at=RUN_AT,
                    resolved_at=RUN_AT,
                )
            )
            connection.execute(
                update(subscriptions)
                .where(subscriptions.c.id == subscription_id)
                .values(current_period_start=end, current_period_end=end + timedelta(days=30))
            )
            connection.execute(
                insert(AuditEventModel.__table__),
                [
                    {
                        "customer_id": customer_id,
                        "action": action,
                        "occurred_at": RUN_AT,
                        "subject_id": subscription_id,
                        "actor": "system",
                        "details": {},
                    }
                    for action in (
                        "invoice.issued",
                        "charge.succeeded",
                        "invoice.paid",
                        "subscription.renewed",
                    )
                ],
            )


# -- PostgreSQL, several runners -------------------------------------------------------


def _postgres(count: int) -> RunnersResult | None:
    from tests import pg

    try:
        cluster = pg.start_cluster()
    except pg.PostgresUnavailable as exc:
        print(f"skipped: no PostgreSQL ({exc})")
        return None
    try:
        template = _template(cluster.url, count)
        one = _runners(cluster.url, template, count, 1, cluster.data_dir)
        three = _runners(cluster.url, template, count, 3, cluster.data_dir)
    finally:
        cluster.stop()
    result = RunnersResult(count, one.seconds, three.seconds)
    print(
        f"PostgreSQL, {count:,} due, test payment provider: 1 runner {one.seconds:.1f} s "
        f"({one.seconds * 1000 / count:.2f} ms per subscription), 3 runners at once "
        f"{three.seconds:.1f} s ({three.seconds * 1000 / count:.2f} ms): {result.speedup:.2f}× faster"
    )
    for label, timed in (("1 runner", one), ("3 runners", three)):
        wall, cpu = timed.per_renewal_ms(count)
        server = timed.server_cpu_seconds
        on_server = "" if server is None else f" and {server * 1000 / count:.2f} ms of database CPU"
        print(
            f"  {label}: {wall:.2f} ms wall, {cpu:.2f} ms of runner CPU{on_server} per renewal; "
            f"load average {timed.load[0]:.1f} at the start, {timed.load[1]:.1f} at the end"
        )
        if server is not None:
            # What two otherwise idle cores would take at the least, if the
            # runs kept both busy with this work and nothing else.
            print(f"    CPU-bound floor on 2 idle cores: {(timed.cpu_seconds + server) / 2:.1f} s")
        waiting, busy = timed.counter_waits
        if busy:
            print(
                f"    waiting for the invoice-number counter in {waiting} of {busy} samples of a "
                f"backend in a transaction ({100 * waiting / busy:.1f} %)"
            )
    print(f"Goal: 3 runners ≤ {GOAL_SECONDS:.0f} s: {verdict(three.seconds <= GOAL_SECONDS)}")
    return result


def _template(url: str, count: int) -> str:
    """A database with ``count`` due subscriptions, copied for each run."""
    template = "renewals_template"
    _recreate(url, template)
    database = _url_of(url, template)
    app = make_portal_app(database, demo_data=False)
    with app.app_context():
        SQLAlchemyStorage(app.extensions["sqlalchemy"]).create_all()
    close_app(app)
    engine = create_engine(database)
    try:
        ledger_tables(engine)
        seed_due_subscriptions(engine, count, due_at=datetime.now(timezone.utc) - timedelta(hours=1))
    finally:
        engine.dispose()
    return template


def _url_of(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def _recreate(url: str, name: str, template: str | None = None) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            copy = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        admin.dispose()


def _server_cpu(data_dir: Path) -> float | None:
    """CPU seconds of the server's ended backends: the postmaster's
    children's times (a backend's are added when it exits)."""
    try:
        pid = (data_dir / "postmaster.pid").read_text().split()[0]
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # cutime and cstime: fields 16 and 17 of the whole line, 14 and 15 after the name.
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def _runners(url: str, template: str, count: int, runners: int, data_dir: Path | None = None) -> Run:
    name = f"renewals_{runners}"
    _recreate(url, name, template)
    database = _url_of(url, name)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
        "RENEWAL_DATABASE_URL": database,
    }
    command = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "renewal_support:create_runner_app",
        "portal",
        "renew-due",
    ]
    sampler = _CounterWaits(url, name)
    server_before = None if data_dir is None else _server_cpu(data_dir)
    load_before = os.getloadavg()[0]
    used_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(runners)
    ]
    sampler.start()
    try:
        outputs = [process.communicate(timeout=1800) for process in processes]
    finally:
        sampler.stop()
    elapsed = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = used.ru_utime + used.ru_stime - used_before.ru_utime - used_before.ru_stime
    load = (load_before, os.getloadavg()[0])
    failed = [
        (p.returncode, err[-500:]) for p, (_, err) in zip(processes, outputs, strict=True) if p.returncode
    ]
    if failed:
        raise AssertionError(f"a runner failed: {failed}")
    # The runners' backends have ended with them (the check's own comes after).
    server_after = None if data_dir is None else _server_cpu(data_dir)
    server = None if server_before is None or server_after is None else server_after - server_before
    _check_once_each(database, count)
    return Run(elapsed, cpu, load, server, (sampler.waiting, sampler.busy))


class _CounterWaits:
    """Samples ``pg_stat_activity`` every 20 ms while the runners run: how
    often a runner's backend waits for a lock while its statement is the
    invoice-number counter's (the one row every invoice takes), against how
    often one is in a transaction at all."""

    _SAMPLE = text(
        "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' AND query LIKE '%portal_sequences%'), "
        "count(*) FILTER (WHERE state IN ('active', 'idle in transaction')) "
        "FROM pg_stat_activity WHERE datname = :database AND pid <> pg_backend_pid()"
    )

    def __init__(self, url: str, database: str) -> None:
        self._engine = create_engine(_url_of(url, database), isolation_level="AUTOCOMMIT")
        self._database = database
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.waiting = 0
        self.busy = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._engine.dispose()

    def _run(self) -> None:
        with self._engine.connect() as connection:
            while not self._done.wait(0.02):
                waiting, busy = connection.execute(self._SAMPLE, {"database": self._database}).one()
                self.waiting += waiting
                self.busy += busy


def _check_once_each(database: str, count: int) -> None:
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            invoices = connection.execute(
                select(func.count(), func.count(func.distinct(InvoiceModel.subscription_id))).where(
                    InvoiceModel.status == InvoiceStatus.PAID
                )
            ).one()
            kept, asked = connection.execute(select(func.count(), func.sum(charges.c.asked))).one()
            still_due = connection.scalar(
                select(func.count())
                .select_from(SubscriptionModel)
                .where(SubscriptionModel.current_period_end <= datetime.now(timezone.utc))
            )
    finally:
        engine.dispose()
    if tuple(invoices) != (count, count) or kept != count or asked != count or still_due:
        raise AssertionError(
            f"expected {count} renewals with one invoice and one charge each: paid invoices {invoices[0]} "
            f"for {invoices[1]} subscriptions, {kept} charges kept, asked {asked} times, {still_due} still due"
        )
