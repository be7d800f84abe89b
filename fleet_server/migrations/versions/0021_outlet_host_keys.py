"""Playbook runs pin each outlet PC's SSH host key, and keep the archives they fetch.

Revision ID: 0021_outlet_host_keys
Revises: 0020_user_scopes
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0021_outlet_host_keys"
down_revision = "0020_user_scopes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """``outlet_access.host_key`` (+ when pinned) and the ``outlet_archives`` table."""
    with op.batch_alter_table("outlet_access") as batch:
        batch.add_column(sa.Column("host_key", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("host_key_pinned_at", UTCDateTime(), nullable=True))
    op.create_table(
        "outlet_archives",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["playbook_runs.id"],
            name=op.f("fk_outlet_archives_run_id_playbook_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outlet_archives")),
    )
    op.create_index(op.f("ix_outlet_archives_outlet_id"), "outlet_archives", ["outlet_id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index(op.f("ix_outlet_archives_outlet_id"), table_name="outlet_archives")
    op.drop_table("outlet_archives")
    with op.batch_alter_table("outlet_access") as batch:
        batch.drop_column("host_key_pinned_at")
        batch.drop_column("host_key")
