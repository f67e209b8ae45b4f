"""Promotion codes and their redemptions.

Revision ID: portal_0007
Revises: portal_0004
Create Date: 2026-12-07

``portal_promotion_codes``: the codes a customer may enter (or, for codes
the merchant's loader supplies, a row counting their uses);
``portal_promotion_redemptions``: one row per customer and code used.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "portal_0007"
down_revision: str | None = "portal_0004"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "portal_promotion_codes",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("amount_currency", sa.String(length=3), nullable=True),
        sa.Column("duration", sa.String(length=16), nullable=False),
        sa.Column("duration_periods", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("plan_ids", sa.String(length=2000), nullable=False),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("times_redeemed", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "duration_periods > 0", name=op.f("ck_portal_promotion_codes_duration_periods_positive")
        ),
        sa.CheckConstraint(
            "times_redeemed >= 0", name=op.f("ck_portal_promotion_codes_times_redeemed_not_negative")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_portal_promotion_codes")),
    )
    op.create_table(
        "portal_promotion_redemptions",
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=128), nullable=False),
        sa.Column("invoice_id", sa.String(length=128), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["code"],
            ["portal_promotion_codes.code"],
            name=op.f("fk_portal_promotion_redemptions_code"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["portal_customers.id"],
            name=op.f("fk_portal_promotion_redemptions_customer_id"),
        ),
        sa.PrimaryKeyConstraint("customer_id", "code", name=op.f("pk_portal_promotion_redemptions")),
    )


def downgrade() -> None:
    op.drop_table("portal_promotion_redemptions")
    op.drop_table("portal_promotion_codes")
