"""Outlet tags: short labels on the outlet profile that campaigns and playbooks target.

Revision ID: 0018_outlet_tags
Revises: 0017_playbook_runs
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_outlet_tags"
down_revision = "0017_playbook_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``outlet_profiles.tags`` (a JSON list; every existing outlet has none)."""
    with op.batch_alter_table("outlet_profiles") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    """Drop ``outlet_profiles.tags``."""
    with op.batch_alter_table("outlet_profiles") as batch:
        batch.drop_column("tags")
