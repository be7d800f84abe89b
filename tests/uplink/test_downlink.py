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
