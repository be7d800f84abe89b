"""An index for the campaign engine's tick: a campaign's outlets by state.

Revision ID: 0019_campaign_outlet_state
Revises: 0018_outlet_tags
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0019_campaign_outlet_state"
down_revision = "0018_outlet_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index ``campaign_outlets (campaign_id, state)``: a tick reads only the outlets
    under way and counts the rest."""
    op.create_index(
        "ix_campaign_outlets_campaign_state", "campaign_outlets", ["campaign_id", "state"]
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_campaign_outlets_campaign_state", table_name="campaign_outlets")
