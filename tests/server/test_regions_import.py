"""Regions and their map outlines from a file: GeoJSON as GIS tools and the provinces'
boundary data write it (DataV-style properties: ``adcode``, ``name``, ``parent``), or
the server's own list. ``fleetctl regions import|list`` against a real fleet server
process (SQLite, real Mosquitto); the parser on its own for every kind of bad input.

The outlines here are small made-up polygons around real places: no boundary data is
bundled (docs/fleet-health.md says why)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet_server.health.regions_file import RegionsError, parse_regions
from govedge_testbed import Mosquitto
from tests.server.helpers import FleetServer, run_fleetctl, started_fleet_server

pytestmark = pytest.mark.timeout(120)

ZHOUSHAN_ISLAND = [[122.0, 30.0], [122.2, 30.0], [122.2, 30.15], [122.0, 30.15], [122.0, 30.0]]
DAISHAN_ISLAND = [[122.1, 30.2, 5.0], [122.3, 30.2, 5.0], [122.3, 30.35, 5.0], [122.1, 30.2, 5.0]]
A_LAKE = [[122.05, 30.05], [122.08, 30.05], [122.08, 30.08], [122.05, 30.05]]


def _feature(properties: dict[str, Any], geometry: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def _square(lon: float, lat: float, size: float = 1.0) -> list[list[float]]:
    return [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size],
            [lon, lat]]  # fmt: skip


GEOJSON = {
    "type": "FeatureCollection",
    "features": [
        _feature({"adcode": 330000, "name": "浙江省", "level": "province"},
                 {"type": "Polygon", "coordinates": [_square(118.0, 27.0, 5.0)]}),
        _feature({"adcode": 330900, "name": "舟山市", "parent": {"adcode": 330000}},
                 {"type": "Polygon", "coordinates": [_square(121.5, 29.5, 1.4)]}),
        # Two islands, the first with a lake: each island a ring, the lake dropped.
        _feature({"adcode": "330902", "name": "定海区", "parent": {"adcode": 330900}},
                 {"type": "MultiPolygon",
                  "coordinates": [[ZHOUSHAN_ISLAND, A_LAKE], [DAISHAN_ISLAND]]}),
        # A township: its code as the registry writes it, no outline.
        _feature({"code": "330902104", "name": "白泉镇", "parent_code": "330902"}, None),
    ],
}  # fmt: skip


def test_geojson_is_read_as_the_map_and_the_region_scopes_need_it() -> None:
    rows = {row.code: row for row in parse_regions(json.dumps(GEOJSON).encode())}
    # Six-digit division codes become the prefixes outlets' region codes start with.
    assert list(rows) == ["33", "3309", "330902", "330902104"]
    assert [rows[code].parent_code for code in rows] == [None, "33", "3309", "330902"]
    assert rows["3309"].name == "舟山市"
    # Each island is a ring, the lake is not (the map would fill it), altitude dropped.
    assert rows["330902"].outline == [ZHOUSHAN_ISLAND, [p[:2] for p in DAISHAN_ISLAND]]
    assert rows["330902104"].outline is None


def test_every_bad_region_is_reported_by_row_and_field() -> None:
    bad = {
        "type": "FeatureCollection",
        "features": [
            _feature({"adcode": 330000, "name": "浙江省"}, None),  # fine
            _feature({"adcode": "33x", "name": "坏码"}, None),
            _feature({"adcode": 330100}, None),
            _feature({"adcode": 330200, "name": "线"},
                     {"type": "LineString", "coordinates": [[120, 30], [121, 30]]}),
            _feature({"adcode": 330300, "name": "纬经颠倒"},
                     {"type": "Polygon", "coordinates": [[[30, 120], [30, 121], [31, 121]]]}),
            _feature({"adcode": 330400, "name": "两点"},
                     {"type": "Polygon", "coordinates": [[[120, 30], [121, 30], [120, 30]]]}),
            _feature({"adcode": 330500, "name": "文字"},
                     {"type": "Polygon", "coordinates": [[["120", "30"], [121, 30], [121, 31]]]}),
            _feature({"adcode": 330000, "name": "重复"}, None),
            "not a feature",
        ],
    }  # fmt: skip
    with pytest.raises(RegionsError) as caught:
        parse_regions(json.dumps(bad).encode())
    found = {(e.row, e.field) for e in caught.value.errors}
    assert found == {
        (2, "adcode"), (3, "name"), (4, "geometry"), (5, "geometry"), (6, "geometry"),
        (7, "geometry"), (8, "code"), (9, "region"),
    }  # fmt: skip
    messages = {e.row: e.message for e in caught.value.errors}
    assert "lon first" in messages[5]
    assert "fewer than 3 distinct points" in messages[6]
    assert "is also row 1" in messages[8]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b'{"type": "Topology"}', "GeoJSON FeatureCollection"),
        (b'{"type": "FeatureCollection", "features": []}', "holds no regions"),
        (b'[{"code": "33", "name": "x", "outline": [[[1]]]}]', r"\[1\] is not a \[lon, lat\] pair"),
        (b'[{"code": "33", "name": "x", "colour": "red"}]', "unknown field"),
    ],
)
def test_a_file_that_is_not_regions_says_what_it_expected(body: bytes, says: str) -> None:
    with pytest.raises(RegionsError, match=says):
        parse_regions(body)


@pytest.fixture
def server(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    with started_fleet_server(broker.url, tmp_path) as fleet:
        yield fleet


_fleetctl = run_fleetctl


def _regions(server: FleetServer) -> list[dict[str, Any]]:
    answer = server.http.get("/api/v1/regions")
    answer.raise_for_status()
    regions: list[dict[str, Any]] = answer.json()
    return regions


def test_fleetctl_imports_geojson_lists_it_and_its_list_imports_back(
    server: FleetServer, tmp_path: Path
) -> None:
    source = tmp_path / "zhejiang.geojson"
    source.write_text(json.dumps(GEOJSON, ensure_ascii=False), encoding="utf-8")
    out = _fleetctl(server, "regions", "import", str(source)).stdout
    assert "zhejiang.geojson: 4 created, 0 updated, 0 unchanged" in out
    stored = {r["code"]: r for r in _regions(server)}
    assert stored["330902"]["outline"] == [ZHOUSHAN_ISLAND, [p[:2] for p in DAISHAN_ISLAND]]
    assert stored["3309"]["parent_code"] == "33"
    table = _fleetctl(server, "regions", "list").stdout
    assert "定海区" in table
    assert "2 rings, 9 points" in table

    # What `list --json` prints is a file `import` reads back with nothing changed.
    listed = tmp_path / "regions.json"
    listed.write_text(_fleetctl(server, "regions", "list", "--json").stdout, encoding="utf-8")
    out = _fleetctl(server, "regions", "import", str(listed)).stdout
    assert "0 created, 0 updated, 4 unchanged" in out
    assert {r["code"]: r for r in _regions(server)} == stored


def test_a_bad_file_imports_nothing_and_is_counted(server: FleetServer, tmp_path: Path) -> None:
    good = tmp_path / "good.geojson"
    good.write_text(json.dumps(GEOJSON), encoding="utf-8")
    _fleetctl(server, "regions", "import", str(good))
    before = _regions(server)
    # One good change and one bad region: neither is stored.
    changed = json.loads(json.dumps(GEOJSON))
    changed["features"][1]["properties"]["name"] = "舟山"
    changed["features"][2]["geometry"]["coordinates"][0][0] = [[122.0, 30.0], [200.0, 30.0]]
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps(changed), encoding="utf-8")
    result = _fleetctl(server, "regions", "import", str(bad), code=1)
    assert "row 3, geometry:" in result.stderr
    assert "off the earth" in result.stderr
    assert _regions(server) == before

    # The plain PUT takes no undrawable outline either (a point that is not a pair).
    put = server.http.put(
        "/api/v1/regions", json=[{"code": "3309", "name": "舟山市", "outline": [[[122.0]]]}]
    )
    assert put.status_code == httpx.codes.UNPROCESSABLE_ENTITY
    assert "not a [lon, lat] pair" in put.text
    assert _regions(server) == before
    metrics = server.http.get("/metrics").text
    assert 'govedge_region_imports_refused_total{reason="invalid_rows"} 1.0' in metrics
