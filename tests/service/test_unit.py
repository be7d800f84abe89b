"""The agent's systemd unit: ``systemd-analyze verify`` clean, and the agent run exactly
as the unit runs it, telling the service manager it is ready and alive.

No systemd runs here (no PID 1 service manager in the test machine), so the second test
plays its part: it parses the rendered unit, runs ``ExecStart`` with the unit's
``Environment=`` plus what systemd adds (``NOTIFY_SOCKET`` pointing at a datagram socket
the test owns, ``WATCHDOG_USEC`` and a ``WATCHDOG_PID`` of the main process), against a
real Mosquitto. The hardening directives themselves (``ProtectSystem=`` and so on) are
applied only by systemd: ``systemd-analyze verify`` checks their syntax, nothing here
runs under them, so a test of its own asserts each hardening and limit line is there
with the value the outlet needs (and that every device subsystem the udev rules open is
allowed through ``DevicePolicy=closed``).

The generated udev rules are not loaded by a real udevd here: ``udevadm`` is not
installed on this machine, and Debian 12's udev (systemd 252) has no ``udevadm
verify`` (systemd 253+); ``udevadm test`` would need the rules installed in
``/etc/udev/rules.d`` and a device under ``/sys``. tests/service/test_udev_rules.py
checks them against udev's rule grammar instead.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from govedge_wire import Birth
from tests.agent.harness import Observer, poll
from tests.conftest import missing

EDGE_AGENT = Path(sys.executable).parent / "edge-agent"
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.timeout(120)


def _install_home(root: Path) -> Path:
    """An install home whose only version's ``edge-agent`` is this environment's."""
    home = root / "govedge"
    (home / "versions" / "1.0.0" / "venv" / "bin").mkdir(parents=True)
    (home / "versions" / "1.0.0" / "venv" / "bin" / "edge-agent").symlink_to(EDGE_AGENT)
    (home / "good").symlink_to("versions/1.0.0")
    (home / "current").symlink_to("versions/1.0.0")
    return home


def _render(*args: str) -> str:
    done = subprocess.run(
        [str(EDGE_AGENT), "service", "unit", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        missing("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    home = _install_home(tmp_path)
    unit = tmp_path / "govedge-agent.service"
    unit.write_text(_render("--home", str(home)))
    checked = _verify(unit)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == ""
    # The keys live in a state directory of their own, apart from the data dir.
    directives = _directives(unit.read_text())
    assert directives["StateDirectory"] == ["govedge govedge-keys"]
    assert directives["StateDirectoryMode"] == ["0700"]
    assert "GOVEDGE_KEYS_DIR=/var/lib/govedge-keys" in directives["Environment"]
    # Two malloc arenas: the camera's stills no longer grow the agent (docs/performance.md).
    assert "MALLOC_ARENA_MAX=2" in directives["Environment"]
    # -OO (no docstrings, no asserts: ~2.7 MiB less), with a bytecode cache of its own
    # because /usr is read-only to the service and holds no optimized bytecode.
    assert "PYTHONOPTIMIZE=2" in directives["Environment"]
    assert "PYTHONPYCACHEPREFIX=/var/cache/govedge/bytecode" in directives["Environment"]
    assert directives["CacheDirectory"] == ["govedge"]
    # The check is real: a unit whose supervisor is not installed is refused.
    (home / "good").unlink()
    broken = _verify(unit)
    assert broken.returncode != 0
    assert "edge-agent" in broken.stderr


# The /proc/devices classes DeviceAllow= must name for the nodes each udev subsystem
# of the rules makes (DevicePolicy=closed refuses every other device node).
_CLASSES_OF_SUBSYSTEM = {
    "usb": {"usb_device"},
    "tty": {"ttyUSB", "ttyACM"},
    "usbmisc": {"usb"},
    "video4linux": {"video4linux"},
    "hidraw": {"hidraw"},
}


def _size_bytes(value: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def test_the_unit_carries_its_hardening_restart_watchdog_and_limits(tmp_path: Path) -> None:
    home = _install_home(tmp_path)
    unit = _directives(_render("--home", str(home), "--user", "govedge",
                               "--device-group", "govedge-devices"))  # fmt: skip
    one = {key: values[0] for key, values in unit.items() if len(values) == 1}
    # restart policy and watchdog: systemd restarts a dead or hung agent
    assert one["Type"] == "notify"
    assert one["Restart"] == "on-failure"
    assert 0 < float(one["RestartSec"]) <= 30
    assert 0 < float(one["WatchdogSec"]) <= 300
    assert int(one["StartLimitBurst"]) >= 3
    # an unprivileged user, devices through the device group only
    assert one["User"] == "govedge"
    assert one["SupplementaryGroups"] == "govedge-devices"
    assert one["UMask"] == "0077"
    # hardening: read-only system but the install home, no privilege gain
    assert one["ProtectSystem"] == "strict"
    assert one["ReadWritePaths"] == str(home)
    for directive in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables",
                      "ProtectKernelModules", "ProtectControlGroups", "RestrictSUIDSGID",
                      "RestrictNamespaces", "LockPersonality"):  # fmt: skip
        assert one[directive] == "yes", directive
    assert set(one["RestrictAddressFamilies"].split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK",
    }  # fmt: skip
    # resource limits: memory (soft below hard), tasks, CPU
    assert 0 < _size_bytes(one["MemoryHigh"]) < _size_bytes(one["MemoryMax"]) <= 1 << 30
    assert 0 < int(one["TasksMax"]) <= 1024
    assert one["CPUQuota"].endswith("%")
    # devices: none but the character classes the udev rules hand the device group
    assert one["DevicePolicy"] == "closed"
    allowed = set()
    for entry in unit["DeviceAllow"]:
        name, mode = entry.split()
        assert name.startswith("char-"), entry
        assert mode == "rw", entry
        allowed.add(name.removeprefix("char-"))
    rules = subprocess.run([str(EDGE_AGENT), "service", "udev-rules"], capture_output=True,
                           text=True, timeout=60, check=True).stdout  # fmt: skip
    subsystems = set(re.findall(r'^SUBSYSTEM=="(\w+)"', rules, re.M))
    assert subsystems, rules
    for subsystem in subsystems:
        assert _CLASSES_OF_SUBSYSTEM[subsystem] <= allowed, (subsystem, allowed)


def test_bad_layout_values_are_refused_with_a_reason() -> None:
    for args, says in (
        (["--home", "relative/path"], "absolute path"),
        (["--home", "/opt/gov edge"], "absolute path"),
        (["--user", "Root;rm"], "user"),
        (["--data-dir", "/srv/govedge"], "StateDirectory"),
        (["--keys-dir", "/etc/govedge/tls"], "StateDirectory"),
        (["--keys-dir", "/var/lib/govedge"], "kept apart"),
    ):
        done = subprocess.run([str(EDGE_AGENT), "service", "unit", *args],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 2, args
        assert says in done.stderr, (args, done.stderr)
        assert done.stdout == ""


def _directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


class NotifySocket:
    """The service manager's end of the notify protocol: every datagram, timed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.received: list[tuple[float, dict[str, str]]] = []

    def drain(self) -> list[tuple[float, dict[str, str]]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return self.received
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.received.append((time.monotonic(), fields))

    def having(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(at, f) for at, f in self.drain() if key in f]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # The unit's data dir is its StateDirectory, /var/lib/NAME; a unique one, removed after.
    path = Path("/var/lib") / f"govedge-test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def keys_dir(data_dir: Path) -> Iterator[Path]:
    path = data_dir.with_name(f"{data_dir.name}-keys")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_agent_run_as_the_unit_runs_it_says_ready_once_online_and_pings_the_watchdog(
    tmp_path: Path, broker: Mosquitto, outlet_id: str, data_dir: Path, keys_dir: Path
) -> None:
    home = _install_home(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text(
        f'mqtt_url = "{broker.url}"\noutlet_id = "{outlet_id}"\nlocal_api_port = 0\n'
        "reconnect_cap_s = 1.0\n"
    )
    unit = _directives(_render("--home", str(home), "--config", str(config),
                               "--data-dir", str(data_dir),
                               "--keys-dir", str(keys_dir)))  # fmt: skip
    # An outlet enrolled before the keys had a directory of their own.
    (data_dir / "tls").mkdir(parents=True, mode=0o700)
    old_keys = b'{"k1": "' + b"A" * 43 + b'="}'
    (data_dir / "tls" / "config-keys.json").write_bytes(old_keys)
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["all"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVEDGE_", "NOTIFY_"))}
    for assignment in unit["Environment"]:
        key, value = assignment.split("=", 1)
        env[key] = value
    notify = NotifySocket(tmp_path / "notify.sock")
    env["NOTIFY_SOCKET"] = str(notify.path)
    env["WATCHDOG_USEC"] = str(int(float(unit["WatchdogSec"][0]) * 1_000_000 / 30))  # 2 s
    # systemd names the main process here, whose pid is not known before it starts; any
    # pid but the agent's is the same to the agent, and the supervisor drops it for its
    # child so the agent pings on the service's behalf.
    env["WATCHDOG_PID"] = str(os.getpid())
    observer = Observer(port=broker.port, outlet_id=outlet_id)
    log = (tmp_path / "service.log").open("wb")
    main = subprocess.Popen(shlex.split(unit["ExecStart"][0]), env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        poll(lambda: bool(notify.having("READY")), timeout=60, what="READY=1")
        ready = notify.having("READY")
        # READY follows the broker's acknowledgement of the birth; the observer's copy
        # of it is on its way.
        poll(lambda: any(isinstance(m, Birth) for m in observer.all_messages()),
             timeout=10, what="the birth the agent was ready after")  # fmt: skip
        assert ready[0][1]["READY"] == "1"
        assert f"online as outlet {outlet_id}" in ready[0][1]["STATUS"]
        # The unit's GOVEDGE_KEYS_DIR took them out of the data dir at start.
        assert (keys_dir / "config-keys.json").read_bytes() == old_keys
        assert not (data_dir / "tls").exists()
        poll(lambda: len(notify.having("WATCHDOG")) >= 3, timeout=30, what="watchdog pings")
        # A hung agent stops pinging (systemd would then restart the service).
        (agent,) = [int(p) for p in Path(f"/proc/{main.pid}/task/{main.pid}/children")
                    .read_text().split()]  # fmt: skip
        # The unit's allocator setting reaches the agent through the supervisor.
        environ = Path(f"/proc/{agent}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_ARENA_MAX=2" in environ
        assert b"PYTHONOPTIMIZE=2" in environ
        os.kill(agent, signal.SIGSTOP)
        time.sleep(1.5)  # let a ping already on its way arrive
        frozen_at = len(notify.having("WATCHDOG"))
        time.sleep(3)  # more than a ping interval (1 s here) times two
        assert len(notify.having("WATCHDOG")) == frozen_at
        os.kill(agent, signal.SIGCONT)
        poll(lambda: len(notify.having("WATCHDOG")) > frozen_at, timeout=30, what="pings again")
        # systemctl stop: SIGTERM to the main process; the agent says STOPPING=1.
        main.send_signal(signal.SIGTERM)
        assert main.wait(30) == 0
        assert notify.having("STOPPING")
    finally:
        if main.poll() is None:
            os.killpg(main.pid, signal.SIGKILL)
            main.wait(10)
        log.close()
        observer.close()
        notify.close()
