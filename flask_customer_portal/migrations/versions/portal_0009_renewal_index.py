"""An index for the renewal walk.

Revision ID: portal_0009
Revises: portal_0008
Create Date: 2026-12-08

``ix_portal_subscriptions_renewing_period_end``: the subscriptions that
renew (``active``, ``trialing``) in ``(current_period_end, id)`` order,
the order of ``renew-due``'s keyset pages. Without it each page reads the
whole table and sorts it. No table or row changes; building it holds off
writes to ``portal_subscriptions`` while it reads the table once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "portal_0009"
down_revision: str | None = "portal_0008"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None

INDEX = "ix_portal_subscriptions_renewing_period_end"
RENEWING = "status IN ('active', 'trialing')"


def upgrade() -> None:
    # Made ahead by hand (CREATE INDEX CONCURRENTLY, so that writes never
    # wait on a large table: see docs/upgrading.rst), it is kept.
    if INDEX in {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("portal_subscriptions")}:
        return
    op.create_index(
        INDEX,
        "portal_subscriptions",
        ["current_period_end", "id"],
        postgresql_where=sa.text(RENEWING),
        sqlite_where=sa.text(RENEWING),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="portal_subscriptions")
