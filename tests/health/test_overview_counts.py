"""The fleet overview counted in SQL, and the map's light points and page (issue 17)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete

from fleet_server.health.map_view import LABEL_LIMIT
from fleet_server.health.tables import DeviceState, OutletProfile
from fleet_server.models import Agent, Outlet
from fleet_server.security import Role
from tests.security.api_harness import Api, running_api

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _device(outlet_id: str, device_id: str, state: str, **health: Any) -> DeviceState:
    return DeviceState(
        outlet_id=outlet_id, device_id=device_id, kind="ticket_printer", model=None,
        firmware=None, state=state, state_since=NOW, last_seen=NOW, health=health,
        error_count=0, reads_ok=0, reads_failed=0,
    )  # fmt: skip


def _profile(outlet_id: str, region: str, kind: str, *, placed: bool = True) -> OutletProfile:
    return OutletProfile(
        outlet_id=outlet_id, name=None, kind=kind, region_code=region,
        latitude=33.7 if placed else None, longitude=113.3 if placed else None,
        service_items=[],
    )  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("overview"), mqtt_url="mqtt://127.0.0.1:1") as api:
        with api.session() as session, session.begin():
            # a: online, profiled; b: offline, profiled; c: registered, no agent, no
            # profile; d: profiled only (no birth yet), without coordinates.
            for outlet_id in ("a", "b", "c"):
                session.add(Outlet(id=outlet_id, display_name=None, created_at=NOW))
            for outlet_id, state in (("a", "online"), ("b", "offline")):
                session.add(Agent(outlet_id=outlet_id, state=state, state_since=NOW, devices=[]))
            session.add_all(
                [
                    _profile("a", "410402", "kiosk"),
                    _profile("b", "410402", "township_centre"),
                    _profile("d", "410403", "kiosk", placed=False),
                    _device("a", "p1", "ready", paper="ok"),
                    _device("a", "p2", "ready", paper="near_end"),
                    _device("a", "p3", "error"),
                    _device("b", "p1", "ready"),
                ]
            )
        yield api


def _get(api: Api, path: str) -> Any:
    response = api.client.get(path, headers=api.as_role(Role.VIEWER))
    assert response.status_code == 200, response.text
    return response.json()


def test_overview_counts_registered_and_profiled_outlets(api: Api) -> None:
    overview = _get(api, "/api/v1/fleet/overview")
    assert overview["outlets"] == 4
    assert overview["by_state"] == {"online": 1, "offline": 1, "unknown": 2}
    regions = {row["region_code"]: row for row in overview["by_region"]}
    assert (regions["410402"]["online"], regions["410402"]["offline"]) == (1, 1)
    assert (regions["410403"]["unknown"], regions["-"]["unknown"]) == (1, 1)
    kinds = {row["kind"]: row for row in overview["by_kind"]}
    assert kinds["kiosk"] == {"kind": "kiosk", "online": 1, "unknown": 1}


def test_overview_lists_devices_in_trouble_only(api: Api) -> None:
    trouble = _get(api, "/api/v1/fleet/overview")["devices_in_trouble"]
    listed = [(d["outlet_id"], d["device_id"], d["state"]) for d in trouble]
    # a/p1 is fine; a/p2 is low on paper; b's devices are stale (its agent is offline).
    assert listed == [("a", "p2", "ready"), ("a", "p3", "error"), ("b", "p1", "stale")]


def test_map_points_carry_only_id_coordinates_and_state(api: Api) -> None:
    points = _get(api, "/api/v1/fleet/map-points")
    assert points == [
        {"id": "a", "lat": 33.7, "lon": 113.3, "state": "online"},
        {"id": "b", "lat": 33.7, "lon": 113.3, "state": "offline"},
    ]


def test_the_map_page_carries_no_points_and_its_data_lists_the_unplaced(api: Api) -> None:
    page = api.client.get("/ui/map", headers=api.as_role(Role.VIEWER))
    assert page.status_code == 200, page.text
    boot = json.loads(page.text.split('<script id="boot" type="application/json">')[1]
                      .split("</script>")[0])  # fmt: skip
    # The points come from map-points; the page holds regions, the unplaced and labels.
    assert set(boot["data"]) == {"regions", "unplaced", "unplaced_total", "labels"}
    data = _get(api, "/ui/data/map")
    assert data["unplaced"] == [
        {"outlet_id": "c", "name": "c", "state": "unknown"},
        {"outlet_id": "d", "name": "d", "state": "unknown"},
    ]
    assert data["unplaced_total"] == 2
    # Few placed outlets: their names and kinds come along, to label the points.
    assert data["labels"] == {
        "a": {"name": "a", "kind": "kiosk"},
        "b": {"name": "b", "kind": "township_centre"},
    }


def test_a_fleet_too_big_to_label_gets_no_names_with_the_map(api: Api) -> None:
    many = [f"m-{n:03d}" for n in range(LABEL_LIMIT)]
    with api.session() as session, session.begin():
        session.add_all([_profile(outlet_id, "410402", "kiosk") for outlet_id in many])
    try:
        data = _get(api, "/ui/data/map")
        assert data["labels"] == {}
        assert len(_get(api, "/api/v1/fleet/map-points")) == LABEL_LIMIT + 2
    finally:
        with api.session() as session, session.begin():
            session.execute(delete(OutletProfile).where(OutletProfile.outlet_id.in_(many)))
