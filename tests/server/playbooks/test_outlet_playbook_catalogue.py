"""The shipped outlet playbooks as the server offers them: each with its own entry
point's variables, the fleet-supplied ones refused from callers, a release that does not
exist refused before a run starts, and the whole tree clean under ansible-lint's
production profile."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_server.config.keys import generate_key_file
from fleet_server.security import Role
from tests.server.playbooks.kit import PlaybookApi, playbook_api

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


@pytest.fixture
def pb(tmp_path: Path) -> Iterator[PlaybookApi]:
    key = tmp_path / "config-signing.pem"
    generate_key_file(key)
    with playbook_api(tmp_path, playbooks_dir=PLAYBOOKS, config_signing_key=key) as running:
        yield running


def test_each_playbook_offers_its_entry_points_variables(pb: PlaybookApi) -> None:
    answer = pb.api.client.get("/api/v1/playbooks", headers=pb.api.as_role(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    books = {book["name"]: book["variables"] for book in answer.json()}
    assert set(books) == {
        "provision_outlet.yml", "upgrade_agent.yml", "diagnose_outlet.yml",
        "rotate_certificate.yml", "decommission_outlet.yml", "replace_device.yml",
    }  # fmt: skip
    assert books["replace_device.yml"]["govedge_agent_device_retire"]["required"] is True
    assert books["provision_outlet.yml"]["govedge_agent_enroll_token"]["no_log"] is True
    assert books["provision_outlet.yml"]["govedge_agent_mqtt_url"]["required"] is True
    assert "govedge_agent_mqtt_url" not in books["upgrade_agent.yml"]
    assert books["decommission_outlet.yml"]["govedge_agent_drain_timeout_s"]["type"] == "int"
    assert "govedge_agent_drain_timeout_s" not in books["diagnose_outlet.yml"]
    # the layout variables are shared by every entry point
    assert all("govedge_agent_home" in variables for variables in books.values())


def _start(pb: PlaybookApi, playbook: str, **extra: Any) -> httpx.Response:
    """Ask for a run of ``playbook`` on outlet o-1 as a technician."""
    body = {"playbook": playbook, "target": {"outlets": ["o-1"]}, "extra_vars": extra}
    return pb.api.client.post("/api/v1/playbook-runs", headers=pb.tech, json=body)


def test_fleet_supplied_variables_are_refused_from_callers(pb: PlaybookApi) -> None:
    pb.add_outlet("o-1")
    answer = _start(pb, "diagnose_outlet.yml", govedge_agent_archive_dir="/etc")
    assert answer.status_code == 422
    assert "set by the fleet server" in answer.text
    answer = _start(pb, "upgrade_agent.yml", govedge_agent_release_file="/etc/shadow",
                    govedge_agent_version="1.0.0")  # fmt: skip
    assert answer.status_code == 422
    assert "govedge_agent_release_file: set by the fleet server" in answer.text


def test_fleet_supplied_variables_are_refused_for_undocumented_playbooks_too(
    tmp_path: Path,
) -> None:
    with playbook_api(tmp_path) as pb:  # the test playbooks: slow.yml documents nothing
        pb.add_outlet("o-1")
        answer = _start(pb, "slow.yml", govedge_agent_archive_dir="/etc")
        assert answer.status_code == 422
        assert "set by the fleet server" in answer.text


def test_an_unknown_release_is_refused_before_the_run(pb: PlaybookApi) -> None:
    pb.add_outlet("o-1")
    answer = _start(pb, "upgrade_agent.yml", govedge_agent_version="7.7.7")
    assert answer.status_code == 422
    assert "no release '7.7.7' on this server" in answer.text
    runs = pb.api.client.get("/api/v1/playbook-runs", headers=pb.tech).json()
    assert runs == []


def test_the_playbooks_pass_ansible_lint_production_profile() -> None:
    lint = Path(sys.executable).parent / "ansible-lint"
    done = subprocess.run(
        [str(lint), "--offline", "--nocolor", "--profile", "production", "."],
        cwd=PLAYBOOKS, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr
