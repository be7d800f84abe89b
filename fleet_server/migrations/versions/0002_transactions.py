"""Transactions: inbox, delivery attempts, dead letters, catalogue, 好差评 evaluations.

Revision ID: 0002_transactions
Revises: 0001_registry
Create Date: 2026-11-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0002_transactions"
down_revision = "0001_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the transaction, catalogue and evaluation tables."""
    op.create_table(
        "catalogue_items",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("base_code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("handling_type", sa.String(length=16), nullable=False),
        sa.Column("promised_days", sa.Integer(), nullable=True),
        sa.Column("department", sa.String(length=200), nullable=False),
        sa.Column("outlet_kinds", sa.JSON(), nullable=False),
        sa.Column("region_codes", sa.JSON(), nullable=False),
        sa.Column("handling_mode", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_catalogue_items")),
    )
    op.create_index(
        op.f("ix_catalogue_items_base_code"), "catalogue_items", ["base_code"], unique=False
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tx_id", sa.String(length=64), nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=True),
        sa.Column("case_number", sa.String(length=64), nullable=True),
        sa.Column("level_code", sa.Integer(), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("is_bad", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("real_name", sa.Boolean(), nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
        sa.UniqueConstraint("tx_id", name=op.f("uq_evaluations_tx_id")),
    )
    op.create_index(
        "ix_evaluations_outlet_at", "evaluations", ["outlet_id", "evaluated_at"], unique=False
    )
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tx_id", sa.String(length=64), nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("tx_kind", sa.String(length=32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=True),
        sa.Column("region_code", sa.String(length=12), nullable=True),
        sa.Column("window", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_due_at", UTCDateTime(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("case_number", sa.String(length=64), nullable=True),
        sa.Column("result_pending", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'dead', 'local')", name=op.f("ck_inbox_state_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("tx_id", name=op.f("uq_inbox_tx_id")),
    )
    op.create_index("ix_inbox_due", "inbox", ["state", "next_due_at"], unique=False)
    op.create_index(
        "ix_inbox_outlet_kind_received",
        "inbox",
        ["outlet_id", "tx_kind", "received_at"],
        unique=False,
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("tx_id", sa.String(length=64), nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("tx_kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=512), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("replayed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbox_id"],
            ["inbox.id"],
            name=op.f("fk_dead_letters_inbox_id_inbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(op.f("ix_dead_letters_inbox_id"), "dead_letters", ["inbox_id"], unique=False)
    op.create_index(op.f("ix_dead_letters_tx_id"), "dead_letters", ["tx_id"], unique=False)
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("inbox_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=512), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inbox_id"],
            ["inbox.id"],
            name=op.f("fk_delivery_attempts_inbox_id_inbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(
        op.f("ix_delivery_attempts_inbox_id"), "delivery_attempts", ["inbox_id"], unique=False
    )
    op.create_table(
        "rectifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("window", sa.String(length=32), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("deadline_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_rectifications_status_valid")
        ),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["evaluations.id"],
            name=op.f("fk_rectifications_evaluation_id_evaluations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rectifications")),
        sa.UniqueConstraint("evaluation_id", name=op.f("uq_rectifications_evaluation_id")),
    )
    op.create_index(
        op.f("ix_rectifications_outlet_id"), "rectifications", ["outlet_id"], unique=False
    )
    op.create_table(
        "rectification_follow_ups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rectification_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("by", sa.String(length=128), nullable=False),
        sa.Column("closes", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rectification_id"],
            ["rectifications.id"],
            name=op.f("fk_rectification_follow_ups_rectification_id_rectifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rectification_follow_ups")),
    )
    op.create_index(
        op.f("ix_rectification_follow_ups_rectification_id"),
        "rectification_follow_ups",
        ["rectification_id"],
        unique=False,
    )


def downgrade() -> None:
    """Drop them, dependants first."""
    for table in (
        "rectification_follow_ups",
        "rectifications",
        "delivery_attempts",
        "dead_letters",
        "inbox",
        "evaluations",
        "catalogue_items",
    ):
        op.drop_table(table)
