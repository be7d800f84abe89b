"""End to end (issue 13): the outlet playbooks, run through the fleet server with real
Ansible, against an outlet PC reached over real SSH.

The PC is Debian's OpenSSH server on a loopback port (``govedge_testbed.sshd``), in a
mount namespace whose ``/opt/govedge``, ``/etc/govedge``, ``/var/lib/govedge``, unit and
udev folders are its own: the playbooks install the production layout at its real
paths. A second outlet is this machine itself (``ansible_connection=local``), with a
Python that does not exist, so its host fails while the SSH one goes through.

The releases are offline bundles built by ``scripts/build-bundle`` and uploaded through
the API (the server signs their manifests). No systemd runs the test machine, so the
test starts the unit's ``ExecStart`` itself, as the unit's user, inside the PC's
namespace, with the unit's ``Environment=``; the unit file is checked by
``systemd-analyze verify`` inside the playbook.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_server.transactions.identity import upstream_idempotency_key
from govedge_testbed import Mosquitto, free_port
from govedge_testbed.sshd import SshHost, find_sshd
from govedge_testbed.upstream import Upstream
from govedge_wire.pii import is_valid_id_number, make_id_number, mask_id_number
from tests.conftest import missing
from tests.e2e.conftest import poll
from tests.e2e.printer_sims import PrinterSims
from tests.server.helpers import FleetServer
from tests.server.playbooks.kit import need_ansible
from tests.server.txkit import serving_upstream, transaction_server

ROOT = Path(__file__).resolve().parents[2]
SSH_OUTLET, LOCAL_OUTLET = "330902-0101", "330902-0102"
REGION = "330902"
OLD, NEW = "1.0.0", "1.1.0"
DONE = frozenset({"successful", "failed", "canceled", "error", "interrupted"})

# One worker builds the module's bundles and outlet host once (xdist would build them per
# worker: docs/development.md).
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("outlet_playbooks")]


def _closed_now_hours() -> dict[str, Any]:
    """Open only three days from now: closed today, so runs are not held back."""
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(time.gmtime().tm_wday + 3) % 7]
    return {day: ["09:00-17:00"]}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two offline bundles of this checkout, as scripts/build-bundle makes them."""
    out = tmp_path_factory.mktemp("bundles")
    made = {}
    for version in (OLD, NEW):
        done = subprocess.run(
            [str(ROOT / "scripts" / "build-bundle"), "--out", str(out), "--version", version],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        made[version] = Path(done.stdout.strip().splitlines()[-1])
    return made


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    need_ansible()
    if find_sshd() is None:
        missing("sshd is not installed (Debian package openssh-server; scripts/bootstrap)")
    host = SshHost(tmp_path_factory.mktemp("outlet-pc"))
    host.start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serving_upstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    broker: Mosquitto,
    upstream: Upstream,
    ssh_host: SshHost,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FleetServer]:
    workdir = tmp_path_factory.mktemp("fleet")
    with transaction_server(
        broker.url, upstream, workdir, ["zhoushan", "hcp"],
        GOVEDGE_PKI_DIR=str(workdir / "pki"),
        GOVEDGE_RELEASES_DIR=str(workdir / "releases"),
        GOVEDGE_PLAYBOOKS_DIR=str(ROOT / "playbooks"),
        GOVEDGE_PLAYBOOK_RUNS_DIR=str(workdir / "runs"),
        GOVEDGE_PLAYBOOK_SSH_KEY=str(ssh_host.client_key),
        GOVEDGE_PLAYBOOK_ALLOW_LOCAL="true",  # the second outlet is this machine
    ) as fleet:  # fmt: skip
        yield fleet


class Pc:
    """The agent on the SSH outlet PC, started as its unit would start it."""

    def __init__(self, host: SshHost, log: Path) -> None:
        self.host = host
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def unit(self) -> str:
        return (self.host.root / "etc/systemd/system/govedge-agent.service").read_text()

    def start(self, **env: str) -> None:
        unit = self.unit()
        exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M)
        user = re.search(r"^User=(.*)$", unit, re.M)
        assert exec_start is not None, unit
        assert user is not None, unit
        environment = dict(
            line.split("=", 1)
            for line in re.findall(r"^Environment=(.*)$", unit, re.M)
        )  # fmt: skip
        environment.update(env)
        # What systemd makes before it starts the service: the CacheDirectory (its
        # bytecode), owned by the unit's user, with the unit's mode.
        cache = re.search(r"^CacheDirectory=(.*)$", unit, re.M)
        mode = re.search(r"^CacheDirectoryMode=(.*)$", unit, re.M)
        group = re.search(r"^Group=(.*)$", unit, re.M)
        assert cache is not None, unit
        assert mode is not None, unit
        assert group is not None, unit
        made = self.host.run_inside(
            ["install", "-d", "-o", user.group(1), "-g", group.group(1), "-m", mode.group(1),
             f"/var/cache/{cache.group(1)}"], timeout=30,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        argv = ["env", "-i", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in environment.items())]
        argv += shlex.split(exec_start.group(1))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.host.inside(["runuser", "-u", user.group(1), "--", *argv]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _register(server: FleetServer, outlet_id: str, host_vars: dict[str, Any]) -> None:
    profile = {"outlet_id": outlet_id, "kind": "township_centre", "region_code": REGION,
               "opening_hours": _closed_now_hours()}  # fmt: skip
    answer = server.http.put("/api/v1/outlet-profiles", json=[profile])
    assert answer.status_code == 200, answer.text
    answer = server.http.put(f"/api/v1/outlets/{outlet_id}/access", json=host_vars)
    assert answer.status_code == 200, answer.text


def _upload(server: FleetServer, bundle: Path, version: str) -> None:
    answer = server.http.post(
        "/api/v1/releases", params={"version": version, "file_name": bundle.name},
        content=bundle.read_bytes(), headers={"Content-Type": "application/octet-stream"},
        timeout=120,
    )  # fmt: skip
    assert answer.status_code in (200, 201), answer.text


def _run(
    server: FleetServer, playbook: str, outlets: list[str], *, check: bool = False, **extra: Any
) -> dict[str, Any]:
    answer = server.http.post(
        "/api/v1/playbook-runs",
        json={"playbook": playbook, "target": {"outlets": outlets}, "extra_vars": extra,
              "check": check},
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["id"]
    run: dict[str, Any] = poll(
        lambda: (r := server.get(f"/api/v1/playbook-runs/{run_id}"))["status"] in DONE and r,
        timeout=600, interval=0.5,
    )  # fmt: skip
    return run


def _hosts(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {host["outlet_id"]: host for host in run["hosts"]}


def _events(server: FleetServer, run_id: int) -> str:
    events = server.get(f"/api/v1/playbook-runs/{run_id}/events")
    items = events["events"] if isinstance(events, dict) else events
    return "\n".join(str(e.get("stdout", "")) for e in items)


def _online(server: FleetServer, outlet_id: str, version: str) -> bool:
    answer = server.http.get(f"/api/v1/outlets/{outlet_id}")
    if answer.status_code != httpx.codes.OK:
        return False
    body = answer.json()
    return bool(body["state"] == "online" and body.get("agent_version") == version)


@pytest.fixture(scope="module")
def provisioned(
    server: FleetServer,
    ssh_host: SshHost,
    broker: Mosquitto,
    bundles: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Pc, dict[str, Any], int]]:
    """Both outlets registered, 1.0.0 uploaded, provision_outlet run once on both; the
    SSH PC's agent started as its unit. (the first run, the PC, the local API port)"""
    _register(server, SSH_OUTLET, ssh_host.inventory_vars())
    _register(server, LOCAL_OUTLET, {"host_vars": {
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
        "govedge_agent_python": "/nonexistent/python3",
    }})  # fmt: skip
    _upload(server, bundles[OLD], OLD)
    port = free_port()
    run = _run(
        server, "provision_outlet.yml", [SSH_OUTLET, LOCAL_OUTLET],
        govedge_agent_version=OLD, govedge_agent_mqtt_url=broker.url,
        govedge_agent_server_url=server.url,
        govedge_agent_settings={"local_api_port": port, "keepalive_s": 5},
    )  # fmt: skip
    pc = Pc(ssh_host, tmp_path_factory.mktemp("agent-log") / "agent.log")
    if _hosts(run)[SSH_OUTLET]["status"] == "changed":
        pc.start()
    try:
        yield pc, run, port
    finally:
        pc.stop()


def _assert_keys_apart(root: Path) -> None:
    """The private key is in the keys dir (0700, key 0600), nothing in DATA_DIR/tls."""
    keys = root / "var/lib/govedge-keys"
    assert oct(keys.stat().st_mode & 0o777) == "0o700"
    assert oct((keys / "key.pem").stat().st_mode & 0o777) == "0o600"
    assert (keys / "cert.pem").exists()
    assert not (root / "var/lib/govedge/tls").exists()
    found = subprocess.run(["find", str(root / "var/lib/govedge"), "-name", "*.pem"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert found.stdout == ""


def test_provision_installs_the_layout_and_the_agent_comes_online(
    server: FleetServer, ssh_host: SshHost, provisioned: tuple[Pc, dict[str, Any], int]
) -> None:
    pc, run, _ = provisioned
    hosts = _hosts(run)
    assert hosts[SSH_OUTLET]["status"] == "changed", _events(server, run["id"])
    # the local host had no usable Python: it alone failed, and the run says so
    assert hosts[LOCAL_OUTLET]["status"] == "failed"
    assert run["status"] == "failed"
    root = ssh_host.root
    assert os.readlink(root / "opt/govedge/current") == f"versions/{OLD}"
    assert os.readlink(root / "opt/govedge/good") == f"versions/{OLD}"
    data = (root / "var/lib/govedge").stat()
    assert oct(data.st_mode & 0o777) == "0o700"
    config = root / "etc/govedge/agent.toml"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert f'outlet_id = "{SSH_OUTLET}"' in config.read_text()
    assert 'keys_dir = "/var/lib/govedge-keys"' in config.read_text()
    _assert_keys_apart(root)  # enrolled with its token, the key outside the data dir
    assert "govedge-devices" in (root / "etc/udev/rules.d/70-govedge.rules").read_text()
    # the unit passes systemd-analyze verify where it is installed
    verify = ssh_host.run_inside(
        ["systemd-analyze", "verify", "/etc/systemd/system/govedge-agent.service"], timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    poll(lambda: _online(server, SSH_OUTLET, OLD), timeout=90, interval=0.5) or pytest.fail(
        pc.tail()
    )
    # The service runs optimized (-OO), its bytecode in the unit's cache, not under /usr.
    cached = sorted((root / "var/cache/govedge/bytecode").rglob("daemon.cpython-*.opt-2.pyc"))
    assert [p.relative_to(root / "var/cache/govedge/bytecode").parts[:4] for p in cached] == [
        ("opt", "govedge", "versions", OLD)
    ]
    assert list((root / "var/cache/govedge/bytecode/usr/lib").rglob("*.opt-2.pyc"))
    # the outbox key was made in the keys dir too: a copy of the data dir opens nothing
    outbox_key = root / "var/lib/govedge-keys/outbox.key"
    assert oct(outbox_key.stat().st_mode & 0o777) == "0o600"
    assert not (root / "var/lib/govedge/outbox.key").exists()
    # the SSH host key is pinned at provisioning
    access = server.get(f"/api/v1/outlets/{SSH_OUTLET}/access")
    assert access["host_key"] == ssh_host.host_key_line()
    # the one-time tokens minted for the run are in none of the run's files now
    runs = Path(server.env["GOVEDGE_PLAYBOOK_RUNS_DIR"])
    leaked = subprocess.run(["grep", "-rlF", "gve_", str(runs)], capture_output=True, text=True)
    assert leaked.stdout == ""


def test_a_second_provision_changes_nothing(
    server: FleetServer, broker: Mosquitto, provisioned: tuple[Pc, dict[str, Any], int]
) -> None:
    _, _, port = provisioned
    again = _run(
        server, "provision_outlet.yml", [SSH_OUTLET],
        govedge_agent_version=OLD, govedge_agent_mqtt_url=broker.url,
        govedge_agent_server_url=server.url,
        govedge_agent_settings={"local_api_port": port, "keepalive_s": 5},
    )  # fmt: skip
    host = _hosts(again)[SSH_OUTLET]
    assert again["status"] == "successful", _events(server, again["id"])
    assert host["changed"] == 0, host
    assert host["failed"] == 0, host
    assert host["ok"] > 10, host
    # a dry run on the provisioned PC: it checks everything and would change nothing
    dry = _run(
        server, "provision_outlet.yml", [SSH_OUTLET], check=True,
        govedge_agent_version=OLD, govedge_agent_mqtt_url=broker.url,
        govedge_agent_server_url=server.url,
        govedge_agent_settings={"local_api_port": port, "keepalive_s": 5},
    )  # fmt: skip
    assert dry["status"] == "successful", _events(server, dry["id"])
    assert _hosts(dry)[SSH_OUTLET]["changed"] == 0


def _agent_devices(ssh_host: SshHost) -> dict[str, str]:
    """The running agent's devices by id and state, asked as the technician would."""
    listed = ssh_host.run_inside(
        ["runuser", "-u", "govedge", "--", "/opt/govedge/good/venv/bin/edge-agent", "device",
         "list", "--data-dir", "/var/lib/govedge", "--json"], timeout=60,
    )  # fmt: skip
    if listed.returncode != 0:
        return {}
    return {d["device_id"]: d["state"] for d in json.loads(listed.stdout)["devices"]}


def test_diagnose_attaches_an_archive_of_every_part_without_citizens_data(
    server: FleetServer, ssh_host: SshHost, broker: Mosquitto,
    provisioned: tuple[Pc, dict[str, Any], int],
) -> None:  # fmt: skip
    pc, _, _ = provisioned
    # The outlet's network printer, so the agent's own inventory has something in it.
    printers = PrinterSims()
    try:
        printer = printers.plug("window-1")
        device = {"profile": "escpos-network-printer", "address": printer.address,
                  "device_id": "window-1-printer", "serial": "PRN-DIAG-0001"}  # fmt: skip
        pc.stop()
        pc.start(GOVEDGE_DEVICES=json.dumps([device]))
        _wait_for(lambda: _agent_devices(ssh_host) == {"window-1-printer": "ready"}, pc, 90)
        poll(lambda: _online(server, SSH_OUTLET, OLD), timeout=90, interval=0.5)
        _diagnose_and_check(server, ssh_host, pc, broker)
    finally:
        pc.stop()
        printers.stop()
        pc.start()


def _diagnose_and_check(server: FleetServer, ssh_host: SshHost, pc: Pc, broker: Mosquitto) -> None:
    citizen = make_id_number("330106", "19900101", 7)
    # a line that leaked a citizen's ID and mobile number into the agent's log
    log = ssh_host.root / "var/lib/govedge/agent.log"
    log.write_text(pc.tail() + f"\nerror: reader returned {citizen} for 13812345678\n")
    run = _run(server, "diagnose_outlet.yml", [SSH_OUTLET],
               govedge_agent_log_file="/var/lib/govedge/agent.log")  # fmt: skip
    assert run["status"] == "successful", _events(server, run["id"])
    # diagnosing changes nothing on the PC: a run reports changed=0
    assert _hosts(run)[SSH_OUTLET]["changed"] == 0, _hosts(run)
    archives = server.get(f"/api/v1/outlets/{SSH_OUTLET}/archives")
    assert len(archives) == 1
    assert archives[0]["run_id"] == run["id"]
    got = server.http.get(f"/api/v1/outlets/{SSH_OUTLET}/archives/{archives[0]['id']}")
    assert got.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(got.content)) as archive:
        files = {
            m.name.split("/", 1)[1]: archive.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in archive.getmembers()
        }
    assert set(files) == {"summary.json", "devices.json", "journal.txt"}
    summary = json.loads(files["summary.json"])
    # the agent's status, in its own words over the technician socket
    agent = summary["agent"]
    assert agent["running"] is True, agent
    assert agent["outlet_id"] == SSH_OUTLET
    assert agent["version"] == OLD
    assert agent["connected"] is True
    assert agent["status"] == f"online as outlet {SSH_OUTLET}"
    # the service as systemd sees it: no systemd runs this test machine, and it says so
    service = summary["service"]
    assert "ActiveState" in service or "systemd" in service.get("error", ""), service
    assert summary["identity"]["outlet_id"] == SSH_OUTLET
    assert summary["install"]["current"] == OLD
    assert summary["outbox"].get("empty") is True, summary["outbox"]
    # disk: the install home, the data dir and the root file system, each with free space
    disk = summary["disk"]
    assert {"/opt/govedge", "/var/lib/govedge", "/"} <= set(disk), disk
    assert all(0 < d["free_bytes"] <= d["total_bytes"] for d in disk.values()), disk
    # clock: the PC's time (this machine's: the same clock as the test's)
    clock = summary["clock"]
    taken = datetime.fromisoformat(clock["utc_now"]).timestamp()
    assert abs(taken - time.time()) < 600, clock
    # the network path: the broker reached over TCP, the fleet API answered over HTTP
    path = summary["network"]["broker"]
    assert path["port"] == broker.port, path
    assert path["connect_ms"] >= 0
    assert path["addresses"], path
    fleet_api = summary["network"]["fleet_api"]
    assert fleet_api["status"] == 200, fleet_api
    assert fleet_api["url"].startswith(server.url)
    assert fleet_api["clock_offset_s"] is not None
    # the agent's OWN inventory: the printer it drives, ready, with its health
    devices = json.loads(files["devices.json"])
    (printer,) = devices["agent"]["devices"]
    assert printer["device_id"] == "window-1-printer", printer
    assert printer["kind"] == "ticket_printer"
    assert printer["state"] == "ready"
    assert printer["health"], printer
    assert devices["agent"]["retired"] == []
    assert "usb" in devices  # what udev sees beside it (nothing plugged here)
    # the recent log, masked
    journal = files["journal.txt"]
    assert journal.count("\n") > 5
    assert mask_id_number(citizen) in journal
    assert "138****5678" in journal
    everything = "\n".join(files.values())
    assert citizen not in everything
    assert "13812345678" not in everything
    # no text in the archive still holds an ID card or mobile number (numbers the PC
    # measured, such as free bytes, are figures, not text)
    texts = [journal, *_strings(summary), *_strings(devices)]
    assert not [n for t in texts for n in re.findall(r"(?<!\d)\d{17}[\dXx](?!\d)", t)
                if is_valid_id_number(n.upper())]  # fmt: skip
    assert not [t for t in texts if re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", t)]


def _strings(value: Any) -> Iterator[str]:
    """Every string (keys included) in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _restart_online(server: FleetServer, pc: Pc, version: str) -> None:
    """What the handler's restart does where systemd runs, then the outlet online."""
    pc.stop()
    pc.start()
    _wait_for(lambda: _online(server, SSH_OUTLET, version), pc)


def _wait_for(check: Any, pc: Pc, timeout: float = 180) -> None:
    """``poll``, failing with the agent's log."""
    try:
        poll(check, timeout=timeout, interval=0.5)
    except pytest.fail.Exception:
        pytest.fail(f"not met within {timeout} s; the agent's log:\n{pc.tail()}")


def _serials(server: FleetServer) -> set[str]:
    return {c["serial"] for c in server.get(f"/api/v1/outlets/{SSH_OUTLET}/certificates")}


def test_upgrade_and_downgrade_are_idempotent_and_dry_runs_change_nothing(
    server: FleetServer, ssh_host: SshHost, bundles: dict[str, Path], broker: Mosquitto,
    provisioned: tuple[Pc, dict[str, Any], int],
) -> None:  # fmt: skip
    pc, _, port = provisioned
    root = ssh_host.root
    _upload(server, bundles[NEW], NEW)
    # provisioning the installed PC with another version is refused: upgrades go
    # through upgrade_agent (trial, health proof, rollback), not a second install
    refused = _run(
        server, "provision_outlet.yml", [SSH_OUTLET],
        govedge_agent_version=NEW, govedge_agent_mqtt_url=broker.url,
        govedge_agent_server_url=server.url,
        govedge_agent_settings={"local_api_port": port, "keepalive_s": 5},
    )  # fmt: skip
    assert refused["status"] == "failed", _events(server, refused["id"])
    assert "use upgrade_agent.yml" in _events(server, refused["id"])
    assert _hosts(refused)[SSH_OUTLET]["changed"] == 0
    assert not (root / f"opt/govedge/versions/{NEW}").exists()
    # a dry run of the upgrade says it would change the PC, and changes nothing
    dry = _run(server, "upgrade_agent.yml", [SSH_OUTLET], check=True, govedge_agent_version=NEW)
    assert dry["status"] == "successful", _events(server, dry["id"])
    assert _hosts(dry)[SSH_OUTLET]["changed"] >= 1
    assert "a real run installs 1.1.0" in _events(server, dry["id"])
    assert not (root / f"opt/govedge/update/downloads/{NEW}").exists()
    assert os.readlink(root / "opt/govedge/current") == f"versions/{OLD}"
    # the upgrade
    run = _run(server, "upgrade_agent.yml", [SSH_OUTLET], govedge_agent_version=NEW)
    assert run["status"] == "successful", _events(server, run["id"])
    assert _hosts(run)[SSH_OUTLET]["changed"] >= 1
    assert os.readlink(root / "opt/govedge/current") == f"versions/{NEW}"
    _restart_online(server, pc, NEW)
    # the same version again, for real and dry: changed=0
    for check in (False, True):
        again = _run(server, "upgrade_agent.yml", [SSH_OUTLET], check=check,
                     govedge_agent_version=NEW)  # fmt: skip
        assert again["status"] == "successful", _events(server, again["id"])
        assert _hosts(again)[SSH_OUTLET]["changed"] == 0, (check, _events(server, again["id"]))
    # back down to the previous release: the same playbook, the same checks
    down = _run(server, "upgrade_agent.yml", [SSH_OUTLET], govedge_agent_version=OLD)
    assert down["status"] == "successful", _events(server, down["id"])
    assert _hosts(down)[SSH_OUTLET]["changed"] >= 1
    assert f"current switched from {NEW}" in _events(server, down["id"])
    assert os.readlink(root / "opt/govedge/current") == f"versions/{OLD}"
    _restart_online(server, pc, OLD)
    # ...and it holds: the downgraded agent proved healthy, good points at it too
    _wait_for(lambda: os.readlink(root / "opt/govedge/good") == f"versions/{OLD}", pc)
    again = _run(server, "upgrade_agent.yml", [SSH_OUTLET], govedge_agent_version=OLD)
    assert again["status"] == "successful", _events(server, again["id"])
    assert _hosts(again)[SSH_OUTLET]["changed"] == 0, _events(server, again["id"])


def test_rotate_certificate_when_asked_or_due_and_not_again(
    server: FleetServer, ssh_host: SshHost, provisioned: tuple[Pc, dict[str, Any], int]
) -> None:
    before = _serials(server)
    key = (ssh_host.root / "var/lib/govedge-keys/key.pem").read_bytes()
    # a dry run that asks for a rotation says it would rotate, and rotates nothing
    dry = _run(server, "rotate_certificate.yml", [SSH_OUTLET], check=True,
               govedge_agent_rotate_now=True)  # fmt: skip
    assert dry["status"] == "successful", _events(server, dry["id"])
    assert _hosts(dry)[SSH_OUTLET]["changed"] == 1
    assert "would renew" in _events(server, dry["id"])
    assert _serials(server) == before
    assert (ssh_host.root / "var/lib/govedge-keys/key.pem").read_bytes() == key
    # asked: a new key and certificate now
    run = _run(server, "rotate_certificate.yml", [SSH_OUTLET], govedge_agent_rotate_now=True)
    assert run["status"] == "successful", _events(server, run["id"])
    assert _hosts(run)[SSH_OUTLET]["changed"] == 1
    rotated = _serials(server)
    assert len(rotated - before) == 1
    assert (ssh_host.root / "var/lib/govedge-keys/key.pem").read_bytes() != key
    _assert_keys_apart(ssh_host.root)  # the new key went where the old one was
    # not asked, and the certificate (90 days) is not within 30 days of its end: nothing
    again = _run(server, "rotate_certificate.yml", [SSH_OUTLET])
    assert again["status"] == "successful", _events(server, again["id"])
    assert _hosts(again)[SSH_OUTLET]["changed"] == 0
    assert "not renewed: valid until" in _events(server, again["id"])
    assert _serials(server) == rotated
    # due: a threshold beyond the certificate's end rotates it
    due = _run(server, "rotate_certificate.yml", [SSH_OUTLET],
               govedge_agent_rotate_within_days=365)  # fmt: skip
    assert due["status"] == "successful", _events(server, due["id"])
    assert _hosts(due)[SSH_OUTLET]["changed"] == 1
    assert len(_serials(server) - rotated) == 1


def test_decommission_refuses_while_the_outbox_holds_cases_then_goes_through(
    server: FleetServer, ssh_host: SshHost, upstream: Upstream,
    provisioned: tuple[Pc, dict[str, Any], int],
) -> None:  # fmt: skip
    pc, _, port = provisioned
    added = ssh_host.run_inside(
        ["runuser", "-u", "govedge", "--", "/opt/govedge/good/venv/bin/edge-agent", "apps",
         "add", "counter-web", "--data-dir", "/var/lib/govedge"], timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().split()[-1]
    # the agent cut off from the broker: the clerk's case is accepted into the outbox
    pc.stop()
    pc.start(GOVEDGE_MQTT_URL="mqtt://127.0.0.1:9")
    case = {
        "item_code": "000101",
        "region_code": REGION,
        "window": "1",
        "clerk": "S007",
        "applicant": {"name": "张三丰", "id_number": make_id_number("330106", "19900101", 9)},
    }
    clerk = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip

    last: list[str] = []

    def accepted() -> str | None:
        try:
            answer = clerk.post(
                "/v1/submissions", json=case, headers={"Idempotency-Key": "decommission-case-1"}
            )
        except httpx.TransportError as exc:
            last[:] = [repr(exc)]
            return None
        last[:] = [f"{answer.status_code} {answer.text[:300]}"]
        return str(answer.json()["tx_id"]) if answer.status_code in (200, 201, 202) else None

    deadline = time.monotonic() + 60
    with clerk:
        while (tx_id := accepted()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"the case was not accepted: {last} {pc.tail()}")
            time.sleep(0.5)
    refused = _run(server, "decommission_outlet.yml", [SSH_OUTLET], govedge_agent_drain_timeout_s=0)
    assert refused["status"] == "failed"
    assert "outbox still holds" in _events(server, refused["id"])
    assert (ssh_host.root / "opt/govedge/current").exists()  # nothing removed
    certificates = server.get(f"/api/v1/outlets/{SSH_OUTLET}/certificates")
    assert all(c["revoked_at"] is None for c in certificates[:1])
    # back online: the case reaches upstream, the outbox empties, the decommission runs
    pc.stop()
    pc.start()
    # a dry run first: it waits for the outbox like a real one, then removes nothing,
    # keeps no archive and has nothing revoked
    dry = _run(server, "decommission_outlet.yml", [SSH_OUTLET], check=True,
               govedge_agent_drain_timeout_s=120)  # fmt: skip
    assert dry["status"] == "successful", _events(server, dry["id"])
    assert _hosts(dry)[SSH_OUTLET]["changed"] >= 1  # what a real run would remove
    assert (ssh_host.root / "opt/govedge/current").exists()
    assert (ssh_host.root / "var/lib/govedge-keys/key.pem").exists()
    assert not (ssh_host.root / "var/backups/govedge").exists()
    names = [a["name"] for a in server.get(f"/api/v1/outlets/{SSH_OUTLET}/archives")]
    assert "decommissioned.tar.gz" not in names
    certificates = server.get(f"/api/v1/outlets/{SSH_OUTLET}/certificates")
    assert all(c["revoked_at"] is None for c in certificates[:1])  # the one in use
    run = _run(server, "decommission_outlet.yml", [SSH_OUTLET], govedge_agent_drain_timeout_s=120)
    assert run["status"] == "successful", _events(server, run["id"])
    pc.stop()  # what stopping the service does where systemd runs
    assert not (ssh_host.root / "opt/govedge/current").exists()
    assert not (ssh_host.root / "etc/systemd/system/govedge-agent.service").exists()
    backup = ssh_host.root / f"var/backups/govedge/{SSH_OUTLET}-decommissioned.tar.gz"
    with tarfile.open(backup) as kept:
        members = kept.getnames()
    assert "var/lib/govedge/outbox.db" in members  # the data dir is kept...
    assert not [m for m in members if m.endswith(".pem") or "/tls" in m]  # ...never the key
    assert "var/lib/govedge/outbox.key" not in members  # nor the outbox's: ciphertext only
    assert not (ssh_host.root / "var/lib/govedge-keys").exists()
    assert not (ssh_host.root / "var/cache/govedge").exists()
    names = [a["name"] for a in server.get(f"/api/v1/outlets/{SSH_OUTLET}/archives")]
    assert "decommissioned.tar.gz" in names
    certificates = server.get(f"/api/v1/outlets/{SSH_OUTLET}/certificates")
    assert certificates
    assert all(c["revoked_at"] is not None for c in certificates)
    # the case the clerk saw accepted reaches upstream (the server delivers on its
    # own time once it holds the case), once
    key = upstream_idempotency_key(SSH_OUTLET, tx_id)
    poll(lambda: upstream.accepted_count[key] >= 1, timeout=60, interval=0.5)
    assert upstream.accepted_count[key] == 1
