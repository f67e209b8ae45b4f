"""Provider locks, arrears attempts and plan changes.

Revision ID: portal_0002
Revises: portal_0001
Create Date: 2026-12-07

Three tables that came after 0.1.0: ``portal_provider_locks`` (a lock across
processes for subscriptions that live at a payment company),
``portal_arrears_attempts`` (one row per try at charging an ``on_hold``
subscription's arrears there) and ``portal_plan_changes`` (what a plan
change made now was, kept with its proration invoice). Nothing existing
changes, so no row is touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "portal_0002"
down_revision: str | None = "portal_0001"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "portal_provider_locks",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("subscription_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "subscription_id", name=op.f("pk_portal_provider_locks")),
    )
    op.create_table(
        "portal_arrears_attempts",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("subscription_id", sa.String(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("payment_method_id", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("decline_reason", sa.String(length=64), nullable=True),
        sa.Column("provider_reference", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("attempt > 0", name=op.f("ck_portal_arrears_attempts_attempt_positive")),
        sa.ForeignKeyConstraint(
            ["customer_id", "subscription_id"],
            ["portal_provider_locks.customer_id", "portal_provider_locks.subscription_id"],
            name=op.f("fk_portal_arrears_attempts_customer_id"),
        ),
        sa.PrimaryKeyConstraint(
            "customer_id", "subscription_id", "attempt", name=op.f("pk_portal_arrears_attempts")
        ),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_portal_arrears_attempts_idempotency_key")),
    )
    op.create_table(
        "portal_plan_changes",
        sa.Column("invoice_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("subscription_id", sa.String(length=128), nullable=False),
        sa.Column("plan_id", sa.String(length=128), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("credit_after", sa.BigInteger(), nullable=False),
        sa.Column("from_plan_id", sa.String(length=128), nullable=True),
        sa.Column("from_quantity", sa.Integer(), nullable=False),
        sa.Column("from_period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_credit", sa.BigInteger(), nullable=False),
        sa.Column("priced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["portal_customers.id"], name=op.f("fk_portal_plan_changes_customer_id")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["portal_invoices.id"], name=op.f("fk_portal_plan_changes_invoice_id")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id", "customer_id"],
            ["portal_subscriptions.id", "portal_subscriptions.customer_id"],
            name=op.f("fk_portal_plan_changes_subscription_id"),
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_portal_plan_changes")),
    )
    op.create_index(op.f("ix_portal_plan_changes_created_at"), "portal_plan_changes", ["created_at"])
    op.create_index(op.f("ix_portal_plan_changes_customer_id"), "portal_plan_changes", ["customer_id"])


def downgrade() -> None:
    op.drop_table("portal_plan_changes")
    op.drop_table("portal_arrears_attempts")
    op.drop_table("portal_provider_locks")
