"""Every run is audited with its extra variables, secrets masked: options the playbook's
argument spec marks ``no_log`` and names that look like secrets (at any depth) show as a
mask in the audit log and in the run as the API shows it, and are not in the database,
while the run itself gets the real values (a real run writes the note it was given)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_server.playbooks.catalogue import MASK
from fleet_server.security import Role
from tests.server.playbooks.kit import DONE, PlaybookApi, playbook_api

NOTE = "note-c0ffee-4471"
PASSWORD = "hunter2-pw-9913"
ACCESS_KEY = "AKIA-5550-secret"


@pytest.fixture
def pb(tmp_path: Path) -> Iterator[PlaybookApi]:
    with playbook_api(tmp_path) as running:
        yield running


def test_a_run_is_audited_with_its_variables_secrets_masked(
    pb: PlaybookApi, tmp_path: Path
) -> None:
    folder = pb.add_outlet("o-sec")
    extra = {"marker_text": "hello", "marker_note": NOTE, "upstream_password": PASSWORD,
             "marker_settings": {"access_key": ACCESS_KEY, "region": "4104",
                                 "hosts": [{"api_token": PASSWORD, "name": "a"}]}}  # fmt: skip
    run = pb.start(playbook="mark.yml", target={"outlets": ["o-sec"]}, extra_vars=extra)
    done = pb.wait(run["id"], until=DONE)
    assert done["status"] == "successful", done
    # the run had the real values
    assert (folder / "marker.txt").read_text() == f"hello\n{NOTE}\n"

    shown = {"marker_text": "hello", "marker_note": MASK, "upstream_password": MASK,
             "marker_settings": {"access_key": MASK, "region": "4104",
                                 "hosts": [{"api_token": MASK, "name": "a"}]}}  # fmt: skip
    admin = pb.api.as_role(Role.ADMIN)
    audit = pb.api.client.get("/api/v1/audit", params={"action": "playbook.run"}, headers=admin)
    assert audit.status_code == 200, audit.text
    [entry] = audit.json()
    assert entry["target"] == f"playbook_run:{run['id']}"
    assert entry["after"]["extra_vars"] == shown

    viewer = pb.api.as_role(Role.VIEWER)
    assert pb.run_json(run["id"])["extra_vars"] == shown
    assert run["extra_vars"] == shown  # the 202 answer too
    texts = [
        audit.text,
        pb.api.client.get(f"/api/v1/playbook-runs/{run['id']}", headers=viewer).text,
        pb.api.client.get("/api/v1/playbook-runs", headers=viewer).text,
        pb.api.client.get("/api/v1/outlets/o-sec/playbook-runs", headers=viewer).text,
        pb.api.client.get(f"/api/v1/playbook-runs/{run['id']}/events", headers=viewer).text,
    ]
    for text in texts:
        for secret in (NOTE, PASSWORD, ACCESS_KEY):
            assert secret not in text
    kept = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]  # the run's files
    for stored in [*tmp_path.glob("fleet.db*"), *kept]:  # the database and its journal
        for secret in (NOTE, PASSWORD, ACCESS_KEY):
            assert secret.encode() not in stored.read_bytes(), stored.name
