"""The mail outbox: rows written with their change, claimed with a lease,
retried with backoff, sent once, given up on visibly."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portal_fixtures import (
    SMTPServer,
    close_app,
    free_port,
    make_portal_app,
    portal_store,
    sign_in,
    stored_subscription,
)
from sqlalchemy.exc import IntegrityError

from flask_customer_portal import signals
from flask_customer_portal.billing.notify import MailBatch, send_email
from flask_customer_portal.cli import portal_cli
from flask_customer_portal.clock import utcnow
from flask_customer_portal.errors import ConfigurationError
from flask_customer_portal.mail import MailDeliveryError, Message, SMTPMailer
from flask_customer_portal.mail_settings import MailSettings, load_mail_settings
from flask_customer_portal.outbox import backoff, deliver_due, deliver_mail, new_mail, queue_mail, run_worker
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import ERASED_EMAIL_DOMAIN, AuditEvent, MailStatus, OutboxMail
from flask_customer_portal.testing import MemoryMailer, csrf_token_from

AVA = "cus_demo_ava"
AVA_SUB = "sub_demo_ava_sync"


class FlakyMailer(MemoryMailer):
    """Fails the first ``failures`` sends (a 4xx, or the server down), then works."""

    def __init__(self, failures: int = 0, *, permanent: bool = False) -> None:
        super().__init__()
        self.failures = failures
        self.permanent = permanent
        self.tries = 0

    def send(self, message: Message) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise MailDeliveryError(
                "SMTP delivery to mail.test:25 failed: 451 try later", permanent=self.permanent
            )
        super().send(message)


@pytest.fixture
def flaky() -> FlakyMailer:
    return FlakyMailer()


@pytest.fixture
def outbox_app(tmp_path: Path, flaky: FlakyMailer) -> Iterator[Flask]:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'outbox.db'}", mailer=flaky, CUSTOMER_PORTAL_MAIL_IN_PROCESS=False
    )
    yield app
    close_app(app)


def _queue(app: Flask, count: int = 1, **fields: Any) -> list[OutboxMail]:
    state = get_state(app)
    with app.app_context():
        mails = [
            new_mail(
                state,
                Message(to="ava@example.com", subject=f"Hello {n}", text=f"text {n}", html=f"<p>{n}</p>"),
                kind="test",
                customer_id=AVA,
                **fields,
            )
            for n in range(count)
        ]
        queue_mail(state, mails)
    return mails


def _row(app: Flask, mail_id: str) -> OutboxMail:
    with app.app_context():
        for status in MailStatus:
            for mail in portal_store(app).list_mail(status=status, limit=1000):
                if mail.id == mail_id:
                    return mail
    raise AssertionError(f"no row {mail_id}")


# --- retries and backoff ------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    settings = MailSettings(backoff_base=10)
    for attempts, ceiling in ((1, 10), (2, 20), (3, 40), (4, 80), (30, 3600)):
        waits = {backoff(attempts, settings).total_seconds() for _ in range(50)}
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (attempts, waits)
        assert len(waits) > 1  # jittered


def test_a_failing_server_is_retried_with_backoff_until_it_takes_the_message(
    outbox_app: Flask, flaky: FlakyMailer
) -> None:
    flaky.failures = 2
    [mail] = _queue(outbox_app)
    state = get_state(outbox_app)
    now = utcnow()
    with outbox_app.app_context():
        first = deliver_due(state, now=now)
        assert first.retried == [mail.id] and first.sent == []
        retry = _row(outbox_app, mail.id)
        assert retry.status is MailStatus.PENDING and retry.attempts == 1
        assert retry.claimed_by is None and "451" in (retry.last_error or "")
        assert retry.next_attempt_at is not None
        assert now + timedelta(seconds=15) <= retry.next_attempt_at <= now + timedelta(seconds=30)
        # Not due yet: nothing is tried.
        assert deliver_due(state, now=now + timedelta(seconds=14)).attempted == 0
        later = retry.next_attempt_at
        assert deliver_due(state, now=later).retried == [mail.id]
        second = _row(outbox_app, mail.id)
        assert second.attempts == 2
        assert later + timedelta(seconds=30) <= second.next_attempt_at <= later + timedelta(seconds=60)  # type: ignore[operator]
        assert deliver_due(state, now=second.next_attempt_at).sent == [mail.id]
    sent = _row(outbox_app, mail.id)
    assert (sent.status, sent.attempts, sent.last_error) == (MailStatus.SENT, 3, None)
    assert (sent.text, sent.html) == ("", "")  # a sent row keeps no body (it may hold a link)
    assert [m.message_id for m in flaky.outbox] == [mail.message_id]


def test_exhausted_rows_stay_visible_and_the_signal_fires(tmp_path: Path) -> None:
    mailer = FlakyMailer(failures=100)
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'x.db'}",
        mailer=mailer,
        CUSTOMER_PORTAL_MAIL_IN_PROCESS=False,
        CUSTOMER_PORTAL_MAIL_MAX_ATTEMPTS=3,
    )
    [mail] = _queue(app)
    failed: list[dict[str, Any]] = []
    state = get_state(app)
    with signals.mail_failed.connected_to(lambda sender, **kw: failed.append(kw), app), app.app_context():
        when = utcnow()
        for _ in range(3):
            deliver_due(state, now=when)
            when += timedelta(hours=2)
        assert deliver_due(state, now=when + timedelta(days=1)).attempted == 0  # never again
    row = _row(app, mail.id)
    assert (row.status, row.attempts) == (MailStatus.FAILED, 3)
    assert "451" in (row.last_error or "")
    assert [(f["mail"].id, f["mail"].status) for f in failed] == [(mail.id, MailStatus.FAILED)]
    assert failed[0]["error"] == row.last_error
    result = app.test_cli_runner().invoke(portal_cli, ["mail-status"])
    assert result.exit_code == 0, result.output
    assert "0 pending (0 due now), 1 failed, 0 sent." in result.output
    assert f"failed: {mail.id} test customer={AVA} to=ava@example.com attempts=3" in result.output
    close_app(app)


def test_a_permanent_refusal_fails_at_once(outbox_app: Flask, flaky: FlakyMailer) -> None:
    flaky.failures, flaky.permanent = 1, True
    [mail] = _queue(outbox_app)
    failed: list[Any] = []
    with (
        signals.mail_failed.connected_to(lambda s, **kw: failed.append(kw), outbox_app),
        outbox_app.app_context(),
    ):
        assert deliver_due(get_state(outbox_app)).failed == [mail.id]
    assert _row(outbox_app, mail.id).attempts == 1
    assert len(failed) == 1


def test_smtp_answers_are_told_apart(smtp_server: SMTPServer) -> None:
    from smtplib import SMTPDataError, SMTPRecipientsRefused, SMTPSenderRefused

    from flask_customer_portal.mail import _refused_for_good

    assert _refused_for_good(SMTPRecipientsRefused({"a@b.c": (550, b"no such user")}))
    assert not _refused_for_good(SMTPRecipientsRefused({"a@b.c": (450, b"mailbox busy")}))
    assert _refused_for_good(SMTPDataError(554, b"rejected as spam"))
    assert not _refused_for_good(SMTPDataError(451, b"try later"))
    assert not _refused_for_good(SMTPSenderRefused(550, b"sender", "x@y.z"))  # the merchant's settings
    assert not _refused_for_good(smtplib.SMTPServerDisconnected("gone"))
    assert not _refused_for_good(TimeoutError())
    # And against a real server: a refused connection is for another try.
    with pytest.raises(MailDeliveryError) as refused:
        SMTPMailer(host="127.0.0.1", port=free_port(), timeout=1).send(
            Message(to="a@example.com", subject="s", text="t", html="t")
        )
    assert refused.value.permanent is False


def test_a_row_that_expired_before_it_could_be_sent_is_given_up(outbox_app: Flask) -> None:
    [mail] = _queue(outbox_app, expires_at=utcnow() + timedelta(minutes=15))
    with outbox_app.app_context():
        report = deliver_due(get_state(outbox_app), now=utcnow() + timedelta(minutes=16))
    assert report.failed == [mail.id]
    assert _row(outbox_app, mail.id).last_error == "expired before it could be sent"


# --- claims ---------------------------------------------------------------------------------------


def test_a_lease_that_ran_out_is_taken_over_and_the_first_sender_cannot_record_after(
    outbox_app: Flask, flaky: FlakyMailer
) -> None:
    [mail] = _queue(outbox_app)
    store = portal_store(outbox_app)
    lease = timedelta(seconds=120)
    now = utcnow()
    with outbox_app.app_context():
        [claimed] = store.claim_mail(now, owner="sender-a", lease=lease)
        assert (claimed.id, claimed.attempts, claimed.claimed_by) == (mail.id, 1, "sender-a")
        # Sender A dies here. While its lease runs, nobody else gets the row.
        assert store.claim_mail(now + timedelta(seconds=119), owner="sender-b", lease=lease) == ()
        assert deliver_due(get_state(outbox_app), now=now + timedelta(seconds=119)).attempted == 0
        # Then sender B takes it over, and sends it.
        report = deliver_due(get_state(outbox_app), now=now + timedelta(seconds=121), owner="sender-b")
        assert report.sent == [mail.id]
        # A comes back to life: its claim is gone, nothing it says is written.
        assert not store.release_mail(mail.id, owner="sender-a", now=now, status=MailStatus.FAILED, error="x")
    row = _row(outbox_app, mail.id)
    assert (row.status, row.attempts) == (MailStatus.SENT, 2)
    assert len(flaky.outbox) == 1


def test_claims_take_due_rows_oldest_first_and_only_once(outbox_app: Flask) -> None:
    mails = _queue(outbox_app, 3)
    store = portal_store(outbox_app)
    with outbox_app.app_context():
        first = store.claim_mail(utcnow(), owner="a", lease=timedelta(minutes=2), limit=2)
        second = store.claim_mail(utcnow(), owner="b", lease=timedelta(minutes=2), limit=5)
        assert store.claim_mail(utcnow(), owner="c", lease=timedelta(minutes=2)) == ()
    assert sorted(m.id for m in (*first, *second)) == sorted(m.id for m in mails)
    assert len(first) == 2 and len(second) == 1


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_two_senders_at_once_never_send_a_row_twice(db_url: str, smtp_server: SMTPServer) -> None:
    app = make_portal_app(db_url, CUSTOMER_PORTAL_MAIL_IN_PROCESS=False, **smtp_server.config())
    try:
        mails = _queue(app, 30)
        reports: list[Any] = []
        start = threading.Barrier(2)

        def sender() -> None:
            with app.app_context():
                start.wait()
                reports.append(deliver_due(get_state(app)))

        threads = [threading.Thread(target=sender) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        ours = {m.id for m in mails}
        sent = [m for report in reports for m in report.sent if m in ours]
        assert sorted(sent) == sorted(ours)  # every row, by one sender each
        assert all(set(report.sent) & ours for report in reports)  # both took part
        mine = {m.message_id for m in mails}
        ids = [message["Message-ID"] for message in smtp_server.messages if message["Message-ID"] in mine]
        assert sorted(ids) == sorted(mine)  # each arrived exactly once
    finally:
        close_app(app)


# --- written with the change, or not at all -------------------------------------------------------


def test_a_change_rolled_back_leaves_no_email(outbox_app: Flask) -> None:
    state = get_state(outbox_app)
    with outbox_app.app_context():
        customer = state.storage.get_customer(AVA)
        assert customer is not None
        batch = MailBatch(state)

        def change_then_fail() -> None:
            with state.storage.lock_subscription(AVA, AVA_SUB) as lock:
                assert lock is not None
                batch.write_through(lock)
                lock.record_event(AuditEvent(customer_id=AVA, action="test.change", occurred_at=utcnow()))
                send_email(
                    state,
                    "cancellation_undone",
                    customer,
                    batch=batch,
                    subscription=lock.subscription,
                    link="x",
                )
                raise RuntimeError("after the email")

        with pytest.raises(RuntimeError, match="after the email"):
            change_then_fail()
        assert state.storage.mail_counts(utcnow()).pending == 0  # type: ignore[attr-defined]
        assert "test.change" not in [e.action for e in portal_store(outbox_app).list_events(AVA)]
        # The same, committed: one row, written by the lock's transaction.
        batch = MailBatch(state)
        with state.storage.lock_subscription(AVA, AVA_SUB) as lock:
            batch.write_through(lock)
            send_email(
                state, "cancellation_undone", customer, batch=batch, subscription=lock.subscription, link="x"
            )  # type: ignore[union-attr]
        batch.committed()
        assert state.storage.mail_counts(utcnow()).pending == 1  # type: ignore[attr-defined]


def test_a_failed_link_write_leaves_no_email_and_a_failed_email_write_no_link(outbox_app: Flask) -> None:
    from flask_customer_portal.storage import LinkPurpose, LinkRecord

    state = get_state(outbox_app)
    store = portal_store(outbox_app)
    now = utcnow()
    link = LinkRecord("hash-1", LinkPurpose.LOGIN_LINK, AVA, now, now + timedelta(minutes=5))
    [mail] = _queue(outbox_app)
    with outbox_app.app_context():
        store.create_link(link)
        with pytest.raises(IntegrityError):  # the link's key is taken
            store.enqueue_mail(
                [new_mail(state, Message("a@b.c", "s", "t", "h"), kind="x", customer_id=AVA)], link=link
            )
        assert store.mail_counts(now).pending == 1
        other = LinkRecord("hash-2", LinkPurpose.LOGIN_LINK, AVA, now, now + timedelta(minutes=5))
        with pytest.raises(IntegrityError):  # the email's id is taken
            store.enqueue_mail([mail], link=other)
        assert store.get_link("hash-2") is None


def test_an_email_change_that_loses_the_race_sends_no_notice(tmp_path: Path) -> None:
    from flask_customer_portal.storage import EmailInUse

    app = make_portal_app(f"sqlite:///{tmp_path / 'e.db'}", CUSTOMER_PORTAL_MAIL_IN_PROCESS=False)
    state = get_state(app)
    with app.app_context():
        ava = state.storage.get_customer(AVA)
        assert ava is not None
        notice = new_mail(
            state, Message("ava@example.com", "s", "t", "h"), kind="email_change_notice", customer_id=AVA
        )
        with pytest.raises(EmailInUse):
            state.storage.change_email(AVA, "budi@example.com", auth_version=ava.auth_version, mail=[notice])
        assert (
            state.storage.change_email(
                AVA, "ava2@example.com", auth_version=ava.auth_version + 7, mail=[notice]
            )
            is None
        )
        assert state.storage.mail_counts(utcnow()).pending == 0  # type: ignore[attr-defined]
        assert state.storage.change_email(
            AVA, "ava2@example.com", auth_version=ava.auth_version, mail=[notice]
        )
        assert state.storage.mail_counts(utcnow()).pending == 1  # type: ignore[attr-defined]
    close_app(app)


def test_a_reactivation_writes_its_confirmation_in_the_locks_transaction(tmp_path: Path) -> None:
    from flask_customer_portal.storage import SubscriptionStatus

    mailer = MemoryMailer()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'r.db'}", mailer=mailer, CUSTOMER_PORTAL_MAIL_IN_PROCESS=False
    )
    client = app.test_client()
    sign_in(app, client, "cus_demo_budi")
    url = "/portal/subscriptions/sub_demo_budi_sync/payment-method"
    page = client.get(url)
    card = {"payment_method": "new", "card_number": "4242 4242 4242 4242", "exp_month": "12", "cvc": "123"}
    card["exp_year"] = str(utcnow().year + 2)
    response = client.post(
        url, data={"csrf_token": csrf_token_from(page.text), "intent": "reactivate", **card}
    )
    assert response.status_code == 303, response.text
    assert stored_subscription(app, "cus_demo_budi", "sub_demo_budi_sync").status is SubscriptionStatus.ACTIVE
    with app.app_context():
        pending = portal_store(app).list_mail(status=MailStatus.PENDING)
    [queued] = [mail for mail in pending if mail.kind != "receipt"]
    assert (queued.kind, queued.customer_id) == ("subscription_reactivated", "cus_demo_budi")
    assert mailer.outbox == []  # in-process delivery is off: the row waits for a sender
    with app.app_context():
        assert deliver_mail(queued.id) is True
        assert deliver_mail(queued.id) is False  # sent already: never twice
    assert [m.to for m in mailer.outbox] == ["budi@example.com"]
    close_app(app)


# --- the static login page ------------------------------------------------------------------------


def _ask_for_login_link(client: Any, email: str) -> Any:
    page = client.get("/portal/login/biz_demo")
    return client.post(
        "/portal/login/biz_demo", data={"email": email, "csrf_token": csrf_token_from(page.text)}
    )


def test_known_and_unknown_addresses_cost_the_request_the_same_statements(
    tmp_path: Path, count_queries: Any
) -> None:
    mailer = MemoryMailer()
    # Delivered afterwards, so that no sender's statements are counted.
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'l.db'}", mailer=mailer, CUSTOMER_PORTAL_MAIL_IN_PROCESS=False
    )
    state = get_state(app)
    counts = {}
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    for email in ("ava@example.com", "nobody@example.com", "budi@example.com", "nobody.else@example.com"):
        client = app.test_client()
        client.get("/portal/login/biz_demo")
        state.wait_for_background_tasks()
        with count_queries(engine) as counter:
            page = client.get("/portal/login/biz_demo")
            response = client.post(
                "/portal/login/biz_demo", data={"email": email, "csrf_token": csrf_token_from(page.text)}
            )
            during_request = counter.count
        state.wait_for_background_tasks()
        counts[email] = during_request
        assert response.status_code == 200
    # The request itself does the same database work for every address;
    # who is a customer is found out afterwards, by the sender.
    assert len(set(counts.values())) == 1, counts
    with app.app_context():
        deliver_due(state)
    assert sorted(m.to for m in mailer.outbox) == ["ava@example.com", "budi@example.com"]
    with app.app_context():
        counts_now = portal_store(app).mail_counts(utcnow())
    assert (counts_now.pending, counts_now.sent) == (0, 2)  # the unknown addresses' rows are gone
    close_app(app)


def test_login_requests_wait_in_the_outbox_for_the_sender(tmp_path: Path) -> None:
    mailer = MemoryMailer()
    app = make_portal_app(
        f"sqlite:///{tmp_path / 'w.db'}", mailer=mailer, CUSTOMER_PORTAL_MAIL_IN_PROCESS=False
    )
    client = app.test_client()
    assert _ask_for_login_link(client, "ava@example.com").status_code == 200
    assert _ask_for_login_link(client, "nobody@example.com").status_code == 200
    get_state(app).wait_for_background_tasks()
    assert mailer.outbox == []
    result = app.test_cli_runner().invoke(portal_cli, ["send-mail"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "mail: 1 sent, 0 to retry, 0 failed, 1 not needed."
    assert [m.to for m in mailer.outbox] == ["ava@example.com"]
    assert "/portal/login/biz_demo/" in mailer.outbox[0].text
    again = app.test_cli_runner().invoke(portal_cli, ["send-mail"])
    assert again.output.strip() == "mail: 0 sent, 0 to retry, 0 failed."
    close_app(app)


def test_send_mail_exits_with_status_1_when_mail_is_left_to_retry(tmp_path: Path) -> None:
    app = make_portal_app(
        f"sqlite:///{tmp_path / 's.db'}",
        mailer=FlakyMailer(failures=1),
        CUSTOMER_PORTAL_MAIL_IN_PROCESS=False,
    )
    _queue(app)
    result = app.test_cli_runner().invoke(portal_cli, ["send-mail"])
    assert result.exit_code == 1
    assert result.output.strip() == "mail: 0 sent, 1 to retry, 0 failed."
    close_app(app)


# --- delivery: in process, a dispatcher, the worker -----------------------------------------------


def test_the_demo_prints_its_login_email_within_a_second(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from example_app import create_app

    monkeypatch.delenv("MAIL_SERVER", raising=False)
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'demo.db'}",
            "SECRET_KEY": "demo-secret-for-the-test",
        }
    )
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo-data"]).exit_code == 0
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_customer_portal.mail"):
        started = time.perf_counter()
        assert _ask_for_login_link(client, "ava@example.com").status_code == 200
        printed = None
        while printed is None and time.perf_counter() - started < 1.0:
            printed = next((r for r in caplog.records if "EMAIL NOT SENT" in r.getMessage()), None)
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
    assert printed is not None, f"no login email printed within a second ({elapsed:.2f} s)"
    assert "/portal/login/biz_demo/" in printed.getMessage()
    close_app(app)


def test_a_dispatcher_gets_the_ids_after_commit_and_its_task_delivers(tmp_path: Path) -> None:
    mailer = MemoryMailer()
    app = make_portal_app(f"sqlite:///{tmp_path / 'd.db'}", mailer=mailer)
    handed: list[str] = []
    portal = app.extensions["customer_portal"]

    @portal.mail_dispatcher
    def dispatch(mail_id: str) -> None:
        # Committed already: the task that runs later finds the row.
        with app.app_context():
            assert portal_store(app).mail_counts(utcnow()).pending >= 1
        handed.append(mail_id)

    try:
        [mail] = _queue(app)
        assert handed == [mail.id]
        assert mailer.outbox == []
        with app.app_context():  # what the merchant's task runs
            assert deliver_mail(mail.id) is True
        assert [m.subject for m in mailer.outbox] == ["Hello 0"]
    finally:
        portal.hooks.mail_dispatcher = None
        close_app(app)


def test_the_mail_keys_are_checked_at_start_up(tmp_path: Path) -> None:
    base = {
        "CUSTOMER_PORTAL_MAIL_MAX_ATTEMPTS": 10,
        "CUSTOMER_PORTAL_MAIL_BACKOFF_BASE": 30,
        "CUSTOMER_PORTAL_MAIL_LEASE": 120,
        "CUSTOMER_PORTAL_MAIL_IN_PROCESS": True,
        "CUSTOMER_PORTAL_MAIL_DISPATCHER": None,
        "CUSTOMER_PORTAL_MAIL_POLL_INTERVAL": 5,
        "CUSTOMER_PORTAL_MAIL_KEEP_SENT_DAYS": 14,
    }
    assert load_mail_settings(base) == MailSettings()
    for key, value in (
        ("CUSTOMER_PORTAL_MAIL_MAX_ATTEMPTS", 0),
        ("CUSTOMER_PORTAL_MAIL_BACKOFF_BASE", "30"),
        ("CUSTOMER_PORTAL_MAIL_LEASE", 15),  # under twice MAIL_TIMEOUT (10 s)
        ("CUSTOMER_PORTAL_MAIL_IN_PROCESS", "false"),
        ("CUSTOMER_PORTAL_MAIL_DISPATCHER", "no_such_module:task"),
        ("CUSTOMER_PORTAL_MAIL_DISPATCHER", 42),
        ("CUSTOMER_PORTAL_MAIL_KEEP_SENT_DAYS", 0),
    ):
        with pytest.raises(ConfigurationError, match=key):
            load_mail_settings({**base, key: value})
    assert (
        load_mail_settings({**base, "CUSTOMER_PORTAL_MAIL_DISPATCHER": "os.path:basename"}).dispatcher
        is os.path.basename
    )
    with pytest.raises(ConfigurationError, match="CUSTOMER_PORTAL_MAIL_LEASE"):
        make_portal_app(f"sqlite:///{tmp_path / 'c.db'}", CUSTOMER_PORTAL_MAIL_LEASE=3, MAIL_TIMEOUT=2)


def test_the_worker_delivers_runs_other_tasks_and_stops_on_sigterm(
    outbox_app: Flask, flaky: FlakyMailer
) -> None:
    _queue(outbox_app, 2)
    state = get_state(outbox_app)
    rounds: list[int] = []

    def other_due_work(state: Any) -> int:
        rounds.append(1)
        return 0

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    before = signal.getsignal(signal.SIGTERM)
    sender = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    sender.start()
    started = time.perf_counter()
    with outbox_app.app_context():
        done = run_worker(state, poll_interval=0.05, tasks=[other_due_work])
    assert time.perf_counter() - started < 5
    assert done == 2
    assert len(flaky.outbox) == 2
    assert len(rounds) >= 2  # it kept going round until SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # put back


def test_prune_deletes_sent_rows_after_the_retention_and_keeps_failed_ones(
    outbox_app: Flask, flaky: FlakyMailer
) -> None:
    sent, failed = _queue(outbox_app, 2)
    store = portal_store(outbox_app)
    with outbox_app.app_context():
        now = utcnow()
        store.claim_mail(now, owner="o", lease=timedelta(minutes=2), mail_ids=[sent.id])
        store.release_mail(sent.id, owner="o", now=now - timedelta(days=15), status=MailStatus.SENT)
        store.claim_mail(now, owner="o", lease=timedelta(minutes=2), mail_ids=[failed.id])
        store.release_mail(
            failed.id, owner="o", now=now - timedelta(days=40), status=MailStatus.FAILED, error="x"
        )
    result = outbox_app.test_cli_runner().invoke(portal_cli, ["prune"])
    assert result.exit_code == 0, result.output
    assert "sent mail: 1" in result.output
    with outbox_app.app_context():
        counts = store.mail_counts(utcnow())
    assert (counts.sent, counts.failed) == (0, 1)


def test_erasing_a_customer_deletes_their_email(outbox_app: Flask) -> None:
    _queue(outbox_app, 2)
    with outbox_app.app_context():
        report = portal_store(outbox_app).erase_customer(
            AVA, email=f"erased-{AVA}@{ERASED_EMAIL_DOMAIN}", now=utcnow()
        )
        assert report is not None and report.mail_deleted == 2
        assert portal_store(outbox_app).mail_counts(utcnow()).pending == 0


def test_a_row_handed_over_by_id_is_due_at_once_even_on_a_clock_behind(outbox_app: Flask) -> None:
    state = get_state(outbox_app)
    lease = timedelta(seconds=60)
    with outbox_app.app_context():
        mail = dataclasses.replace(
            new_mail(state, Message("ava@example.com", "s", "t", "h"), kind="x", customer_id=AVA),
            # Written on a host whose clock is five minutes ahead.
            created_at=utcnow() + timedelta(minutes=5),
        )
        state.storage.enqueue_mail([mail])
        # Not due yet to a sender walking the due rows on this clock ...
        assert state.storage.claim_mail(utcnow(), owner="walker", lease=lease, limit=10) == ()
        # ... but named by its id, never tried, it is taken at once.
        claimed = state.storage.claim_mail(utcnow(), owner="by-id", lease=lease, mail_ids=[mail.id])
        assert [m.id for m in claimed] == [mail.id]
