"""Billing back ends for the shared contract suite (``tests/test_billing_contract.py``).

Each back end is a factory: a generator function that takes the pytest
request, makes the same scenario through the back end's own API and yields a
:class:`SeededBilling` (the portal's storage over that back end plus the ids
it made), cleaning up after the ``yield``. The scenario:

* customer "Ava" with an ``active`` monthly subscription charged to a saved
  Visa ending 4242 (her only saved card), at least two ``paid`` invoices of
  that subscription, and a second subscription that is ``on_hold`` with one
  ``open`` invoice;
* customer "Budi" with a card and an ``active`` subscription of his own
  (for the scoping tests).

To run the suite against a new adapter, write one factory and add it to
:data:`BACKENDS` under a short name; every test in the suite then runs
against it. A feature the back end (or the server the tests run it
against) cannot show goes into ``lacks`` with the reason: the tests that
need it are skipped with that reason, visibly, and the reason should name
the test that covers it another way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import factories
import pytest

from flask_customer_portal.contrib.composite import CompositeStorage, MappingCustomerIds
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage
from flask_customer_portal.storage import (
    CreditNote,
    Customer,
    InvoiceLine,
    InvoiceStatus,
    PaymentMethod,
    PortalStorage,
    Subscription,
    SubscriptionStatus,
)

UTC = timezone.utc

#: A feature a contract test may need that some back ends cannot show.
SUBSCRIPTION_PAYMENT_METHOD = "set_subscription_payment_method"


@dataclass
class SeededBilling:
    """The portal's storage over one back end, with the scenario's ids."""

    storage: PortalStorage
    customer_id: str
    other_customer_id: str
    card_id: str
    other_card_id: str
    active_subscription_id: str
    on_hold_subscription_id: str
    other_subscription_id: str
    paid_invoice_ids: list[str]
    open_invoice_id: str
    now: datetime
    """"Now" for the back end: inside the active subscription's period."""
    lacks: dict[str, str] = field(default_factory=dict)
    """Features this back end cannot show here, with the reason."""
    other_plan_id: str = ""
    """A plan the active subscription may change to at the back end."""
    refund: Callable[[str, int], None] | None = None
    """Pay back part of one of the customer's paid invoices, as the back
    end's merchant would (its id, the amount in minor units)."""
    promotion_code: str = ""
    """A code of the payment company's that the customer may use at a plan
    change to :attr:`other_plan_id` (10 % off)."""
    one_off_invoice: Callable[[], str] | None = None
    """Make an open invoice of no subscription for the customer (its id);
    made only by the tests that need it, to keep the scenario cheap."""
    take_payment: Callable[[str], str] | None = None
    """Take the money for one of the customer's open one-off invoices with
    their saved card, as the payment company does (its reference)."""
    trialing_subscription: Callable[[int], str] | None = None
    """Make a subscription for the customer in a free trial of that many
    days (its id)."""

    def require(self, feature: str) -> None:
        if feature in self.lacks:
            pytest.skip(self.lacks[feature])


BackendFactory = Callable[[pytest.FixtureRequest], Iterator[SeededBilling]]


# -- the local store ------------------------------------------------------------------


