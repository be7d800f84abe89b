"""``fleetctl outlets import|export`` and ``fleetctl users list|scope`` against a real
fleet server process (SQLite, real Mosquitto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from govedge_testbed import Mosquitto
from tests.server.helpers import FleetServer, run_fleetctl, started_fleet_server

CSV = (
    "id,name,kind,region,lat,lon,address,opening_hours,service_items\n"
    "fc-1,城关镇便民服务中心,township_centre,410402,33.74,113.31,新华路1号,24h,户籍证明\n"
    "fc-2,新华街道便民服务中心,street_centre,410403,,,,,\n"
    'fc-3,高新区自助区,kiosk,410411,33.75,113.2,,"mon 08:30-12:00",社保卡补办\n'
)


@pytest.fixture
def server(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    with started_fleet_server(broker.url, tmp_path) as fleet:
        yield fleet


_fleetctl = run_fleetctl


def test_import_export_and_reimport(server: FleetServer, tmp_path: Path) -> None:
    source = tmp_path / "outlets.csv"
    source.write_text(CSV, encoding="utf-8")
    out = _fleetctl(server, "outlets", "import", str(source)).stdout
    assert "outlets.csv: 3 created, 0 updated, 0 unchanged" in out
    # The export, as a file, imports back with nothing changed.
    exported = tmp_path / "export.json"
    _fleetctl(server, "outlets", "export", "--format", "json", "-o", str(exported))
    outlets = json.loads(exported.read_text("utf-8"))["outlets"]
    assert [row["id"] for row in outlets] == ["fc-1", "fc-2", "fc-3"]
    assert outlets[2]["opening_hours"] == {"mon": ["08:30-12:00"]}
    out = _fleetctl(server, "outlets", "import", str(exported)).stdout
    assert "0 created, 0 updated, 3 unchanged" in out
    csv_text = _fleetctl(server, "outlets", "export").stdout
    assert csv_text.splitlines()[1] == (
        "fc-1,城关镇便民服务中心,township_centre,410402,33.74,113.31,新华路1号,24h,户籍证明"
    )
    listed = _fleetctl(server, "outlets", "list", "--json").stdout
    assert {row["outlet_id"] for row in json.loads(listed)} == {"fc-1", "fc-2", "fc-3"}


def test_a_bad_file_prints_its_row_errors_and_imports_nothing(
    server: FleetServer, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    lines = CSV.splitlines()
    bad.write_text("\n".join([lines[0], lines[1], "fc-4,新点,kiosk,410402,33.7,,,,"]) + "\n")
    result = _fleetctl(server, "outlets", "import", str(bad), code=1)
    assert "1 registry errors" in result.stderr
    assert "row 2, row: lat and lon go together" in result.stderr
    assert json.loads(_fleetctl(server, "outlets", "list", "--json").stdout) == []
    # No format to be read from the name: a usage error, nothing sent.
    odd = tmp_path / "outlets.txt"
    odd.write_text(CSV, encoding="utf-8")
    assert "--format csv|json" in _fleetctl(server, "outlets", "import", str(odd), code=2).stderr


def test_users_scope_limits_what_the_user_exports(server: FleetServer, tmp_path: Path) -> None:
    source = tmp_path / "outlets.csv"
    source.write_text(CSV, encoding="utf-8")
    _fleetctl(server, "outlets", "import", str(source))
    made = server.http.post("/api/v1/users", json={"name": "county-op", "role": "operator"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    out = _fleetctl(server, "users", "scope", "county-op", "--region", "410402").stdout
    assert out.strip() == "user county-op: 410402"
    listed = json.loads(_fleetctl(server, "users", "list", "--json").stdout)
    assert {row["name"]: row["regions"] for row in listed}["county-op"] == ["410402"]
    assert "410402" in _fleetctl(server, "users", "list").stdout
    # The county operator's export holds the county only; the next request already.
    mine = _fleetctl(server, "outlets", "export", "--format", "json", token=token).stdout
    assert [row["id"] for row in json.loads(mine)["outlets"]] == ["fc-1"]
    # An import outside the county: refused with the row named, nothing imported.
    other = tmp_path / "other.csv"
    other.write_text(CSV.splitlines()[0] + "\nfc-9,别县新点,kiosk,410403,,,,,\n", "utf-8")
    refused = _fleetctl(server, "outlets", "import", str(other), token=token, code=1)
    assert "row 1, region: outside your region scope (410402): 410403" in refused.stderr
    assert "whole fleet" in _fleetctl(server, "users", "scope", "county-op", "--all").stdout
    mine = _fleetctl(server, "outlets", "export", "--format", "json", token=token).stdout
    assert len(json.loads(mine)["outlets"]) == 3
    # Bad uses: neither or both of --region/--all; a prefix that is not digits; no user;
    # and the scope command is for admins only.
    assert "--region" in _fleetctl(server, "users", "scope", "county-op", code=2).stderr
    bad = _fleetctl(server, "users", "scope", "county-op", "--region", "41x", code=1).stderr
    assert "scope refused (4" in bad
    missing = _fleetctl(server, "users", "scope", "nobody", "--region", "41", code=1).stderr
    assert "scope refused (404)" in missing
    denied = _fleetctl(server, "users", "scope", "county-op", "--all", token=token, code=2)
    assert "not allowed (403)" in denied.stderr
