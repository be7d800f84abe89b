"""End to end (issue 13): ``replace_device`` run through the fleet server with real
Ansible, against a real agent process whose ticket printers are simulators speaking
ESC/POS over loopback TCP, with a real broker and fleet server.

No udev runs here, so the technician plugging in the replacement is played by a second
network printer configured from the start; every step of the playbook runs for real:
retire the old printer, wait until a printer is ready, self-test it (a test print).
Hot-plug itself is tested in tests/discovery. The outlet is this machine
(``ansible_connection=local``); the role calls the agent's CLI under
``{home}/good/venv``, here a link to this checkout's virtualenv.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from edge_agent.devices.ticket_printer.simulator import EscPosPrinterSimulator
from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream
from tests.e2e.conftest import poll
from tests.server.helpers import FleetServer
from tests.server.playbooks.kit import need_ansible
from tests.server.txkit import serving_upstream, transaction_server

ROOT = Path(__file__).resolve().parents[2]
OUTLET = "330902-0201"
DONE = frozenset({"successful", "failed", "canceled", "error", "interrupted"})
OLD, NEW = "printer-old", "printer-new"

pytestmark = [pytest.mark.timeout(300)]


class Printers:
    """Two printer simulators on loopback TCP, served by an event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stack = AsyncExitStack()
        self.sims: dict[str, EscPosPrinterSimulator] = {}

    def start(self) -> None:
        self.thread.start()

        async def open_both() -> None:
            for name in (OLD, NEW):
                sim = EscPosPrinterSimulator(transport="tcp")
                self.sims[name] = await self.stack.enter_async_context(sim)

        asyncio.run_coroutine_threadsafe(open_both(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.stack.aclose(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def printers() -> Iterator[Printers]:
    printers = Printers()
    printers.start()
    try:
        yield printers
    finally:
        printers.stop()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with serving_upstream() as fake:
        yield fake


@pytest.fixture
def server(private_broker: Mosquitto, upstream: Upstream, tmp_path: Path) -> Iterator[FleetServer]:
    need_ansible()
    workdir = tmp_path / "fleet"
    workdir.mkdir()
    with transaction_server(
        private_broker.url, upstream, workdir, ["zhoushan", "hcp"],
        GOVEDGE_PLAYBOOKS_DIR=str(ROOT / "playbooks"),
        GOVEDGE_PLAYBOOK_RUNS_DIR=str(workdir / "runs"),
        GOVEDGE_PLAYBOOK_ALLOW_LOCAL="true",  # the outlet PC is this machine
    ) as fleet:  # fmt: skip
        yield fleet


@pytest.fixture
def agent(
    private_broker: Mosquitto, printers: Printers, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """The agent with both printers configured; (process, data dir, log)."""
    data_dir = tmp_path / "data"
    log = tmp_path / "agent.log"
    devices = [
        {"profile": "escpos-network-printer", "address": printers.sims[name].address,
         "device_id": name}
        for name in (OLD, NEW)
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
    env["GOVEDGE_DEVICES"] = json.dumps(devices)
    argv = [
        sys.executable, "-m", "edge_agent", "run", "--mqtt-url", private_broker.url,
        "--outlet-id", OUTLET, "--data-dir", str(data_dir), "--keepalive", "2",
        "--telemetry-interval", "0.5", "--local-api-port", "0",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc, data_dir, log
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _devices(server: FleetServer) -> dict[str, str]:
    answer = server.http.get(f"/api/v1/outlets/{OUTLET}")
    if answer.status_code != 200:
        return {}
    return {d["device_id"]: d["state"] for d in answer.json().get("devices", [])}


def _run(server: FleetServer, **extra: Any) -> dict[str, Any]:
    answer = server.http.post(
        "/api/v1/playbook-runs",
        json={"playbook": "replace_device.yml", "target": {"outlets": [OUTLET]},
              "extra_vars": extra, "check": False},
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["id"]
    run: dict[str, Any] = poll(
        lambda: (r := server.get(f"/api/v1/playbook-runs/{run_id}"))["status"] in DONE and r,
        timeout=240, interval=0.5,
    )  # fmt: skip
    return run


def _events(server: FleetServer, run_id: int) -> str:
    events = server.get(f"/api/v1/playbook-runs/{run_id}/events")
    items = events["events"] if isinstance(events, dict) else events
    return "\n".join(str(e.get("stdout", "")) for e in items)[-4000:]


def test_replace_device_retires_the_old_printer_and_self_tests_the_new_one(
    server: FleetServer,
    agent: tuple[subprocess.Popen[bytes], Path, Path],
    printers: Printers,
    tmp_path: Path,
) -> None:
    proc, data_dir, log = agent
    # The role runs {home}/good/venv/bin/edge-agent as the service user.
    home = tmp_path / "home"
    (home / "good").mkdir(parents=True)
    (home / "good" / "venv").symlink_to(Path(sys.executable).parent.parent)
    profile = {"outlet_id": OUTLET, "kind": "township_centre", "region_code": "330902",
               "opening_hours": {}}  # fmt: skip
    assert server.http.put("/api/v1/outlet-profiles", json=[profile]).status_code == 200
    host_vars = {"host_vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "govedge_agent_home": str(home), "govedge_agent_data_dir": str(data_dir),
        "govedge_agent_user": "root",
    }}  # fmt: skip
    answer = server.http.put(f"/api/v1/outlets/{OUTLET}/access", json=host_vars)
    assert answer.status_code == 200, answer.text
    # Both printers reach the fleet's record of the outlet.
    poll(lambda: _devices(server) == {OLD: "ready", NEW: "ready"}, timeout=60)

    replace = {"govedge_agent_device_kind": "ticket_printer", "govedge_agent_device_wait_s": 60}
    run = _run(server, govedge_agent_device_retire=OLD, **replace)
    assert run["status"] == "successful", (_events(server, run["id"]), log.read_text()[-2000:])
    host = run["hosts"][0]
    assert host["status"] == "changed", host

    # The fleet forgot the old printer; the new one is there and ready.
    poll(lambda: _devices(server) == {NEW: "ready"}, timeout=30)
    # The self-test printed on the new printer only.
    new, old = printers.sims[NEW], printers.sims[OLD]
    assert any("SELF-TEST" in line for line in new.lines), new.text_log()
    assert not any("SELF-TEST" in line for line in old.lines), old.text_log()
    # The retirement is kept in the data dir, so a restart does not bring it back.
    retired = json.loads((data_dir / "retired-devices.json").read_text())
    assert [entry["device_ids"] for entry in retired["retired"]] == [[OLD]]

    # A second run retires nothing new (changed=0 apart from the test print itself).
    again = _run(server, govedge_agent_device_retire=OLD, **replace)
    assert again["status"] == "successful", again
    assert again["hosts"][0]["status"] == "ok", again["hosts"]

    # A serial the agent never saw is refused with the reason, and nothing changes.
    unknown = _run(server, govedge_agent_device_retire="SN-NEVER-SEEN", **replace)
    assert unknown["status"] == "failed", unknown
    assert json.loads((data_dir / "retired-devices.json").read_text()) == retired
    assert proc.poll() is None, log.read_text()[-3000:]  # the agent lives on