def seed_local(store: SQLAlchemyStorage, now: datetime) -> SeededBilling:
    start = now - timedelta(days=5)

    def card(pm_id: str, customer_id: str) -> PaymentMethod:
        return store.add_payment_method(factories.card(pm_id, customer_id, created_at=start))

    def subscription(
        sub_id: str, customer_id: str, method: PaymentMethod | None, **kw: object
    ) -> Subscription:
        return store.add_subscription(
            factories.subscription(
                sub_id,
                customer_id,
                current_period_start=start,
                current_period_end=start + timedelta(days=30),
                payment_method=method,
                **{"created_at": start, **kw},
            )
        )

    def invoice(inv_id: str, sub_id: str, status: InvoiceStatus, issued: datetime) -> None:
        store.add_invoice(
            factories.invoice(
                inv_id,
                "cus_ava",
                number=f"INV-{inv_id}",
                status=status,
                issued_at=issued,
                description="Pro — Monthly",
                subscription_id=sub_id,
                paid_at=issued if status is InvoiceStatus.PAID else None,
                lines=(InvoiceLine("Pro — Monthly", 1, 1999, 1999),),
            )
        )

    store.add_customer(Customer("cus_ava", "ava@example.com", "Ava", created_at=start))
    store.add_customer(Customer("cus_budi", "budi@example.com", "Budi", created_at=start))
    visa = card("pm_ava_visa", "cus_ava")
    subscription("sub_ava_active", "cus_ava", visa)
    subscription(
        "sub_ava_on_hold",
        "cus_ava",
        None,
        status=SubscriptionStatus.ON_HOLD,
        created_at=start - timedelta(days=1),
    )
    invoice("in_ava_1", "sub_ava_active", InvoiceStatus.PAID, start - timedelta(days=30))
    invoice("in_ava_2", "sub_ava_active", InvoiceStatus.PAID, start)
    invoice("in_ava_open", "sub_ava_on_hold", InvoiceStatus.OPEN, start + timedelta(hours=1))
    budi_card = card("pm_budi_visa", "cus_budi")
    subscription("sub_budi", "cus_budi", budi_card)

    def refund(invoice_id: str, amount: int) -> None:
        store.add_credit_note(
            CreditNote(
                id=f"cn_{invoice_id}_{amount}",
                number=store.next_invoice_number("CN-"),
                invoice_id=invoice_id,
                customer_id="cus_ava",
                currency="USD",
                amount=amount,
                refunded=amount,
                issued_at=now,
            )
        )

    def one_off_invoice() -> str:
        store.add_invoice(
            factories.invoice(
                "in_ava_one_off",
                "cus_ava",
                number="INV-in_ava_one_off",
                status=InvoiceStatus.OPEN,
                issued_at=now - timedelta(hours=2),
                description="Onboarding",
                subscription_id=None,
                subtotal=14900,
                total=14900,
                lines=(InvoiceLine("Onboarding", 1, 14900, 14900),),
            )
        )
        return "in_ava_one_off"

    def trialing_subscription(days: int) -> str:
        began = now - timedelta(days=1)
        store.add_subscription(
            factories.subscription(
                "sub_ava_trial",
                "cus_ava",
                status=SubscriptionStatus.TRIALING,
                current_period_start=began,
                current_period_end=began + timedelta(days=days),
                payment_method=visa,
                created_at=began,
            )
        )
        return "sub_ava_trial"

    return SeededBilling(
        refund=refund,
        one_off_invoice=one_off_invoice,
        # The local store keeps records only: the money is the payment
        # provider's, which reports a reference.
        take_payment=lambda invoice_id: f"ch_{invoice_id}",
        trialing_subscription=trialing_subscription,
        storage=store,
        customer_id="cus_ava",
        other_customer_id="cus_budi",
        card_id="pm_ava_visa",
        other_card_id="pm_budi_visa",
        active_subscription_id="sub_ava_active",
        on_hold_subscription_id="sub_ava_on_hold",
        other_subscription_id="sub_budi",
        paid_invoice_ids=["in_ava_1", "in_ava_2"],
        open_invoice_id="in_ava_open",
        now=now,
        lacks={
            "provider_plan_change": "the local store changes plans itself (test_plans.py)",
            "provider_plan_change_codes": "the local store keeps its own promotion codes (test_promotions.py)",
        },
    )


LOCAL_NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def local_sqlite(request: pytest.FixtureRequest) -> Iterator[SeededBilling]:
    yield seed_local(request.getfixturevalue("sqlite_store"), LOCAL_NOW)


def local_postgresql(request: pytest.FixtureRequest) -> Iterator[SeededBilling]:
    from db_support import make_sqla_app, portal_tables

    url: str = request.getfixturevalue("postgres_url")
    with portal_tables(make_sqla_app(url)) as app:
        yield seed_local(SQLAlchemyStorage(app.extensions["sqlalchemy"]), LOCAL_NOW)


# -- Stripe (localstripe) ---------------------------------------------------------------


