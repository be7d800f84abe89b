"""A silenced alert keeps who silenced it and why.

Revision ID: 0022_alert_silence_reason
Revises: 0021_outlet_host_keys
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_alert_silence_reason"
down_revision = "0021_outlet_host_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """``alerts.silenced_by`` and ``alerts.silence_reason`` (both empty until silenced)."""
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("silenced_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("silence_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("silence_reason")
        batch.drop_column("silenced_by")
