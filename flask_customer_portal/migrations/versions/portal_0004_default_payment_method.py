"""A customer's default payment method.

Revision ID: portal_0004
Revises: portal_0003
Create Date: 2026-12-07

``portal_payment_methods.is_default``: the one method of a customer that is
their default. Existing methods are not anyone's default (``false``), as
before this revision; the customer picks one on the payment-methods page.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "portal_0004"
down_revision: str | None = "portal_0003"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("portal_payment_methods") as batch:
        batch.add_column(sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("portal_payment_methods") as batch:
        batch.drop_column("is_default")
