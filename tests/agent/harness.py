"""Test harness: the agent as a real subprocess and a plain paho observer."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import JsonValue

from govedge_wire import (
    SERVER_STATE_TOPIC,
    Command,
    Kind,
    Message,
    ServerState,
    WireError,
    decode,
    encode,
    topic_for,
)

M = TypeVar("M", bound=Message)


def poll(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Wait until ``condition()`` is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Received:
    """One message the observer saw."""

    at: float
    topic: str
    payload: bytes
    message: Message | None


@dataclass
class Observer:
    """A plain paho MQTT 5 client that records every uplink of one outlet."""

    port: int
    outlet_id: str
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._closed = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"observer-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise AssertionError("observer could not subscribe")

    def _on_connect(self, client: mqtt.Client, *_args: object) -> None:
        client.subscribe(f"govedge/v1/{self.outlet_id}/up/#", qos=1)

    def _on_subscribe(self, *_args: object) -> None:
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        try:
            message: Message | None = decode(msg.topic, payload)
        except WireError:
            message = None
        with self._lock:
            self.received.append(Received(time.monotonic(), msg.topic, payload, message))

    def messages(self, kind: type[M]) -> list[M]:
        """Every decoded message of ``kind`` so far, in arrival order."""
        with self._lock:
            return [r.message for r in self.received if isinstance(r.message, kind)]

    def all_messages(self) -> list[Message]:
        """Every decoded message so far, in arrival order."""
        with self._lock:
            return [r.message for r in self.received if r.message is not None]

    def wait_for(
        self,
        kind: type[M],
        predicate: Callable[[M], bool] = lambda _m: True,
        *,
        timeout: float = 5.0,
        what: str = "",
    ) -> M:
        """The first message of ``kind`` matching ``predicate``, waiting up to ``timeout``."""
        found: list[M] = []

        def check() -> bool:
            found[:] = [m for m in self.messages(kind) if predicate(m)]
            return bool(found)

        poll(check, timeout=timeout, what=what or kind.__name__)
        return found[0]

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish ``payload`` with QoS 1 and wait until the broker has it."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=5)

    def send_command(
        self,
        name: str,
        *,
        cmd_id: str,
        expires_ts: int | None = None,
        args: dict[str, JsonValue] | None = None,
    ) -> None:
        """Publish a command to the outlet."""
        command = Command(
            outlet_id=self.outlet_id,
            session=0,
            seq=0,
            cmd_id=cmd_id,
            name=name,
            args=args or {},
            expires_ts=expires_ts,
        )
        self.publish_raw(topic_for(self.outlet_id, Kind.COMMAND), encode(command))

    def set_server_state(self, *, online: bool, ts: int | None = None) -> None:
        """Publish the retained fleet server state (``ts`` defaults to now)."""
        state = ServerState(server_id="test-server", online=online)
        if ts is not None:
            state = state.model_copy(update={"ts": ts})
        self.publish_raw(SERVER_STATE_TOPIC, encode(state), retain=True)

    def close(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.client.disconnect()
        self.client.loop_stop()


class AgentProcess:
    """``python -m edge_agent run ...`` as a child process."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        outlet_id: str,
        data_dir: Path,
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        local_api_port: int = 0,
    ) -> None:
        self.outlet_id = outlet_id
        self.data_dir = data_dir
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
        env |= extra_env or {}
        self.argv = [
            sys.executable, "-m", "edge_agent", "run",
            "--mqtt-url", mqtt_url,
            "--outlet-id", outlet_id,
            "--data-dir", str(data_dir),
            "--keepalive", "2",
            "--telemetry-interval", "0.5",
            "--local-api-port", str(local_api_port),
        ]  # fmt: skip
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            # Generous: a loaded 2-core CI machine may take seconds to import everything.
            self.started_line = self._read_line(timeout=30)
        except BaseException:
            self.close()  # never leak the process or its pipe into later tests
            raise

    def _read_line(self, *, timeout: float) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"agent printed nothing in {timeout} s: {self.log()}")
        return self.proc.stdout.readline().decode().strip()

    def session_file(self) -> int:
        """The session number persisted in the data directory."""
        return int((self.data_dir / "session").read_text())

    def log(self) -> str:
        """The agent's stderr so far."""
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the agent."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit and return the exit code."""
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Kill the agent if it still runs and release its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
