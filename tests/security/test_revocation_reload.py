"""Revocation without a broker restart (docs/security.md, "Revocation").

Checked on this machine's Mosquitto (Debian 12, 2.0.11): SIGHUP makes the TLS listener
reread its ``crlfile``. The broker here runs the config ``fleet-server broker-config
--pid-file`` writes; the fleet server, told that pid file, signals the broker after a
revocation and ends the outlet's open sessions (the dynamic-security plugin the config
loads; ``end_session``'s client-id takeover is the fallback without it). Every
part is real: Mosquitto in TLS mode, ``fleet-server run``, ``edge-agent enroll`` and
``edge-agent run`` over ``mqtts://``.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from fleet_server.api.security_schemas import BROKER_DONE_STEP, BROKER_RELOAD_STEP
from fleet_server.broker_config import write_broker_config
from fleet_server.pki import FleetCA
from fleet_server.security.broker_control import end_session, reload_broker
from fleet_server.settings import Settings
from govedge_testbed import Mosquitto, TlsMaterial, free_port
from govedge_wire import agent_client_id
from tests.conftest import started_service
from tests.e2e.conftest import BIN, Agent, Server, poll, start_server, stop_process
from tests.security.conftest import ClientFiles, TlsClient, issue_outlet

OUTLET = "outlet-revoke-1"


@dataclass
class Broker:
    """A TLS Mosquitto from ``broker-config --pid-file``; ``pid`` is what it wrote."""

    mosquitto: Mosquitto
    pid_file: Path

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def log_since(self, offset: int) -> str:
        with self.mosquitto.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.mosquitto.log_path.stat().st_size


@pytest.fixture
def broker(fleet_ca: FleetCA, tmp_path: Path) -> Iterator[Broker]:
    port = free_port()
    pid_file = tmp_path / "mosquitto.pid"
    files = write_broker_config(fleet_ca, tmp_path / "broker", port=port, pid_file=pid_file)
    assert f"pid_file {pid_file}" in files.conf.read_text()
    fleet_ca.ensure_server_client()
    mosquitto = started_service(
        lambda: Mosquitto(port=port, workdir=tmp_path / "mosq", tls=TlsMaterial(config=files.conf))
    )
    poll(pid_file.exists, timeout=10)
    yield Broker(mosquitto=mosquitto, pid_file=pid_file)
    mosquitto.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _refused(broker: Mosquitto, files: ClientFiles) -> bool:
    """A fresh TLS connection with ``files`` gets no CONNACK (handshake refused)."""
    client = TlsClient(broker, files)
    try:
        client.wait_connected(timeout=3)
    except queue.Empty:
        return True
    finally:
        client.close()
    return False


def _settings(broker: Mosquitto, pki_dir: Path, **extra: object) -> Settings:
    return Settings(mqtt_url=broker.url, pki_dir=pki_dir, **extra)  # type: ignore[arg-type]


def test_sighup_reloads_the_crl_for_new_connections(
    broker: Broker, fleet_ca: FleetCA, pki_dir: Path, tmp_path: Path
) -> None:
    """The fact the rest relies on, on this machine's Mosquitto, through both hooks."""
    pid = broker.pid
    files = issue_outlet(fleet_ca, "outlet-hup", tmp_path / "hup")
    assert files.issued is not None
    assert not _refused(broker.mosquitto, files)
    fleet_ca.write_crl([(int(files.issued.serial_hex, 16), datetime.now(UTC))])
    # Rewritten but not reloaded: the broker still holds the old CRL.
    assert not _refused(broker.mosquitto, files)

    done, how = reload_broker(_settings(broker.mosquitto, pki_dir, broker_pid_file=broker.pid_file))
    assert done, how
    poll(lambda: _refused(broker.mosquitto, files), timeout=15)

    # Unrevoked again, reloaded by the command hook this time: accepted again.
    fleet_ca.write_crl([])
    command = f"kill -HUP {pid}"
    done, how = reload_broker(_settings(broker.mosquitto, pki_dir, broker_reload_command=command))
    assert done, how
    poll(lambda: not _refused(broker.mosquitto, files), timeout=15)
    assert broker.pid == pid
    assert _alive(pid), "the broker was never restarted"


def test_reload_failures_are_reported_not_raised(broker: Broker, pki_dir: Path) -> None:
    url = broker.mosquitto
    assert reload_broker(_settings(url, pki_dir)) == (
        False,
        "no broker reload configured (GOVEDGE_BROKER_PID_FILE or _RELOAD_COMMAND)",
    )
    done, how = reload_broker(_settings(url, pki_dir, broker_pid_file=pki_dir / "missing.pid"))
    assert not done
    assert "unreadable" in how
    done, how = reload_broker(_settings(url, pki_dir, broker_reload_command="false"))
    assert not done
    assert "exited 1" in how
    done, how = reload_broker(_settings(url, pki_dir, broker_reload_command="/nonexistent/x"))
    assert not done
    assert "failed" in how


def test_end_session_closes_an_open_connection(
    broker: Broker, fleet_ca: FleetCA, pki_dir: Path, tmp_path: Path
) -> None:
    files = issue_outlet(fleet_ca, "outlet-open", tmp_path / "open")
    client = TlsClient(broker.mosquitto, files, client_id=agent_client_id("outlet-open"))
    try:
        assert client.wait_connected() == 0
        assert client.client.is_connected()
        done, what = end_session(_settings(broker.mosquitto, pki_dir), "outlet-open")
        assert done, what
        poll(lambda: not client.client.is_connected(), timeout=10)
    finally:
        client.close()
    log = broker.log_since(0)
    assert "Client govedge-outlet-open already connected, closing old connection" in log


