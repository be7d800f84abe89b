"""SSH host keys through real runs over real SSH: pinned at the first run that reaches
an outlet PC, checked strictly afterwards; a reinstalled PC (a new host key) is
unreachable until an admin clears the pin, and nothing runs on it meanwhile."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_server.security import Role
from govedge_testbed.sshd import SshHost, find_sshd
from tests.conftest import missing
from tests.server.playbooks.kit import CLOSED, DONE, PlaybookApi, playbook_api

OUTLET = "o-ssh"


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[SshHost]:
    if find_sshd() is None:
        missing("sshd is not installed (Debian package openssh-server; scripts/bootstrap)")
    # no private folders: the test playbook writes into the host's own directory only
    host = SshHost(tmp_path / "pc", private_dirs=())
    host.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def pb(tmp_path: Path, ssh_host: SshHost) -> Iterator[PlaybookApi]:
    with playbook_api(tmp_path, playbook_ssh_key=ssh_host.client_key) as running:
        yield running


def _register(pb: PlaybookApi, host: SshHost, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    profile = {"outlet_id": OUTLET, "kind": "township_centre", "region_code": "410402",
               "opening_hours": CLOSED}  # fmt: skip
    answer = pb.api.client.put(
        "/api/v1/outlet-profiles", json=[profile], headers=pb.api.as_role(Role.OPERATOR)
    )
    assert answer.status_code == 200, answer.text
    access = host.inventory_vars()
    access["host_vars"] = {**access["host_vars"], "outlet_dir": str(folder)}  # type: ignore[dict-item]
    answer = pb.api.client.put(f"/api/v1/outlets/{OUTLET}/access", json=access, headers=pb.tech)
    assert answer.status_code == 200, answer.text


def _mark(pb: PlaybookApi, text: str) -> dict[str, object]:
    run = pb.start(playbook="mark.yml", target={"outlets": [OUTLET]},
                   extra_vars={"marker_text": text})  # fmt: skip
    done = pb.wait(run["id"], until=DONE, deadline_s=90)
    host: dict[str, object] = pb.hosts(done)[OUTLET]
    return host


def test_the_first_run_pins_the_host_key_and_a_changed_key_is_refused(
    pb: PlaybookApi, ssh_host: SshHost, tmp_path: Path
) -> None:
    folder = tmp_path / "outlet"
    _register(pb, ssh_host, folder)
    access = pb.api.client.get(f"/api/v1/outlets/{OUTLET}/access", headers=pb.tech).json()
    assert access["host_key"] is None

    assert _mark(pb, "first")["status"] == "changed"
    assert (folder / "marker.txt").read_text() == "first\n"
    access = pb.api.client.get(f"/api/v1/outlets/{OUTLET}/access", headers=pb.tech).json()
    assert access["host_key"] == ssh_host.host_key_line()
    assert access["host_key_pinned_at"] is not None

    # the PC is reinstalled: a new host key on the same address
    ssh_host.stop()
    ssh_host.host_key.unlink()
    ssh_host.host_key.with_suffix(".pub").unlink()
    old_key = access["host_key"]
    ssh_host.start()
    assert ssh_host.host_key_line() != old_key
    refused = _mark(pb, "second")
    assert refused["status"] == "unreachable"
    assert (folder / "marker.txt").read_text() == "first\n"  # nothing ran there
    access = pb.api.client.get(f"/api/v1/outlets/{OUTLET}/access", headers=pb.tech).json()
    assert access["host_key"] == old_key  # the pin is not replaced by a run

    # only an admin clears the pin; the next run pins the new key
    cleared = pb.api.client.delete(f"/api/v1/outlets/{OUTLET}/host-key", headers=pb.tech)
    assert cleared.status_code == 403
    cleared = pb.api.client.delete(
        f"/api/v1/outlets/{OUTLET}/host-key", headers=pb.api.as_role(Role.ADMIN)
    )
    assert cleared.status_code == 200, cleared.text
    assert _mark(pb, "third")["status"] == "changed"
    assert (folder / "marker.txt").read_text() == "third\n"
    access = pb.api.client.get(f"/api/v1/outlets/{OUTLET}/access", headers=pb.tech).json()
    assert access["host_key"] == ssh_host.host_key_line()


def test_the_server_key_is_never_in_the_run_files_or_events(
    pb: PlaybookApi, ssh_host: SshHost, tmp_path: Path
) -> None:
    _register(pb, ssh_host, tmp_path / "outlet")
    assert _mark(pb, "x")["status"] == "changed"
    secret = ssh_host.client_key.read_text().strip().splitlines()[1]  # a line of the key
    found = subprocess.run(
        ["grep", "-rlF", secret, str(tmp_path / "runs")], capture_output=True, text=True
    )
    assert found.stdout == ""
    events = pb.api.client.get("/api/v1/playbook-runs/1/events", headers=pb.tech).text
    assert secret not in events
