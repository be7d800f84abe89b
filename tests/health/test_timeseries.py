"""The telemetry sink against a real VictoriaMetrics (InfluxDB v2 write API): write, read
back and compare; store down → buffered → store up → drained; overflow drops oldest."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.queries import outlet_regions
from fleet_server.health.tables import OutletProfile
from fleet_server.models import Base
from fleet_server.timeseries import TelemetrySink, telemetry_lines
from fleet_server.timeseries.regions import OutletRegions
from govedge_testbed import Mosquitto, VictoriaMetrics
from govedge_wire import Telemetry
from tests.server.helpers import FakeAgent, FleetServer, poll

_T0 = datetime(2026, 11, 4, 8, 0, tzinfo=UTC)


def _telemetry(outlet_id: str, n: int) -> Telemetry:
    return Telemetry(
        outlet_id=outlet_id,
        session=1,
        seq=n,
        metrics={"cpu_percent": 10.0 + n, "disk_free_bytes": 1000 + n},
        devices={"reader-1": {"reads_failed": n, "connected": True}},
    )


def _series(store: VictoriaMetrics, match: str) -> dict[int, float]:
    """timestamp (ms) → value of the one series ``match`` selects."""
    found = store.export(match)
    points: dict[int, float] = {}
    for series in found:
        points.update(zip(series["timestamps"], series["values"], strict=True))
    return points


@pytest.fixture
def sink(victoria: VictoriaMetrics) -> Iterator[TelemetrySink]:
    writer = TelemetrySink(url=victoria.url, token="", org="govedge", bucket="govedge",
                           buffer_max=1000, batch_max=100, timeout_s=2)  # fmt: skip
    writer.start()
    yield writer
    writer.stop()


def test_lines_are_influx_line_protocol() -> None:
    # model_construct: the wire forbids these characters; the escaping must hold anyway.
    message = _telemetry("x", 2).model_copy(update={"outlet_id": "a b,c"})
    lines = telemetry_lines(message, received_at=_T0)
    assert lines[0].startswith("outlet,outlet_id=a\\ b\\,c cpu_percent=12.0,disk_free_bytes=1002i,")
    assert lines[0].endswith(f" {int(_T0.timestamp() * 1000)}")
    assert lines[1].startswith(
        "device,outlet_id=a\\ b\\,c,device_id=reader-1 reads_failed=2i,connected=true"
    )
    tagged = telemetry_lines(message, received_at=_T0, region="410102")
    assert tagged[0].startswith("outlet,outlet_id=a\\ b\\,c,region=410102 cpu_percent=")
    assert tagged[1].startswith("device,outlet_id=a\\ b\\,c,region=410102,device_id=reader-1 ")


def test_write_read_back_and_survive_an_outage(
    sink: TelemetrySink, victoria: VictoriaMetrics, outlet_id: str
) -> None:
    for n in range(5):
        sink.offer_telemetry(_telemetry(outlet_id, n), received_at=_T0 + timedelta(seconds=n))
    match = f'outlet_cpu_percent{{outlet_id="{outlet_id}"}}'
    points = poll(lambda: len(p := _series(victoria, match)) == 5 and p, what="5 points")
    expected = {int((_T0 + timedelta(seconds=n)).timestamp() * 1000): 10.0 + n for n in range(5)}
    assert points == expected
    reads = _series(
        victoria, f'device_reads_failed{{outlet_id="{outlet_id}",device_id="reader-1"}}'
    )
    assert sorted(reads.values()) == [0, 1, 2, 3, 4]

    victoria.stop()
    for n in range(5, 15):
        sink.offer_telemetry(_telemetry(outlet_id, n), received_at=_T0 + timedelta(seconds=n))
    poll(lambda: sink.stats().write_errors > 0, what="a failed write")
    assert sink.stats().buffered == 20  # 10 messages x 2 lines, kept
    victoria.start()
    poll(lambda: sink.stats().buffered == 0, timeout=30, what="drained")
    points = poll(lambda: len(p := _series(victoria, match)) == 15 and p, what="15 points")
    assert points[int((_T0 + timedelta(seconds=14)).timestamp() * 1000)] == 24.0
    assert sink.stats().dropped == 0


@pytest.mark.timeout(60)
def test_series_carry_the_outlets_region_for_scoped_dashboards(
    victoria: VictoriaMetrics, tmp_path: Path, outlet_id: str
) -> None:
    """A county's Grafana dashboards filter on ``region``: an outlet with a profile has
    its region code on both its series; one without a profile has no region label."""
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        session.add(OutletProfile(outlet_id=outlet_id, name=None, kind="kiosk",
                                  region_code="410102001", service_items=[]))  # fmt: skip
    regions = OutletRegions(functools.partial(outlet_regions, sessions))
    regions.refresh_if_due()  # as the writer thread does when it starts
    engine.dispose()
    writer = TelemetrySink(url=victoria.url, token="", org="o", bucket="b", batch_max=100,
                           timeout_s=2, regions=regions)  # fmt: skip
    writer.start()
    unprofiled = f"{outlet_id}-bare"
    try:
        for outlet in (outlet_id, unprofiled):
            writer.offer_telemetry(_telemetry(outlet, 1), received_at=_T0)
            poll(lambda o=outlet: victoria.export(f'device_reads_failed{{outlet_id="{o}"}}'),
                 what=f"{outlet}'s points")  # fmt: skip
    finally:
        writer.stop()
    for name in ("outlet_cpu_percent", "device_reads_failed"):
        (series,) = victoria.export(f'{name}{{region=~"4101.*",outlet_id=~"{outlet_id}.*"}}')
        assert series["metric"]["outlet_id"] == outlet_id
        assert series["metric"]["region"] == "410102001"
    (bare,) = victoria.export(f'outlet_cpu_percent{{outlet_id="{unprofiled}"}}')
    assert "region" not in bare["metric"]


def test_overflow_drops_oldest_first_and_counts(victoria: VictoriaMetrics, outlet_id: str) -> None:
    victoria.stop()
    writer = TelemetrySink(url=victoria.url, token="", org="o", bucket="b",
                           buffer_max=10, batch_max=100, timeout_s=1)  # fmt: skip
    writer.start()
    try:
        for n in range(20):  # 40 lines into a buffer of 10
            writer.offer_telemetry(_telemetry(outlet_id, n), received_at=_T0 + timedelta(seconds=n))
        assert writer.stats().dropped == 30
        assert writer.stats().buffered == 10
        victoria.start()
        poll(lambda: writer.stats().buffered == 0, timeout=30, what="drained")
        match = f'outlet_cpu_percent{{outlet_id="{outlet_id}"}}'
        points = poll(lambda: len(p := _series(victoria, match)) == 5 and p, what="newest 5")
        assert sorted(points.values()) == [25.0, 26.0, 27.0, 28.0, 29.0]  # n = 15..19
    finally:
        writer.stop()


def test_server_sends_telemetry_when_configured(
    broker: Mosquitto, victoria: VictoriaMetrics, tmp_path: Path, outlet_id: str
) -> None:
    fleet = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'f.db'}", workdir=tmp_path,
        GOVEDGE_API_AUTH="off", GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
        GOVEDGE_TIMESERIES_URL=victoria.url, GOVEDGE_TIMESERIES_TOKEN="x",
    )  # fmt: skip
    fleet.start()
    agent = FakeAgent(broker.url, outlet_id, session=1)
    try:
        agent.birth()
        fleet.wait_state(outlet_id, "online")
        agent.telemetry(cpu_percent=42.5)
        match = f'outlet_cpu_percent{{outlet_id="{outlet_id}"}}'
        points = poll(lambda: _series(victoria, match), what="the server's point")
        assert list(points.values()) == [42.5]
        stats = fleet.get("/api/v1/timeseries/stats")
        assert stats["enabled"] is True
        assert stats["written"] >= 1
        assert "govedge_timeseries_buffered" in httpx.get(f"{fleet.url}/metrics").text
    finally:
        agent.close()
        assert fleet.stop() == 0, fleet.stderr()
    assert json.dumps(stats)
