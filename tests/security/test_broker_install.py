"""The generated broker config, installed the way docs/security.md tells an operator.

A temporary directory stands for Debian's ``/etc/mosquitto`` (its ``mosquitto.conf``,
with ``pid_file``, persistence, a log file and ``include_dir conf.d``) and for the
directories the package's systemd unit makes for the ``mosquitto`` user. The real
``/usr/sbin/mosquitto`` is started as root, so it drops to ``mosquitto`` right after
reading the config, as the Debian service does. Needs root and the ``mosquitto`` user.
"""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fleet_server.pki import FleetCA
from fleet_server.security.broker_control import reload_broker
from fleet_server.settings import Settings
from govedge_testbed import ServiceUnavailable, free_port, wait_for_port
from govedge_testbed.mosquitto import find_mosquitto
from tests.conftest import IN_CI
from tests.e2e.conftest import BIN, poll, stop_process
from tests.security.conftest import ClientFiles, issue_outlet

DEBIAN_CONF = """\
# Place your local configuration in {etc}/conf.d/
pid_file {run}/mosquitto.pid

persistence true
persistence_location {lib}/

log_dest file {log}/mosquitto.log

include_dir {etc}/conf.d
"""


@dataclass
class Installed:
    """Mosquitto running from the Debian-like layout under ``root``."""

    proc: subprocess.Popen[bytes]
    port: int
    etc: Path
    pid_file: Path
    log: Path
    pki: Path


def _needs_root_and_mosquitto_user() -> str:
    try:
        binary = find_mosquitto()
        pwd.getpwnam("mosquitto")
    except (ServiceUnavailable, KeyError) as exc:
        reason = f"needs mosquitto and its user: {exc}"
    else:
        if os.geteuid() == 0:
            return binary
        reason = "needs root: mosquitto drops to its user only when started as root"
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)  # only outside CI; CI must fail instead (see above)


def _unit_dir(path: Path) -> Path:
    """What Debian's unit does for /run/mosquitto and /var/log/mosquitto."""
    path.mkdir(mode=0o740, parents=True)
    shutil.chown(path, user="mosquitto")
    return path


def _fleet_server(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_BROKER_")}
    return subprocess.run(
        [str(BIN / "fleet-server"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


@pytest.fixture
def installed() -> Iterator[Installed]:
    binary = _needs_root_and_mosquitto_user()
    root = Path(tempfile.mkdtemp(prefix="govedge-debian-"))
    root.chmod(0o755)
    etc, run, log = root / "etc/mosquitto", _unit_dir(root / "run"), _unit_dir(root / "log")
    lib = root / "lib"
    (etc / "conf.d").mkdir(parents=True)
    lib.mkdir()
    shutil.chown(lib, user="mosquitto")
    (etc / "mosquitto.conf").write_text(DEBIAN_CONF.format(etc=etc, run=run, lib=lib, log=log))
    port, pki = free_port(), root / "pki"
    written = _fleet_server(
        "broker-config", "--pki-dir", str(pki), "--out", str(etc / "govedge"),
        "--conf-file", str(etc / "conf.d/govedge.conf"),
        "--port", str(port), "--bind", "127.0.0.1",
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    proc = subprocess.Popen(
        [binary, "-c", str(etc / "mosquitto.conf")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port(port, timeout=10):
            logged = (log / "mosquitto.log").read_text() if (log / "mosquitto.log").exists() else ""
            pytest.fail(f"the installed broker did not listen (exit {proc.poll()}):\n{logged}")
        yield Installed(
            proc=proc,
            port=port,
            etc=etc,
            pid_file=run / "mosquitto.pid",
            log=log / "mosquitto.log",
            pki=pki,
        )
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


def _connects(port: int, files: ClientFiles) -> bool:
    """A fresh MQTT 5 TLS connection with ``files`` is accepted (CONNACK success)."""
    answers: queue.Queue[bool] = queue.Queue()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"install-{files.cert.parent.name}",
        protocol=mqtt.MQTTv5,
    )
    client.tls_set(
        ca_certs=str(files.ca),
        certfile=str(files.cert),
        keyfile=str(files.key),
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    client.on_connect = lambda _c, _u, _f, rc, _p: answers.put(not rc.is_failure)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        return answers.get(timeout=3)
    except queue.Empty:
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_generated_config_runs_as_debian_installs_it(
    installed: Installed, tmp_path: Path
) -> None:
    # The broker dropped to the mosquitto user and wrote Debian's pid file.
    broker = psutil.Process(installed.proc.pid)
    assert broker.uids().effective == pwd.getpwnam("mosquitto").pw_uid
    poll(installed.pid_file.exists, timeout=10)
    assert int(installed.pid_file.read_text()) == installed.proc.pid
    # The CA key stays in its 0700 directory; the broker reads a published CRL copy.
    assert installed.pki.stat().st_mode & 0o077 == 0
    assert not list(installed.etc.rglob("ca.key"))
    conf = (installed.etc / "conf.d/govedge.conf").read_text()
    assert f"crlfile {installed.etc / 'govedge/crl.pem'}" in conf
    assert "pid_file" not in conf

    ca = FleetCA(installed.pki)
    enrolled = issue_outlet(ca, "outlet-installed", tmp_path / "enrolled")
    revoked = issue_outlet(ca, "outlet-revoked", tmp_path / "revoked")
    assert revoked.issued is not None
    assert _connects(installed.port, enrolled)
    assert _connects(installed.port, revoked)

    # A revocation rewrites the published copy; SIGHUP through the pid file reloads it.
    ca.write_crl([(int(revoked.issued.serial_hex, 16), datetime.now(UTC))])
    settings = Settings(pki_dir=installed.pki, broker_pid_file=installed.pid_file)
    assert reload_broker(settings) == (True, f"SIGHUP sent to broker pid {installed.proc.pid}")
    poll(lambda: not _connects(installed.port, revoked), timeout=15)
    assert _connects(installed.port, enrolled)

    # `fleet-server broker-reload` rewrites the CRL from the database (nothing revoked
    # there) into the same copy and reloads through Debian's pid file.
    done = _fleet_server(
        "broker-reload", "--database-url", f"sqlite:///{tmp_path / 'fleet.db'}",
        "--pki-dir", str(installed.pki),
        env={"GOVEDGE_BROKER_PID_FILE": str(installed.pid_file)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    poll(lambda: _connects(installed.port, revoked), timeout=15)
    assert installed.proc.poll() is None, "the broker never restarted"


def test_a_second_pid_file_in_debian_conf_d_is_refused(tmp_path: Path) -> None:
    etc = tmp_path / "etc/mosquitto"
    (etc / "conf.d").mkdir(parents=True)
    (etc / "mosquitto.conf").write_text("pid_file /run/mosquitto/mosquitto.pid\n")
    refused = _fleet_server(
        "broker-config", "--pki-dir", str(tmp_path / "pki"), "--out", str(etc / "govedge"),
        "--conf-file", str(etc / "conf.d/govedge.conf"), "--pid-file", str(tmp_path / "x.pid"),
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"{etc / 'mosquitto.conf'} already declares pid_file" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (etc / "conf.d/govedge.conf").exists()
