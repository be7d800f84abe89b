"""Encryption at rest: key file handling, tamper and swap detection, no plaintext on disk."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from edge_agent.outbox import CorruptEntry, KeyFileError, PriorityClass

from .helpers import make_outbox

TX = PriorityClass.TRANSACTION
ID_NUMBER = "330102199001011234"
NAME = "张三丰"


def _open_and_close(tmp: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp):
            pass

    asyncio.run(scenario())


def test_key_file_is_created_0600_with_32_bytes(tmp_path: Path) -> None:
    _open_and_close(tmp_path)
    info = (tmp_path / "outbox.key").stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_size == 32
    assert stat.S_IMODE((tmp_path / "outbox.db").stat().st_mode) == 0o600
    _open_and_close(tmp_path)  # and it is reused, not replaced
    assert (tmp_path / "outbox.key").stat().st_ino == info.st_ino


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606])
def test_key_file_with_looser_permissions_is_refused(tmp_path: Path, mode: int) -> None:
    _open_and_close(tmp_path)
    (tmp_path / "outbox.key").chmod(mode)
    with pytest.raises(KeyFileError, match="must be 0600"):
        _open_and_close(tmp_path)


def test_key_file_of_wrong_size_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "outbox.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(KeyFileError, match="5 bytes"):
        _open_and_close(tmp_path)


def test_a_different_or_missing_key_is_refused_not_used(tmp_path: Path) -> None:
    _open_and_close(tmp_path)
    key = tmp_path / "outbox.key"
    key.unlink()
    with pytest.raises(KeyFileError, match="missing"):
        _open_and_close(tmp_path)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    with pytest.raises(KeyFileError, match="not the key"):
        _open_and_close(tmp_path)


def _put_two(tmp: Path) -> tuple[str, str]:
    async def scenario() -> tuple[str, str]:
        async with make_outbox(tmp) as outbox:
            a = await outbox.put("submission", {"id_number": ID_NUMBER}, priority_class=TX)
            b = await outbox.put("submission", {"id_number": "x"}, priority_class=TX)
            return a.tx_id, b.tx_id

    return asyncio.run(scenario())


def test_tampered_ciphertext_is_detected_and_quarantined(tmp_path: Path) -> None:
    bad, good = _put_two(tmp_path)
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        (sealed,) = conn.execute(
            "SELECT ciphertext FROM entries WHERE tx_id = ?", (bad,)
        ).fetchone()
        flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
        conn.execute("UPDATE entries SET ciphertext = ? WHERE tx_id = ?", (flipped, bad))
    conn.close()

    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            with pytest.raises(CorruptEntry) as info:
                await outbox.read(bad)
            assert info.value.tx_id == bad
            assert [e.tx_id for e in await outbox.next_batch(10)] == [good]
            (dead,) = await outbox.dead_letters()
            assert (dead.tx_id, dead.cause) == (bad, "corrupt")  # kept, not lost silently
            assert (await outbox.stats()).quarantined == 1

    asyncio.run(scenario())


def test_rows_swapped_between_tx_ids_fail_authentication(tmp_path: Path) -> None:
    a, b = _put_two(tmp_path)
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        rows = {
            tx_id: (nonce, sealed)
            for tx_id, nonce, sealed in conn.execute("SELECT tx_id, nonce, ciphertext FROM entries")
        }
        for tx_id, other in ((a, b), (b, a)):
            conn.execute(
                "UPDATE entries SET nonce = ?, ciphertext = ? WHERE tx_id = ?",
                (*rows[other], tx_id),
            )
    conn.close()

    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            assert await outbox.next_batch(10) == []
            assert (await outbox.stats()).quarantined == 2

    asyncio.run(scenario())


def test_changing_a_rows_class_fails_authentication(tmp_path: Path) -> None:
    a, _ = _put_two(tmp_path)
    with sqlite3.connect(tmp_path / "outbox.db") as conn:
        conn.execute("UPDATE entries SET priority_class = 0 WHERE tx_id = ?", (a,))
    conn.close()

    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            with pytest.raises(CorruptEntry):
                await outbox.read(a)

    asyncio.run(scenario())


def test_database_and_wal_hold_no_plaintext_personal_data(tmp_path: Path) -> None:
    def disk_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*"))

    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            for n in range(20):
                await outbox.put(
                    "submission",
                    {"id_number": ID_NUMBER, "name": NAME, "n": n},
                    priority_class=TX,
                )
            await outbox.put_material(f"scan of {ID_NUMBER}".encode() * 1000)
            assert (tmp_path / "outbox.db-wal").stat().st_size > 0  # checked while live
            live = disk_bytes()
            assert ID_NUMBER.encode() not in live
            assert NAME.encode() not in live
            assert b"submission" in live  # the clear metadata really is in these files

    asyncio.run(scenario())
    closed = disk_bytes()
    assert ID_NUMBER.encode() not in closed
    assert NAME.encode() not in closed