def _enroll(server: Server, data_dir: Path) -> None:
    created = httpx.post(
        f"{server.url}/api/v1/enrollments",
        json={"outlet_id": OUTLET, "ttl_s": 600},
        headers=server.headers,
        timeout=10,
    )
    assert created.status_code == httpx.codes.CREATED, created.text
    result = subprocess.run(
        [str(BIN / "edge-agent"), "enroll", "--server", server.url,
         "--token", created.json()["token"], "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(120)
def test_revocation_refuses_the_outlet_without_a_broker_restart(
    broker: Broker, fleet_ca: FleetCA, pki_dir: Path, tmp_path: Path
) -> None:
    server = start_server(
        broker.mosquitto.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={"GOVEDGE_PKI_DIR": str(pki_dir), "GOVEDGE_BROKER_PID_FILE": str(broker.pid_file)},
    )
    data_dir = tmp_path / "agent"
    agent = Agent(
        outlet_id=OUTLET,
        data_dir=data_dir,
        mqtt_url=broker.mosquitto.url,
        log=tmp_path / "agent.log",
        extra=["--reconnect-base", "0.2", "--reconnect-cap", "1"],
    )
    try:
        _enroll(server, data_dir)
        agent.start()
        poll(lambda: server.state(OUTLET) == "online", timeout=30)
        pid = broker.pid
        other = issue_outlet(fleet_ca, "outlet-still-fine", tmp_path / "other")
        offset = broker.log_size()

        revoked = httpx.post(
            f"{server.url}/api/v1/outlets/{OUTLET}/revoke", headers=server.headers, timeout=30
        )
        assert revoked.status_code == httpx.codes.OK, revoked.text
        answer = revoked.json()
        assert answer["broker_reloaded"] is True, answer
        assert answer["session_ended"] is True, answer
        assert answer["next_step"] == BROKER_DONE_STEP

        # The open session was ended, and the agent's reconnects meet the reloaded CRL.
        def refused_reconnects() -> int:
            return broker.log_since(offset).count("certificate verify failed")

        poll(lambda: refused_reconnects() >= 2, timeout=30)
        after = broker.log_since(offset)
        # Closed by the dynamic-security plugin (by identity), not by a client-id takeover.
        assert "Client govedge-outlet-revoke-1 been disconnected by administrative action" in after
        reconnected = re.findall(rf"New client connected .* u'{re.escape(OUTLET)}'\)", after)
        assert reconnected == [], reconnected
        poll(lambda: server.state(OUTLET) != "online", timeout=30)

        # The outlet's own key and certificate are refused; another outlet is not.
        own = ClientFiles(
            ca=data_dir / "tls" / "ca.pem",
            cert=data_dir / "tls" / "cert.pem",
            key=data_dir / "tls" / "key.pem",
        )
        assert _refused(broker.mosquitto, own)
        assert not _refused(broker.mosquitto, other)
        # All without a restart: the same broker process throughout.
        assert broker.pid == pid
        assert _alive(pid)
        assert agent.proc is not None
        assert agent.proc.poll() is None, "the agent keeps running and retrying"
    finally:
        agent.stop()
        stop_process(server.proc)


def test_without_a_reload_hook_the_answer_says_what_to_do(
    broker: Broker, pki_dir: Path, tmp_path: Path
) -> None:
    server = start_server(
        broker.mosquitto.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={"GOVEDGE_PKI_DIR": str(pki_dir)},
    )
    try:
        _enroll(server, tmp_path / "agent")
        revoked = httpx.post(
            f"{server.url}/api/v1/outlets/{OUTLET}/revoke", headers=server.headers, timeout=30
        )
        assert revoked.status_code == httpx.codes.OK, revoked.text
        answer = revoked.json()
        assert answer["broker_reloaded"] is False
        assert answer["session_ended"] is False
        assert answer["next_step"] == BROKER_RELOAD_STEP
    finally:
        stop_process(server.proc)


def test_broker_reload_cli_rewrites_the_crl_from_the_database_and_reloads(
    broker: Broker, fleet_ca: FleetCA, pki_dir: Path, tmp_path: Path
) -> None:
    """``fleet-server broker-reload``: the CRL comes from the database (here: nothing
    revoked), so a certificate only a hand-written CRL listed is admitted again."""
    files = issue_outlet(fleet_ca, "outlet-cli", tmp_path / "cli")
    assert files.issued is not None
    fleet_ca.write_crl([(int(files.issued.serial_hex, 16), datetime.now(UTC))])
    assert reload_broker(_settings(broker.mosquitto, pki_dir, broker_pid_file=broker.pid_file))[0]
    poll(lambda: _refused(broker.mosquitto, files), timeout=15)

    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    argv = [str(BIN / "fleet-server"), "broker-reload",
            "--database-url", database, "--pki-dir", str(pki_dir)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_BROKER_")}
    unconfigured = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert unconfigured.returncode == 1
    assert "no broker reload configured" in unconfigured.stderr
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "GOVEDGE_BROKER_PID_FILE": str(broker.pid_file)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"SIGHUP sent to broker pid {broker.pid}" in done.stdout
    poll(lambda: not _refused(broker.mosquitto, files), timeout=15)
