"""End to end: real agents, the real server and the real broker, observed through fleetctl."""

from __future__ import annotations

import signal
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import govedge_wire as wire
from govedge_testbed import Mosquitto
from tests.agent.harness import Observer
from tests.e2e.conftest import KEEPALIVE_S, Agent, Server, fleetctl, fleetctl_outlets, poll

# The broker declares a client dead after 1.5 x keepalive; allow for scheduling noise.
WILL_DEADLINE_S = 1.5 * KEEPALIVE_S + 8


def _online(server: Server, outlet_id: str) -> Callable[[], bool]:
    return lambda: fleetctl_outlets(server.url).get(outlet_id, {}).get("state") == "online"


def test_agent_shows_online_in_fleetctl(server: Server, make_agent: Callable[[str], Agent]) -> None:
    agents = [make_agent(name) for name in ("township-a-01", "bank-b-01", "kiosk-c-01")]
    for agent in agents:
        agent.start()
    for agent in agents:
        poll(_online(server, agent.outlet_id), timeout=20)
    rows = fleetctl_outlets(server.url)
    row = rows["bank-b-01"]
    assert row["agent_version"]
    assert row["session"] == 0  # the first connect of a new data directory
    assert row["last_seen"]
    table = fleetctl("outlets", "list", server_url=server.url)
    assert table.returncode == 0
    assert "kiosk-c-01" in table.stdout
    assert "online" in table.stdout
    # Host telemetry reaches the outlet's page.
    shown = poll(lambda: (server.outlet("bank-b-01") or {}).get("last_metrics"), timeout=10)
    assert 0 <= shown["cpu_percent"] <= 100
    assert shown["disk_free_bytes"] > 0


def test_killed_agent_goes_offline_and_comes_back(
    server: Server, make_agent: Callable[[str], Agent]
) -> None:
    agent = make_agent("village-k-01")
    agent.start()
    poll(_online(server, agent.outlet_id), timeout=20)
    first = server.outlet(agent.outlet_id)
    assert first is not None

    agent.signal(signal.SIGKILL)
    agent.wait(timeout=5)
    poll(lambda: server.state(agent.outlet_id) == "offline", timeout=WILL_DEADLINE_S)

    agent.start()
    row = poll(
        lambda: (r := server.outlet(agent.outlet_id)) and r["state"] == "online" and r,
        timeout=20,
    )
    assert row["session"] == first["session"] + 1
    agent.stop()


def test_late_will_of_an_old_connection_never_flips_a_live_agent(
    server: Server, make_agent: Callable[[str], Agent], private_broker: Mosquitto
) -> None:
    agent = make_agent("township-late-01")
    observer = Observer(port=private_broker.port, outlet_id=agent.outlet_id)
    try:
        agent.start()
        poll(_online(server, agent.outlet_id), timeout=20)
        # Kill and restart at once: the new connection is up before (or while) the
        # broker gives up on the old one and publishes its will with the old session.
        late_before = server.stats()["rejected"].get("late_will", 0)
        agent.signal(signal.SIGKILL)
        agent.wait(timeout=5)
        agent.start()
        observer.wait_for(wire.Death, lambda d: d.session == 0, timeout=WILL_DEADLINE_S)
        observer.wait_for(wire.Birth, lambda b: b.session == 1, timeout=20)
        seen = [
            (m.kind, m.session)
            for m in observer.all_messages()
            if isinstance(m, wire.Death | wire.Birth)
        ]
        will_after_birth = seen.index(("death", 0)) > seen.index(("birth", 1))
        if will_after_birth:
            # The server must see it as a late will (counted), never as this agent's death.
            poll(lambda: server.stats()["rejected"].get("late_will", 0) > late_before, timeout=10)
        # A will before the birth was handled before it: either way the birth came last.
        poll(lambda: (server.outlet(agent.outlet_id) or {}).get("session") == 1, timeout=20)
        assert server.state(agent.outlet_id) == "online"
    finally:
        observer.close()

    # And deterministically: a will of session 0 delivered after the birth of session 1,
    # as a broker that noticed the dead TCP connection late would deliver it.
    late_before = server.stats()["rejected"].get("late_will", 0)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", private_broker.port)
    publisher.loop_start()
    late_will = wire.Death(outlet_id=agent.outlet_id, session=0, seq=0, reason="will")
    info = publisher.publish(
        wire.topic_for(agent.outlet_id, wire.Kind.DEATH), wire.encode(late_will), qos=1
    )
    info.wait_for_publish(timeout=5)
    publisher.loop_stop()
    publisher.disconnect()
    poll(lambda: server.stats()["rejected"].get("late_will", 0) > late_before, timeout=10)
    assert server.state(agent.outlet_id) == "online"


def test_clean_shutdown_is_offline_at_once(
    server: Server, make_agent: Callable[[str], Agent], private_broker: Mosquitto
) -> None:
    agent = make_agent("kiosk-term-01")
    observer = Observer(port=private_broker.port, outlet_id=agent.outlet_id)
    try:
        agent.start()
        poll(_online(server, agent.outlet_id), timeout=20)
        agent.signal(signal.SIGTERM)
        # The wait catches a hang; no wall-clock bound on a shared machine.
        assert agent.wait(timeout=10) == 0
        # "At once": offline by the agent's own shutdown death, not by a will after the
        # keep-alive ran out (that would be a death with reason "will").
        poll(lambda: server.state(agent.outlet_id) == "offline", timeout=10)
        assert [d.reason for d in observer.messages(wire.Death)] == ["shutdown"]
    finally:
        observer.close()


def test_broker_restart_everyone_reconnects(
    server: Server, make_agent: Callable[[str], Agent], private_broker: Mosquitto
) -> None:
    agents = [make_agent(name) for name in ("township-br-01", "bank-br-02", "kiosk-br-03")]
    for agent in agents:
        agent.start()
    for agent in agents:
        poll(_online(server, agent.outlet_id), timeout=20)

    private_broker.kill()
    # The server cannot know what happens at the outlets now: stale, not offline.
    for agent in agents:
        poll(lambda a=agent: server.state(a.outlet_id) == "stale", timeout=10)
    private_broker.start()
    for agent in agents:
        row = poll(
            lambda a=agent: (r := server.outlet(a.outlet_id)) and r["state"] == "online" and r,
            timeout=90,  # agent backoff is jittered up to 60 s after repeated failures
        )
        assert row["session"] >= 1  # at least one reconnect, each with a new session
    for agent in agents:
        agent.stop()


def test_fleetctl_errors_are_one_line(server: Server) -> None:
    missing = fleetctl("outlets", "show", "no-such-outlet", server_url=server.url)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1
    assert "no-such-outlet" in missing.stderr or "not found" in missing.stderr.lower()

    down = fleetctl("outlets", "list", server_url="http://127.0.0.1:9")
    assert down.returncode == 2
    assert down.stderr.startswith("error: cannot reach fleet server at http://127.0.0.1:9")
    assert down.stderr.count("\n") == 1
