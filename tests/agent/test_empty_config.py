"""A zero-length retained payload on the config topic means "no config", not "apply {}"."""

from __future__ import annotations

import time

from govedge_testbed import Mosquitto
from govedge_wire import Birth, Kind, topic_for
from tests.agent.conftest import MakeObserver, StartAgent


def test_empty_retained_config_is_no_config(
    broker: Mosquitto, start_agent: StartAgent, observe: MakeObserver, outlet_id: str
) -> None:
    observer = observe(broker)
    agent = start_agent(broker)
    observer.wait_for(Birth)
    observer.publish_raw(topic_for(outlet_id, Kind.DESIRED_CONFIG), b"", retain=True)
    deadline = time.monotonic() + 10
    while "no desired config retained" not in agent.log():
        assert time.monotonic() < deadline, agent.log()
        time.sleep(0.05)
    assert "downlink message dropped" not in agent.log()
    assert agent.proc.poll() is None
