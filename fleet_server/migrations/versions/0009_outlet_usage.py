"""Outlet usage: each outlet's stored bytes per day, and what was refused over the bound.

Revision ID: 0009_outlet_usage
Revises: 0010_revoked_traffic
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_outlet_usage"
down_revision = "0010_revoked_traffic"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``outlet_usage``."""
    op.create_table(
        "outlet_usage",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("refused_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("outlet_id", "day", name=op.f("pk_outlet_usage")),
    )


def downgrade() -> None:
    """Drop ``outlet_usage``."""
    op.drop_table("outlet_usage")
