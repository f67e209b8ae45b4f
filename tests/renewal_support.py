"""Many subscriptions due at once, and a payment provider and a mailer
whose records outlive the process that used them: what the renewal tests
and the renewal benchmark (``benchmarks/renewals.py``) share.

:class:`LedgerPaymentProvider` behaves as :class:`TestPaymentProvider`
does, but keeps every charge in a table of its own (``ledger_charges``),
written in its own committed transaction, as a payment company keeps the
money it took whatever becomes of the shop's transaction. Several
``flask portal renew-due`` processes can therefore be checked together:
one row per idempotency key, and the number of times each key was asked.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from flask_customer_portal import CustomerPortal
from flask_customer_portal.contrib.sqla.models import (
    CustomerModel,
    PaymentMethodModel,
    SubscriptionModel,
)
from flask_customer_portal.mail import Message
from flask_customer_portal.money import Money
from flask_customer_portal.payments import (
    ChargeDeclined,
    ChargeResult,
    ChargeSucceeded,
    DeclineReason,
    TestPaymentProvider,
)
from flask_customer_portal.storage import SubscriptionStatus

__all__ = [
    "DUE_AT",
    "LedgerMailer",
    "LedgerPaymentProvider",
    "create_runner_app",
    "ledger_counts",
    "ledger_tables",
    "seed_due_subscriptions",
]

#: When the seeded subscriptions' periods end; runs happen a little after.
DUE_AT = datetime(2030, 1, 1, tzinfo=timezone.utc)

ledger = MetaData()
charges = Table(
    "ledger_charges",
    ledger,
    Column("idempotency_key", String(200), primary_key=True),
    Column("invoice_id", String(64), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("declined", Integer, nullable=False),
    Column("asked", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
)
mails = Table(
    "ledger_mails",
    ledger,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recipient", String(320), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("pid", Integer, nullable=False),
)


def ledger_tables(engine: Engine) -> None:
    """Fresh ledger tables on ``engine``."""
    ledger.drop_all(engine)
    ledger.create_all(engine)


class LedgerPaymentProvider(TestPaymentProvider):
    """:class:`TestPaymentProvider` whose charges are rows of
    ``ledger_charges``: the first call with a key decides the outcome and
    every later call with that key answers it again, from any process.

    ``die_after``: at the first charge that succeeds once this many were
    recorded, the process kills itself with ``SIGKILL`` — the money is
    taken, the portal's transaction never commits."""

    __test__ = False

    def __init__(self, url: str, *, die_after: int | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self._engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        self._die_after = die_after
        self._delay = delay
        self._made = 0

    def charge(
        self,
        *,
        customer_id: str,
        provider_token: str,
        amount: Money,
        idempotency_key: str,
        invoice_id: str,
        description: str,
    ) -> ChargeResult:
        outcome = super().charge(
            customer_id=customer_id,
            provider_token=provider_token,
            amount=amount,
            idempotency_key=idempotency_key,
            invoice_id=invoice_id,
            description=description,
        )
        values = {
            "idempotency_key": idempotency_key,
            "invoice_id": invoice_id,
            "amount": amount.amount,
            "currency": amount.currency,
            "declined": int(isinstance(outcome, ChargeDeclined)),
            "asked": 1,
            "pid": os.getpid(),
        }
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        with self._engine.connect() as connection:
            connection.execute(
                dialect.insert(charges)
                .values(values)
                .on_conflict_do_update(
                    index_elements=["idempotency_key"], set_={"asked": charges.c.asked + 1}
                )
            )
            first = connection.execute(
                select(charges).where(charges.c.idempotency_key == idempotency_key)
            ).one()
        if self._delay:
            time.sleep(self._delay)
        self._made += 1
        # Dies on a charge that took money: a declined one would leave
        # nothing in flight to prove the next run's reconciliation with.
        if self._die_after is not None and self._made >= self._die_after and not first.declined:
            os.kill(os.getpid(), signal.SIGKILL)
        if first.declined:
            return ChargeDeclined(DeclineReason.INSUFFICIENT_FUNDS, "ch_ledger_" + idempotency_key[-12:])
        return ChargeSucceeded("ch_ledger_" + idempotency_key[-24:], Money(first.amount, first.currency))

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        self.calls.append("find_charge")
        with self._engine.connect() as connection:
            row = connection.execute(
                select(charges).where(charges.c.idempotency_key == idempotency_key)
            ).first()
        if row is None:
            return None
        if row.declined:
            return ChargeDeclined(DeclineReason.INSUFFICIENT_FUNDS, "ch_ledger_" + idempotency_key[-12:])
        return ChargeSucceeded("ch_ledger_" + idempotency_key[-24:], Money(row.amount, row.currency))


class LedgerMailer:
    """Keeps every message sent as a row of ``ledger_mails``."""

    def __init__(self, url: str) -> None:
        self._engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)

    def send(self, message: Message) -> None:
        with self._engine.connect() as connection:
            connection.execute(
                insert(mails).values(recipient=message.to, subject=message.subject, pid=os.getpid())
            )


