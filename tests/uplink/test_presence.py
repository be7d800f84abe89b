"""Presence end to end: a real agent process, a real Mosquitto, a paho observer."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from edge_agent.daemon import SHUTDOWN_GRACE_S
from govedge_testbed import Mosquitto
from govedge_testbed.ports import free_port
from govedge_wire import Birth, CommandResult, Death, Event, Telemetry
from tests.agent.conftest import MakeObserver, StartAgent
from tests.agent.harness import AgentProcess, poll

KEEPALIVE_S = 2.0
EXPECTED_METRICS = {
    "cpu_percent",
    "mem_used_percent",
    "mem_available_bytes",
    "disk_used_percent",
    "disk_free_bytes",
    "host_uptime_s",
    "agent_uptime_s",
}


def test_birth_after_subscribe_and_session_survives_restart(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver, outlet_id: str
) -> None:
    observer = observe(broker)
    agent = start_agent(broker)
    assert agent.started_line == f"edge-agent {outlet_id} started"
    birth = observer.wait_for(Birth, lambda b: not b.rebirth, what="first birth")
    assert agent.data_dir.is_dir()
    assert agent.data_dir.stat().st_mode & 0o777 == 0o700
    assert birth.session == agent.session_file()
    assert birth.seq == 0
    assert birth.keepalive_s == 2
    assert birth.telemetry_interval_s == 0.5
    assert birth.devices == []
    assert birth.config_version is None

    # Sent the moment the birth is seen: answered, so the subscription came first.
    observer.send_command("rebirth", cmd_id="cmd-after-birth")
    result = observer.wait_for(CommandResult, lambda r: r.cmd_id == "cmd-after-birth")
    assert result.status == "ok"
    assert result.session == birth.session

    agent.signal(signal.SIGTERM)
    assert agent.wait(5) == 0
    again = start_agent(broker)
    second = observer.wait_for(Birth, lambda b: b.session != birth.session, what="second birth")
    assert second.session == birth.session + 1 == again.session_file()
    assert second.seq == 0
    assert not second.rebirth


def test_telemetry_seq_continues_from_birth(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    observer = observe(broker)
    start_agent(broker)
    birth = observer.wait_for(Birth)
    observer.wait_for(Telemetry, lambda t: t.seq >= 3, what="three telemetry samples")
    samples = [t for t in observer.messages(Telemetry) if t.session == birth.session]
    assert [t.seq for t in samples[:3]] == [1, 2, 3]
    for sample in samples[:3]:
        metrics = sample.metrics
        assert set(metrics) >= EXPECTED_METRICS
        assert 0 <= float(metrics["cpu_percent"]) <= 100 * 1024
        assert 0 < float(metrics["mem_used_percent"]) <= 100
        assert 0 <= float(metrics["disk_used_percent"]) <= 100
        assert int(metrics["mem_available_bytes"]) > 0
        assert int(metrics["disk_free_bytes"]) > 0
        assert float(metrics["host_uptime_s"]) > 0
        assert 0 <= float(metrics["agent_uptime_s"]) < 60
    uptimes = [float(t.metrics["agent_uptime_s"]) for t in samples[:3]]
    assert uptimes == sorted(uptimes)


def test_sigkill_publishes_will_with_same_session(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    observer = observe(broker)
    agent = start_agent(broker)
    birth = observer.wait_for(Birth)
    agent.signal(signal.SIGKILL)
    # The timeout only bounds a hang; bench/fleet_ingest.py measures how fast it comes.
    will = observer.wait_for(Death, timeout=1.5 * KEEPALIVE_S + 10, what="the will")
    assert will.reason == "will"
    assert will.session == birth.session


def test_sigterm_publishes_clean_death_and_no_will(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    observer = observe(broker)
    agent = start_agent(broker)
    birth = observer.wait_for(Birth)
    observer.wait_for(Telemetry, what="a telemetry sample")
    agent.signal(signal.SIGTERM)
    # No wall-clock bound (a loaded CI machine stretches every step): the staged
    # shutdown is proven by the clean death below; a hang still fails at the wait.
    assert agent.wait(SHUTDOWN_GRACE_S + 10) == 0
    death = observer.wait_for(Death, what="shutdown death")
    assert death.reason == "shutdown"
    assert death.session == birth.session
    last_seq = max(m.seq for m in observer.all_messages() if isinstance(m, Telemetry | Birth))
    assert death.seq == last_seq + 1
    # The agent's process is gone, so the broker has closed its connection: a will
    # would be queued to the observer before this marker, published only now.
    marker = f"govedge/v1/{birth.outlet_id}/up/test-marker"
    observer.publish_raw(marker, b"after the agent exited")
    poll(lambda: any(r.topic == marker for r in observer.received), timeout=5, what="marker")
    assert [d.reason for d in observer.messages(Death)] == ["shutdown"]


def test_broker_restart_reconnects_with_next_session(
    private_broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    observer = observe(private_broker)
    agent = start_agent(private_broker)
    first = observer.wait_for(Birth)
    observer.close()
    private_broker.kill()
    private_broker.start()
    # A fresh observer subscribes within milliseconds of the restart. The agent's first
    # retry is uniform(0, 1 s), so it may (rarely) birth inside that window; then the
    # first thing we see of the new session is telemetry, and a rebirth request shows
    # the session instead.
    watcher = observe(private_broker)
    sample = watcher.wait_for(
        Telemetry | Birth,  # type: ignore[arg-type]
        lambda m: m.session > first.session,
        timeout=10,
        what="the next session",
    )
    if isinstance(sample, Birth):
        second = sample
        assert second.seq == 0
        assert not second.rebirth
    else:
        watcher.send_command("rebirth", cmd_id="after-restart")
        second = watcher.wait_for(Birth, lambda b: b.rebirth, what="rebirth after restart")
        assert second.session == sample.session
    assert second.session == agent.session_file()
    # Each failed attempt while the broker was down used one session number too.
    failed = len(re.findall(r"connect to \S+ failed \(session", agent.log()))
    assert second.session == first.session + 1 + failed
    assert "Traceback" not in agent.log()


def test_sigterm_while_broker_unreachable_exits_promptly(
    tmp_path: Path, outlet_id: str, data_dir: Path
) -> None:
    nobody = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    agent = AgentProcess(
        mqtt_url=nobody, outlet_id=outlet_id, data_dir=data_dir, log_path=tmp_path / "a.log"
    )
    try:
        poll(lambda: "failed (session 1)" in agent.log(), timeout=30, what="two failed attempts")
        agent.signal(signal.SIGTERM)
        # "Promptly": not connected, so the agent cancels at once instead of waiting out
        # a reconnect back-off; no wall-clock bound (a loaded CI machine stretches every
        # step), a hang still fails at the wait.
        assert agent.wait(SHUTDOWN_GRACE_S + 10) == 0
        assert "clean shutdown took longer" not in agent.log()
        assert agent.session_file() >= 1
        assert "Traceback" not in agent.log()
    finally:
        agent.close()


def test_rebirth_with_known_session_moves_the_agent_past_it(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    observer = observe(broker)
    agent = start_agent(broker)
    birth = observer.wait_for(Birth, lambda b: not b.rebirth, what="first birth")
    # Not above ours: a plain rebirth in the same session.
    observer.send_command("rebirth", cmd_id="known-same", args={"known_session": birth.session})
    assert observer.wait_for(CommandResult, lambda r: r.cmd_id == "known-same").status == "ok"
    observer.send_command("rebirth", cmd_id="known-bad", args={"known_session": "7"})
    bad = observer.wait_for(CommandResult, lambda r: r.cmd_id == "known-bad")
    assert (bad.status, bad.detail) == ("rejected", {"reason": "invalid_known_session"})
    # Above ours: reconnect at once with the next number, and say so in an event.
    known = birth.session + 40
    observer.send_command("rebirth", cmd_id="known-above", args={"known_session": known})
    again = observer.wait_for(Birth, lambda b: b.session == known + 1, what="resynced birth")
    assert not again.rebirth
    event = observer.wait_for(Event, lambda e: e.name == "session.resynced")
    assert event.data == {
        "stale_session": birth.session, "known_session": known, "session": known + 1,
    }  # fmt: skip
    assert agent.session_file() == known + 1
