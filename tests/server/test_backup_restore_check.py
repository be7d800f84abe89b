"""``scripts/backup-restore-check``: a real PostgreSQL fleet dumped, restored into a
fresh database with its keys, and served by a real ``fleet-server run`` on the copy."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.db import make_engine
from fleet_server.migrate import upgrade
from fleet_server.models import InboxEntry, Outlet
from fleet_server.piivault import Vault, current_vault, use_vault
from fleet_server.pki import FleetCA
from fleet_server.transactions.identity import upstream_idempotency_key
from govedge_testbed import Postgres

ROOT = Path(__file__).resolve().parents[2]
OUTLETS = ("410105-001", "410105-002", "410106-001")
# A citizen's details (test values) that must survive the round trip only sealed.
BODY = {"item_code": "SB-001", "applicant": {"name": "张三", "mobile": "13800000000"}}


@pytest.fixture
def fleet(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A migrated fleet database with three outlets and four transactions (one delivered
    and purged, three sealed with the fleet's own PII keys); its PKI and PII dirs."""
    pki, pii = tmp_path / "pki", tmp_path / "pii-keys"
    FleetCA(pki)
    before = current_vault()
    use_vault(Vault(pii))
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        now = datetime.now(UTC)
        with Session(engine) as session, session.begin():
            session.add_all(
                Outlet(id=o, display_name=f"Outlet {o}", created_at=now) for o in OUTLETS
            )
            for n, (outlet, state) in enumerate(
                [(OUTLETS[0], "pending"), (OUTLETS[0], "delivered"), (OUTLETS[1], "dead"),
                 (OUTLETS[2], "delivered")]
            ):  # fmt: skip
                tx = f"tx-{n}"
                session.add(
                    InboxEntry(
                        tx_id=tx, outlet_id=outlet, tx_kind="submission", body=BODY,
                        idempotency_key=upstream_idempotency_key(outlet, tx), created_ts=0,
                        received_at=now, state=state, attempts=1, result_pending=False,
                        purged_at=now if n == 3 else None,
                    )
                )  # fmt: skip
        yield postgres_url, pki, pii
    finally:
        engine.dispose()
        use_vault(before)


@pytest.fixture
def scratch_url(postgres_cluster: Postgres) -> str:
    return postgres_cluster.create_database(f"restore_{uuid.uuid4().hex[:12]}")


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "backup-restore-check"), *args],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip


def test_backup_restores_into_a_fresh_database_that_serves_the_same_fleet(
    fleet: tuple[str, Path, Path], scratch_url: str, tmp_path: Path
) -> None:
    source, pki, pii = fleet
    out = tmp_path / "backup"
    run = check("--database-url", source, "--scratch-url", scratch_url,
                "--pki-dir", str(pki), "--pii-key-dir", str(pii), "--out", str(out))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 outlets and 4 transactions served alike" in run.stdout
    assert "3 sealed bodies opened with the restored keys" in run.stdout
    # What an operator keeps: the dump, the key archive (owner only), the manifest.
    assert {"fleet.dump", "keys.tar", "manifest.json"} <= {p.name for p in out.iterdir()}
    assert (out / "keys.tar").stat().st_mode & 0o077 == 0
    assert (out / "restored" / "pki" / "ca.key").read_bytes() == (pki / "ca.key").read_bytes()
    # The copy is a database of its own with the same rows; the body is still sealed in it.
    engine = make_engine(scratch_url)
    try:
        with Session(engine) as session:
            assert set(session.scalars(select(Outlet.id))) == set(OUTLETS)
            stored = session.scalars(select(InboxEntry.sealed_body)).all()
            assert len(stored) == 4
            assert all("张三" not in str(value) for value in stored)
    finally:
        engine.dispose()
    # Nothing personal in what the check printed.
    assert "张三" not in run.stdout + run.stderr
    assert "13800000000" not in run.stdout + run.stderr


def test_keys_that_cannot_open_the_bodies_fail_the_check(
    fleet: tuple[str, Path, Path], scratch_url: str, tmp_path: Path
) -> None:
    source, pki, _ = fleet
    other_keys = tmp_path / "other-pii-keys"
    Vault(other_keys)  # a key directory of another server: the bodies were not sealed with it
    run = check("--database-url", source, "--scratch-url", scratch_url,
                "--pki-dir", str(pki), "--pii-key-dir", str(other_keys))  # fmt: skip
    assert run.returncode == 1
    assert "FAILED: the restored keys cannot open transaction 'tx-0' of '410105-001'" in run.stderr
    assert "张三" not in run.stdout + run.stderr


def test_the_fleet_database_is_never_the_restore_target(fleet: tuple[str, Path, Path]) -> None:
    source, pki, pii = fleet
    run = check("--database-url", source, "--scratch-url", source,
                "--pki-dir", str(pki), "--pii-key-dir", str(pii))  # fmt: skip
    assert run.returncode == 2
    assert "--scratch-url must be another database" in run.stderr
