"""Release 0.1.0: the portal's tables as ``create_all()`` of 0.1.0 made them.

Revision ID: portal_0001
Revises:
Create Date: 2026-12-07

The first revision of the ``customer_portal`` branch. A database that
``SQLAlchemyStorage.create_all()`` of 0.1.0 made has these tables and no
version row; ``flask portal db upgrade`` recognises it and records this
revision before going on.

Written by hand with plain SQLAlchemy types (``TZDateTime`` columns are
``DateTime(timezone=True)``, ``StringEnum`` columns ``String(32)``) and every
constraint and index named as the package's naming convention names it, so
that a host's own naming convention never renames them. Like every revision,
it never imports the package's models: it stays what it was when released.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "portal_0001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = ("customer_portal",)
depends_on: str | None = None


def _id(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """An id column: the merchant's or a payment company's ids fit 128 characters."""
    return sa.Column(name, sa.String(length=128), nullable=nullable)


def _time(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """An aware UTC timestamp (``TZDateTime``)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _customer_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["customer_id"], ["portal_customers.id"], name=op.f(f"fk_{table}_customer_id")
    )


def upgrade() -> None:
    op.create_table(
        "portal_customers",
        _id("id"),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_normalized", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("auth_version", sa.Integer(), nullable=False),
        _time("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_customers")),
        sa.UniqueConstraint("email_normalized", name=op.f("uq_portal_customers_email_normalized")),
    )
    op.create_table(
        "portal_audit_events",
        # SQLite only auto-increments an INTEGER PRIMARY KEY.
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        _id("customer_id"),
        sa.Column("action", sa.String(length=100), nullable=False),
        _time("occurred_at"),
        _id("subject_id", nullable=True),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_audit_events")),
    )
    op.create_index(
        op.f("ix_portal_audit_events_customer_occurred"),
        "portal_audit_events",
        ["customer_id", "occurred_at"],
    )
    op.create_table(
        "portal_plans",
        _id("id"),
        sa.Column("product_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("price_currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=16), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("per_seat", sa.Boolean(), nullable=False),
        sa.Column("min_quantity", sa.Integer(), nullable=False),
        sa.Column("max_quantity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint("interval_count > 0", name=op.f("ck_portal_plans_interval_count_positive")),
        sa.CheckConstraint(
            "min_quantity > 0 AND max_quantity >= min_quantity", name=op.f("ck_portal_plans_quantity_bounds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_plans")),
    )
    op.create_index(op.f("ix_portal_plans_product_position"), "portal_plans", ["product_name", "position"])
    op.create_table(
        "portal_sequences",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_portal_sequences")),
    )
    op.create_table(
        "portal_webhook_events",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        _time("received_at"),
        _time("handled_at", nullable=True),
        sa.PrimaryKeyConstraint("provider", "event_id", name=op.f("pk_portal_webhook_events")),
    )
    op.create_index(op.f("ix_portal_webhook_events_received_at"), "portal_webhook_events", ["received_at"])
    op.create_table(
        "portal_billing_details",
        _id("customer_id"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("line1", sa.String(length=200), nullable=False),
        sa.Column("line2", sa.String(length=200), nullable=True),
        sa.Column("city", sa.String(length=200), nullable=True),
        sa.Column("postal_code", sa.String(length=32), nullable=True),
        sa.Column("region", sa.String(length=200), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("tax_id_scheme", sa.String(length=32), nullable=True),
        _time("updated_at"),
        _customer_fk("portal_billing_details"),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_portal_billing_details")),
    )
    op.create_table(
        "portal_license_keys",
        _id("id"),
        _id("customer_id"),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("product_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("activations", sa.Integer(), nullable=False),
        sa.Column("activation_limit", sa.Integer(), nullable=True),
        _time("expires_at", nullable=True),
        _time("created_at"),
        _customer_fk("portal_license_keys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_license_keys")),
        sa.UniqueConstraint("id", "customer_id", name=op.f("uq_portal_license_keys_id_customer_id")),
        sa.UniqueConstraint("key", name=op.f("uq_portal_license_keys_key")),
    )
    op.create_index(
        op.f("ix_portal_license_keys_customer_created"), "portal_license_keys", ["customer_id", "created_at"]
    )
    op.create_table(
        "portal_links",
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        _id("customer_id"),
        _time("created_at"),
        _time("expires_at"),
        _time("used_at", nullable=True),
        _customer_fk("portal_links"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_portal_links")),
    )
    op.create_index(op.f("ix_portal_links_customer_id"), "portal_links", ["customer_id"])
    op.create_index(op.f("ix_portal_links_expires_at"), "portal_links", ["expires_at"])
    op.create_table(
        "portal_payment_methods",
        _id("id"),
        _id("customer_id"),
        sa.Column("brand", sa.String(length=32), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("provider_token", sa.String(length=255), nullable=False),
        _time("created_at"),
        _customer_fk("portal_payment_methods"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_payment_methods")),
        # Target of the (payment_method_id, customer_id) foreign keys.
        sa.UniqueConstraint("id", "customer_id", name=op.f("uq_portal_payment_methods_id_customer_id")),
    )
    op.create_index(
        op.f("ix_portal_payment_methods_customer_created"),
        "portal_payment_methods",
        ["customer_id", "created_at"],
    )
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(length=128), nullable=False),
        _id("customer_id"),
        sa.Column("auth_version", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("last_seen_at"),
        _time("revoked_at", nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("public_id", sa.String(length=64), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=True),
        _customer_fk("portal_sessions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sessions")),
        sa.UniqueConstraint("public_id", name=op.f("uq_portal_sessions_public_id")),
    )
    op.create_index(op.f("ix_portal_sessions_customer_id"), "portal_sessions", ["customer_id"])
    op.create_table(
        "portal_license_key_instances",
        _id("id"),
        _id("license_key_id"),
        _id("customer_id"),
        sa.Column("name", sa.String(length=200), nullable=False),
        _time("created_at"),
        _time("deactivated_at", nullable=True),
        _customer_fk("portal_license_key_instances"),
        sa.ForeignKeyConstraint(
            ["license_key_id", "customer_id"],
            ["portal_license_keys.id", "portal_license_keys.customer_id"],
            name=op.f("fk_portal_license_key_instances_license_key_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_license_key_instances")),
    )
    op.create_index(
        op.f("ix_portal_license_key_instances_key_created"),
        "portal_license_key_instances",
        ["license_key_id", "created_at"],
    )
    op.create_table(
        "portal_subscriptions",
        _id("id"),
        _id("customer_id"),
        sa.Column("product_name", sa.String(length=200), nullable=False),
        sa.Column("plan_name", sa.String(length=200), nullable=False),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("price_currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=16), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        _time("current_period_start"),
        _time("current_period_end"),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        _time("cancelled_at", nullable=True),
        _time("ended_at", nullable=True),
        _id("payment_method_id", nullable=True),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        _time("created_at"),
        _id("plan_id", nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _id("scheduled_plan_id", nullable=True),
        sa.Column("scheduled_quantity", sa.Integer(), nullable=True),
        sa.Column("credit", sa.BigInteger(), nullable=False),
        _time("paused_at", nullable=True),
        _time("resumes_at", nullable=True),
        sa.Column("discount_percent", sa.Integer(), nullable=False),
        sa.Column("discount_renewals", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "interval_count > 0", name=op.f("ck_portal_subscriptions_interval_count_positive")
        ),
        _customer_fk("portal_subscriptions"),
        sa.ForeignKeyConstraint(
            ["payment_method_id", "customer_id"],
            ["portal_payment_methods.id", "portal_payment_methods.customer_id"],
            name=op.f("fk_portal_subscriptions_payment_method_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_subscriptions")),
        sa.UniqueConstraint("id", "customer_id", name=op.f("uq_portal_subscriptions_id_customer_id")),
    )
    op.create_index(
        op.f("ix_portal_subscriptions_customer_created"),
        "portal_subscriptions",
        ["customer_id", "created_at"],
    )
    op.create_index(
        op.f("ix_portal_subscriptions_payment_method_id"), "portal_subscriptions", ["payment_method_id"]
    )
    op.create_index(op.f("ix_portal_subscriptions_resumes_at"), "portal_subscriptions", ["resumes_at"])
    op.create_table(
        "portal_invoices",
        _id("id"),
        sa.Column("number", sa.String(length=64), nullable=False),
        _id("customer_id"),
        _id("subscription_id", nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        _time("issued_at"),
        sa.Column("description", sa.Text(), nullable=False),
        _time("paid_at", nullable=True),
        sa.Column("payment_reference", sa.String(length=255), nullable=True),
        _id("payment_method_id", nullable=True),
        sa.Column("billing_details", sa.JSON(none_as_null=True), nullable=True),
        sa.CheckConstraint(
            "total = subtotal + tax", name=op.f("ck_portal_invoices_total_is_subtotal_plus_tax")
        ),
        _customer_fk("portal_invoices"),
        sa.ForeignKeyConstraint(
            ["payment_method_id", "customer_id"],
            ["portal_payment_methods.id", "portal_payment_methods.customer_id"],
            name=op.f("fk_portal_invoices_payment_method_id"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id", "customer_id"],
            ["portal_subscriptions.id", "portal_subscriptions.customer_id"],
            name=op.f("fk_portal_invoices_subscription_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_portal_invoices_number")),
    )
    # Billing history: one customer's invoices, newest first, paged.
    op.create_index(
        op.f("ix_portal_invoices_customer_issued"),
        "portal_invoices",
        ["customer_id", sa.literal_column("issued_at DESC"), sa.literal_column("id DESC")],
    )
    op.create_index(op.f("ix_portal_invoices_payment_method_id"), "portal_invoices", ["payment_method_id"])
    op.create_index(op.f("ix_portal_invoices_subscription_id"), "portal_invoices", ["subscription_id"])
    op.create_table(
        "portal_charge_attempts",
        _id("invoice_id"),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        _id("customer_id"),
        _id("payment_method_id", nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("decline_reason", sa.String(length=64), nullable=True),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        _time("created_at"),
        _time("resolved_at", nullable=True),
        sa.CheckConstraint("attempt > 0", name=op.f("ck_portal_charge_attempts_attempt_positive")),
        _customer_fk("portal_charge_attempts"),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["portal_invoices.id"], name=op.f("fk_portal_charge_attempts_invoice_id")
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id", "customer_id"],
            ["portal_payment_methods.id", "portal_payment_methods.customer_id"],
            name=op.f("fk_portal_charge_attempts_payment_method_id"),
        ),
        sa.PrimaryKeyConstraint("invoice_id", "attempt", name=op.f("pk_portal_charge_attempts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_portal_charge_attempts_idempotency_key")),
    )
    op.create_index(op.f("ix_portal_charge_attempts_customer_id"), "portal_charge_attempts", ["customer_id"])
    op.create_table(
        "portal_invoice_lines",
        _id("invoice_id"),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["portal_invoices.id"], name=op.f("fk_portal_invoice_lines_invoice_id")
        ),
        sa.PrimaryKeyConstraint("invoice_id", "position", name=op.f("pk_portal_invoice_lines")),
    )


def downgrade() -> None:
    # Dependants first; a table's indexes go with it.
    for table in (
        "portal_invoice_lines",
        "portal_charge_attempts",
        "portal_invoices",
        "portal_subscriptions",
        "portal_license_key_instances",
        "portal_sessions",
        "portal_payment_methods",
        "portal_links",
        "portal_license_keys",
        "portal_billing_details",
        "portal_webhook_events",
        "portal_sequences",
        "portal_plans",
        "portal_audit_events",
        "portal_customers",
    ):
        op.drop_table(table)
