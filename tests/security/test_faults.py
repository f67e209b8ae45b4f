"""Faults injected where the portal meets the world: the mail server, the
payment provider and the database.

For each: the customer gets a clear page (never a stack trace), the log
says what failed without a token, a link or a password, nothing is left
half-written, and the next request works.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from portal_fixtures import SMTPServer, free_port, sign_in
from security_support import AVA, BUDI, NEW_EMAIL, db_dump, issue, records
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from flask_customer_portal.clock import utcnow
from flask_customer_portal.i18n import gettext
from flask_customer_portal.mail import Mailer, SMTPMailer, mailer_from_config
from flask_customer_portal.outbox import deliver_due
from flask_customer_portal.payments import (
    CardDetails,
    ChargeFailed,
    ChargeResult,
    ChargeUnknown,
    MethodAttached,
    MethodDeclined,
)
from flask_customer_portal.state import get_state
from flask_customer_portal.storage import (
    ChargeAttempt,
    ChargeAttemptStatus,
    InvoiceStatus,
    LinkPurpose,
    MailStatus,
    OutboxMail,
    SubscriptionStatus,
)
from flask_customer_portal.testing import TestPaymentProvider, csrf_token_from

AppFactory = Callable[..., Flask]

BUDI_SUB = "sub_demo_budi_sync"
BUDI_INVOICE = "inv_demo_budi_sync_03"
PAYMENT_URL = f"/portal/subscriptions/{BUDI_SUB}/payment-method"
GOOD_CARD = "4242424242424242"
MAIL_PASSWORD = "smtp-password-Zq8v3LmN"
UNREACHABLE = "We could not reach the payment processor. Nothing was charged. Try again."
PENDING = "We are confirming your payment with the bank. Do not pay again: check back in a few minutes."


# --- helpers -------------------------------------------------------------------------------


class TokenSpy:
    """Remembers every link token the portal makes, to look for it in logs."""

    def __init__(self, app: Flask) -> None:
        self.tokens: list[str] = []
        signer = get_state(app).signer
        make = signer.make

        def spy(purpose: LinkPurpose, *args: Any, **kwargs: Any) -> tuple[str, str]:
            token, token_id = make(purpose, *args, **kwargs)
            self.tokens.extend([token, token_id])
            return token, token_id

        signer.make = spy  # type: ignore[method-assign]


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged: messages, arguments and formatted tracebacks."""
    formatter = logging.Formatter("%(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def _assert_no_secrets(logged: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in logged, f"{secret[:12]}... was logged"
    for fragment in ("/portal/session/", "/portal/login/biz_demo/", "/portal/profile/email/"):
        assert fragment not in logged, f"a link ({fragment}) was logged"


def _rows_added(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {
        name: [row for row in after[name] if row not in before[name]]
        for name in after
        if after[name] != before[name]
    }


# --- the mail server -------------------------------------------------------------------------


class _SlowHandler:
    """An SMTP server that takes ``delay`` seconds to answer MAIL FROM."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.port = 0
        self.messages: list[bytes] = []
        self.settled = threading.Event()

    def delivered_late(self) -> list[bytes]:
        """What arrived once the server was done with the slow command."""
        assert self.settled.wait(timeout=5), "the slow server never settled"
        return self.messages

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's name
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        try:
            await asyncio.sleep(self.delay)
        finally:  # answered, or given up because the client went away
            self.settled.set()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.original_content)
        return "250 Message accepted for delivery"


@pytest.fixture
def slow_smtp() -> Iterator[_SlowHandler]:
    """An SMTP server on 127.0.0.1 that answers MAIL FROM after 2 s."""
    from aiosmtpd.controller import Controller

    handler = _SlowHandler(2.0)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = int(controller.port)
    try:
        yield handler
    finally:
        controller.stop()


#: The mailer's timeout in these tests, well below the slow server's delay.
MAIL_WAIT = 1.0


def _broken_mailer(kind: str, slow_port: int) -> Mailer:
    """A mailer from the usual ``MAIL_*`` settings: a port nobody listens on
    (with credentials, to prove they are not logged), or the slow server
    with a short ``MAIL_TIMEOUT``."""
    if kind == "refused":
        config = {
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": free_port(),
            "MAIL_USERNAME": "portal",
            "MAIL_PASSWORD": MAIL_PASSWORD,
            "MAIL_TIMEOUT": 2,
        }
    else:
        config = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": slow_port, "MAIL_TIMEOUT": MAIL_WAIT}
    mailer = mailer_from_config(config)
    assert isinstance(mailer, SMTPMailer)
    return mailer


@pytest.mark.parametrize("kind", ["refused", "slow"])
def test_mail_server_down_or_slow_on_the_login_page(
    make_app: AppFactory,
    slow_smtp: _SlowHandler,
    smtp_server: SMTPServer,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    app = make_app(mailer=_broken_mailer(kind, slow_smtp.port))
    spy = TokenSpy(app)
    state = get_state(app)
    client = app.test_client()
    token = csrf_token_from(client.get("/portal/login/biz_demo").text)
    before, ava_before = db_dump(app), records(app, AVA)
    with caplog.at_level(logging.INFO):
        started = time.perf_counter()
        response = client.post(
            "/portal/login/biz_demo", data={"email": "ava@example.com", "csrf_token": token}
        )
        elapsed = time.perf_counter() - started
        state.wait_for_background_tasks()

    # The page: the same answer as always, without waiting for the server.
    assert response.status_code == 200
    assert "a sign-in link is on its way" in response.text
    # Waiting for the server would take its timeout (or longer): a bound that
    # a busy test machine does not reach, and a mailer in the request would.
    assert elapsed < MAIL_WAIT, elapsed
    # The log: what failed, for which customer, and nothing to sign in with.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cus_demo_ava" in warnings[0].getMessage()
    assert "next attempt after" in warnings[0].getMessage()
    assert spy.tokens, "no link was made"
    _assert_no_secrets(_logged(caplog), MAIL_PASSWORD, *spy.tokens)
    # The database: the link and its email, waiting in the outbox for the
    # server (its error names the server, never the link); no customer changed.
    added = _rows_added(before, db_dump(app))
    assert set(added) <= {"portal_links", "portal_mail_outbox", "portal_audit_events"}, added
    assert records(app, AVA) == ava_before
    [waiting] = _outbox(app, MailStatus.PENDING)
    assert (waiting.kind, waiting.customer_id, waiting.attempts) == ("login_link", AVA, 1)
    _assert_no_secrets(waiting.last_error or "", MAIL_PASSWORD, *spy.tokens)

    if kind == "slow":
        assert slow_smtp.delivered_late() == []  # nothing went out after the timeout either

    # The next request works, and once the server is back both emails go
    # out, each once: the one that waited, at its next attempt.
    state.mailer = mailer_from_config(smtp_server.config())
    assert client.get("/portal/login/biz_demo").status_code == 200
    again = client.post("/portal/login/biz_demo", data={"email": "ava@example.com", "csrf_token": token})
    state.wait_for_background_tasks()
    assert again.status_code == 200
    assert [m["To"] for m in smtp_server.messages] == ["ava@example.com"]
    with app.app_context():
        report = deliver_due(state, now=utcnow() + timedelta(minutes=2))
    assert report.sent == [waiting.id]
    assert [m["To"] for m in smtp_server.messages] == ["ava@example.com"] * 2
    assert len({m["Message-ID"] for m in smtp_server.messages}) == 2


def _outbox(app: Flask, status: MailStatus) -> list[OutboxMail]:
    with app.app_context():
        return list(get_state(app).storage.list_mail(status=status))


@pytest.mark.parametrize("kind", ["refused", "slow"])
def test_mail_server_down_or_slow_on_an_email_change(
    make_app: AppFactory,
    slow_smtp: _SlowHandler,
    smtp_server: SMTPServer,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    app = make_app(mailer=_broken_mailer(kind, slow_smtp.port))
    spy = TokenSpy(app)
    state = get_state(app)
    client = app.test_client()
    sign_in(app, client, AVA)
    form = {"name": "Ava Smith", "email": NEW_EMAIL, "phone": "+14155550123"}
    token = csrf_token_from(client.get("/portal/profile").text)
    before = db_dump(app)
    with caplog.at_level(logging.INFO):
        started = time.perf_counter()
        response = client.post("/portal/profile", data={**form, "csrf_token": token})
        elapsed = time.perf_counter() - started

    # The change is asked for: the link and both emails wait in the outbox
    # for the server; the answer did not wait for it.
    assert response.status_code == 303
    # Waiting for the server would take its timeout (or longer): a bound that
    # a busy test machine does not reach, and a mailer in the request would.
    assert elapsed < MAIL_WAIT, elapsed
    state.wait_for_background_tasks()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert all("cus_demo_ava" in r.getMessage() for r in warnings)
    assert spy.tokens
    _assert_no_secrets(_logged(caplog), MAIL_PASSWORD, *spy.tokens)
    waiting = _outbox(app, MailStatus.PENDING)
    assert sorted((m.kind, m.to) for m in waiting) == [
        ("email_change", NEW_EMAIL),
        ("email_change_notice", "ava@example.com"),
    ]
    assert records(app, AVA)[0].email == "ava@example.com"  # not until the link is opened
    added = _rows_added(before, db_dump(app))
    assert set(added) <= {"portal_links", "portal_mail_outbox", "portal_audit_events", "portal_customers"}

    if kind == "slow":
        assert slow_smtp.delivered_late() == []  # no link went out after the timeout either

    # The server is back: the next sender delivers both, each once.
    state.mailer = mailer_from_config(smtp_server.config())
    assert client.get("/portal/profile").status_code == 200
    with app.app_context():
        report = deliver_due(state, now=utcnow() + timedelta(minutes=2))
    assert sorted(report.sent) == sorted(m.id for m in waiting)
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(["ava@example.com", NEW_EMAIL])
    assert records(app, AVA)[0].name == "Ava Smith"


# --- the payment provider ------------------------------------------------------------------------


class Unreliable(TestPaymentProvider):
    """The test provider with one fault until :meth:`heal` is called."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.fault: str | None = fault

    def heal(self) -> None:
        self.fault = None

    def attach_card(self, customer_id: str, card: CardDetails) -> MethodAttached | MethodDeclined:
        if self.fault == "attach_raises":
            raise ConnectionResetError(f"connection reset while sending {card.number}")
        return super().attach_card(customer_id, card)

    def charge(self, **kwargs: Any) -> ChargeResult:
        if self.fault == "error":
            self.calls.append("charge")
            return ChargeFailed("upstream answered 500")
        if self.fault == "timeout":  # the request never reached the provider
            self.calls.append("charge")
            return ChargeUnknown(kwargs["idempotency_key"])
        if self.fault == "timeout_raises":
            self.calls.append("charge")
            raise TimeoutError("read timed out")
        if self.fault == "raises":
            self.calls.append("charge")
            raise RuntimeError(f"provider bug with token {kwargs['provider_token']}")
        return super().charge(**kwargs)


def _attempts(app: Flask) -> tuple[ChargeAttempt, ...]:
    with app.app_context():
        store = get_state(app).storage
        with store.lock_subscription(BUDI, BUDI_SUB) as lock:
            assert lock is not None
            return tuple(lock.attempts(BUDI_INVOICE))


def _money_state(app: Flask) -> tuple[SubscriptionStatus, InvoiceStatus, int]:
    """Budi's subscription status, his open invoice's status, and how many
    charges of it succeeded according to the database."""
    with app.app_context():
        store = get_state(app).storage
        subscription = store.get_subscription(BUDI, BUDI_SUB)
        invoice = store.get_invoice(BUDI, BUDI_INVOICE)
    assert subscription is not None and invoice is not None
    succeeded = [a for a in _attempts(app) if a.status is ChargeAttemptStatus.SUCCEEDED]
    return subscription.status, invoice.status, len(succeeded)


def _pay(client: FlaskClient, number: str = GOOD_CARD) -> Any:
    page = client.get(PAYMENT_URL)
    assert page.status_code == 200, page.status_code
    intent = re.search(r'name="intent" value="(\w+)"', page.text)
    return client.post(
        PAYMENT_URL,
        data={
            "csrf_token": csrf_token_from(page.text),
            "intent": intent.group(1) if intent else "",
            "payment_method": "new",
            "card_number": number,
            "exp_month": "12",
            "exp_year": str(time.gmtime().tm_year + 2),
            "cvc": "123",
        },
    )


def _in_budis_language(app: Flask, message: str) -> str:
    with app.test_request_context(), force_locale("id"):
        return gettext(message)


@pytest.mark.parametrize(
    ("fault", "status", "message"),
    [
        ("error", 502, UNREACHABLE),
        ("timeout", 202, PENDING),
        ("timeout_raises", 502, UNREACHABLE),
        ("raises", 502, UNREACHABLE),
        ("attach_raises", 502, UNREACHABLE),
    ],
)
def test_payment_provider_faults_leave_the_subscription_on_hold(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture, fault: str, status: int, message: str
) -> None:
    provider = Unreliable(fault)
    app = make_app(payments=provider)
    client = app.test_client()
    sign_in(app, client, BUDI)
    with caplog.at_level(logging.INFO):
        response = _pay(client)

    assert response.status_code == status
    assert _in_budis_language(app, message) in response.text
    assert 'role="alert"' in response.text
    assert "Traceback" not in response.text
    assert GOOD_CARD not in response.text
    assert GOOD_CARD not in _logged(caplog)
    assert provider.charges == []
    assert _money_state(app) == (SubscriptionStatus.ON_HOLD, InvoiceStatus.OPEN, 0)
    # A failed or unknown charge is kept (to reconcile); an exception leaves none.
    kept = {a.status for a in _attempts(app)}
    assert kept == {"error": {ChargeAttemptStatus.FAILED}, "timeout": {ChargeAttemptStatus.UNKNOWN}}.get(
        fault, set()
    )

    # The next request works; once the provider is back, one retry pays once.
    assert client.get(PAYMENT_URL).status_code == 200
    provider.heal()
    retry = _pay(client)
    assert retry.status_code == 303, retry.status_code
    assert retry.headers["Location"].endswith(f"/subscriptions/{BUDI_SUB}/reactivated")
    assert len(provider.charges) == 1
    assert _money_state(app) == (SubscriptionStatus.ACTIVE, InvoiceStatus.PAID, 1)


class ChargesThenRaises(TestPaymentProvider):
    """Takes the money, then the connection drops before the answer arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.drops = 1

    def charge(self, **kwargs: Any) -> ChargeResult:
        result = super().charge(**kwargs)
        if self.drops:
            self.drops -= 1
            raise TimeoutError("read timed out")
        return result


def test_a_charge_whose_answer_was_lost_in_an_exception_is_not_repeated(make_app: AppFactory) -> None:
    provider = ChargesThenRaises()
    app = make_app(payments=provider)
    client = app.test_client()
    sign_in(app, client, BUDI)
    assert _pay(client).status_code == 502
    assert _money_state(app)[:2] == (SubscriptionStatus.ON_HOLD, InvoiceStatus.OPEN)
    retry = _pay(client)
    assert retry.status_code == 303
    assert len(provider.charges) == 1  # the retry reused the key: no second charge
    assert _money_state(app) == (SubscriptionStatus.ACTIVE, InvoiceStatus.PAID, 1)


# --- the database ----------------------------------------------------------------------------


class DatabaseOutage:
    """Loses the database at the ``n``-th step of a request (a statement or a
    commit) and keeps it lost for the rest of that request, like a server
    that went away; or, with ``lasting=False``, fails only that one step."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fail_at: int | None = None
        self.lasting = True
        self.steps = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def arm(self, fail_at: int | None, *, lasting: bool = True) -> None:
        self.fail_at, self.lasting, self.steps = fail_at, lasting, 0

    def _should_fail(self) -> bool:
        if self.fail_at is None:
            return False
        self.steps += 1
        return self.steps == self.fail_at or (self.lasting and self.steps > self.fail_at)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self._should_fail():
            raise conn.dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")

    def _commit(self, conn: Any) -> None:
        if self._should_fail():
            raise OperationalError(
                "COMMIT", None, conn.dialect.loaded_dbapi.OperationalError("server closed the connection")
            )

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


def _outage_app(make_app: AppFactory, provider: TestPaymentProvider) -> tuple[Flask, DatabaseOutage]:
    # Not TESTING: exceptions reach the portal's error page as in production.
    app = make_app(payments=provider, TESTING=False, PROPAGATE_EXCEPTIONS=False)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    return app, DatabaseOutage(engine)


def _assert_error_page(response: Any) -> None:
    assert response.status_code in (500, 503), response.status_code
    body = response.get_data(as_text=True)
    assert '<h1 id="error-title">' in body  # the portal's error page, in the customer's language
    for leak in ("Traceback", "OperationalError", "sqlalchemy", "SELECT ", "portal_"):
        assert leak not in body, leak
    assert response.headers["Cache-Control"] == "no-store"


def _reactivate(client: FlaskClient, page: Any) -> Any:
    """Submit the payment page ``page`` with a good new card."""
    return client.post(
        PAYMENT_URL,
        data={
            "csrf_token": csrf_token_from(page.text),
            "intent": "reactivate",
            "payment_method": "new",
            "card_number": GOOD_CARD,
            "exp_month": "12",
            "exp_year": str(time.gmtime().tm_year + 2),
            "cvc": "123",
        },
    )


def _steps_of_a_reactivation(make_app: AppFactory) -> int:
    app, outage = _outage_app(make_app, TestPaymentProvider())
    client = app.test_client()
    sign_in(app, client, BUDI)
    page = client.get(PAYMENT_URL)
    assert page.status_code == 200
    outage.arm(10**6)
    assert _reactivate(client, page).status_code == 303
    return outage.steps


@pytest.mark.slow
@pytest.mark.parametrize("lasting", [True, False], ids=["lost", "one-failure"])
def test_database_lost_at_any_step_of_a_reactivation(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture, lasting: bool
) -> None:
    """Lose the database at every step of paying Budi's arrears in turn (for
    the rest of the request, or for that one step only): every time a clear
    page, the money all-or-nothing, and the retry pays exactly once."""
    steps = _steps_of_a_reactivation(make_app)
    assert steps > 20
    # Steps 1 and 2 load the signed-in customer: see the test below.
    for fail_at in range(3, steps + 1):
        provider = TestPaymentProvider()
        app, outage = _outage_app(make_app, provider)
        client = app.test_client()
        sign_in(app, client, BUDI)
        page = client.get(PAYMENT_URL)
        assert page.status_code == 200
        outage.arm(fail_at, lasting=lasting)
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            response = _reactivate(client, page)
        outage.arm(None)
        if response.status_code == 502:  # the payment page, with what went wrong
            assert 'id="payment-problem"' in response.text, fail_at
            assert "Traceback" not in response.text
        elif response.status_code != 303:  # 303: the failure came after everything was saved
            _assert_error_page(response)
        assert GOOD_CARD not in _logged(caplog), fail_at

        subscription, invoice, succeeded = _money_state(app)
        assert (subscription, invoice, succeeded) in (
            (SubscriptionStatus.ON_HOLD, InvoiceStatus.OPEN, 0),
            (SubscriptionStatus.ACTIVE, InvoiceStatus.PAID, 1),
        ), (fail_at, subscription, invoice, succeeded)
        # The next request works, and paying again never pays twice.
        retry = _pay(client)
        assert retry.status_code == 303, (fail_at, retry.status_code)
        assert len(provider.charges) == 1, fail_at
        assert _money_state(app) == (SubscriptionStatus.ACTIVE, InvoiceStatus.PAID, 1), fail_at
        outage.remove()


@pytest.mark.parametrize("path", ["/portal/"])
@pytest.mark.parametrize("fail_at", [1, 2], ids=["session", "customer"])
def test_database_lost_while_loading_the_customer_still_gets_the_portal_error_page(
    make_app: AppFactory, path: str, fail_at: int
) -> None:
    app, outage = _outage_app(make_app, TestPaymentProvider())
    client = app.test_client()
    sign_in(app, client, BUDI)
    outage.arm(fail_at)
    response = client.get(path)
    outage.arm(None)
    _assert_error_page(response)
    assert client.get(path).status_code == 200  # the next request works


def test_database_lost_while_saving_the_profile(make_app: AppFactory) -> None:
    """The profile saved whole or not at all at every step; the next
    request works."""
    form = {"name": "Ava Smith", "email": "ava@example.com", "phone": "+14155550123"}
    app, outage = _outage_app(make_app, TestPaymentProvider())
    client = app.test_client()
    sign_in(app, client, AVA)
    original = records(app, AVA)
    page = client.get("/portal/profile")
    outage.arm(10**6)
    assert (
        client.post("/portal/profile", data={**form, "csrf_token": csrf_token_from(page.text)}).status_code
        == 303
    )
    steps = outage.steps
    # Steps 1 and 2 load the signed-in customer: see the test above.
    for fail_at in range(3, steps + 1):
        app, outage = _outage_app(make_app, TestPaymentProvider())
        client = app.test_client()
        sign_in(app, client, AVA)
        page = client.get("/portal/profile")
        outage.arm(fail_at)
        response = client.post("/portal/profile", data={**form, "csrf_token": csrf_token_from(page.text)})
        outage.arm(None)
        saved = records(app, AVA)
        with app.app_context():
            audited = "profile.updated" in [e.action for e in get_state(app).storage.list_events(AVA)]  # type: ignore[attr-defined]
        if response.status_code == 303:
            assert saved[0].name == "Ava Smith", fail_at
        else:
            _assert_error_page(response)
            assert saved[0].email == original[0].email
            assert saved[1:] == original[1:]
        # Saved together with its audit record, or neither.
        assert (saved[0].name, audited) in (("Ava Thompson", False), ("Ava Smith", True)), (fail_at, audited)
        assert client.get("/portal/profile").status_code == 200, fail_at
        outage.remove()


def test_a_database_error_after_the_charge_never_says_nothing_was_charged(make_app: AppFactory) -> None:
    """The provider took the money, then the database failed once before the
    payment was saved: the customer must not be told that nothing was
    charged (the retry reconciles it without charging again)."""
    provider = TestPaymentProvider()
    app, outage = _outage_app(make_app, provider)
    client = app.test_client()
    sign_in(app, client, BUDI)
    page = client.get(PAYMENT_URL)

    def fail_after_the_charge(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if provider.charges and statement.lstrip().upper().startswith("UPDATE PORTAL_INVOICES"):
            event.remove(outage.engine, "before_cursor_execute", fail_after_the_charge)
            raise conn.dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")

    event.listen(outage.engine, "before_cursor_execute", fail_after_the_charge)
    response = _reactivate(client, page)
    assert len(provider.charges) == 1
    assert _money_state(app) == (SubscriptionStatus.ON_HOLD, InvoiceStatus.OPEN, 0)
    assert response.status_code >= 500
    told = _in_budis_language(app, UNREACHABLE)
    assert told != UNREACHABLE  # the check below looks for Budi's language
    assert told not in response.text, "told nothing was charged after the charge went through"
    assert _pay(client).status_code == 303
    assert len(provider.charges) == 1
    outage.remove()


def _sign_in_writes(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """What a sign-in writes: links, sessions and the audit log."""
    dump = db_dump(app)
    return {name: dump[name] for name in ("portal_links", "portal_sessions", "portal_audit_events")}


def _press_link(client: FlaskClient, link_path: str) -> Any:
    page = client.get(link_path)
    assert page.status_code == 200
    return client.post(link_path, data={"csrf_token": csrf_token_from(page.text)})


@pytest.mark.parametrize("lasting", [True, False], ids=["lost", "one-failure"])
def test_database_lost_at_any_step_of_a_link_sign_in(make_app: AppFactory, lasting: bool) -> None:
    """Lose the database at every step of pressing "Open my portal": either
    the link is used, the session made and the sign-in recorded, or none of
    the three (the link still works); never a used link without a session."""
    app, outage = _outage_app(make_app, TestPaymentProvider())
    client = app.test_client()
    path = f"/portal/session/{issue(app, LinkPurpose.SESSION_LINK, BUDI)}"
    page = client.get(path)
    outage.arm(10**6)
    assert client.post(path, data={"csrf_token": csrf_token_from(page.text)}).status_code == 303
    steps = outage.steps
    assert steps >= 3
    outage.remove()

    for fail_at in range(1, steps + 1):
        app, outage = _outage_app(make_app, TestPaymentProvider())
        client = app.test_client()
        path = f"/portal/session/{issue(app, LinkPurpose.SESSION_LINK, BUDI)}"
        before = _sign_in_writes(app)
        page = client.get(path)
        outage.arm(fail_at, lasting=lasting)
        response = client.post(path, data={"csrf_token": csrf_token_from(page.text)})
        outage.arm(None)
        after = _sign_in_writes(app)
        if response.status_code == 303:  # the failure came after the commit
            assert len(after["portal_sessions"]) == len(before["portal_sessions"]) + 1, fail_at
        else:
            _assert_error_page(response)
            assert after == before, fail_at  # nothing written: the link is unused
            assert client.get("/portal/").status_code == 302  # not signed in
            assert _press_link(client, path).status_code == 303, fail_at  # the link still works
        assert client.get("/portal/").status_code == 200, fail_at
        outage.remove()