def stripe_localstripe(request: pytest.FixtureRequest) -> Iterator[SeededBilling]:
    """Stripe through :class:`CompositeStorage`: portal customers in a local
    SQLite store, billing at localstripe, ids mapped by a dict."""
    from stripe_support import seed_stripe

    from flask_customer_portal.contrib.stripe import StripeBillingStore

    client = request.getfixturevalue("localstripe")
    local: SQLAlchemyStorage = request.getfixturevalue("sqlite_store")
    made = seed_stripe(client)
    now = datetime.now(UTC)
    local.add_customer(Customer("ava", "ava@example.com", "Ava"))
    local.add_customer(Customer("budi", "budi@example.com", "Budi"))
    storage = CompositeStorage(
        local,
        billing=StripeBillingStore(client),
        customer_ids=MappingCustomerIds.from_dict({"ava": made.customer_id, "budi": made.other_customer_id}),
    )

    def refund(invoice_id: str, amount: int) -> None:
        charge = client.v1.invoices.retrieve(invoice_id).charge
        client.v1.refunds.create(
            params={"charge": charge if isinstance(charge, str) else charge.id, "amount": amount}
        )

    def trialing_subscription(days: int) -> str:
        active = client.v1.subscriptions.retrieve(made.active_subscription_id)
        plan = active["items"].data[0].plan.id
        made_sub = client.v1.subscriptions.create(
            params={
                "customer": made.customer_id,
                "items": [{"plan": plan}],
                "trial_period_days": days,
            }
        )
        return str(made_sub.id)

    yield SeededBilling(
        storage=storage,
        customer_id="ava",
        other_customer_id="budi",
        card_id=made.card_id,
        other_card_id=made.other_card_id,
        active_subscription_id=made.active_subscription_id,
        on_hold_subscription_id=made.on_hold_subscription_id,
        other_subscription_id=made.other_subscription_id,
        paid_invoice_ids=made.paid_invoice_ids,
        open_invoice_id=made.open_invoice_id,
        now=now,
        lacks={
            "credit_notes": "localstripe keeps no credit notes (recorded responses in test_credit_notes_stripe.py)",
            "provider_plan_change": "localstripe's create_preview takes legacy plan items only and does not "
            "prorate by date (recorded responses in test_plans_stripe.py)",
            "invoice_lock": "localstripe files every invoice of a customer with a subscription under "
            "that subscription, so the scenario cannot hold a one-off invoice (test_pay_invoice_stripe.py "
            "pays one of a customer without subscriptions)",
            "provider_plan_change_codes": "localstripe has no promotion codes "
            "(recorded responses in test_promotions_stripe.py)",
        },
        refund=refund,
        trialing_subscription=trialing_subscription,
    )


# -- Dodo Payments (the fake Dodo server) ----------------------------------------------


def dodo_fake(request: pytest.FixtureRequest) -> Iterator[SeededBilling]:
    """Dodo Payments through :class:`~flask_customer_portal.contrib.dodo.DodoCompositeStorage`:
    portal customers in a local SQLite store, billing at the fake Dodo server
    (``tests/fake_dodo.py``) reached through the real ``dodopayments`` SDK."""
    from fake_dodo import seed_contract, shared_fake_dodo

    from flask_customer_portal.contrib.dodo import DodoBilling, DodoCompositeStorage

    fake = shared_fake_dodo()
    made = seed_contract(fake)
    fake.product_prices.update({"pdt_pro": 1999, "pdt_pro_plus": 2999})
    fake.add_discount("WELCOME10", amount=1000, subscription_cycles=3)
    local: SQLAlchemyStorage = request.getfixturevalue("sqlite_store")
    local.add_customer(Customer("ava", "ava@example.com", "Ava"))
    local.add_customer(Customer("budi", "budi@example.com", "Budi"))
    storage = DodoCompositeStorage(
        local,
        billing=DodoBilling(fake.client()),
        customer_ids=MappingCustomerIds.from_dict({"ava": made.customer_id, "budi": made.other_customer_id}),
    )
    yield SeededBilling(
        storage=storage,
        customer_id="ava",
        other_customer_id="budi",
        card_id=made.card_id,
        other_card_id=made.other_card_id,
        active_subscription_id=made.active_subscription_id,
        on_hold_subscription_id=made.on_hold_subscription_id,
        other_subscription_id=made.other_subscription_id,
        paid_invoice_ids=made.paid_invoice_ids,
        open_invoice_id=made.open_invoice_id,
        now=fake.now,
        other_plan_id="pdt_pro_plus",
        promotion_code="welcome10",
        lacks={
            "invoice_lock": "Dodo Payments has no open invoice of no subscription for the portal to pay "
            "(the capability invoice_lock is off; test_capabilities.py)"
        },
        trialing_subscription=lambda days: fake.add_subscription(
            made.customer_id,
            product_name="Pro",
            amount=1999,
            payment_method_id=made.card_id,
            created_days_ago=1,
            trial_period_days=days,
        ),
        refund=lambda invoice_id, amount: fake.add_refund(invoice_id, amount=amount) and None,
    )


#: Every back end the contract suite runs against, by name. ``marks`` per
#: name (e.g. PostgreSQL's) are in :data:`BACKEND_MARKS`.
BACKENDS: dict[str, BackendFactory] = {
    "local-sqlite": local_sqlite,
    "local-postgresql": local_postgresql,
    "stripe-localstripe": stripe_localstripe,
    "dodo-fake": dodo_fake,
}

BACKEND_MARKS: dict[str, list[pytest.MarkDecorator]] = {
    "local-postgresql": [pytest.mark.postgres],
}
