"""Agent releases: stored artifacts, their signed manifests and the bad mark.

Revision ID: 0014_releases
Revises: 0013_config
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0014_releases"
down_revision = "0013_config"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``releases``."""
    op.create_table(
        "releases",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("version_key", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("notes", sa.String(length=2000), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("bad_at", UTCDateTime(), nullable=True),
        sa.Column("bad_by", sa.String(length=128), nullable=True),
        sa.Column("bad_reason", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_releases")),
        sa.UniqueConstraint("version_key", name=op.f("uq_releases_version_key")),
    )


def downgrade() -> None:
    """Drop ``releases``."""
    op.drop_table("releases")
