"""Migrations on real SQLite and PostgreSQL: up, down, up again, and agreement with models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from fleet_server.db import make_engine
from fleet_server.migrate import downgrade, upgrade
from fleet_server.models import Base

TABLES = {
    "outlets",
    "agents",
    "inbox",
    "delivery_attempts",
    "dead_letters",
    "catalogue_items",
    "evaluations",
    "rectifications",
    "rectification_follow_ups",
    "users",
    "api_tokens",
    "enrollment_tokens",
    "certificates",
    "audit_log",
    # fleet health (0004_health)
    "regions",
    "outlet_profiles",
    "device_states",
    "device_events",
    "outlet_health",
    "telemetry_samples",
    "alerts",
    "alert_rule_overrides",
    # materials (0006_materials)
    "materials",
    "material_chunks",
    # several ingest workers (0007_ingest_workers)
    "ingest_workers",
    # each outlet's stored bytes per day (0009_outlet_usage)
    "outlet_usage",
}


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _round_trip(engine: Engine) -> None:
    upgrade(engine)
    assert _tables(engine) == TABLES
    assert _diff(engine) == []
    downgrade(engine)
    assert _tables(engine) == set()
    upgrade(engine)
    assert _tables(engine) == TABLES
    assert _diff(engine) == []


def test_sqlite_round_trip_and_models_agree(sqlite_engine: Engine) -> None:
    _round_trip(sqlite_engine)
    with sqlite_engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


@pytest.mark.postgres
def test_postgres_round_trip_and_models_agree(postgres_engine: Engine) -> None:
    _round_trip(postgres_engine)


def test_migrate_command_on_empty_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from fleet_server.cli import main

    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = CliRunner().invoke(main, ["migrate", "--database-url", url])
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    try:
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()
