"""Workers started at once all migrate at start: one migrates, the others wait and find
the schema at head (``fleet_server.migrate``: an advisory lock on PostgreSQL, ``flock``
on the SQLite file). Real ``fleet-server migrate`` processes on a fresh database each
time: every one exits 0, and ``alembic_version`` holds head, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from fleet_server.db import make_engine
from fleet_server.migrate import alembic_config

BIN = Path(sys.executable).parent
WORKERS = 3


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _migrate_at_once(url: str, keys: Path) -> list[tuple[int, str]]:
    env = {**os.environ, "GOVEDGE_PII_KEY_DIR": str(keys), "GOVEDGE_ENV_FILE": ""}
    procs = [
        subprocess.Popen(
            [str(BIN / "fleet-server"), "migrate", "--database-url", url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        results.append((proc.returncode, err))
    return results


def _versions(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            )
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_workers_migrating_one_postgres_database_at_once(postgres_url: str, tmp_path: Path) -> None:
    results = _migrate_at_once(postgres_url, tmp_path / "keys")
    assert [code for code, _ in results] == [0] * WORKERS, [err[-2000:] for _, err in results]
    assert _versions(postgres_url) == [_head()]
    # One first key: the vault is chosen under the same lock.
    assert len(list((tmp_path / "keys").glob("*.key"))) == 1


def test_workers_migrating_one_sqlite_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    results = _migrate_at_once(url, tmp_path / "keys")
    assert [code for code, _ in results] == [0] * WORKERS, [err[-2000:] for _, err in results]
    assert _versions(url) == [_head()]
    assert len(list((tmp_path / "keys").glob("*.key"))) == 1
