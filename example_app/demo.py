"""Demo data: the four customers of the product contract, with dates
relative to today so the portal always looks alive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import Table, delete, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from flask_customer_portal import (
    BillingDetails,
    CreditNote,
    Customer,
    DeclineReason,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyInstance,
    LicenseKeyStatus,
    Money,
    PaymentMethod,
    Plan,
    Subscription,
    SubscriptionStatus,
    TaxIdScheme,
    TestPaymentProvider,
    add_months,
)
from flask_customer_portal.contrib.sqla import SQLAlchemyStorage, metadata
from flask_customer_portal.storage import CreditNoteReason, PromotionCode

__all__ = [
    "DEMO_CUSTOMER_IDS",
    "DEMO_PROMOTION_CODE",
    "delete_demo_customers",
    "demo_data_command",
    "load_demo_data",
]

DEMO_CUSTOMER_IDS = ("cus_demo_ava", "cus_demo_budi", "cus_demo_chen", "cus_demo_dewi")
#: Ava, Budi and Chen came first and are loaded together; Dewi joined later
#: and is added on her own, so a demo database made before her gains her.
_FIRST_CUSTOMER_IDS = DEMO_CUSTOMER_IDS[:3]
#: The code Dewi (and anyone else) can enter at a plan change.
DEMO_PROMOTION_CODE = PromotionCode("WELCOME10", percent_off=10)


@dataclass(frozen=True)
class _Plan:
    product: str
    plan: str
    price: Money
    interval: str = "month"


_SYNC_PRO = _Plan("Acme Sync", "Pro (monthly)", Money(1900, "USD"))
_DESKTOP_YEARLY = _Plan("Acme Desktop", "Standard (yearly)", Money(9900, "USD"), "year")
_SYNC_PRO_IDR = _Plan("Acme Sync", "Pro (bulanan)", Money(15_000_000, "IDR"))
_SYNC_BASIC = _Plan("Acme Sync", "Basic (monthly)", Money(900, "USD"))
_DESKTOP_PRO_TRIAL = _Plan("Acme Desktop", "Pro (monthly)", Money(1200, "USD"))


_SYNC = "Acme Sync"

#: The Acme Sync catalogue: what its subscriptions can change to.
DEMO_PLANS = (
    Plan("plan_sync_basic_monthly", _SYNC, "Basic (monthly)", Money(900, "USD"), "month", position=10),
    Plan("plan_sync_pro_monthly", _SYNC, "Pro (monthly)", Money(1900, "USD"), "month", position=20),
    Plan("plan_sync_business_monthly", _SYNC, "Business (monthly)", Money(4900, "USD"), "month", position=30),
    Plan("plan_sync_pro_yearly", _SYNC, "Pro (yearly)", Money(19000, "USD"), "year", position=40),
    Plan(
        "plan_sync_team_monthly",
        _SYNC,
        "Team (monthly)",
        Money(1500, "USD"),
        "month",
        per_seat=True,
        min_quantity=2,
        max_quantity=50,
        position=50,
    ),
    Plan(
        "plan_sync_basic_idr_monthly", _SYNC, "Basic (bulanan)", Money(7_500_000, "IDR"), "month", position=10
    ),
    Plan("plan_sync_pro_idr_monthly", _SYNC, "Pro (bulanan)", Money(15_000_000, "IDR"), "month", position=20),
    Plan("plan_sync_pro_idr_yearly", _SYNC, "Pro (tahunan)", Money(150_000_000, "IDR"), "year", position=40),
)


def _add_plans(store: SQLAlchemyStorage) -> None:
    for plan in DEMO_PLANS:
        if store.get_plan(plan.id) is None:
            store.add_plan(plan)


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=9, minute=30, second=0, microsecond=0)


def _invoice(
    store: SQLAlchemyStorage,
    *,
    invoice_id: str,
    customer_id: str,
    subscription_id: str,
    plan: _Plan,
    period_start: datetime,
    period_end: datetime,
    status: InvoiceStatus,
    method: PaymentMethod | None,
    tax_rate_percent: int = 0,
) -> Invoice:
    subtotal = plan.price.amount
    tax = subtotal * tax_rate_percent // 100
    paid = status is InvoiceStatus.PAID
    invoice = Invoice(
        id=invoice_id,
        number=store.next_invoice_number(),
        customer_id=customer_id,
        subscription_id=subscription_id,
        status=status,
        currency=plan.price.currency,
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        issued_at=period_start,
        paid_at=period_start + timedelta(minutes=2) if paid else None,
        payment_reference=f"ch_demo_{invoice_id[4:]}" if paid else None,
        payment_method=method if paid else None,
        description=f"{plan.product} — {plan.plan}",
        lines=(
            InvoiceLine(
                description=f"{plan.product} {plan.plan}, {period_start:%Y-%m-%d} to {period_end:%Y-%m-%d}",
                quantity=1,
                unit_amount=subtotal,
                amount=subtotal,
            ),
        ),
    )
    store.add_invoice(invoice)
    return invoice


def load_demo_data(store: SQLAlchemyStorage, *, now: datetime | None = None) -> tuple[str, ...]:
    """Create the demo customers that do not exist yet. Returns the ids of
    those it created: empty if they were all there already (idempotent)."""
    now = _midnight(now or datetime.now(timezone.utc))
    created: tuple[str, ...] = ()
    if not all(store.get_customer(customer_id) for customer_id in _FIRST_CUSTOMER_IDS):
        if any(store.get_customer(customer_id) for customer_id in _FIRST_CUSTOMER_IDS):
            raise click.ClickException(
                "Some demo customers exist but not all; "
                "`flask --app example_app demo-data --reset` reloads them."
            )
        _add_ava_budi_chen(store, now)
        created += _FIRST_CUSTOMER_IDS
    if store.get_customer("cus_demo_dewi") is None:
        _add_dewi(store, now)
        created += ("cus_demo_dewi",)
    return created


def _add_ava_budi_chen(store: SQLAlchemyStorage, now: datetime) -> None:
    token_for = TestPaymentProvider.token_for

    ava = store.add_customer(
        Customer(
            id="cus_demo_ava",
            email="ava@example.com",
            name="Ava Thompson",
            phone="+14155550123",
            locale="en",
            timezone="America/Los_Angeles",
            created_at=add_months(now, -15),
        )
    )
    budi = store.add_customer(
        Customer(
            id="cus_demo_budi",
            email="budi@example.com",
            name="Budi Santoso",
            phone="+6281234567890",
            locale="id",
            timezone="Asia/Jakarta",
            created_at=add_months(now, -4),
        )
    )
    store.add_customer(
        Customer(
            id="cus_demo_chen",
            email="chen@example.com",
            name="Chen Wei",
            locale=None,
            timezone="Asia/Singapore",
            created_at=now - timedelta(days=2),
        )
    )

    # Ava: a Visa ending 4242 on an active monthly plan paid for 14 months,
    # and a yearly plan she cancelled.
    ava_visa = PaymentMethod(
        id="pm_demo_ava_visa",
        customer_id=ava.id,
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=now.year + 3,
        provider_token=token_for("4242424242424242"),
        created_at=add_months(now, -15),
    )
    store.add_payment_method(ava_visa)
    store.set_default_payment_method(ava.id, ava_visa.id)
    _add_plans(store)

    desktop_start = add_months(now, -15)
    store.add_subscription(
        Subscription(
            id="sub_demo_ava_desktop",
            customer_id=ava.id,
            product_name=_DESKTOP_YEARLY.product,
            plan_name=_DESKTOP_YEARLY.plan,
            price=_DESKTOP_YEARLY.price,
            interval="year",
            interval_count=1,
            status=SubscriptionStatus.CANCELLED,
            current_period_start=desktop_start,
            current_period_end=add_months(desktop_start, 12),
            cancelled_at=add_months(now, -9),
            ended_at=add_months(desktop_start, 12),
            payment_method=ava_visa,
            created_at=desktop_start,
        )
    )
    _invoice(
        store,
        invoice_id="inv_demo_ava_desktop",
        customer_id=ava.id,
        subscription_id="sub_demo_ava_desktop",
        plan=_DESKTOP_YEARLY,
        period_start=desktop_start,
        period_end=add_months(desktop_start, 12),
        status=InvoiceStatus.PAID,
        method=ava_visa,
    )

    sync_anchor = add_months(now, -13) - timedelta(days=6)
    periods = 14
    store.add_subscription(
        Subscription(
            id="sub_demo_ava_sync",
            customer_id=ava.id,
            product_name=_SYNC_PRO.product,
            plan_name=_SYNC_PRO.plan,
            price=_SYNC_PRO.price,
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.ACTIVE,
            current_period_start=add_months(sync_anchor, periods - 1),
            current_period_end=add_months(sync_anchor, periods),
            payment_method=ava_visa,
            created_at=sync_anchor,
            plan_id="plan_sync_pro_monthly",
        )
    )
    for n in range(periods):
        start = add_months(sync_anchor, n)
        _invoice(
            store,
            invoice_id=f"inv_demo_ava_sync_{n + 1:02d}",
            customer_id=ava.id,
            subscription_id="sub_demo_ava_sync",
            plan=_SYNC_PRO,
            period_start=start,
            period_end=add_months(sync_anchor, n + 1),
            status=InvoiceStatus.PAID,
            method=ava_visa,
        )
    store.add_license_key(
        LicenseKey(
            id="lk_demo_ava_sync",
            customer_id=ava.id,
            key="ACME-SYNC-7K3Q-M9VX-2HPD-4RTA",
            product_name="Acme Sync",
            status=LicenseKeyStatus.ACTIVE,
            activations=0,  # counted by the devices added below
            activation_limit=5,
            created_at=sync_anchor,
        )
    )
    store.add_license_key(
        LicenseKey(
            id="lk_demo_ava_desktop",
            customer_id=ava.id,
            key="ACME-DESK-Q8WN-5ZLC-E6JB-1MYF",
            product_name="Acme Desktop",
            status=LicenseKeyStatus.EXPIRED,
            activations=0,  # counted by the device added below
            activation_limit=1,
            expires_at=add_months(desktop_start, 12),
            created_at=desktop_start,
        )
    )
    # The devices Ava activated her keys on: two in use, an old laptop she
    # retired (so 2 of 5 for Sync), and the PC that ran Desktop (1 of 1).
    for instance_id, key_id, name, activated, retired in (
        ("lki_demo_ava_macbook", "lk_demo_ava_sync", "Ava's MacBook Pro", add_months(now, -6), None),
        ("lki_demo_ava_iphone", "lk_demo_ava_sync", "Ava's iPhone", add_months(now, -2), None),
        ("lki_demo_ava_oldlaptop", "lk_demo_ava_sync", "Old ThinkPad", sync_anchor, add_months(now, -6)),
        ("lki_demo_ava_pc", "lk_demo_ava_desktop", "Studio PC", desktop_start, None),
    ):
        store.add_license_key_instance(
            LicenseKeyInstance(
                id=instance_id,
                license_key_id=key_id,
                customer_id=ava.id,
                name=name,
                created_at=activated,
                deactivated_at=retired,
            )
        )

    # Budi: IDR prices; his saved card started declining, the latest renewal
    # failed, the subscription is on hold with that invoice still open.
    budi_card = PaymentMethod(
        id="pm_demo_budi_card",
        customer_id=budi.id,
        brand="visa",
        last4="0002",
        exp_month=8,
        exp_year=now.year + 2,
        provider_token=token_for("4000000000000002", charges_decline=DeclineReason.GENERIC),
        created_at=add_months(now, -4),
    )
    store.add_payment_method(budi_card)
    store.set_default_payment_method(budi.id, budi_card.id)
    # The renewal three days ago failed: two paid months before it.
    budi_anchor = add_months(now - timedelta(days=3), -2)
    store.add_subscription(
        Subscription(
            id="sub_demo_budi_sync",
            customer_id=budi.id,
            product_name=_SYNC_PRO_IDR.product,
            plan_name=_SYNC_PRO_IDR.plan,
            price=_SYNC_PRO_IDR.price,
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.ON_HOLD,
            current_period_start=add_months(budi_anchor, 1),
            current_period_end=add_months(budi_anchor, 2),
            payment_method=budi_card,
            hold_reason=str(DeclineReason.GENERIC),
            created_at=budi_anchor,
            plan_id="plan_sync_pro_idr_monthly",
        )
    )
    for n in range(3):
        if n == 1:
            # Budi saved his billing details after his first invoice: the
            # later ones carry them; the first, paid, stays as it was issued.
            store.save_billing_details(
                budi.id,
                BillingDetails(
                    name="Budi Santoso",
                    line1="Jl. Jenderal Sudirman No. 52-53",
                    line2="Senayan, Kebayoran Baru",
                    city="Jakarta Selatan",
                    region="DKI Jakarta",
                    postal_code="12190",
                    country="ID",
                    tax_id="013000666091000",
                    tax_id_scheme=TaxIdScheme.ID_NPWP,
                    updated_at=add_months(budi_anchor, 1) - timedelta(days=2),
                ),
            )
        _invoice(
            store,
            invoice_id=f"inv_demo_budi_sync_{n + 1:02d}",
            customer_id=budi.id,
            subscription_id="sub_demo_budi_sync",
            plan=_SYNC_PRO_IDR,
            period_start=add_months(budi_anchor, n),
            period_end=add_months(budi_anchor, n + 1),
            status=InvoiceStatus.PAID if n < 2 else InvoiceStatus.OPEN,
            method=budi_card,
            tax_rate_percent=11,
        )
    store.add_license_key(
        LicenseKey(
            id="lk_demo_budi_sync",
            customer_id=budi.id,
            key="ACME-SYNC-B4DI-8XQE-3NWS-6GTL",
            product_name="Acme Sync",
            status=LicenseKeyStatus.ACTIVE,
            activations=0,  # counted by the device added below
            activation_limit=3,
            created_at=budi_anchor,
        )
    )
    store.add_license_key_instance(
        LicenseKeyInstance(
            id="lki_demo_budi_laptop",
            license_key_id="lk_demo_budi_sync",
            customer_id=budi.id,
            name="Laptop kantor",
            created_at=budi_anchor,
        )
    )


def _add_dewi(store: SQLAlchemyStorage, now: datetime) -> None:
    """Dewi shows what came after the first three: an open one-off invoice
    to pay, a subscription in its free trial, a purchase refunded with a
    credit note, and an active plan to change with the promotion code
    ``WELCOME10``."""
    token_for = TestPaymentProvider.token_for
    dewi = store.add_customer(
        Customer(
            id="cus_demo_dewi",
            email="dewi@example.com",
            name="Dewi Lestari",
            phone="+6281298765432",
            locale="en",
            timezone="Asia/Jakarta",
            created_at=now - timedelta(days=40),
        )
    )
    card = PaymentMethod(
        id="pm_demo_dewi_visa",
        customer_id=dewi.id,
        brand="visa",
        last4="4242",
        exp_month=3,
        exp_year=now.year + 2,
        provider_token=token_for("4242424242424242"),
        created_at=now - timedelta(days=40),
    )
    store.add_payment_method(card)
    store.set_default_payment_method(dewi.id, card.id)
    _add_plans(store)
    # The code is the shop's, not Dewi's: adding it again only sets it
    # back to what the demo offers.
    store.add_promotion_code(DEMO_PROMOTION_CODE)

    # Acme Sync Basic for three months, renewed yesterday: WELCOME10 takes
    # 10% off the move to a bigger plan. Nothing of hers is due before Ava's
    # next renewal, so a renewal run until then charges Ava only.
    sync_anchor = add_months(now - timedelta(days=1), -2)
    store.add_subscription(
        Subscription(
            id="sub_demo_dewi_sync",
            customer_id=dewi.id,
            product_name=_SYNC_BASIC.product,
            plan_name=_SYNC_BASIC.plan,
            price=_SYNC_BASIC.price,
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.ACTIVE,
            current_period_start=add_months(sync_anchor, 2),
            current_period_end=add_months(sync_anchor, 3),
            payment_method=card,
            created_at=sync_anchor,
            plan_id="plan_sync_basic_monthly",
        )
    )
    for n in range(3):
        if n == 2:
            # Numbered in the order issued: the purchase came between two renewals.
            _add_refunded_purchase(store, dewi.id, card, now - timedelta(days=20))
        _invoice(
            store,
            invoice_id=f"inv_demo_dewi_sync_{n + 1:02d}",
            customer_id=dewi.id,
            subscription_id="sub_demo_dewi_sync",
            plan=_SYNC_BASIC,
            period_start=add_months(sync_anchor, n),
            period_end=add_months(sync_anchor, n + 1),
            status=InvoiceStatus.PAID,
            method=card,
        )

    # A 30-day trial of Acme Desktop Pro that started yesterday: nothing
    # paid yet, the first month is charged to her card when it ends.
    trial_start = now - timedelta(days=1)
    store.add_subscription(
        Subscription(
            id="sub_demo_dewi_desktop",
            customer_id=dewi.id,
            product_name=_DESKTOP_PRO_TRIAL.product,
            plan_name=_DESKTOP_PRO_TRIAL.plan,
            price=_DESKTOP_PRO_TRIAL.price,
            interval="month",
            interval_count=1,
            status=SubscriptionStatus.TRIALING,
            current_period_start=trial_start,
            current_period_end=trial_start + timedelta(days=30),
            payment_method=card,
            created_at=trial_start,
        )
    )

    # A one-off invoice for onboarding, issued this morning and still open.
    onboarding = Money(14900, "USD")
    store.add_invoice(
        Invoice(
            id="inv_demo_dewi_onboarding",
            number=store.next_invoice_number(),
            customer_id=dewi.id,
            status=InvoiceStatus.OPEN,
            currency=onboarding.currency,
            subtotal=onboarding.amount,
            tax=0,
            total=onboarding.amount,
            issued_at=now,
            description="Acme Sync — Team onboarding session",
            lines=(
                InvoiceLine(
                    description="Team onboarding session (2 hours, remote)",
                    quantity=1,
                    unit_amount=onboarding.amount,
                    amount=onboarding.amount,
                ),
            ),
        )
    )


def _add_refunded_purchase(
    store: SQLAlchemyStorage, customer_id: str, card: PaymentMethod, bought: datetime
) -> None:
    """Dewi's one-off purchase, paid, then refunded in full with a credit
    note: she had bought the same licence before."""
    desktop = Money(9900, "USD")
    licence_line = InvoiceLine(
        description="Acme Desktop, Standard licence",
        quantity=1,
        unit_amount=desktop.amount,
        amount=desktop.amount,
    )
    store.add_invoice(
        Invoice(
            id="inv_demo_dewi_desktop",
            number=store.next_invoice_number(),
            customer_id=customer_id,
            status=InvoiceStatus.PAID,
            currency=desktop.currency,
            subtotal=desktop.amount,
            tax=0,
            total=desktop.amount,
            issued_at=bought,
            paid_at=bought + timedelta(minutes=2),
            payment_reference="ch_demo_dewi_desktop",
            payment_method=card,
            description="Acme Desktop — Standard licence",
            lines=(licence_line,),
        )
    )
    store.add_credit_note(
        CreditNote(
            id="cn_demo_dewi_desktop",
            number=store.next_invoice_number("CN-"),
            invoice_id="inv_demo_dewi_desktop",
            customer_id=customer_id,
            currency=desktop.currency,
            amount=desktop.amount,
            refunded=desktop.amount,
            issued_at=bought + timedelta(days=1, hours=3),
            reason=CreditNoteReason.DUPLICATE,
            memo="You already had this licence: the second purchase is refunded in full.",
            lines=(licence_line,),
        )
    )


def _owned_rows(table: Table, customer_ids: tuple[str, ...]) -> ColumnElement[bool] | None:
    """The condition that picks the rows of ``table`` that belong to
    ``customer_ids``: by ``customer_id``, by ``id`` for the customers
    themselves, or through the foreign key of a table without
    ``customer_id`` (invoice lines) to one that has it. ``None`` for a
    table nobody owns (counters, webhook events, the plan catalogue)."""
    if table.name == "portal_customers":
        return table.c.id.in_(customer_ids)
    if "customer_id" in table.c:
        return table.c.customer_id.in_(customer_ids)
    for key in table.foreign_keys:
        parent = key.column.table
        if isinstance(parent, Table) and "customer_id" in parent.c:
            owned = select(key.column).where(parent.c.customer_id.in_(customer_ids))
            return key.parent.in_(owned)
    return None


def delete_demo_customers(session: Session, customer_ids: tuple[str, ...] = DEMO_CUSTOMER_IDS) -> int:
    """Delete every row of the demo customers from every portal table —
    sessions, links, audit events, invoices and their lines, everything —
    children before parents, in one transaction. Other customers' rows,
    the plan catalogue and the invoice number counter are not touched (a
    number handed out is never reused). Returns how many rows went."""
    deleted = 0
    for table in reversed(metadata.sorted_tables):
        condition = _owned_rows(table, customer_ids)
        if condition is not None:
            result = session.execute(delete(table).where(condition))
            deleted += result.rowcount if isinstance(result, CursorResult) else 0
    session.commit()
    return deleted


@click.command("demo-data")
@click.option(
    "--reset",
    is_flag=True,
    help="Delete the demo customers and everything of theirs first, then load them as new.",
)
@with_appcontext
def demo_data_command(reset: bool) -> None:
    """Load the demo customers (Ava, Budi, Chen, Dewi) and, in test mode, the demo
    staff account. Safe to run again. With --reset, the demo customers go
    back to how they started (test mode only); other customers stay as
    they are."""
    from . import db, storage
    from .staff import DEMO_STAFF_PASSWORD, ensure_demo_staff

    if reset:
        if current_app.config.get("CUSTOMER_PORTAL_MODE") != "test":
            raise click.ClickException("--reset is for the demo: it only runs in test mode.")
        delete_demo_customers(db.session())
    created = load_demo_data(storage())
    if created:
        verb = "Reset" if reset else "Loaded"
        click.echo(f"{verb} demo data: {', '.join(created)}.")
    else:
        click.echo("Demo data already loaded.")
    staff = ensure_demo_staff()
    if staff is None:
        click.echo("Live mode: no demo staff account; add one with `flask create-staff EMAIL`.")
    else:
        click.echo(f"Demo staff account for /admin: {staff.email}, password {DEMO_STAFF_PASSWORD}")
