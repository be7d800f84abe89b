"""User scopes: the region-code prefixes a user sees and acts on (empty: whole fleet).

Revision ID: 0020_user_scopes
Revises: 0019_campaign_outlet_state
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_user_scopes"
down_revision = "0019_campaign_outlet_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``users.region_prefixes`` (a JSON list; every existing user: whole fleet)."""
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("region_prefixes", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    """Drop ``users.region_prefixes`` (every user is whole-fleet again)."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("region_prefixes")
