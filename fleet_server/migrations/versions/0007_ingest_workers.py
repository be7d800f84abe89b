"""Ingest workers: one heartbeat row per worker of a share group.

Revision ID: 0007_ingest_workers
Revises: 0006_materials
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0007_ingest_workers"
down_revision = "0006_materials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``ingest_workers``."""
    op.create_table(
        "ingest_workers",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("server_id", sa.String(length=128), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("beat_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_ingest_workers")),
    )


def downgrade() -> None:
    """Drop ``ingest_workers``."""
    op.drop_table("ingest_workers")
