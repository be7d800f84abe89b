"""Test helpers: a real ``fleet-server run`` subprocess, a fake agent on paho, polling.

The fake agent is a plain paho client that publishes hand-made wire messages, so the
server is tested against the wire contract, not against ``edge_agent``.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from govedge_testbed import free_port
from govedge_wire import Birth, Death, Kind, Message, Telemetry, encode, topic_for

T = TypeVar("T")
LISTENING = "fleet-server listening on "


def poll(
    probe: Callable[[], T | None], *, timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last={last!r}")


class FleetServer:
    """``python -m fleet_server run`` in a subprocess, on a free port."""

    def __init__(self, *, mqtt_url: str, database_url: str, workdir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = workdir / f"fleet-server-{self.port}.out"
        self.stderr_path = workdir / f"fleet-server-{self.port}.err"
        self.mqtt_url = mqtt_url
        self.database_url = database_url
        self.env = {**os.environ, **env}
        if "GOVEDGE_CONFIG_SIGNING_KEY" not in self.env:
            # Like the demo, the server signs desired configs (docs/config.md).
            self.env["GOVEDGE_CONFIG_SIGNING_KEY"] = str(config_signing_key(workdir))
        self.proc: subprocess.Popen[bytes] | None = None
        # Every API call authenticates: an admin made in the database before start.
        self.token = admin_token(database_url)
        self.http = httpx.Client(
            base_url=self.url, timeout=5, headers={"Authorization": f"Bearer {self.token}"}
        )

    def start(self, *, timeout: float = 30.0) -> None:
        """Start and wait for the announcement line and ``/readyz``."""
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "fleet_server", "run",
                    "--mqtt-url", self.mqtt_url,
                    "--database-url", self.database_url,
                    "--listen", f"127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=err,
                env=self.env,
            )  # fmt: skip
        poll(lambda: self._alive() and LISTENING in self.stdout(), timeout=timeout, what="listen")
        poll(lambda: self._alive() and self.ready(), timeout=timeout, what="/readyz")

    def _alive(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"fleet-server exited {self.proc.returncode}: {self.stderr()}")
        return True

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> Any:
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()

    def outlet(self, outlet_id: str) -> dict[str, Any] | None:
        response = self.http.get(f"/api/v1/outlets/{outlet_id}")
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_state(self, outlet_id: str, state: str, *, timeout: float = 15.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            row = self.outlet(outlet_id)
            return row if row is not None and row["state"] == state else None

        return poll(probe, timeout=timeout, what=f"{outlet_id} {state}")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/v1/ingest/stats")
        return result

    def stop(self, *, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.http.close()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
                raise
        return self.proc.returncode


def config_signing_key(workdir: Path) -> Path:
    """The workdir's config-signing key, made on first use (shared by its servers)."""
    from fleet_server.config.keys import generate_key_file

    path = workdir / "config-signing.pem"
    if not path.exists():
        generate_key_file(path)
    return path


def admin_token(database_url: str) -> str:
    """Create an admin account in the (upgraded) database and return its API token."""
    from datetime import timedelta

    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.migrate import upgrade
    from fleet_server.security import Role
    from fleet_server.security.users import create_user

    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with make_sessionmaker(engine)() as session:
            new = create_user(
                session,
                name=f"test-admin-{uuid.uuid4().hex[:8]}",
                role=Role.ADMIN,
                ttl=timedelta(hours=2),
                actor="test",
            )
    finally:
        engine.dispose()
    return new.token


def mqtt_client(mqtt_url: str, *, name: str = "test") -> mqtt.Client:
    """A connected paho client with its network loop running."""
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect(host, int(port), keepalive=10)
    client.loop_start()
    return client


class Subscriber:
    """Collects every message on ``topic`` into a queue."""

    def __init__(self, mqtt_url: str, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt_client(mqtt_url, name="sub")
        subscribed = queue.Queue[bool]()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_args: subscribed.put(True)
        self.client.subscribe(topic, qos=1)
        subscribed.get(timeout=10)

    def get(self, *, timeout: float = 15.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FakeAgent:
    """Publishes hand-made uplink messages for one outlet, counting ``seq`` like an agent."""

    def __init__(self, mqtt_url: str, outlet_id: str, *, session: int = 1) -> None:
        self.outlet_id = outlet_id
        self.session = session
        self.seq = 0
        self.client = mqtt_client(mqtt_url, name="agent")

    def publish(self, kind: Kind, payload: bytes) -> None:
        info = self.client.publish(topic_for(self.outlet_id, kind), payload, qos=1)
        info.wait_for_publish(timeout=10)

    def send(self, message: Message) -> None:
        self.publish(Kind(message.kind), encode(message))

    def _next(self) -> int:
        seq, self.seq = self.seq, self.seq + 1
        return seq

    def birth(self, **fields: Any) -> Birth:
        birth = Birth(
            outlet_id=self.outlet_id,
            session=self.session,
            seq=self._next(),
            hostname="outlet-pc-1",
            os="Debian 12",
            devices=[{"device_id": "reader-1", "kind": "id_card_reader"}],
            telemetry_interval_s=5.0,
            keepalive_s=30,
            **({"config_version": 3, "agent_version": "0.1.0-test"} | fields),
        )
        self.send(birth)
        return birth

    def telemetry(self, *, seq: int | None = None, **metrics: float) -> Telemetry:
        message = Telemetry(
            outlet_id=self.outlet_id,
            session=self.session,
            seq=self._next() if seq is None else seq,
            metrics=metrics or {"cpu_percent": 12.5},
        )
        if seq is not None:
            self.seq = seq + 1
        self.send(message)
        return message

    def death(self, *, session: int | None = None) -> None:
        self.send(
            Death(
                outlet_id=self.outlet_id,
                session=self.session if session is None else session,
                seq=0,
                reason="shutdown",
            )
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def started_fleet_server(
    mqtt_url: str, workdir: Path, *, database_url: str | None = None, **env: str
) -> Iterator[FleetServer]:
    """A started ``FleetServer`` on ``database_url`` (default: a fresh SQLite file) with
    its own PKI in ``workdir`` and ``env`` on top; stopped after, and a non-zero exit
    fails the test."""
    fleet = FleetServer(
        mqtt_url=mqtt_url, database_url=database_url or f"sqlite:///{workdir / 'fleet.db'}",
        workdir=workdir, GOVEDGE_PKI_DIR=str(workdir / "pki"), **env,
    )  # fmt: skip
    fleet.start()
    try:
        yield fleet
    finally:
        assert fleet.stop() == 0, fleet.stderr()


def run_fleetctl(
    server: FleetServer, *args: str, code: int = 0, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``fleetctl ARGS`` against ``server`` as its admin (or ``token``); the exit code
    must be ``code``."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "fleetctl"), "--server", server.url,
         "--token", token or server.token, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == code, (result.stdout, result.stderr)
    return result
