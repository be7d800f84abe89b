"""A taken local-API port stops the local API only: the agent stays up, comes online and
says why in its log (another program on the counter PC may hold the port)."""

from __future__ import annotations

import socket
import time

from govedge_testbed import Mosquitto
from govedge_wire import Birth, Telemetry
from tests.agent.conftest import MakeObserver, StartAgent
from tests.agent.harness import poll


def test_agent_lives_on_when_its_local_api_port_is_taken(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        observer = observe(broker)
        agent = start_agent(broker, local_api_port=taken)
        observer.wait_for(Birth, timeout=30)
        deadline = time.monotonic() + 30
        while f"local API not started on port {taken}" not in agent.log():
            assert agent.proc.poll() is None, agent.log()
            assert time.monotonic() < deadline, agent.log()
            time.sleep(0.05)
        # Still running and still reporting after the failed bind.
        seen = len(observer.messages(Telemetry))
        poll(
            lambda: len(observer.messages(Telemetry)) >= seen + 2,
            timeout=10,
            what="telemetry after the failed bind",
        )
        assert agent.proc.poll() is None, agent.log()
