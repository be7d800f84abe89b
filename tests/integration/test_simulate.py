"""``edge-agent run --simulate`` as a subprocess on a real Mosquitto, watched over MQTT.

Every simulator speaks its device's real bytes and is attached through the real
discovery, profile matching, probing and drivers (USB-style devices via a
ControlledSource, as this machine has no USB bus; network ones as configured devices).
The social-security card needs pcscd + vpcd; without them it is left out and the test
expects one device fewer.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_agent.devices.social_security_card_reader.vpcd import environment_ok
from edge_agent.local_api import AppRegistry
from govedge_testbed import Mosquitto
from govedge_wire import Birth, Event, Telemetry
from tests.agent.harness import Observer

ID_CARD = "sam-serial-bridge.sn-10c4ea60-SIMIDCARD0001-if00"
KINDS = {
    "id_card_reader",
    "caller_keypad",
    "document_camera",
    "evaluation_pad",
    "ticket_printer",
    "led_screen",
}


class SimulatedAgent:
    """The agent with ``--simulate``; reads its two stdout lines."""

    def __init__(
        self, broker: Mosquitto, outlet_id: str, tmp_path: Path, env: dict[str, str] | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")} | (env or {})
        self.log_path = tmp_path / "agent.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "edge_agent", "run",
                    "--mqtt-url", broker.url,
                    "--outlet-id", outlet_id,
                    "--data-dir", str(tmp_path / "data"),
                    "--keepalive", "5",
                    "--telemetry-interval", "0.5",
                    "--local-api-port", "0",
                    "--simulate",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
            )  # fmt: skip
        self.lines = [self._line(timeout=15), self._line(timeout=20)]

    def _line(self, *, timeout: float) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"agent printed nothing in {timeout} s: {self.log()}")
        return self.proc.stdout.readline().decode().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def simulated(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> Iterator[tuple[SimulatedAgent, Observer]]:
    observer = Observer(port=broker.port, outlet_id=outlet_id)
    agent = SimulatedAgent(broker, outlet_id, tmp_path)
    try:
        yield agent, observer
    finally:
        assert agent.close() == 0, agent.log()
        observer.close()


def _expected_count() -> int:
    return len(KINDS) + (1 if environment_ok() is None else 0)


def _all_ready(birth: Birth, count: int) -> bool:
    return len(birth.devices) == count and all(d.state == "ready" for d in birth.devices)


def test_birth_and_telemetry_carry_every_simulated_device(
    simulated: tuple[SimulatedAgent, Observer],
) -> None:
    agent, observer = simulated
    count = _expected_count()
    match = re.fullmatch(r"edge-agent \S+: (\d+) simulated devices attached", agent.lines[1])
    assert match is not None, agent.lines
    assert int(match.group(1)) == count

    birth = observer.wait_for(Birth, lambda b: _all_ready(b, count), timeout=10, what="ready")
    kinds = {d.kind for d in birth.devices}
    assert kinds >= KINDS
    if count > len(KINDS):
        assert "social_security_card_reader" in kinds
    births = observer.messages(Birth)
    assert births[0].rebirth is False
    assert all(b.rebirth for b in births[1:])
    assert len({b.session for b in births}) == 1

    ids = {d.device_id for d in birth.devices}
    telemetry = observer.wait_for(
        Telemetry, lambda t: set(t.devices) == ids, timeout=5, what="device health"
    )
    assert all(
        health.get("level") in ("ok", "warn", "crit") for health in telemetry.devices.values()
    )
    # the simulated outlet's windows 1 and 2 were configured at start: two queue events
    # wait in the outbox (no fleet server here acknowledges them)
    assert telemetry.metrics["outbox_depth_transaction"] == 2
    assert "outbox_oldest_age_s" in telemetry.metrics
    assert "outbox_acks_per_min" in telemetry.metrics


def test_unplug_publishes_event_and_rebirth_with_device_offline(
    simulated: tuple[SimulatedAgent, Observer],
) -> None:
    agent, observer = simulated
    count = _expected_count()
    ready = observer.wait_for(Birth, lambda b: _all_ready(b, count), timeout=10, what="ready")

    agent.proc.send_signal(signal.SIGUSR1)  # unplug the simulated ID-card reader
    unplugged = observer.wait_for(
        Event,
        lambda e: e.name == "device.unplugged" and e.device_id == ID_CARD,
        timeout=5,
        what="device.unplugged",
    )
    assert unplugged.session == ready.session
    assert unplugged.severity == "warning"

    def offline(birth: Birth) -> bool:
        states = {d.device_id: d.state for d in birth.devices}
        return birth.rebirth and states.get(ID_CARD) == "offline"

    rebirth = observer.wait_for(Birth, offline, timeout=5, what="rebirth with the reader offline")
    assert rebirth.session == ready.session
    assert rebirth.seq > ready.seq

    agent.proc.send_signal(signal.SIGUSR2)  # plug it back in: same device id, ready again
    observer.wait_for(
        Birth,
        lambda b: b.seq > rebirth.seq and _all_ready(b, count),
        timeout=5,
        what="rebirth with the reader ready again",
    )


def _clerk_app(agent: SimulatedAgent, tmp_path: Path) -> httpx.Client:
    """A registered clerk app's client of the agent's local API (from its third line)."""
    line = agent._line(timeout=20)
    match = re.fullmatch(r"edge-agent \S+: local API on (http://127\.0\.0\.1:\d+)", line)
    assert match is not None, line
    _, token = AppRegistry(tmp_path / "data").add("demo-clerk", origins=[])
    return httpx.Client(base_url=match[1], headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_the_simulated_outlet_calls_tickets_out_of_the_box(
    simulated: tuple[SimulatedAgent, Observer], tmp_path: Path
) -> None:
    """No [[queue_windows]]: ``--simulate`` runs windows 1 and 2; a ticket is called at 1."""
    agent, _ = simulated
    with _clerk_app(agent, tmp_path) as clerk:
        queue = clerk.get("/v1/queue").json()
        assert [(w["window"], w["business_types"]) for w in queue["windows"]] == [
            ("1", ["general", "social"]),
            ("2", ["realestate", "tax"]),
        ]
        ticket = clerk.post("/v1/tickets", json={"business_type": "tax", "print": False})
        assert ticket.status_code == httpx.codes.CREATED, ticket.text
        called = clerk.post("/v1/windows/2/call")
        assert called.status_code == httpx.codes.OK, called.text
        assert called.json()["ticket"]["number"] == ticket.json()["number"]
        assert called.json()["led"]["lines"][0] == f"请{ticket.json()['number']}号到2号窗口"
        assert called.json()["led"]["shown"] is True  # on the simulated screen 2


def test_the_simulated_citizen_rates_with_the_configured_stars(
    broker: Mosquitto, outlet_id: str, tmp_path: Path
) -> None:
    """``simulate_ratings``: a clerk app's rating request gets the stars in turn."""
    agent = SimulatedAgent(broker, outlet_id, tmp_path, env={"GOVEDGE_SIMULATE_RATINGS": "[2, 5]"})
    try:
        with _clerk_app(agent, tmp_path) as clerk:
            rated = []
            for case in ("case-0001", "case-0002"):
                answer = clerk.post(
                    "/v1/evaluations",
                    json={"window": "1", "case_number": case, "staff_id": "S001", "timeout_s": 30},
                )
                assert answer.status_code == httpx.codes.OK, answer.text
                rated.append(answer.json())
        assert [(r["status"], r["stars"], r["is_bad"]) for r in rated] == [
            ("rated", 2, True),
            ("rated", 5, False),
        ]
    finally:
        assert agent.close() == 0, agent.log()
