"""Refunds and credit notes of invoices.

Revision ID: portal_0008
Revises: portal_0004
Create Date: 2026-12-07

``portal_credit_notes``: the credit notes of the portal's own invoices,
each with its own number. ``portal_invoices.amount_refunded`` and
``amount_credited``: their sums, kept with them so that a page of invoices
needs no second query; ``0`` for every existing invoice (none had a credit
note before this revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "portal_0008"
down_revision: str | None = "portal_0007"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("portal_invoices") as batch:
        batch.add_column(sa.Column("amount_refunded", sa.BigInteger(), server_default="0", nullable=False))
        batch.add_column(sa.Column("amount_credited", sa.BigInteger(), server_default="0", nullable=False))
    op.create_table(
        "portal_credit_notes",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_portal_credit_notes_credit_note_amount_positive")),
        sa.CheckConstraint(
            "refunded >= 0 AND refunded <= amount",
            name=op.f("ck_portal_credit_notes_credit_note_refunded_within_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["portal_customers.id"], name=op.f("fk_portal_credit_notes_customer_id")
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["portal_invoices.id"], name=op.f("fk_portal_credit_notes_invoice_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_portal_credit_notes_number")),
    )
    op.create_index(op.f("ix_portal_credit_notes_invoice_id"), "portal_credit_notes", ["invoice_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_portal_credit_notes_invoice_id"), table_name="portal_credit_notes")
    op.drop_table("portal_credit_notes")
    with op.batch_alter_table("portal_invoices") as batch:
        batch.drop_column("amount_credited")
        batch.drop_column("amount_refunded")
