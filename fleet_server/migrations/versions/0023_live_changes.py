"""The change number the server processes of one database share (live pages).

Revision ID: 0023_live_changes
Revises: 0022_alert_silence_reason
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_live_changes"
down_revision = "0022_alert_silence_reason"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """``live_changes``: one row (id 1) whose version each process raises on a change."""
    table = op.create_table(
        "live_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])


def downgrade() -> None:
    """Drop it."""
    op.drop_table("live_changes")
