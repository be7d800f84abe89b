"""A full disk under the outbox, for real: a small tmpfs the test fills to the last page.

The outlet (local API, outbox, queue) keeps its data directory on an 8 MiB tmpfs
mounted for the test (root only; under ``CI=true`` a missing mount fails the run). A
filler file takes every free page, and a clerk files cases until the disk refuses one.
Then: the answer is 507 ``outbox_full`` with a sentence that says the disk is full; a
refused case (with or without a scan) leaves nothing behind; every case accepted before
is there and decrypts. When the filler goes, the same keys are accepted, and so are new
cases; closed, the database passes SQLite's integrity check, and reopened it holds
every accepted case.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import Outbox
from tests.conftest import missing
from tests.local_api.harness import Outlet, outlet

DISK_BYTES = 8 * 1024 * 1024
ID_NUMBER = "33010619900101123X"  # check digit valid (GB 11643), of nobody
NOTE = "备注" * 500  # 3 KB per case: the WAL's spare room fills in a few hundred cases
MAX_CASES = 3000  # far more than 8 MiB holds; reaching it means the disk never refused
SCAN = os.urandom(50_000)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of the test's own, unmounted at the end."""
    if os.geteuid() != 0:
        missing("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        missing(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses a single page more; returns the file."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1024 * 1024, 64 * 1024, 4096, 512, 1):
            while True:
                try:
                    out.write(b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


def submission(*, scan: bytes | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "item_code": "330100-001-XK",
        "region_code": "330106",
        "applicant": {"name": "张三丰", "id_number": ID_NUMBER},
        "window": "3",
        "clerk": "S007",
        "note": NOTE,
    }
    if scan is not None:
        body["materials"] = [{"name": "scan", "data_base64": base64.b64encode(scan).decode()}]
    return body


async def file(
    o: Outlet, body: dict[str, Any], key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {**o.auth, **({"Idempotency-Key": key} if key else {})}
    response = await o.client.post("/v1/submissions", headers=headers, json=body)
    return response.status_code, response.json()


def integrity(database: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_a_full_disk_refuses_cleanly_and_the_outbox_recovers(small_disk: Path) -> None:
    database = small_disk / "data" / "outbox.db"
    accepted: list[str] = []

    async def main() -> None:
        async with outlet(small_disk) as o:
            outbox = o.runtime.outbox
            for n in range(3):  # cases accepted while the disk has room
                status, answer = await file(o, submission(), f"before-{n}")
                assert status == 202, answer
                accepted.append(f"before-{n}")
            filler = fill(small_disk)
            # Without an Idempotency-Key only the outbox must write (the local API's
            # status cache may fail on its own), so the outbox meets the full disk.
            refused: dict[str, Any] | None = None
            for _ in range(MAX_CASES):  # until the WAL's spare room is gone as well
                status, answer = await file(o, submission())
                if status == 507:
                    refused = answer
                    break
                assert status == 202, answer
                accepted.append(answer["tx_id"])
            assert refused is not None, f"the full disk never refused in {MAX_CASES} cases"
            assert refused["error"] == "outbox_full"
            assert "transactions waiting" in refused["message"], refused  # the outbox's own
            assert "(disk full)" in refused["message"], refused
            assert "nothing accepted was lost" in refused["message"]
            assert "disk is full" in refused["hint"], refused
            assert NOTE[:20] not in str(refused)

            # Nothing half-written: neither a keyed case nor one with a scan leaves a trace.
            stats = await outbox.stats()
            for key, body in (
                ("full-case-1", submission()),
                ("full-case-2", submission(scan=SCAN)),
            ):
                status, answer = await file(o, body, key)
                assert status == 507, answer
                assert answer["error"] == "outbox_full"
                assert "(disk full)" in answer["message"], answer
                assert await outbox.read(key) is None
            after = await outbox.stats()
            assert (after.depth, after.used_bytes, after.materials_pending) == (
                stats.depth,
                stats.used_bytes,
                stats.materials_pending,
            )
            for tx_id in accepted:
                entry = await outbox.read(tx_id)
                assert entry is not None, tx_id
                assert entry.body["note"] == NOTE  # type: ignore[index,call-overload]

            # Space returns: the refused keys are free again, new cases and scans go in.
            filler.unlink()
            status, answer = await file(o, submission(), "full-case-1")
            assert status == 202, answer
            status, answer = await file(o, submission(scan=SCAN), "full-case-2")
            assert status == 202, answer
            assert answer["materials"] == 1
            status, answer = await file(o, submission())
            assert status == 202, answer
            accepted.extend(["full-case-1", "full-case-2", answer["tx_id"]])
            progress = await outbox.stats()
            assert progress.materials_pending == stats.materials_pending + 1

    asyncio.run(main())
    # The outbox holds its file exclusively while open; closed, the file must be sound.
    assert integrity(database) == "ok"

    async def reopened() -> None:
        data = small_disk / "data"
        async with Outbox(database, key_path=data / "outbox.key", quota_bytes=DISK_BYTES) as box:
            for tx_id in accepted:
                assert await box.read(tx_id) is not None, tx_id

    asyncio.run(reopened())
