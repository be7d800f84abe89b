"""Rectification follow-up notes sealed at rest (they may name the citizen called back).

Revision ID: 0012_sealed_notes
Revises: 0008_tx_identity
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.piivault.sealed_text import is_sealed_text, open_text, seal_text

revision = "0012_sealed_notes"
down_revision = "0008_tx_identity"
branch_labels = None
depends_on = None

_notes = sa.table(
    "rectification_follow_ups", sa.column("id", sa.Integer), sa.column("note", sa.Text)
)


def upgrade() -> None:
    """Seal every note stored in plain text before this revision."""
    bind = op.get_bind()
    for row_id, note in bind.execute(sa.select(_notes.c.id, _notes.c.note)).all():
        if note is not None and not is_sealed_text(note):
            bind.execute(_notes.update().where(_notes.c.id == row_id).values(note=seal_text(note)))


def downgrade() -> None:
    """Open the sealed notes again."""
    bind = op.get_bind()
    for row_id, note in bind.execute(sa.select(_notes.c.id, _notes.c.note)).all():
        if note is not None and is_sealed_text(note):
            bind.execute(_notes.update().where(_notes.c.id == row_id).values(note=open_text(note)))
