"""Transaction identity ``(outlet_id, tx_id)``; sealed bodies bound to their row.

- ``inbox`` and ``evaluations``: ``tx_id`` is unique per outlet, no longer fleet-wide.
- ``inbox.idempotency_key``: the key upstream sees. Rows stored before this revision
  keep the key they were (or would have been) sent under, their bare ``tx_id`` (unique
  fleet-wide until now), so a retry after the upgrade is still recognised upstream;
  new rows get ``{outlet_id}:{tx_id}`` (``fleet_server.transactions.identity``).
- Bodies sealed before (``{"sealed": 1}``, bound to no row) are resealed bound to
  ``("inbox", outlet_id, tx_id)``; a body still in plain text is sealed. Purged bodies
  stay ``{}``. Material chunks were bound to (outlet, material, index) from the start.

Downgrade reseals unbound and restores the fleet-wide uniqueness; it refuses (and
changes nothing) while two outlets share a ``tx_id``.

Revision ID: 0008_tx_identity
Revises: 0007_ingest_workers
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from fleet_server.piivault import current_vault, row_context

revision = "0008_tx_identity"
down_revision = "0007_ingest_workers"
branch_labels = None
depends_on = None

_inbox = sa.table(
    "inbox",
    sa.column("id", sa.Integer),
    sa.column("outlet_id", sa.String),
    sa.column("tx_id", sa.String),
    sa.column("idempotency_key", sa.String),
    sa.column("body", sa.JSON),
    sa.column("purged_at", sa.String),
)


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    """Per-outlet uniqueness, the upstream key column, and bodies bound to their row."""
    with op.batch_alter_table("inbox") as batch:
        batch.drop_constraint("uq_inbox_tx_id", type_="unique")
        batch.create_unique_constraint("uq_inbox_outlet_id", ["outlet_id", "tx_id"])
        batch.add_column(sa.Column("idempotency_key", sa.String(length=160), nullable=True))
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_constraint("uq_evaluations_tx_id", type_="unique")
        batch.create_unique_constraint("uq_evaluations_outlet_id", ["outlet_id", "tx_id"])
    bind = op.get_bind()
    bind.execute(_inbox.update().values(idempotency_key=_inbox.c.tx_id))
    with op.batch_alter_table("inbox") as batch:
        batch.alter_column("idempotency_key", existing_type=sa.String(length=160), nullable=False)
    vault = current_vault()
    rows = bind.execute(
        sa.select(_inbox.c.id, _inbox.c.outlet_id, _inbox.c.tx_id, _inbox.c.body).where(
            _inbox.c.purged_at.is_(None)
        )
    ).all()
    for row_id, outlet_id, tx_id, body in rows:
        value = _load(body)
        plain = vault.open_unbound(value) if value.get("sealed") == 1 else value
        sealed = vault.seal(plain, context=row_context("inbox", outlet_id, tx_id))
        bind.execute(_inbox.update().where(_inbox.c.id == row_id).values(body=sealed))


def downgrade() -> None:
    """Unbound seals and fleet-wide ``tx_id`` again; refused while ``tx_id``s collide."""
    bind = op.get_bind()
    shared = bind.execute(
        sa.select(_inbox.c.tx_id).group_by(_inbox.c.tx_id).having(sa.func.count() > 1).limit(1)
    ).first()
    if shared is not None:
        raise RuntimeError(
            "cannot downgrade below 0008: several outlets use the same tx_id (e.g. "
            f"{shared.tx_id!r}); those cases would collide"
        )
    vault = current_vault()
    rows = bind.execute(
        sa.select(_inbox.c.id, _inbox.c.outlet_id, _inbox.c.tx_id, _inbox.c.body).where(
            _inbox.c.purged_at.is_(None)
        )
    ).all()
    for row_id, outlet_id, tx_id, body in rows:
        plain = vault.open(_load(body), context=row_context("inbox", outlet_id, tx_id))
        unbound = vault.seal_unbound(plain) if plain else plain
        bind.execute(_inbox.update().where(_inbox.c.id == row_id).values(body=unbound))
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_constraint("uq_evaluations_outlet_id", type_="unique")
        batch.create_unique_constraint("uq_evaluations_tx_id", ["tx_id"])
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("idempotency_key")
        batch.drop_constraint("uq_inbox_outlet_id", type_="unique")
        batch.create_unique_constraint("uq_inbox_tx_id", ["tx_id"])
