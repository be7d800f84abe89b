"""``fleetctl outlets archives|archive``: a technician lists an outlet's diagnosis
archives and downloads one, its SHA-256 checked against the server's record.

A real fleet server process (SQLite, real Mosquitto). The archives are put where a
finished run leaves them (the run's folder and an ``outlet_archives`` row, as
``run_files.attach_archives`` records them): the run itself, over SSH to an outlet PC,
is tested end to end in ``tests/e2e/test_outlet_playbooks.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.playbooks.tables import OutletArchive, PlaybookRun
from govedge_testbed import Mosquitto
from tests.server.helpers import FleetServer, run_fleetctl, started_fleet_server

pytestmark = pytest.mark.timeout(120)

OUTLET = "zs-dinghai-01"


def _archive_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b'{"agent": "active"}\n'
        info = tarfile.TarInfo("diagnosis/status.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def server(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    runs = tmp_path / "runs"
    with started_fleet_server(broker.url, tmp_path, GOVEDGE_PLAYBOOK_RUNS_DIR=str(runs)) as fleet:
        yield fleet


def _attach(server: FleetServer, runs: Path, name: str, content: bytes) -> int:
    """An archive as a finished diagnose run leaves it; its id."""
    engine = make_engine(server.database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            now = datetime.now(UTC)
            run = PlaybookRun(
                playbook="diagnose_outlet.yml", status="successful", check_mode=False,
                during_opening_hours=False, forks=5, target={"outlets": [OUTLET]},
                extra_vars={}, created_at=now, created_by="tech", finished_at=now, rc=0,
            )  # fmt: skip
            session.add(run)
            session.flush()
            folder = runs / str(run.id) / "archives" / OUTLET
            folder.mkdir(parents=True)
            (folder / name).write_bytes(content)
            row = OutletArchive(
                outlet_id=OUTLET, run_id=run.id, name=name, size=len(content),
                sha256=hashlib.sha256(content).hexdigest(), created_at=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return row.id
    finally:
        engine.dispose()


def test_a_technician_lists_and_downloads_a_checked_archive(
    server: FleetServer, tmp_path: Path
) -> None:
    content = _archive_bytes()
    archive_id = _attach(server, tmp_path / "runs", "diagnosis-zs-dinghai-01.tar.gz", content)

    listed = json.loads(run_fleetctl(server, "outlets", "archives", OUTLET, "--json").stdout)
    assert [(row["id"], row["name"], row["size"]) for row in listed] == [
        (archive_id, "diagnosis-zs-dinghai-01.tar.gz", len(content))
    ]
    table = run_fleetctl(server, "outlets", "archives", OUTLET).stdout
    assert "diagnosis-zs-dinghai-01.tar.gz" in table

    target = tmp_path / "got.tar.gz"
    out = run_fleetctl(
        server, "outlets", "archive", OUTLET, str(archive_id), "-o", str(target)
    ).stdout
    assert "SHA-256 checked" in out
    assert target.read_bytes() == content
    with tarfile.open(target) as tar:  # what the technician opens next
        assert tar.getnames() == ["diagnosis/status.json"]
    # It does not overwrite a file unless asked.
    refused = run_fleetctl(
        server, "outlets", "archive", OUTLET, str(archive_id), "-o", str(target), code=1
    )
    assert "exists" in refused.stderr
    run_fleetctl(server, "outlets", "archive", OUTLET, str(archive_id), "-o", str(target),
                 "--force")  # fmt: skip


def test_a_file_changed_on_the_server_is_refused_and_not_kept(
    server: FleetServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    archive_id = _attach(server, runs, "diagnosis.tar.gz", _archive_bytes())
    # Someone (or a failing disk) changed the stored file after the run recorded it.
    stored = next(runs.glob("*/archives/*/diagnosis.tar.gz"))
    stored.write_bytes(_archive_bytes() + b"tampered")
    target = tmp_path / "got.tar.gz"
    result = run_fleetctl(
        server, "outlets", "archive", OUTLET, str(archive_id), "-o", str(target), code=1
    )
    assert "is not the recorded" in result.stderr
    assert not target.exists()
    assert list(tmp_path.glob("got.tar.gz*")) == []
    # Another outlet's id or an unknown one: the server's 404, said plainly.
    missing = run_fleetctl(
        server, "outlets", "archive", "other-outlet", str(archive_id), "-o",
        str(tmp_path / "x.tar.gz"), code=1,
    )  # fmt: skip
    assert "no such archive of this outlet" in missing.stderr
