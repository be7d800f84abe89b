"""Desired config from the fleet: scope versions and each outlet's signed and reported config.

Revision ID: 0013_config
Revises: 0009_outlet_usage
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0013_config"
down_revision = "0009_outlet_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``config_scopes``, ``config_versions`` and ``outlet_configs``."""
    op.create_table(
        "config_scopes",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_config_scopes")),
    )
    op.create_table(
        "config_versions",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("author", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("comment", sa.String(length=1024), nullable=True),
        sa.Column("rolled_back_to", sa.Integer(), nullable=True),
        sa.Column("closed_hours_only", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["scope"],
            ["config_scopes.scope"],
            name=op.f("fk_config_versions_scope_config_scopes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scope", "version", name=op.f("pk_config_versions")),
    )
    op.create_table(
        "outlet_configs",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("desired_version", sa.BigInteger(), nullable=False),
        sa.Column("desired_hash", sa.String(length=64), nullable=True),
        sa.Column("desired", sa.JSON(), nullable=True),
        sa.Column("envelope", sa.JSON(), nullable=True),
        sa.Column("issued_at", UTCDateTime(), nullable=True),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("held", sa.JSON(), nullable=True),
        sa.Column("reported_version", sa.BigInteger(), nullable=True),
        sa.Column("reported_hash", sa.String(length=64), nullable=True),
        sa.Column("reported_at", UTCDateTime(), nullable=True),
        sa.Column("refused_version", sa.BigInteger(), nullable=True),
        sa.Column("refused_reason", sa.String(length=32), nullable=True),
        sa.Column("refused_detail", sa.String(length=512), nullable=True),
        sa.Column("refused_at", UTCDateTime(), nullable=True),
        sa.Column("key_ids", sa.JSON(), nullable=True),
        sa.Column("in_sync_since", UTCDateTime(), nullable=True),
        sa.Column("drifting_since", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("outlet_id", name=op.f("pk_outlet_configs")),
    )


def downgrade() -> None:
    """Drop the config tables."""
    op.drop_table("outlet_configs")
    op.drop_table("config_versions")
    op.drop_table("config_scopes")
