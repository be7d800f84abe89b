"""The persisted session counter: +1 per call, durable file, corrupt file handled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_agent.errors import SessionStoreError
from edge_agent.uplink.session_store import SessionStore


def test_advance_counts_from_zero_and_persists(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "nested" / "data")
    store.prepare()
    assert (tmp_path / "nested" / "data").stat().st_mode & 0o777 == 0o700
    assert store.current() is None
    assert [store.advance() for _ in range(3)] == [0, 1, 2]
    assert SessionStore(store.data_dir).current() == 2
    assert store.path.read_text() == "2\n"
    assert sorted(p.name for p in store.data_dir.iterdir()) == ["session"]


def test_corrupt_file_restarts_above_any_real_counter(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.path.write_text("garbage")
    before = int(time.time())
    assert store.advance() >= before + 1


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = SessionStore(blocker / "data")
    with pytest.raises(SessionStoreError, match="cannot create data directory"):
        store.prepare()


def test_raise_to_makes_the_next_session_exceed_the_known_one(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    assert store.raise_to(6)  # a lost file: the server knows 6
    assert store.advance() == 7
    assert not store.raise_to(3)  # never lowered
    assert store.advance() == 8
    with pytest.raises(ValueError, match="out of range"):
        store.raise_to(2**63 - 1)
