"""Outbox schema versions across an update and a rollback (docs/updates.md).

A newer agent's additive schema stays readable by the older one it rolls back to; a
file declared unreadable for older schemas (``min_reader``) is refused with a clear
error, never half read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.outbox.errors import StorageError
from edge_agent.outbox.schema import SCHEMA_VERSION, connect


def test_a_newer_additive_schema_is_read_and_keeps_its_version(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    conn = connect(path)
    # What a later agent leaves: a higher version, an added table, min_reader unchanged.
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("CREATE TABLE added_later (x INTEGER)")
    conn.close()
    reopened = connect(path)  # the older agent after a rollback
    assert reopened.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert reopened.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
    reopened.close()


def test_a_schema_declared_unreadable_for_older_agents_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    conn = connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 2}")
    conn.execute("UPDATE schema_info SET min_reader = ?", (SCHEMA_VERSION + 2,))
    conn.close()
    with pytest.raises(StorageError, match=f"readable from schema {SCHEMA_VERSION + 2}"):
        connect(path)
