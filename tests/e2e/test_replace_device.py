"""End to end (issue 13): replacing a device at the outlet.

``replace_device`` runs through the fleet server with real Ansible against a real agent
process, a real broker and fleet server. The old ticket printer is a simulator speaking
ESC/POS over loopback TCP, configured with the serial number on its label; the
replacement is another simulator on the outlet's LAN that the agent does not know until
the playbook registers it. Every step runs for real: retire the old printer by its
serial, register the replacement, wait until it is ready, self-test it (a test print).
The outlet is this machine (``ansible_connection=local``); the role calls the agent's
CLI under ``{home}/good/venv``, here a link to this checkout's virtualenv.

The card reader's and the camera's self-tests go through the technician socket (the
``edge-agent device`` commands the playbook runs) of an agent started with
``--simulate``: the ID-card reader is a simulator behind a pty speaking the reader's
serial protocol, the document camera a video file OpenCV opens like a capture node.
There the reader is also retired by its USB serial number. No udev runs here: USB
hot-plug itself is tested in tests/discovery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream
from tests.e2e.conftest import poll
from tests.e2e.printer_sims import PrinterSims
from tests.server.helpers import FleetServer
from tests.server.playbooks.kit import need_ansible
from tests.server.txkit import serving_upstream, transaction_server

ROOT = Path(__file__).resolve().parents[2]
OUTLET = "330902-0201"
DONE = frozenset({"successful", "failed", "canceled", "error", "interrupted"})
OLD, NEW = "window-1-printer", "window-1-printer-2"
OLD_SERIAL, NEW_SERIAL = "PRN-OLD-0001", "PRN-NEW-0002"
ID_CARD_SERIAL = "SIMIDCARD0001"

pytestmark = [pytest.mark.timeout(400)]


@pytest.fixture
def printers() -> Iterator[PrinterSims]:
    sims = PrinterSims()
    try:
        sims.plug(OLD)
        sims.plug(NEW)  # on the LAN, unknown to the agent until registered
        yield sims
    finally:
        sims.stop()


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


class AgentProcess:
    """``python -m edge_agent run`` with a data dir of its own; restartable."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env)  # fmt: skip

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _agent(broker: Mosquitto, data_dir: Path, log: Path, *extra: str,
           env: dict[str, str] | None = None) -> AgentProcess:  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
    argv = [
        sys.executable, "-m", "edge_agent", "run", "--mqtt-url", broker.url,
        "--outlet-id", OUTLET, "--data-dir", str(data_dir), "--keepalive", "2",
        "--telemetry-interval", "0.5", "--local-api-port", "0", *extra,
    ]  # fmt: skip
    return AgentProcess(argv, base | (env or {}), log)


@pytest.fixture
def agent(
    private_broker: Mosquitto, printers: PrinterSims, tmp_path: Path
) -> Iterator[tuple[AgentProcess, Path]]:
    """The agent with the old printer configured (with its label's serial)."""
    data_dir = tmp_path / "data"
    old = {"profile": "escpos-network-printer", "address": printers.sims[OLD].address,
           "device_id": OLD, "serial": OLD_SERIAL}  # fmt: skip
    running = _agent(private_broker, data_dir, tmp_path / "agent.log",
                     env={"GOVEDGE_DEVICES": json.dumps([old])})  # fmt: skip
    running.start()
    try:
        yield running, data_dir
    finally:
        running.stop()


def _devices(server: FleetServer) -> dict[str, str]:
    answer = server.http.get(f"/api/v1/outlets/{OUTLET}")
    if answer.status_code != 200:
        return {}
    return {d["device_id"]: d["state"] for d in answer.json().get("devices", [])}


