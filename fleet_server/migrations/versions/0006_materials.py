"""Materials: chunk headers and sealed chunks of scans sent by outlets.

Revision ID: 0006_materials
Revises: 0005_pii
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0006_materials"
down_revision = "0005_pii"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``materials`` and ``material_chunks``."""
    op.create_table(
        "materials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("material_id", sa.String(length=48), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("tx_id", sa.String(length=64), nullable=True),
        sa.Column("purged_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_materials")),
        sa.UniqueConstraint("outlet_id", "material_id", name=op.f("uq_materials_outlet_id")),
    )
    op.create_index(op.f("ix_materials_tx_id"), "materials", ["tx_id"], unique=False)
    op.create_table(
        "material_chunks",
        sa.Column("material_pk", sa.Integer(), nullable=False),
        sa.Column("chunk_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("chunk_sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["material_pk"],
            ["materials.id"],
            name=op.f("fk_material_chunks_material_pk_materials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("material_pk", "chunk_index", name=op.f("pk_material_chunks")),
    )


def downgrade() -> None:
    """Drop the material tables (chunks first)."""
    op.drop_table("material_chunks")
    op.drop_index(op.f("ix_materials_tx_id"), table_name="materials")
    op.drop_table("materials")
