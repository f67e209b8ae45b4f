"""The mail outbox.

Revision ID: portal_0003
Revises: portal_0002
Create Date: 2027-01-11

``portal_mail_outbox``: every email the portal sends, written in the
transaction of the change that causes it and delivered after commit by a
sender that claims rows with a lease. A new table only; no row is touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "portal_0003"
down_revision: str | None = "portal_0002"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "portal_mail_outbox",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=True),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("composed", sa.Boolean(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_portal_mail_outbox_attempts_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_mail_outbox")),
    )
    op.create_index(op.f("ix_portal_mail_outbox_customer_id"), "portal_mail_outbox", ["customer_id"])
    op.create_index(
        "ix_portal_mail_outbox_status_next_attempt_at", "portal_mail_outbox", ["status", "next_attempt_at"]
    )
    op.create_index("ix_portal_mail_outbox_status_sent_at", "portal_mail_outbox", ["status", "sent_at"])


def downgrade() -> None:
    op.drop_table("portal_mail_outbox")
