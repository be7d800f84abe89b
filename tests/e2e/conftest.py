"""Processes for end-to-end tests: the real ``fleet-server``, ``edge-agent`` and ``fleetctl``
console scripts of this environment, run as subprocesses against the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from govedge_testbed import Mosquitto, free_port

BIN = Path(sys.executable).parent
KEEPALIVE_S = 2


def poll(check: Callable[[], Any], *, timeout: float, interval: float = 0.1) -> Any:
    """Call ``check`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s; last value: {last!r}")


# Kept from the test run's environment (tests/conftest.py): where a server's keys and
# state go. Without them a server writes ./fleet-pii-keys and its first-admin file into
# the working directory, the repository, and a CLI run beside it looks elsewhere.
_STATE_VARIABLES = ("GOVEDGE_PII_KEY_DIR", "GOVEDGE_STATE_DIR", "GOVEDGE_ENV_FILE")


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A fleet-server child's environment: none of the run's GOVEDGE_ settings but where
    state goes, then ``env``."""
    clean = {
        k: v for k, v in os.environ.items()
        if not k.startswith("GOVEDGE_") or k in _STATE_VARIABLES
    }  # fmt: skip
    return {**clean, **(env or {})}


def _spawn(
    argv: list[str], log: IO[bytes], *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    # The child gets its own copy of the log descriptor; ours is closed by the caller.
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=child_env(env))


# API tokens of the servers started here, by URL, so ``fleetctl`` can authenticate.
_TOKENS: dict[str, str] = {}


@dataclass
class Server:
    """A running ``fleet-server run``; ``token`` is an admin's API token."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def outlet(self, outlet_id: str) -> dict[str, Any] | None:
        response = httpx.get(
            f"{self.url}/api/v1/outlets/{outlet_id}", timeout=5, headers=self.headers
        )
        return response.json() if response.status_code == httpx.codes.OK else None

    def state(self, outlet_id: str) -> str | None:
        row = self.outlet(outlet_id)
        return None if row is None else str(row["state"])

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(
            f"{self.url}/api/v1/ingest/stats", timeout=5, headers=self.headers
        ).json()
        return result


@dataclass
class Agent:
    """A running ``edge-agent run``; restartable with the same data directory."""

    outlet_id: str
    data_dir: Path
    mqtt_url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = _spawn(
            [
                    str(BIN / "edge-agent"), "run",
                    "--mqtt-url", self.mqtt_url,
                    "--outlet-id", self.outlet_id,
                    "--data-dir", str(self.data_dir),
                    "--keepalive", str(KEEPALIVE_S),
                    "--telemetry-interval", "0.5",
                    "--local-api-port", "0",
                    *self.extra,
                ],
                log,
            )  # fmt: skip

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# The web password of every user add_user creates (tests log in to the pages with it).
E2E_PASSWORD = "e2e-test password 1"


def add_user(database_url: str, name: str, role: str, *, env: dict[str, str] | None = None) -> str:
    """``fleet-server users add`` (the real CLI) with ``E2E_PASSWORD``, in the
    environment the server gets (``env``: the same keys); returns the API token it
    prints once."""
    result = subprocess.run(
        [str(BIN / "fleet-server"), "users", "add", name, "--role", role,
         "--password-stdin", "--database-url", database_url],
        input=E2E_PASSWORD + "\n", capture_output=True, text=True, timeout=60, check=False,
        env=child_env(env),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("gvt_"))


def start_server(
    mqtt_url: str,
    database_url: str,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    token: str | None = None,
) -> Server:
    """Start ``fleet-server run`` and wait for ``/readyz``; ``token`` is an admin's of
    an earlier start on this database, else a new admin is made first."""
    port = free_port()
    if token is None:
        token = add_user(database_url, f"e2e-admin-{port}", "admin", env=env)
    with log.open("ab") as out:
        proc = _spawn(
            [
                str(BIN / "fleet-server"), "run",
                "--mqtt-url", mqtt_url,
                "--database-url", database_url,
                "--listen", f"127.0.0.1:{port}",
            ],
            out,
            env=env,
        )  # fmt: skip
    server = Server(url=f"http://127.0.0.1:{port}", proc=proc, log=log, token=token)
    _TOKENS[server.url] = token

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"fleet-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{server.url}/readyz", timeout=1).status_code == httpx.codes.OK
        except httpx.HTTPError:
            return False

    poll(ready, timeout=60, interval=0.2)
    return server


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def server(private_broker: Mosquitto, tmp_path: Path) -> Iterator[Server]:
    """The fleet server on SQLite, connected to this test's own broker."""
    running = start_server(
        private_broker.url, f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path / "server.log"
    )
    yield running
    stop_process(running.proc)


@pytest.fixture
def make_agent(private_broker: Mosquitto, tmp_path: Path) -> Iterator[Callable[[str], Agent]]:
    """Factory for agents on this test's broker; all are stopped at the end."""
    agents: list[Agent] = []

    def make(outlet_id: str) -> Agent:
        agent = Agent(
            outlet_id=outlet_id,
            data_dir=tmp_path / "agents" / outlet_id,
            mqtt_url=private_broker.url,
            log=tmp_path / f"agent-{outlet_id}.log",
        )
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.stop()


def fleetctl(*args: str, server_url: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``fleetctl`` console script."""
    return subprocess.run(
        [str(BIN / "fleetctl"), "--server", server_url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "GOVEDGE_TOKEN": _TOKENS.get(server_url.rstrip("/"), ""),
        },
    )


def fleetctl_outlets(server_url: str) -> dict[str, dict[str, Any]]:
    """``fleetctl outlets list --json``, keyed by outlet id."""
    result = fleetctl("outlets", "list", "--json", server_url=server_url)
    assert result.returncode == 0, result.stderr
    return {row["outlet_id"]: row for row in json.loads(result.stdout)}
