"""An API process and an ingest process (``fleet-server run --role api`` / ``--role
ingest``) on one PostgreSQL and one Mosquitto, as the production units run them
(docs/deploy.md, "Roles").

What an operator sees: a simulated outlet's telemetry and transactions are stored by
the ingest process and read through the API process; the API process holds no uplink
subscription (with the ingest process gone nothing is stored, while the API keeps
answering, and it writes no heartbeat row as a share-group member); the ingest process
answers its probes and ``/metrics`` but no operator route.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from fleet_server.db import make_engine
from fleet_server.models import IngestWorker
from govedge_testbed import Mosquitto, VictoriaMetrics
from govedge_wire import Kind, topic_for
from tests.server.helpers import FleetServer, poll
from tests.server.txkit import TxAgent

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]


@dataclass
class Split:
    """One process of each role and what they share."""

    api: FleetServer
    ingest: FleetServer
    broker: Mosquitto
    database_url: str
    tmp_path: Path

    def start_ingest(self) -> FleetServer:
        """Another ingest process (the first one stopped)."""
        self.ingest = _server(self.broker, self.database_url, self.tmp_path, "ingest")
        self.ingest.start()
        return self.ingest


def _server(
    broker: Mosquitto, database_url: str, tmp_path: Path, role: str, **env: str
) -> FleetServer:
    return FleetServer(
        mqtt_url=broker.url, database_url=database_url, workdir=tmp_path,
        GOVEDGE_ROLE=role, GOVEDGE_SERVER_ID=f"fleet-{role}",
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"), GOVEDGE_MQTT_SHARE_GROUP="fleet", **env,
    )  # fmt: skip


@pytest.fixture
def split(private_broker: Mosquitto, postgres_url: str, tmp_path: Path) -> Iterator[Split]:
    ingest = _server(private_broker, postgres_url, tmp_path, "ingest")
    api = _server(private_broker, postgres_url, tmp_path, "api")
    running = Split(api, ingest, private_broker, postgres_url, tmp_path)
    try:
        ingest.start()  # first: it upgrades the schema
        api.start()
        yield running
    finally:
        for server in (running.api, running.ingest):
            if server.proc is not None and server.proc.poll() is None:
                assert server.stop() == 0, server.stderr()


def _heartbeat_rows(database_url: str) -> list[str]:
    """The share group's members as the database lists them (worker ids)."""
    db = make_engine(database_url)
    try:
        with db.connect() as conn:
            return list(conn.scalars(select(IngestWorker.worker_id)))
    finally:
        db.dispose()


def _config_arrived(agent: TxAgent) -> bool:
    """True once the outlet's downlink carried its desired config."""
    try:
        message = agent.down.get(timeout=0.5)
    except queue.Empty:
        return False
    return message.topic == topic_for(agent.outlet_id, Kind.DESIRED_CONFIG)


def test_the_ingest_process_stores_what_the_api_process_serves(split: Split) -> None:
    agent = TxAgent(split.broker.url, f"split-{uuid.uuid4().hex[:6]}")
    try:
        agent.birth()
        agent.telemetry(cpu_percent=42.5)
        tx_id = agent.tx("queue_event", {"kind": "ticket.issued"})
        assert agent.ack(tx_id).status == "accepted"

        split.api.wait_state(agent.outlet_id, "online")
        poll(lambda: (split.api.outlet(agent.outlet_id) or {}).get("last_metrics"),
             timeout=15, what="telemetry through the API")  # fmt: skip
        row = split.api.outlet(agent.outlet_id)
        assert row is not None
        assert row["last_metrics"]["cpu_percent"] == 42.5
        assert split.api.http.get(agent.path(tx_id)).status_code == httpx.codes.OK

        # The ingest process: probes and metrics only, no operator route or page.
        ingest = split.ingest.http
        assert ingest.get("/readyz").json() == {"ready": True, "database": True, "broker": True}
        metrics = ingest.get("/metrics")
        assert metrics.status_code == httpx.codes.OK
        assert "govedge_ingest_accepted" in metrics.text
        for path in (f"/api/v1/outlets/{agent.outlet_id}", agent.path(tx_id),
                     "/api/v1/ingest/stats", "/ui/outlets", "/ui/login"):  # fmt: skip
            assert ingest.get(path).status_code == httpx.codes.NOT_FOUND, path

        # One share-group member: the ingest process. The API process is none.
        assert split.ingest.proc is not None
        assert split.api.proc is not None
        members = _heartbeat_rows(split.database_url)
        assert [m.split("-")[0] for m in members] == [str(split.ingest.proc.pid)], members
        # The API process's broker link is up (it publishes configs), not subscribed.
        assert split.api.get("/readyz")["broker"] is True
        assert split.api.stats()["received"] == 0

        # The broker gone: the ingest process is not ready (it cannot ingest); the API
        # process stays ready and keeps serving what the database holds.
        split.broker.kill()
        poll(lambda: ingest.get("/readyz").status_code == httpx.codes.SERVICE_UNAVAILABLE,
             timeout=30, what="the ingest process not ready")  # fmt: skip
        poll(lambda: split.api.http.get("/readyz").json()["broker"] is False, timeout=30,
             what="the API process's broker link down")  # fmt: skip
        assert split.api.http.get("/readyz").status_code == httpx.codes.OK
        assert split.api.outlet(agent.outlet_id) is not None
    finally:
        agent.close()


