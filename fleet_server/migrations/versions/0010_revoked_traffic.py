"""Revoked traffic: what the ingest refused per revoked outlet (for its alert).

Revision ID: 0010_revoked_traffic
Revises: 0012_sealed_notes
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0010_revoked_traffic"
down_revision = "0012_sealed_notes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``revoked_traffic``."""
    op.create_table(
        "revoked_traffic",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False),
        sa.Column("first_at", UTCDateTime(), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("outlet_id", name=op.f("pk_revoked_traffic")),
    )


def downgrade() -> None:
    """Drop ``revoked_traffic``."""
    op.drop_table("revoked_traffic")
