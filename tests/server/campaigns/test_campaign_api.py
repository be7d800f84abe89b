"""Campaigns through the API: bodies refused, waves planned, one campaign per outlet,
pause/resume/abort, the read shapes, roles — and the wave and window rules alone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleet_server.campaigns.plan import DEFAULT_WAVES, wave_sizes
from fleet_server.campaigns.windows import window
from fleet_server.models import Outlet
from fleet_server.security import Role
from tests.server.config.kit import add_outlet
from tests.server.releases.kit import ReleaseApi, release_api, wheel_bytes, wheel_name

OUTLETS = [f"o-{n:02d}" for n in range(1, 21)]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ReleaseApi]:
    with release_api(tmp_path) as running:
        for version in ("1.4.0", "1.4.1", "1.5.0"):
            answer = running.upload(wheel_bytes(version), version, wheel_name(version))
            assert answer.status_code == 201, answer.text  # type: ignore[attr-defined]
        with running.session() as session:
            for outlet_id in OUTLETS:
                session.add(Outlet(id=outlet_id, display_name=None, created_at=datetime.now(UTC)))
                add_outlet(session, outlet_id, region="330102" if outlet_id < "o-11" else "4101",
                           kind="hall")  # fmt: skip
            session.commit()
        yield running


def _post(api: ReleaseApi, path: str, body: Any = None, role: Role = Role.OPERATOR) -> Any:
    return api.client.post(f"/api/v1/campaigns{path}", json=body, headers=api.as_role(role))


def _get(api: ReleaseApi, path: str = "") -> Any:
    answer = api.client.get(f"/api/v1/campaigns{path}", headers=api.as_role(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"release": "1.4.0", "target": {}}, "at least one"),
        ({"release": "1.4.0", "target": {"kinds": ["hall"]}, "waves": [0]}, "whole number"),
        ({"release": "1.4.0", "target": {"kinds": ["hall"]}, "waves": ["150%"]}, "share"),
        ({"release": "1.4.0", "target": {"kinds": ["hall"]}, "success_threshold": 2}, "less"),
        ({"release": "1.4.0", "target": {"kinds": ["hall"]}, "colour": "red"}, "colour"),
        ({"target": {"kinds": ["hall"]}}, "release"),
        ({"release": "1.4.0", "target": {"kinds": ["kiosk"]}}, "no outlet"),
        ({"release": "1.4.0", "target": {"tags": ["north"]}}, "no outlet"),
    ],
)
def test_a_bad_body_is_refused_with_its_reason(
    api: ReleaseApi, body: dict[str, Any], says: str
) -> None:
    answer = _post(api, "", body)
    assert answer.status_code == 422
    assert says in answer.text
    assert _get(api) == []


def test_a_missing_or_bad_release_is_a_conflict(api: ReleaseApi) -> None:
    assert _post(api, "", {"release": "9.9.9", "target": {"kinds": ["hall"]}}).status_code == 409
    api.client.post("/api/v1/releases/1.5.0/bad", json={"reason": "crash"},
                    headers=api.as_role(Role.OPERATOR))  # fmt: skip
    answer = _post(api, "", {"release": "1.5.0", "target": {"kinds": ["hall"]}})
    assert answer.status_code == 409
    assert "bad" in answer.text


def test_waves_are_planned_in_order_canary_first(api: ReleaseApi) -> None:
    answer = _post(api, "", {"name": "spring", "release": "1.4.0", "target": {"kinds": ["hall"]}})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert [w["size"] for w in created["waves"]] == [1, 1, 8, 10]
    metrics = api.client.get("/metrics").text
    assert "govedge_campaign_offers_sent_total" in metrics
    assert "govedge_campaign_reports_ignored_total" in metrics
    assert created["state"] == "running"
    assert created["excluded"] == {"count": 0, "outlets": []}
    assert created["settings"]["success_threshold"] == 0.9
    page = _get(api, f"/{created['id']}/outlets?limit=3")
    assert page["total"] == 20
    assert [(o["outlet_id"], o["wave"]) for o in page["outlets"]] == [
        ("o-01", 0), ("o-02", 1), ("o-03", 2)]  # fmt: skip
    assert set(page["outlets"][0]) >= {"outlet_id", "wave", "state", "since", "reason",
                                       "detail", "from_version"}  # fmt: skip
    assert _get(api, f"/{created['id']}/outlets?wave=3")["total"] == 10
    assert _get(api, f"/{created['id']}/outlets?state=healthy")["total"] == 0
    one = _get(api, f"/{created['id']}/outlets/o-01")
    # Pending since creation, or scheduled once the engine started the canary's wave.
    assert [h["state"] for h in one["history"]] in ([], ["scheduled"])
    assert one["state"] in ("pending", "scheduled")


def test_one_campaign_per_outlet_and_the_transitions(api: ReleaseApi) -> None:
    first = _post(api, "", {"release": "1.4.0", "target": {"regions": ["33"]}}).json()
    second = _post(api, "", {"release": "1.4.0", "target": {"kinds": ["hall"]}})
    assert second.status_code == 201
    assert second.json()["excluded"]["count"] == 10
    assert second.json()["excluded"]["outlets"][0] == "o-01"
    assert second.json()["outlets"] == 10
    cid = first["id"]
    assert [c["id"] for c in _get(api)] == [second.json()["id"], cid]  # newest first
    assert _post(api, f"/{cid}/resume").status_code == 409  # running, not paused
    assert _post(api, f"/{cid}/pause", role=Role.VIEWER).status_code == 403
    paused = _post(api, f"/{cid}/pause", {"reason": "holiday"})
    assert (paused.status_code, paused.json()["state_reason"]) == (200, "holiday")
    assert _post(api, f"/{cid}/pause").status_code == 409
    resumed = _post(api, f"/{cid}/resume", {"release": "1.4.1"})
    assert (resumed.json()["state"], resumed.json()["release"]) == ("running", "1.4.1")
    assert _post(api, f"/{cid}/resume", {"release": "9.9.9"}).status_code == 409
    aborted = _post(api, f"/{cid}/abort", {"reason": "wrong build"}).json()
    assert aborted["state"] == "aborted"
    assert aborted["totals"]["skipped"] == 10
    assert _post(api, f"/{cid}/resume").status_code == 409
    assert _post(api, f"/{cid}/abort").status_code == 409
    history = _get(api, f"/{cid}/outlets/o-01")["history"]
    assert (history[-1]["state"], history[-1]["reason"]) == ("skipped", "aborted")
    # Its outlets are free again.
    third = _post(api, "", {"release": "1.4.1", "target": {"regions": ["3301"]}})
    assert third.status_code == 201
    assert third.json()["outlets"] == 10
    assert _post(api, "", {"release": "1.4.0", "target": {"kinds": ["hall"]}},
                 role=Role.VIEWER).status_code == 403  # fmt: skip
    assert (
        api.client.get("/api/v1/campaigns/999", headers=api.as_role(Role.VIEWER)).status_code == 404
    )


def test_wave_sizes() -> None:
    assert wave_sizes(DEFAULT_WAVES, 1000) == [1, 9, 90, 400, 500]
    assert wave_sizes(DEFAULT_WAVES, 1) == [1]
    assert wave_sizes([2, 3], 10) == [2, 8]  # the rest joins the last wave
    assert wave_sizes(["50%", "50%", "100%"], 4) == [2, 2]


def test_windows_are_closed_hours_or_the_quiet_window() -> None:
    monday_10 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    hours = {"time_zone": "UTC", "mon": ["08:30-17:00"], "tue": ["08:30-17:00"]}
    assert window(hours, now=monday_10, default_zone="UTC") is None  # open: no offer
    evening = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
    assert window(hours, now=evening, default_zone="UTC") == datetime(2026, 12, 8, 8, 30,
                                                                     tzinfo=UTC)  # fmt: skip
    always = {"time_zone": "UTC", "always_open": True, "quiet_window": "23:00-05:00"}
    assert window(always, now=monday_10, default_zone="UTC") is None
    night = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    assert window(always, now=night, default_zone="UTC") == datetime(2026, 12, 8, 5, 0,
                                                                    tzinfo=UTC)  # fmt: skip


def test_tags_on_outlet_profiles_choose_a_campaigns_outlets(api: ReleaseApi) -> None:
    admin = api.as_role(Role.OPERATOR)
    tagged = [
        {"outlet_id": "o-03", "kind": "hall", "region_code": "330102", "tags": ["pilot"]},
        {"outlet_id": "o-14", "kind": "hall", "region_code": "4101",
         "tags": ["new-printers", "pilot"]},
        {"outlet_id": "o-15", "kind": "hall", "region_code": "4101", "tags": ["other"]},
    ]  # fmt: skip
    stored = api.client.put("/api/v1/outlet-profiles", json=tagged, headers=admin)
    assert stored.status_code == 200, stored.text
    shown = api.client.get("/api/v1/outlets/o-14/health", headers=api.as_role(Role.VIEWER))
    assert shown.json()["tags"] == ["new-printers", "pilot"]
    # Any of the given tags; other filters still AND with them.
    answer = _post(api, "", {"release": "1.4.0", "target": {"tags": ["pilot", "nope"]}})
    assert answer.status_code == 201, answer.text
    page = _get(api, f"/{answer.json()['id']}/outlets")
    assert sorted(o["outlet_id"] for o in page["outlets"]) == ["o-03", "o-14"]
    both = _post(api, "", {"release": "1.4.0", "target": {"tags": ["other"], "regions": ["4101"]}})
    assert both.status_code == 201, both.text
    assert [o["outlet_id"] for o in _get(api, f"/{both.json()['id']}/outlets")["outlets"]] == [
        "o-15"
    ]
    # A tag is a short lower-case label: anything else is refused, nothing stored.
    bad = dict(tagged[2], tags=["Has Space"])
    refused = api.client.put("/api/v1/outlet-profiles", json=[bad], headers=admin)
    assert refused.status_code == 422
    again = api.client.get("/api/v1/outlets/o-15/health", headers=api.as_role(Role.VIEWER))
    assert again.json()["tags"] == ["other"]
