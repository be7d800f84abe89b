"""Playbook runs: how to reach outlet PCs, runs, per-host results and job events.

Revision ID: 0017_playbook_runs
Revises: 0016_password_login
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0017_playbook_runs"
down_revision = "0016_password_login"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``outlet_access``, ``playbook_runs``, ``playbook_hosts``, ``playbook_events``."""
    op.create_table(
        "outlet_access",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("ansible_host", sa.String(length=255), nullable=True),
        sa.Column("ansible_user", sa.String(length=64), nullable=True),
        sa.Column("ansible_port", sa.Integer(), nullable=True),
        sa.Column("host_vars", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("outlet_id", name=op.f("pk_outlet_access")),
    )
    op.create_table(
        "playbook_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("playbook", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("check_mode", sa.Boolean(), nullable=False),
        sa.Column("during_opening_hours", sa.Boolean(), nullable=False),
        sa.Column("forks", sa.Integer(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("extra_vars", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("canceled_by", sa.String(length=128), nullable=True),
        sa.Column("rc", sa.Integer(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook_runs")),
    )
    op.create_table(
        "playbook_hosts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("held_reason", sa.String(length=500), nullable=True),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("unreachable", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("last_task", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["playbook_runs.id"],
            name=op.f("fk_playbook_hosts_run_id_playbook_runs"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "outlet_id", name=op.f("pk_playbook_hosts")),
    )  # fmt: skip
    op.create_index(op.f("ix_playbook_hosts_outlet_id"), "playbook_hosts", ["outlet_id"])
    op.create_table(
        "playbook_events",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=True),
        sa.Column("task", sa.String(length=500), nullable=True),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["playbook_runs.id"],
            name=op.f("fk_playbook_events_run_id_playbook_runs"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_playbook_events")),
    )  # fmt: skip


def downgrade() -> None:
    """Drop the four tables."""
    op.drop_table("playbook_events")
    op.drop_index(op.f("ix_playbook_hosts_outlet_id"), table_name="playbook_hosts")
    op.drop_table("playbook_hosts")
    op.drop_table("playbook_runs")
    op.drop_table("outlet_access")
