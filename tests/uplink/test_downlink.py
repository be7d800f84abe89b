"""Commands and server state: rebirth, rejections, bad payloads, server transitions."""

from __future__ import annotations

import json

from govedge_testbed import Mosquitto
from govedge_wire import Birth, CommandResult, Kind, Telemetry, now_ms, topic_for
from tests.agent.conftest import MakeObserver, StartAgent
from tests.agent.harness import Observer


def _telemetry_after(observer: Observer, seq: int, count: int) -> None:
    """Wait until ``count`` more telemetry samples followed uplink ``seq``."""
    observer.wait_for(Telemetry, lambda t: t.seq >= seq + count, what=f"telemetry after {seq}")


def test_rebirth_command_same_session_seq_continues(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    observer = observe(broker)
    start_agent(broker)
    birth = observer.wait_for(Birth)
    sample = observer.wait_for(Telemetry)
    observer.send_command("rebirth", cmd_id="rebirth-1")
    rebirth = observer.wait_for(Birth, lambda b: b.rebirth, what="rebirth")
    result = observer.wait_for(CommandResult, lambda r: r.cmd_id == "rebirth-1")
    assert rebirth.session == birth.session
    assert rebirth.seq > sample.seq
    assert result.status == "ok"
    assert result.seq == rebirth.seq + 1
    uplink = [
        m.seq
        for m in observer.all_messages()
        if isinstance(m, Birth | Telemetry | CommandResult) and m.session == birth.session
    ]
    assert uplink == list(range(len(uplink)))


def test_bad_downlink_is_survived(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver, outlet_id: str
) -> None:
    observer = observe(broker)
    agent = start_agent(broker)
    observer.wait_for(Birth)
    cmd_topic = topic_for(outlet_id, Kind.COMMAND)
    observer.publish_raw(cmd_topic, b"\xff\x00 not json at all")
    observer.publish_raw(cmd_topic, b"[1, 2, 3]")
    future = {
        "schema_version": 2,
        "kind": "cmd",
        "outlet_id": outlet_id,
        "session": 0,
        "seq": 0,
        "cmd_id": "from-the-future",
        "name": "rebirth",
    }
    observer.publish_raw(cmd_topic, json.dumps(future).encode())
    observer.send_command("rebirth", cmd_id="expired", expires_ts=now_ms() - 1000)
    observer.send_command("format-disk", cmd_id="unknown-name")
    observer.publish_raw(topic_for(outlet_id, Kind.DESIRED_CONFIG), b"{}")
    observer.send_command("rebirth", cmd_id="valid-after-garbage")

    ok = observer.wait_for(CommandResult, lambda r: r.cmd_id == "valid-after-garbage")
    assert ok.status == "ok"
    results = {r.cmd_id: r for r in observer.messages(CommandResult)}
    assert results["from-the-future"].status == "rejected"
    assert results["from-the-future"].detail == {"reason": "unsupported_schema"}
    assert results["unknown-name"].status == "rejected"
    assert results["unknown-name"].detail["reason"] == "unknown_command"
    assert "expired" not in results
    assert len([b for b in observer.messages(Birth) if b.rebirth]) == 1
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.log()


def test_server_state_transition_triggers_exactly_one_rebirth(
    private_broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    observer = observe(private_broker)
    observer.set_server_state(online=True)  # retained: delivered right after our birth
    start_agent(private_broker)
    birth = observer.wait_for(Birth)
    _telemetry_after(observer, birth.seq, 3)
    assert len(observer.messages(Birth)) == 1

    observer.set_server_state(online=False)
    observer.set_server_state(online=True)
    rebirth = observer.wait_for(Birth, lambda b: b.rebirth, what="rebirth after server online")
    assert rebirth.session == birth.session
    observer.set_server_state(online=True)  # online -> online is no transition
    _telemetry_after(observer, rebirth.seq, 3)
    births = observer.messages(Birth)
    assert len(births) == 2
    assert [b.rebirth for b in births] == [False, True]


def test_an_older_server_state_flips_nothing(
    private_broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver
) -> None:
    """A ``_fleet/state`` older than the last one seen is ignored (docs/protocol.md, rule 8)."""
    observer = observe(private_broker)
    observer.set_server_state(online=True, ts=10_000)  # retained: the first state seen
    agent = start_agent(private_broker)
    observer.wait_for(Birth)

    def rebirths_after_command(cmd_id: str) -> int:
        # The downlink is handled in order: this command's answer proves every state
        # published before it was handled. Each command adds one rebirth of its own.
        observer.send_command("rebirth", cmd_id=cmd_id)
        observer.wait_for(CommandResult, lambda r: r.cmd_id == cmd_id)
        return len([b for b in observer.messages(Birth) if b.rebirth])

    assert rebirths_after_command("first") == 1
    # An older offline (the late will of an earlier server process) must not count:
    # otherwise the newer online after it would be a comeback with a fresh birth.
    observer.set_server_state(online=False, ts=5_000)
    observer.set_server_state(online=True, ts=20_000)
    assert rebirths_after_command("after-old-offline") == 2
    # Really offline now; an older online (a replayed retained state) is no comeback.
    observer.set_server_state(online=False, ts=30_000)
    observer.set_server_state(online=True, ts=25_000)
    assert rebirths_after_command("after-old-online") == 3
    # The newer online is one, and gets its fresh birth.
    observer.set_server_state(online=True, ts=40_000)
    assert rebirths_after_command("after-new-online") == 5
    assert "downlink message dropped (stale_server_state, 1 so far)" in agent.log()
