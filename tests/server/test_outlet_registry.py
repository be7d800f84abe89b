"""The outlet registry file through the API, on SQLite and PostgreSQL: a valid CSV and
JSON import, export that imports back unchanged, every kind of bad row answered by row
and field with nothing imported, and a county operator held to the county."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.security import Role
from tests.security.api_harness import Api, running_api
from tests.security.scope_seed import scoped_users

IMPORT, EXPORT = "/api/v1/outlets/import", "/api/v1/outlets/export"
OPERATOR = Role.OPERATOR
HEADER = "id,name,kind,region,lat,lon,address,opening_hours,service_items\n"
GOOD_CSV = HEADER + (
    "zz-001,城关镇便民服务中心,township_centre,410402,33.7392,113.3107,"
    '新华路1号,"mon 08:30-12:00,14:00-17:30; tue 08:30-12:00",'
    "户籍证明;社保卡补办\n"
    "zz-002,新华街道便民服务中心,街道便民服务中心,410403,,,,,\n"
    "zz-003,高新区24小时自助区,kiosk,410411,33.75,113.2,高新路8号,24h,社保卡补办\n"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1", database_url=url) as harness:
        yield harness


def _import(
    api: Api, body: str | bytes, *, fmt: str = "csv", headers: dict[str, str] | None = None
) -> Any:
    content = body.encode() if isinstance(body, str) else body
    return api.client.post(
        IMPORT, params={"format": fmt}, content=content, headers=headers or api.as_role(OPERATOR)
    )


def _export(api: Api, fmt: str, role: Role = Role.VIEWER) -> Any:
    response = api.client.get(EXPORT, params={"format": fmt}, headers=api.as_role(role))
    assert response.status_code == 200, response.text
    return response


def _registry(api: Api) -> list[dict[str, Any]]:
    return list(json.loads(_export(api, "json").text)["outlets"])


def _listed(api: Api, **params: str) -> dict[str, Any]:
    response = api.client.get("/api/v1/outlets", params=params, headers=api.as_role(Role.VIEWER))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_csv_import_registers_the_outlets_and_exports_back_unchanged(api: Api) -> None:
    answer = _import(api, GOOD_CSV)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"created": 3, "updated": 0, "unchanged": 0}
    rows = {row["id"]: row for row in _registry(api)}
    assert rows["zz-001"] == {
        "id": "zz-001", "name": "城关镇便民服务中心", "kind": "township_centre",
        "region": "410402", "lat": 33.7392, "lon": 113.3107, "address": "新华路1号",
        "opening_hours": {"mon": ["08:30-12:00", "14:00-17:30"], "tue": ["08:30-12:00"]},
        "service_items": ["户籍证明", "社保卡补办"],
    }  # fmt: skip
    # The kind's Chinese name is read as the kind; empty cells are "not given".
    assert rows["zz-002"]["kind"] == "street_centre"
    assert rows["zz-002"]["lat"] is None
    assert rows["zz-002"]["service_items"] == []
    assert rows["zz-003"]["opening_hours"] == "24h"
    # The outlets are in the list (by name too) and on the map.
    page = _listed(api, q="城关")
    assert [item["outlet_id"] for item in page["items"]] == ["zz-001"]
    assert _listed(api)["total"] == 3
    points = api.client.get("/api/v1/fleet/map-points", headers=api.as_role(Role.VIEWER)).json()
    assert {p["id"] for p in points} == {"zz-001", "zz-003"}
    # The export of either format imports back as it is: nothing changes.
    for fmt in ("csv", "json"):
        again = _import(api, _export(api, fmt).text, fmt=fmt)
        assert again.json() == {"created": 0, "updated": 0, "unchanged": 3}, fmt
    assert {row["id"]: row for row in _registry(api)} == rows


def test_reimporting_the_same_file_changes_nothing(api: Api) -> None:
    assert _import(api, GOOD_CSV).status_code == 200
    before = _registry(api)
    again = _import(api, GOOD_CSV)
    assert again.json() == {"created": 0, "updated": 0, "unchanged": 3}
    assert _registry(api) == before
    assert _listed(api)["total"] == 3


def test_a_json_import_updates_by_id_and_keeps_what_the_file_does_not_carry(api: Api) -> None:
    assert _import(api, GOOD_CSV).status_code == 200
    # Phone and tags are not registry-file fields: an import must not wipe them.
    profile = {"outlet_id": "zz-001", "name": "城关镇便民服务中心", "region_code": "410402",
               "phone": "0375-1234567", "tags": ["pilot"]}  # fmt: skip
    put = api.client.put("/api/v1/outlet-profiles", json=[profile], headers=api.as_role(OPERATOR))
    assert put.status_code == 200, put.text
    new_name = "城关镇便民服务中心(新址)"
    body = {"outlets": [{"id": "zz-001", "name": new_name, "kind": "township_centre",
                         "region": "410402", "opening_hours": "24h"}]}  # fmt: skip
    answer = _import(api, json.dumps(body, ensure_ascii=False), fmt="json")
    assert answer.json() == {"created": 0, "updated": 1, "unchanged": 0}
    row = next(r for r in _registry(api) if r["id"] == "zz-001")
    assert (row["name"], row["opening_hours"], row["lat"]) == (
        new_name,
        "24h",
        None,
    )
    health = api.client.get("/api/v1/outlets/zz-001/health", headers=api.as_role(Role.VIEWER))
    assert health.json()["tags"] == ["pilot"]
    assert health.json()["phone"] == "0375-1234567"
    assert _listed(api, q="zz-001")["items"][0]["display_name"] == new_name


BAD_ROWS = [
    ("bad-id", "zz 9,名,kiosk,410402,,,,,", "id"),
    ("no-name", "zz-009,,kiosk,410402,,,,,", "name"),
    ("bad-kind", "zz-009,名,自助 终端,410402,,,,,", "kind"),
    ("bad-region", "zz-009,名,kiosk,41A,,,,,", "region"),
    ("lat-without-lon", "zz-009,名,kiosk,410402,33.7,,,,", "row"),
    ("lat-out-of-range", "zz-009,名,kiosk,410402,133.7,113.3,,,", "lat"),
    ("lon-not-a-number", "zz-009,名,kiosk,410402,33.7,东经113,,,", "lon"),
    ("bad-hours", "zz-009,名,kiosk,410402,,,,mon 8-12,", "opening_hours"),
    ("bad-day", "zz-009,名,kiosk,410402,,,,mo 08:00-12:00,", "opening_hours"),
    ("duplicate-id", "zz-010,名,kiosk,410402,,,,,", "id"),
]


@pytest.mark.parametrize(("line", "field"), [(b[1], b[2]) for b in BAD_ROWS],
                         ids=[b[0] for b in BAD_ROWS])  # fmt: skip
def test_a_bad_row_is_answered_by_row_and_field_and_nothing_is_imported(
    api: Api, line: str, field: str
) -> None:
    assert _import(api, GOOD_CSV).status_code == 200
    before = _registry(api)
    # Good rows around the bad one: a changed good row and a new one, neither stored.
    changed = "zz-002,新华街道便民服务中心(改),street_centre,410403,,,,,\n"
    new = "zz-010,新网点,kiosk,410402,,,,,\n"
    answer = _import(api, HEADER + changed + new + line + "\n")
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [(3, field)], errors
    assert errors[0]["message"]
    assert "row 3" in answer.json()["detail"]
    assert _registry(api) == before
    assert _listed(api)["total"] == 3


def test_file_level_problems_and_many_bad_rows(api: Api) -> None:
    cases = [
        (b"\xff\xfe not utf-8", "csv", "not UTF-8"),
        (b"", "csv", "no header row"),
        (HEADER.encode(), "csv", "no rows"),
        (b'{"outlets": 3}', "json", "expected a list"),
        (b"[{", "json", "not JSON"),
    ]
    for body, fmt, message in cases:
        answer = _import(api, body, fmt=fmt)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["errors"][0]["row"] == 0
        assert message in answer.json()["errors"][0]["message"], (body, answer.text)
    # An unknown column, and every row's every problem at once.
    answer = _import(api, json.dumps([{"id": "a", "name": "x", "kind": "kiosk",
                                       "region": "41", "phone": "1"},
                                      {"id": "b"}]), fmt="json")  # fmt: skip
    fields = sorted((e["row"], e["field"]) for e in answer.json()["errors"])
    assert fields == [(1, "phone"), (2, "kind"), (2, "name"), (2, "region")]
    assert _listed(api)["total"] == 0
    metrics = api.client.get("/metrics").text
    assert 'govedge_registry_imports_refused_total{reason="invalid_rows"} 6.0' in metrics


def test_viewers_export_but_do_not_import(api: Api) -> None:
    refused = _import(api, GOOD_CSV, headers=api.as_role(Role.VIEWER))
    assert refused.status_code == 403
    assert _listed(api)["total"] == 0
    assert _import(api, GOOD_CSV).status_code == 200
    csv_text = _export(api, "csv").text
    assert csv_text.startswith(HEADER)
    assert "zz-003,高新区24小时自助区,kiosk,410411,33.75,113.2,高新路8号,24h,社保卡补办" in csv_text
    bad = api.client.get(EXPORT, params={"format": "xml"}, headers=api.as_role(Role.VIEWER))
    assert bad.status_code == 422


def test_a_county_operator_imports_and_exports_only_the_county(api: Api) -> None:
    assert _import(api, GOOD_CSV).status_code == 200
    county = scoped_users(api, ("410402",))[OPERATOR]
    before = _registry(api)
    # One row in the county, one outside: refused whole, the outside row named.
    mixed = HEADER + "zz-020,城关新点,kiosk,41040201,,,,,\nzz-021,别县新点,kiosk,410403,,,,,\n"
    answer = _import(api, mixed, headers=county)
    assert answer.status_code == 403, answer.text
    assert "region scope" in answer.json()["detail"]
    assert [(e["row"], e["field"]) for e in answer.json()["errors"]] == [(2, "region")]
    # Nor may a county operator pull another county's outlet into their own.
    moved = HEADER + "zz-002,新华街道便民服务中心,street_centre,410402,,,,,\n"
    answer = _import(api, moved, headers=county)
    assert answer.status_code == 403, answer.text
    assert [(e["row"], e["field"]) for e in answer.json()["errors"]] == [(1, "id")]
    assert _registry(api) == before
    metrics = api.client.get("/metrics").text
    assert 'govedge_registry_imports_refused_total{reason="outside_scope"} 2.0' in metrics
    # Inside the county: imported; the county's export holds the county only.
    inside = HEADER + "zz-020,城关新点,kiosk,41040201,,,,,\n"
    assert _import(api, inside, headers=county).json()["created"] == 1
    exported = api.client.get(EXPORT, headers=county).json()["outlets"]
    assert [row["id"] for row in exported] == ["zz-001", "zz-020"]


def test_an_import_is_audited_with_its_counts(api: Api) -> None:
    assert _import(api, GOOD_CSV).status_code == 200
    rows = api.client.get(
        "/api/v1/audit", params={"action": "outlet_registry.import"},
        headers=api.as_role(Role.ADMIN),
    ).json()  # fmt: skip
    assert rows[0]["actor"] == "u-operator"
    assert rows[0]["after"] == {"format": "csv", "rows": 3, "created": 3, "updated": 0,
                                "unchanged": 0}  # fmt: skip
