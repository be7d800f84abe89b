"""An outlet's access record is an allow-list: a technician can't turn it into a way to
run commands on the fleet server (where the management SSH key lives) or to switch off
host-key pinning. Refused at ``PUT /outlets/{id}/access`` (422 naming the field, nothing
stored), and left out of a run's inventory even when the database holds it (a record
from before the check, or written past the API): a real run over real SSH against a PC
whose pinned key no longer matches stays unreachable whatever the record says."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleet_server.playbooks.tables import OutletAccess
from fleet_server.security import Role
from govedge_testbed.sshd import SshHost, find_sshd
from tests.conftest import missing
from tests.server.playbooks.kit import CLOSED, DONE, PlaybookApi, playbook_api

ROOT = Path(__file__).resolve().parents[3]
OUTLET = "o-acc"
GOOD = {"ansible_host": "10.20.0.7", "ansible_port": 2222, "ansible_user": "govedge",
        "host_vars": {"ansible_python_interpreter": "/usr/bin/python3"}}  # fmt: skip


def _profile(pb: PlaybookApi, outlet_id: str) -> None:
    profile = {"outlet_id": outlet_id, "kind": "township_centre", "region_code": "410402",
               "opening_hours": CLOSED}  # fmt: skip
    answer = pb.api.client.put(
        "/api/v1/outlet-profiles", json=[profile], headers=pb.api.as_role(Role.OPERATOR)
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def real(tmp_path: Path) -> Iterator[PlaybookApi]:
    """The server as in production: the outlet playbooks, local connections off."""
    with playbook_api(tmp_path, playbooks_dir=ROOT / "playbooks", playbook_allow_local=False) as pb:
        yield pb


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"host_vars": {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}},
     "host_vars.ansible_ssh_common_args"),
    ({"host_vars": {"ansible_ssh_extra_args": "-o ProxyCommand=sh -c 'id > /tmp/x'"}},
     "host_vars.ansible_ssh_extra_args"),
    ({"host_vars": {"ansible_connection": "local"}}, "host_vars.ansible_connection"),
    ({"host_vars": {"ansible_connection": "paramiko"}}, "host_vars.ansible_connection"),
    ({"host_vars": {"ansible_python_interpreter": "sh -c id"}},
     "host_vars.ansible_python_interpreter"),
    ({"host_vars": {"ansible_become_exe": "/bin/sh"}}, "host_vars.ansible_become_exe"),
    ({"host_vars": {"ansible_host": "10.0.0.1"}}, "host_vars.ansible_host"),
    ({"host_vars": {"anything_else": 1}}, "host_vars.anything_else"),
    # role variables: only documented ones, checked against their spec
    ({"host_vars": {"govedge_agent_release_file": "/etc/shadow"}},
     "host_vars.govedge_agent_release_file"),
    ({"host_vars": {"govedge_agent_outlet_id": "o-other"}}, "host_vars.govedge_agent_outlet_id"),
    ({"host_vars": {"govedge_agent_start": "yes please"}}, "host_vars.govedge_agent_start"),
    ({"host_vars": {"govedge_agent_user": "{{ lookup('pipe', 'id') }}"}},
     "host_vars.govedge_agent_user"),
    ({"host_vars": {"govedge_agent_settings": {"x": ["{% raw %}"]}}},
     "host_vars.govedge_agent_settings"),
    ({"ansible_host": "-oProxyCommand=id"}, "ansible_host"),
    ({"ansible_host": "pc 7.example"}, "ansible_host"),
    ({"ansible_user": "root -o ProxyCommand=id"}, "ansible_user"),
    ({"ansible_user": "Root"}, "ansible_user"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field"), HOSTILE, ids=[f for _, f in HOSTILE])
def test_a_record_outside_the_allow_list_is_refused_and_nothing_is_stored(
    real: PlaybookApi, body: dict[str, Any], field: str
) -> None:
    _profile(real, OUTLET)
    url = f"/api/v1/outlets/{OUTLET}/access"
    answer = real.api.client.put(url, json=body, headers=real.tech)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(f"{field}:"), answer.text
    assert real.api.client.get(url, headers=real.tech).status_code == 404

    # over a good record: the good one stays as it was
    assert real.api.client.put(url, json=GOOD, headers=real.tech).status_code == 200
    answer = real.api.client.put(url, json={**GOOD, **body}, headers=real.tech)
    assert answer.status_code == 422, answer.text
    kept = real.api.client.get(url, headers=real.tech).json()
    assert {k: kept[k] for k in GOOD} == GOOD


def test_a_good_record_is_stored(real: PlaybookApi) -> None:
    _profile(real, OUTLET)
    url = f"/api/v1/outlets/{OUTLET}/access"
    body = {"ansible_host": "pc-7.outlets.example", "ansible_port": 22, "ansible_user": "_ops",
            "host_vars": {"ansible_connection": "ssh", "govedge_agent_user": "govedge",
                          "govedge_agent_start": False}}  # fmt: skip
    answer = real.api.client.put(url, json=body, headers=real.tech)
    assert answer.status_code == 200, answer.text
    assert real.api.client.get(url, headers=real.tech).json()["host_vars"] == body["host_vars"]
    for address in ("192.168.3.4", "fd00::7"):
        good = {"ansible_host": address}
        assert real.api.client.put(url, json=good, headers=real.tech).status_code == 200


def test_a_port_out_of_range_is_refused(real: PlaybookApi) -> None:
    _profile(real, OUTLET)
    for port in (0, 65536):
        answer = real.api.client.put(
            f"/api/v1/outlets/{OUTLET}/access", json={"ansible_port": port}, headers=real.tech
        )
        assert answer.status_code == 422
        assert "ansible_port" in answer.text


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}, "ansible_ssh_common_args"),
        ({"ansible_connection": "local"}, "ansible_connection"),
        ({"hostvars": {}}, "hostvars"),
        ({"marker_text": "{{ lookup('pipe', 'id') }}"}, "marker_text"),
    ],
)
def test_extra_vars_can_not_reach_the_connection_or_template(
    tmp_path: Path, extra: dict[str, Any], named: str
) -> None:
    with playbook_api(tmp_path) as pb:
        pb.add_outlet("o-x")
        for playbook in ("mark.yml", "slow.yml"):  # documented or not
            body = {"playbook": playbook, "target": {"outlets": ["o-x"]},
                    "extra_vars": {"marker_text": "hi", **extra}}  # fmt: skip
            answer = pb.api.client.post("/api/v1/playbook-runs", json=body, headers=pb.tech)
            assert answer.status_code == 422, answer.text
            assert f"{named}:" in answer.json()["detail"]
        runs = pb.api.client.get("/api/v1/playbook-runs", headers=pb.tech).json()
        assert runs == []


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[SshHost]:
    if find_sshd() is None:
        missing("sshd is not installed (Debian package openssh-server; scripts/bootstrap)")
    host = SshHost(tmp_path / "pc", private_dirs=())
    host.start()
    try:
        yield host
    finally:
        host.stop()


def test_hostile_vars_in_the_database_never_reach_the_run(
    tmp_path: Path, ssh_host: SshHost
) -> None:
    """The record pins a host key the PC does not have (a reinstalled or impostor PC) and
    carries vars that would switch the check off or run on the server: the run still
    goes over SSH with the pinned key checked, so the host is unreachable and nothing is
    written."""
    folder = tmp_path / "outlet"
    folder.mkdir()
    with playbook_api(tmp_path, playbook_ssh_key=ssh_host.client_key,
                      playbook_allow_local=False) as pb:  # fmt: skip
        _profile(pb, OUTLET)
        hostile = {
            "outlet_dir": str(folder),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no"
            " -o UserKnownHostsFile=/dev/null",
            "ansible_ssh_extra_args": "-o StrictHostKeyChecking=no",
            "ansible_connection": "local",
        }
        other = tmp_path / "other_ed25519"  # a host key the PC does not have
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)  # fmt: skip
        pinned = " ".join(other.with_suffix(".pub").read_text().split()[:2])
        with pb.api.session() as session, session.begin():
            session.add(OutletAccess(
                outlet_id=OUTLET, ansible_host="127.0.0.1", ansible_port=ssh_host.port,
                ansible_user="root", host_vars=hostile, updated_at=datetime.now(UTC),
                updated_by="before-the-check",
                host_key=pinned, host_key_pinned_at=datetime.now(UTC),
            ))  # fmt: skip
        run = pb.start(playbook="mark.yml", target={"outlets": [OUTLET]},
                       extra_vars={"marker_text": "run"})  # fmt: skip
        done = pb.wait(run["id"], until=DONE, deadline_s=90)
        assert pb.hosts(done)[OUTLET]["status"] == "unreachable"
        assert not (folder / "marker.txt").exists()

        inventory = json.loads((tmp_path / "runs" / str(run["id"]) / "inventory" / "hosts.json")
                               .read_text())["all"]["hosts"][OUTLET]  # fmt: skip
        assert "ansible_connection" not in inventory
        assert "ansible_ssh_extra_args" not in inventory
        args = inventory["ansible_ssh_common_args"]
        assert "StrictHostKeyChecking=yes" in args
        assert "StrictHostKeyChecking=no" not in args
        assert "/dev/null" not in args
        assert inventory["outlet_dir"] == str(folder)  # what is allowed still goes through
