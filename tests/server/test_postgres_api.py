"""The whole server on PostgreSQL: a birth makes the outlet online through the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from tests.server.helpers import FakeAgent, FleetServer


@pytest.mark.postgres
def test_birth_makes_outlet_online_on_postgres(
    broker: Mosquitto, postgres_url: str, outlet_id: str, tmp_path: Path
) -> None:
    server = FleetServer(mqtt_url=broker.url, database_url=postgres_url, workdir=tmp_path)
    server.start()
    agent = FakeAgent(broker.url, outlet_id, session=3)
    try:
        agent.birth()
        row = server.wait_state(outlet_id, "online")
        assert (row["session"], row["last_seq"]) == (3, 0)
        assert row["devices"][0]["kind"] == "id_card_reader"
        agent.telemetry(cpu_percent=7.0)
        agent.death()
        row = server.wait_state(outlet_id, "offline")
        assert row["last_metrics"] == {"cpu_percent": 7.0}
    finally:
        agent.close()
        assert server.stop() == 0, server.stderr()