def _run(server: FleetServer, *, check: bool = False, **extra: Any) -> dict[str, Any]:
    answer = server.http.post(
        "/api/v1/playbook-runs",
        json={"playbook": "replace_device.yml", "target": {"outlets": [OUTLET]},
              "extra_vars": extra, "check": check},
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


def test_replace_device_retires_by_serial_registers_the_new_printer_and_self_tests_it(
    server: FleetServer,
    agent: tuple[AgentProcess, Path],
    printers: PrinterSims,
    tmp_path: Path,
) -> None:
    running, data_dir = agent
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
    poll(lambda: _devices(server) == {OLD: "ready"}, timeout=60) or pytest.fail(running.tail())

    replace: dict[str, Any] = {
        "govedge_agent_device_retire": OLD_SERIAL,
        "govedge_agent_device_kind": "ticket_printer",
        "govedge_agent_device_register": {
            "profile": "escpos-network-printer", "address": printers.sims[NEW].address,
            "device_id": NEW, "serial": NEW_SERIAL,
        },
        "govedge_agent_device_wait_s": 60,
    }  # fmt: skip
    # A dry run says what it would do and changes nothing.
    dry = _run(server, check=True, **replace)
    assert dry["status"] == "successful", _events(server, dry["id"])
    assert dry["hosts"][0]["changed"] == 0, dry["hosts"]
    assert f"would retire {OLD_SERIAL} and register {NEW}" in _events(server, dry["id"])
    assert not (data_dir / "retired-devices.json").exists()
    assert not (data_dir / "registered-devices.json").exists()
    assert _devices(server) == {OLD: "ready"}

    run = _run(server, **replace)
    assert run["status"] == "successful", (_events(server, run["id"]), running.tail())
    assert run["hosts"][0]["status"] == "changed", run["hosts"]

    # The fleet forgot the old printer; the new one is there and ready.
    poll(lambda: _devices(server) == {NEW: "ready"}, timeout=30)
    # The self-test printed on the new printer only.
    new, old = printers.sims[NEW], printers.sims[OLD]
    assert any("SELF-TEST" in line for line in new.lines), new.text_log()
    assert not any("SELF-TEST" in line for line in old.lines), old.text_log()
    # The serial is kept with the device id it retired; the registration is kept too.
    retired = json.loads((data_dir / "retired-devices.json").read_text())
    assert [(e["key"], e["device_ids"]) for e in retired["retired"]] == [(OLD_SERIAL, [OLD])]
    registered = json.loads((data_dir / "registered-devices.json").read_text())
    assert [(e["device_id"], e["serial"]) for e in registered["registered"]] == [(NEW, NEW_SERIAL)]

    # A second run retires and registers nothing new (changed=0 apart from the test
    # print itself, which the playbook does not count as a change).
    again = _run(server, **replace)
    assert again["status"] == "successful", _events(server, again["id"])
    assert again["hosts"][0]["status"] == "ok", again["hosts"]

    # A serial the agent never saw is refused with the reason, and nothing changes.
    unknown = _run(server, **(replace | {"govedge_agent_device_retire": "SN-NEVER-SEEN"}))
    assert unknown["status"] == "failed", unknown
    assert "SN-NEVER-SEEN" in _events(server, unknown["id"])
    assert json.loads((data_dir / "retired-devices.json").read_text()) == retired
    assert running.alive(), running.tail()  # the agent lives on

    # After a restart (the old printer still in its settings): the new one is used, the
    # old one is not.
    running.stop()
    running.start()
    poll(lambda: _device_states(data_dir) == {NEW: "ready"}, timeout=60) or pytest.fail(
        running.tail()
    )


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "device", *args, "--data-dir", str(data_dir),
         "--json"], capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def _device_states(data_dir: Path) -> dict[str, str]:
    listed = _cli(data_dir, "list")
    if listed.returncode != 0:
        return {}
    return {d["device_id"]: d["state"] for d in json.loads(listed.stdout)["devices"]}


def _listed(data_dir: Path) -> list[dict[str, Any]]:
    listed = _cli(data_dir, "list")
    assert listed.returncode == 0, listed.stderr
    devices: list[dict[str, Any]] = json.loads(listed.stdout)["devices"]
    return devices


def test_card_reader_and_camera_self_tests_and_a_reader_retired_by_its_usb_serial(
    private_broker: Mosquitto, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    running = _agent(private_broker, data_dir, tmp_path / "agent.log", "--simulate")
    running.start()
    try:

        def ready(kind: str) -> str | None:
            listed = _cli(data_dir, "list")  # fails until the agent's socket is up
            if listed.returncode != 0:
                return None
            found = [d for d in json.loads(listed.stdout)["devices"]
                     if d["kind"] == kind and d["state"] == "ready"]  # fmt: skip
            return str(found[0]["device_id"]) if found else None

        assert running.alive(), running.tail()
        reader = poll(lambda: ready("id_card_reader"), timeout=90)
        camera = poll(lambda: ready("document_camera"), timeout=90)

        # The card reader's status: it answers its probe over its serial protocol.
        tested = _cli(data_dir, "self-test", reader)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        result = json.loads(tested.stdout)
        assert result["ok"] is True, result
        assert result["kind"] == "id_card_reader"
        assert result["result"]["probe"] == "ok", result
        # One camera frame from the video file, its size only (no picture kept).
        tested = _cli(data_dir, "self-test", camera)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        result = json.loads(tested.stdout)
        assert result["ok"] is True, result
        frame = result["result"]
        assert set(frame) == {"frame", "width", "height"}, result  # the size, no picture
        assert frame["frame"] is True
        assert frame["width"] > 0
        assert frame["height"] > 0

        # The reader retired by the serial udev reports for it: out of the inventory.
        retired = _cli(data_dir, "retire", ID_CARD_SERIAL)
        assert retired.returncode == 0, retired.stderr
        assert json.loads(retired.stdout) == {"retired": [reader], "changed": True}
        assert reader not in {d["device_id"] for d in _listed(data_dir)}
        # A self-test of a retired device is refused with the reason.
        refused = _cli(data_dir, "self-test", reader)
        assert refused.returncode == 1
        assert reader in refused.stderr
        assert running.alive(), running.tail()
    finally:
        running.stop()
