"""Registry: outlets and their agents' presence.

Revision ID: 0001_registry
Revises:
Create Date: 2026-11-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0001_registry"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``outlets`` and ``agents``."""
    op.create_table(
        "outlets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outlets")),
    )
    op.create_table(
        "agents",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("agent_version", sa.String(length=128), nullable=True),
        sa.Column("hostname", sa.String(length=128), nullable=True),
        sa.Column("os", sa.String(length=256), nullable=True),
        sa.Column("session", sa.BigInteger(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_since", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=True),
        sa.Column("birth_at", UTCDateTime(), nullable=True),
        sa.Column("config_version", sa.BigInteger(), nullable=True),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.Column("keepalive_s", sa.Integer(), nullable=True),
        sa.Column("telemetry_interval_s", sa.Float(), nullable=True),
        sa.Column("last_metrics", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "state IN ('online', 'offline', 'stale', 'unknown')",
            name=op.f("ck_agents_state_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["outlet_id"],
            ["outlets.id"],
            name=op.f("fk_agents_outlet_id_outlets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("outlet_id", name=op.f("pk_agents")),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("agents")
    op.drop_table("outlets")