def _change_events(server: FleetServer, into: queue.Queue[str]) -> threading.Thread:
    """Read the server's /api/v1/stream in a thread; each ``change`` event's data goes
    into ``into`` (the reader ends with the server)."""

    def read() -> None:
        with httpx.Client(base_url=server.url, headers=server.http.headers, timeout=30) as c:
            try:
                with c.stream("GET", "/api/v1/stream") as response:
                    event = ""
                    for line in response.iter_lines():
                        if line.startswith("event: "):
                            event = line.removeprefix("event: ")
                        elif line.startswith("data: ") and event == "change":
                            into.put(line.removeprefix("data: "))
            except httpx.HTTPError:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def test_an_open_page_on_the_api_process_follows_what_the_ingest_stored(split: Split) -> None:
    """The operator's page holds its stream on an API process; the outlet's birth is
    stored by the ingest process. The page must still hear of it (docs/deploy.md,
    "Live pages across processes")."""
    changes: queue.Queue[str] = queue.Queue()
    _change_events(split.api, changes)
    changes.get(timeout=15)  # the stream's first event: the number as the page opened
    agent = TxAgent(split.broker.url, f"split-{uuid.uuid4().hex[:6]}")
    try:
        agent.birth()
        split.api.wait_state(agent.outlet_id, "online")
        # Within a few sharing intervals (1 s each), never only on the next reload.
        assert changes.get(timeout=10)
    finally:
        agent.close()


def test_without_the_ingest_process_nothing_is_ingested_and_the_api_answers(
    split: Split,
) -> None:
    agent = TxAgent(split.broker.url, f"split-{uuid.uuid4().hex[:6]}")
    try:
        agent.birth()
        before = agent.tx("queue_event", {"kind": "ticket.issued"})
        assert agent.ack(before).status == "accepted"

        assert split.ingest.stop() == 0, split.ingest.stderr()
        # The API keeps answering, from the database.
        assert split.api.ready()
        assert split.api.outlet(agent.outlet_id) is not None
        # An operator's config change is signed and published by the API process
        # itself (its publish-only link), not left for an ingest process.
        put = split.api.http.put(
            f"/api/v1/config/outlet:{agent.outlet_id}",
            json={"log_level": "DEBUG"},
            headers={"If-Match": "0"},
        )
        assert put.status_code == httpx.codes.OK, put.text
        poll(lambda: _config_arrived(agent), timeout=30, what="the signed config at the outlet")
        # Sent while no ingest process runs: the broker has no member to give it to
        # (the API process is not one), so it is never stored.
        lost = agent.tx("queue_event", {"kind": "ticket.issued"})
    finally:
        agent.close()

    split.start_ingest()
    # Positive marker: a later transaction (a new agent session, as after a restart)
    # stored and acknowledged by the new ingest process, so the earlier one is past.
    again = TxAgent(split.broker.url, agent.outlet_id, session=2)
    try:
        again.birth()
        later = again.tx("queue_event", {"kind": "ticket.issued"})
        assert again.ack(later).status == "accepted"
        assert split.api.http.get(again.path(later)).status_code == httpx.codes.OK
        assert split.api.http.get(agent.path(before)).status_code == httpx.codes.OK
        assert split.api.http.get(agent.path(lost)).status_code == httpx.codes.NOT_FOUND
    finally:
        again.close()


def test_with_a_time_series_store_the_ingest_writes_and_the_api_stops_cleanly(
    private_broker: Mosquitto, postgres_url: str, victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    """One settings file for both roles names the store: the ingest process writes the
    telemetry there; the API process, which has none to write, starts and stops
    (exit 0) without a time-series writer of its own."""
    store = {"GOVEDGE_TIMESERIES_URL": victoria.url, "GOVEDGE_TIMESERIES_TOKEN": "x"}
    ingest = _server(private_broker, postgres_url, tmp_path, "ingest", **store)
    api = _server(private_broker, postgres_url, tmp_path, "api", **store)
    agent = TxAgent(private_broker.url, f"split-{uuid.uuid4().hex[:6]}")
    try:
        ingest.start()
        api.start()
        agent.birth()
        api.wait_state(agent.outlet_id, "online")
        agent.telemetry(cpu_percent=42.5)
        match = f'outlet_cpu_percent{{outlet_id="{agent.outlet_id}"}}'
        found = poll(lambda: victoria.export(match), timeout=30, what="the point in the store")
        assert [series["values"] for series in found] == [[42.5]]
        assert "govedge_timeseries_buffered" not in api.http.get("/metrics").text
    finally:
        agent.close()
        for server in (api, ingest):
            if server.proc is not None:
                assert server.stop() == 0, server.stderr()
    assert "Traceback" not in api.stderr(), api.stderr()
