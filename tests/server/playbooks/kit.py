"""Playbook-run test kit: the app with the test playbooks, outlets reached by
``ansible_connection=local`` (each with its own directory), and polling helpers."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_server.security import Role
from tests.conftest import missing
from tests.security.api_harness import Api, running_api

DATA = Path(__file__).resolve().parent / "data"
# Opening hours with no span on any day: closed now, whenever the test runs. (No hours
# at all means "never closes" in the registry, so such an outlet would be held back.)
CLOSED: dict[str, list[str]] = {"mon": []}


def need_ansible() -> None:
    """ansible-runner and ansible-playbook are here (CI=true fails without them)."""
    try:
        import ansible_runner  # noqa: F401
    except ImportError:
        missing("ansible-runner is not installed (govedge[server])")
    if not (Path(sys.executable).parent / "ansible-playbook").exists() and not shutil.which(
        "ansible-playbook"
    ):
        missing("ansible-playbook (ansible-core) is not installed")


@dataclass
class PlaybookApi:
    """The running app, the technician's headers and where each outlet's files go."""

    api: Api
    hosts_dir: Path
    # The test playbooks' role documents ``outlet_dir`` (the outlet's own directory);
    # the shipped ones don't, so their access records can't carry it.
    outlet_dir_var: bool = True

    @property
    def tech(self) -> dict[str, str]:
        return self.api.as_role(Role.TECHNICIAN)

    def add_outlet(
        self,
        outlet_id: str,
        *,
        region: str = "410402",
        kind: str = "township_centre",
        opening_hours: str | dict[str, list[str]] | None = None,
        host_vars: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> Path:
        """Register an outlet (profile) reached locally; its directory."""
        folder = self.hosts_dir / outlet_id
        folder.mkdir(parents=True, exist_ok=True)
        profile = {"outlet_id": outlet_id, "kind": kind, "region_code": region,
                   "opening_hours": opening_hours or CLOSED, "tags": tags or []}  # fmt: skip
        answer = self.api.client.put(
            "/api/v1/outlet-profiles", json=[profile], headers=self.api.as_role(Role.OPERATOR)
        )
        assert answer.status_code == 200, answer.text
        access = {
            "host_vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                **({"outlet_dir": str(folder)} if self.outlet_dir_var else {}),
                **(host_vars or {}),
            }
        }
        answer = self.api.client.put(
            f"/api/v1/outlets/{outlet_id}/access", json=access, headers=self.tech
        )
        assert answer.status_code == 200, answer.text
        return folder

    def start(self, **body: Any) -> dict[str, Any]:
        answer = self.api.client.post("/api/v1/playbook-runs", json=body, headers=self.tech)
        assert answer.status_code == 202, answer.text
        run: dict[str, Any] = answer.json()
        return run

    def run_json(self, run_id: int) -> dict[str, Any]:
        answer = self.api.client.get(
            f"/api/v1/playbook-runs/{run_id}", headers=self.api.as_role(Role.VIEWER)
        )
        assert answer.status_code == 200, answer.text
        run: dict[str, Any] = answer.json()
        return run

    def wait(self, run_id: int, *, until: frozenset[str], deadline_s: float = 60) -> dict[str, Any]:
        """Poll the run until its status is in ``until`` (fails at the deadline)."""
        end = time.monotonic() + deadline_s
        while True:
            run = self.run_json(run_id)
            if run["status"] in until:
                return run
            assert time.monotonic() < end, f"run {run_id} still {run['status']}"
            time.sleep(0.2)

    def hosts(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {host["outlet_id"]: host for host in run["hosts"]}


DONE = frozenset({"successful", "failed", "canceled", "error", "interrupted"})


@contextmanager
def playbook_api(
    tmp_path: Path, *, playbooks_dir: Path = DATA, **settings: Any
) -> Iterator[PlaybookApi]:
    need_ansible()
    with running_api(
        tmp_path, mqtt_url="mqtt://127.0.0.1:1", pii_key_dir=tmp_path / "pii",
        playbooks_dir=playbooks_dir, playbook_runs_dir=tmp_path / "runs",
        **{"playbook_allow_local": True, **settings},
    ) as api:  # fmt: skip
        yield PlaybookApi(api=api, hosts_dir=tmp_path / "hosts",
                          outlet_dir_var=playbooks_dir == DATA)  # fmt: skip
