"""Fleet health: regions and outlet profiles, device state and events, telemetry history,
alerts and alert-rule overrides (docs/fleet-health.md).

Revision ID: 0004_health
Revises: 0003_security
Create Date: 2026-11-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fleet_server.models import UTCDateTime

revision = "0004_health"
down_revision = "0003_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the fleet-health tables."""
    op.create_table(
        "alert_rule_overrides",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_value", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "scope IN ('global', 'region', 'kind', 'outlet')",
            name=op.f("ck_alert_rule_overrides_scope_valid"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rule_overrides")),
        sa.UniqueConstraint("scope", "scope_value", "rule", name="uq_alert_rule_overrides_scope"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("acked_at", UTCDateTime(), nullable=True),
        sa.Column("acked_by", sa.String(length=64), nullable=True),
        sa.Column("silenced_until", UTCDateTime(), nullable=True),
        sa.CheckConstraint("state IN ('open', 'resolved')", name=op.f("ck_alerts_state_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(
        "ix_alerts_state_key", "alerts", ["state", "rule", "outlet_id", "device_id"], unique=False
    )
    op.create_table(
        "device_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_events")),
    )
    op.create_index(
        "ix_device_events_outlet_received",
        "device_events",
        ["outlet_id", "received_at"],
        unique=False,
    )
    op.create_table(
        "device_states",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_since", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("health", sa.JSON(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("reads_ok", sa.Integer(), nullable=False),
        sa.Column("reads_failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("outlet_id", "device_id", name=op.f("pk_device_states")),
    )
    op.create_table(
        "outlet_health",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("clock_skew_s", sa.Float(), nullable=True),
        sa.Column("last_telemetry_at", UTCDateTime(), nullable=True),
        sa.Column("flaps", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("outlet_id", name=op.f("pk_outlet_health")),
    )
    op.create_table(
        "outlet_profiles",
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("region_code", sa.String(length=12), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("address", sa.String(length=256), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("opening_hours", sa.JSON(), nullable=True),
        sa.Column("service_items", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("outlet_id", name=op.f("pk_outlet_profiles")),
    )
    op.create_index(op.f("ix_outlet_profiles_kind"), "outlet_profiles", ["kind"], unique=False)
    op.create_index(
        op.f("ix_outlet_profiles_region_code"), "outlet_profiles", ["region_code"], unique=False
    )
    op.create_table(
        "regions",
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("parent_code", sa.String(length=12), nullable=True),
        sa.Column("outline", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_regions")),
    )
    op.create_table(
        "telemetry_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outlet_id", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("devices", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_samples")),
    )
    op.create_index(
        "ix_telemetry_samples_outlet_at", "telemetry_samples", ["outlet_id", "at"], unique=False
    )


def downgrade() -> None:
    """Drop the fleet-health tables."""
    op.drop_index("ix_telemetry_samples_outlet_at", table_name="telemetry_samples")
    op.drop_table("telemetry_samples")
    op.drop_table("regions")
    op.drop_index(op.f("ix_outlet_profiles_region_code"), table_name="outlet_profiles")
    op.drop_index(op.f("ix_outlet_profiles_kind"), table_name="outlet_profiles")
    op.drop_table("outlet_profiles")
    op.drop_table("outlet_health")
    op.drop_table("device_states")
    op.drop_index("ix_device_events_outlet_received", table_name="device_events")
    op.drop_table("device_events")
    op.drop_index("ix_alerts_state_key", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rule_overrides")
