"""Migrations on real SQLite and PostgreSQL: up, down, up again, and agreement with models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, column, inspect, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.db import make_engine
from fleet_server.migrate import downgrade, upgrade
from fleet_server.models import Evaluation, InboxEntry
from fleet_server.piivault import current_vault
from fleet_server.schema import metadata

# What these tests prove is the migrations themselves, so they always run.
pytestmark = pytest.mark.real_migrations

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
    # refused messages of revoked outlets (0010_revoked_traffic)
    "revoked_traffic",
    # each outlet's stored bytes per day (0009_outlet_usage)
    "outlet_usage",
    # desired config from the fleet (0013_config)
    "config_scopes",
    "config_versions",
    "outlet_configs",
    # agent releases (0014_releases)
    "releases",
    # update campaigns (0015_campaigns)
    "campaigns",
    "campaign_outlets",
    "campaign_outlet_history",
    # failed web logins, for the lockout (0016_password_login)
    "login_failures",
    # playbook runs (0017_playbook_runs)
    "outlet_access",
    "playbook_runs",
    "playbook_hosts",
    "playbook_events",
    # host keys and fetched archives (0021_outlet_host_keys)
    "outlet_archives",
    # the change number live pages share across server processes (0023_live_changes)
    "live_changes",
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
        return list(compare_metadata(context, metadata))


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


def _rows_at_0007(engine: Engine) -> None:
    """Rows as a server at 0007 stored them: one body sealed unbound (0005), one purged,
    an evaluation, and a material tied to its submission."""
    vault = current_vault()
    at = datetime(2026, 11, 30, tzinfo=UTC)
    inbox = table(
        "inbox", *(column(n) for n in ("tx_id", "outlet_id", "tx_kind", "body",
        "created_ts", "received_at", "state", "attempts", "result_pending", "purged_at")),
    )  # fmt: skip
    common = {"tx_kind": "submission", "created_ts": 1, "received_at": at, "attempts": 0}
    with engine.begin() as connection:
        connection.execute(
            inbox.insert(),
            [
                {**common, "tx_id": "case-0001", "outlet_id": "o-a", "state": "pending",
                 "body": json.dumps(vault.seal_unbound({"window": "3"})),
                 "result_pending": False, "purged_at": None},
                {**common, "tx_id": "case-0002", "outlet_id": "o-a",
                 "state": "delivered", "body": "{}", "result_pending": False, "purged_at": at},
            ],
        )  # fmt: skip
        evaluations = table("evaluations", *(column(n) for n in ("tx_id", "outlet_id",
            "level_code", "stars", "channel", "is_bad", "is_default", "real_name",
            "evaluated_at")))  # fmt: skip
        connection.execute(
            evaluations.insert(),
            {"tx_id": "eval-0001", "outlet_id": "o-a", "level_code": 5, "stars": 5,
             "channel": "4", "is_bad": False, "is_default": False, "real_name": True,
             "evaluated_at": at},
        )  # fmt: skip


def _migrated_rows_hold(engine: Engine) -> None:
    upgrade(engine, revision="0007_ingest_workers")
    _rows_at_0007(engine)
    upgrade(engine)
    assert _diff(engine) == []
    with Session(engine) as session:
        old = session.scalars(select(InboxEntry).where(InboxEntry.tx_id == "case-0001")).one()
        assert old.body == {"window": "3"}  # resealed, bound to ("inbox", "o-a", "case-0001")
        assert old.sealed_body["sealed"] == 2
        assert old.idempotency_key == "case-0001"  # the key it may already have been sent under
        purged = select(InboxEntry).where(InboxEntry.tx_id == "case-0002")
        assert session.scalars(purged).one().body == {}
        # The same tx_id from another outlet is another case now, in both tables.
        session.add(
            InboxEntry(
                tx_id="case-0001", outlet_id="o-b", idempotency_key="o-b:case-0001",
                tx_kind="submission", body={"window": "9"}, created_ts=1,
                received_at=datetime.now(UTC), state="pending", attempts=0,
                result_pending=False,
            )
        )  # fmt: skip
        session.add(
            Evaluation(
                tx_id="eval-0001", outlet_id="o-b", level_code=5, stars=5, channel="4",
                is_bad=False, is_default=False, real_name=True, evaluated_at=datetime.now(UTC),
            )
        )  # fmt: skip
        session.commit()
        session.add(  # but not twice from the same outlet
            InboxEntry(
                tx_id="case-0001", outlet_id="o-b", idempotency_key="x",
                tx_kind="submission", body={}, created_ts=1, received_at=datetime.now(UTC),
                state="pending", attempts=0, result_pending=False,
            )
        )  # fmt: skip
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
    with pytest.raises(RuntimeError, match="same tx_id"):
        downgrade(engine, revision="0007_ingest_workers")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_0008_migrates_rows_made_at_0007(backend: str, request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue(f"{backend}_engine")
    _migrated_rows_hold(engine)


def test_sqlite_table_rebuilds_keep_rows_that_reference_them(sqlite_engine: Engine) -> None:
    # SQLite batch migrations rebuild a table by DROP + RENAME; with foreign keys on, the
    # DROP of `evaluations` (0008) used to cascade and delete every rectification.
    upgrade(sqlite_engine, revision="0007_ingest_workers")
    now = datetime.now(UTC).isoformat()
    with sqlite_engine.begin() as connection:
        evaluation = connection.exec_driver_sql(
            "INSERT INTO evaluations (tx_id, outlet_id, level_code, stars, channel, is_bad,"
            " is_default, real_name, evaluated_at) VALUES ('tx-1', 'o-1', 5, 1, '4', 1, 0, 1, ?)",
            (now,),
        ).lastrowid
        ticket = connection.exec_driver_sql(
            "INSERT INTO rectifications (evaluation_id, outlet_id, opened_at, deadline_at,"
            " status) VALUES (?, 'o-1', ?, ?, 'open')",
            (evaluation, now, now),
        ).lastrowid
    counted = "SELECT (SELECT count(*) FROM evaluations), (SELECT count(*) FROM rectifications)"
    upgrade(sqlite_engine)
    with sqlite_engine.connect() as connection:
        assert tuple(connection.exec_driver_sql(counted).one()) == (1, 1)
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    downgrade(sqlite_engine, revision="0007_ingest_workers")
    with sqlite_engine.connect() as connection:
        assert tuple(connection.exec_driver_sql(counted).one()) == (1, 1)
        row = connection.exec_driver_sql("SELECT id FROM rectifications").scalar()
        assert row == ticket