def seed_due_subscriptions(
    engine: Engine, count: int, *, declining_every: int = 0, due_at: datetime = DUE_AT, prefix: str = ""
) -> None:
    """``count`` customers with a card and a monthly subscription each,
    every one of them due at ``due_at`` (``sub_00001`` …, after
    ``prefix``). With ``declining_every`` = n, every n-th card declines its
    charges."""
    start = due_at - timedelta(days=31)
    good = TestPaymentProvider.token_for("4242424242424242")
    bad = TestPaymentProvider.token_for("4000000000009995", charges_decline=DeclineReason.INSUFFICIENT_FUNDS)
    customers: list[dict[str, Any]] = []
    methods: list[dict[str, Any]] = []
    subscriptions: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        customer_id = f"cus_{prefix}{n:05d}"
        declining = declining_every and n % declining_every == 0
        customers.append(
            {
                "id": customer_id,
                "email": f"{customer_id}@example.com",
                "email_normalized": f"{customer_id}@example.com",
                "name": f"Customer {n}",
                "auth_version": 1,
                "created_at": start,
            }
        )
        methods.append(
            {
                "id": f"pm_{prefix}{n:05d}",
                "customer_id": customer_id,
                "brand": "visa",
                "last4": "9995" if declining else "4242",
                "exp_month": 12,
                "exp_year": due_at.year + 3,
                "provider_token": bad if declining else good,
                "created_at": start,
            }
        )
        subscriptions.append(
            {
                "id": f"sub_{prefix}{n:05d}",
                "customer_id": customer_id,
                "product_name": "Pro",
                "plan_name": "Monthly",
                "price_amount": 1900,
                "price_currency": "USD",
                "interval": "month",
                "interval_count": 1,
                "status": SubscriptionStatus.ACTIVE,
                "current_period_start": start,
                # A few share the same end: the order is (end, id).
                "current_period_end": due_at - timedelta(seconds=n // 3),
                "cancel_at_period_end": False,
                "payment_method_id": f"pm_{prefix}{n:05d}",
                "created_at": start,
                "quantity": 1,
                "credit": 0,
                "discount_percent": 0,
                "discount_renewals": 0,
            }
        )
    with engine.begin() as connection:
        for model, rows in (
            (CustomerModel, customers),
            (PaymentMethodModel, methods),
            (SubscriptionModel, subscriptions),
        ):
            for chunk in range(0, len(rows), 1000):
                connection.execute(insert(model.__table__), rows[chunk : chunk + 1000])


def ledger_counts(engine: Engine) -> tuple[int, int]:
    """(charges kept, times a key was asked again)."""
    with engine.connect() as connection:
        kept, asked = connection.execute(
            select(func.count(), func.coalesce(func.sum(charges.c.asked), 0))
        ).one()
    return int(kept), int(asked) - int(kept)


def create_runner_app(settings: Mapping[str, str] | None = None) -> Flask:
    """The app a ``flask portal renew-due`` process of the tests and the
    benchmark runs: the portal on ``RENEWAL_DATABASE_URL`` with the ledger
    provider and mailer on ``RENEWAL_LEDGER_URL`` (by default the same
    database). ``RENEWAL_DIE_AFTER``: see :class:`LedgerPaymentProvider`."""
    settings = os.environ if settings is None else settings
    url = settings["RENEWAL_DATABASE_URL"]
    # On SQLite the ledger needs a file of its own: the portal holds the
    # database's write lock while it charges.
    ledger_url = settings.get("RENEWAL_LEDGER_URL") or url
    die_after = settings.get("RENEWAL_DIE_AFTER")
    app = Flask("portal_renewal_runner")
    app.config.update(
        SECRET_KEY="renewal-runner-secret-key-0123456789abcdef",
        SQLALCHEMY_DATABASE_URI=url,
        CUSTOMER_PORTAL_BUSINESS_ID="biz_demo",
        CUSTOMER_PORTAL_BASE_URL="http://shop.test",
        CUSTOMER_PORTAL_MERCHANT_NAME="Acme Software",
        CUSTOMER_PORTAL_PHONE_DEFAULT_REGION="ID",
    )
    SQLAlchemy(app)
    CustomerPortal(
        app,
        payments=LedgerPaymentProvider(
            ledger_url,
            die_after=int(die_after) if die_after else None,
            delay=float(settings.get("RENEWAL_CHARGE_DELAY", "0")),
        ),
        mailer=LedgerMailer(ledger_url),
    )
    return app
