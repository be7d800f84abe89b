"""PII at rest: ``inbox.purged_at``, and every stored body sealed with the vault's key.

Revision ID: 0005_pii
Revises: 0004_health
Create Date: 2026-11-23
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime
from fleet_server.piivault import current_vault

revision = "0005_pii"
down_revision = "0004_health"
branch_labels = None
depends_on = None

_inbox = sa.table("inbox", sa.column("id", sa.Integer), sa.column("body", sa.JSON))


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    """Add ``purged_at``; seal the bodies stored in plain text before this revision.

    Sealed as they were then, bound to no row; 0008 binds them to their row.
    """
    op.add_column("inbox", sa.Column("purged_at", UTCDateTime(), nullable=True))
    bind = op.get_bind()
    vault = current_vault()
    for row_id, body in bind.execute(sa.select(_inbox.c.id, _inbox.c.body)).all():
        value = _load(body)
        if isinstance(value, dict) and value and value.get("sealed") != 1:
            bind.execute(
                _inbox.update().where(_inbox.c.id == row_id).values(body=vault.seal_unbound(value))
            )


def downgrade() -> None:
    """Open the sealed bodies again and drop ``purged_at``."""
    bind = op.get_bind()
    vault = current_vault()
    for row_id, body in bind.execute(sa.select(_inbox.c.id, _inbox.c.body)).all():
        value = _load(body)
        if isinstance(value, dict) and value.get("sealed") == 1:
            bind.execute(
                _inbox.update().where(_inbox.c.id == row_id).values(body=vault.open_unbound(value))
            )
    op.drop_column("inbox", "purged_at")
