"""The policy figures (docs/fleet-health.md, "The policy figures") from records the test
makes, through the real app on SQLite and PostgreSQL: grouped by kind, region and
outlet, narrowed by region, period and the caller's scope."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet_server.grafana import load_dashboards
from fleet_server.grafana.scoping import folder_plans
from fleet_server.security import Role
from fleet_server.security.users import create_user
from tests.health import records
from tests.security.api_harness import Api, running_api

NOW = datetime.now(UTC)
OFFICE = {"mon": ["08:30-17:30"], "tue": ["08:30-17:30"]}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1", database_url=url) as harness:
        _seed(harness)
        yield harness


def _seed(api: Api) -> None:
    """Two counties: 410522 with two township centres, two kiosks (one open around the
    clock) and a village station; 410523 with a street centre and nothing else."""
    ago = NOW - timedelta(days=20)
    with api.session() as session, session.begin():
        many = [f"X{i}" for i in range(198)]
        records.outlet(
            session,
            "t1",
            kind="township_centre",
            region="410522100",
            at=ago,
            items=[*many, "C1", "BC2"],
        )  # C2 listed by its catalogue code
        records.outlet(
            session, "t2", kind="township_centre", region="410522101", at=ago, items=["C1"]
        )
        records.outlet(session, "k1", kind="kiosk", region="410522100001", at=ago, hours="24h")
        records.outlet(session, "k2", kind="kiosk", region="410522101", at=ago, hours=OFFICE)
        records.outlet(
            session,
            "v1",
            kind="village_station",
            region="410522100002",
            at=ago,
            items=[*many[:39], "C3"],
        )
        records.outlet(session, "s1", kind="street_centre", region="410523001", at=ago)
        records.catalogue_item(session, "C1", kinds=["township_centre"], regions=["410522"], at=ago)
        records.catalogue_item(session, "C2", kinds=["township_centre"], regions=["4105"], at=ago)
        records.catalogue_item(session, "C3", kinds=["village_station"], regions=["41"], at=ago)
        # t1: 10 cases; 5 citizens' ratings (one 差评), 2 system defaults, 2 tickets
        records.cases(session, "t1", 10, at=ago)
        records.evaluations(session, "t1", [5, 5, 4, 3, 2], at=ago)
        records.evaluations(session, "t1", [5, 5], at=ago, default=True)
        # called back and closed before its deadline (NOW - 5 days)
        records.ticket(session, "t1", opened=ago, closed=NOW - timedelta(days=10), follow_up="回访")
        # never followed up, past its deadline
        records.ticket(session, "t1", opened=ago)
        # t2: 4 cases, 3 ratings, one ticket followed up and not yet due
        records.cases(session, "t2", 4, at=NOW - timedelta(days=2))
        records.evaluations(session, "t2", [4, 4, 4], at=NOW - timedelta(days=2))
        records.ticket(session, "t2", opened=NOW - timedelta(days=2), follow_up="回访")
        # Before the period: never counted.
        records.cases(session, "t1", 5, at=NOW - timedelta(days=40))
        records.evaluations(session, "t1", [1, 1], at=NOW - timedelta(days=40))


def _figures(api: Api, query: str = "", role: Role = Role.VIEWER) -> dict[str, Any]:
    answer = api.client.get(f"/api/v1/evaluations/figures?{query}", headers=api.as_role(role))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _rows(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in figures["rows"]}


def test_by_kind_each_figure_from_its_records(api: Api) -> None:
    figures = _figures(api, "by=kind")
    assert figures["targets"] == {
        "active_evaluation_rate": 0.6, "follow_up_rate": 1.0,
        "on_time_rectification_rate": 1.0, "kiosk_coverage": 0.2,
    }  # fmt: skip
    assert figures["service_item_targets"]["township_centre"] == 200
    rows = _rows(figures)
    assert set(rows) == {"township_centre", "street_centre", "kiosk", "village_station"}
    town = rows["township_centre"]
    # Ratings: t1 5 + 2 defaults + 2 tickets' 差评, t2 3 + 1; defaults are not active.
    assert (town["cases"], town["evaluations"], town["active_evaluations"]) == (14, 13, 11)
    assert town["active_evaluation_rate"] == round(11 / 14, 4)
    assert town["satisfaction_rate"] == round(9 / 13, 4)
    assert town["bad_reviews"] == 4
    assert (town["rectifications"], town["followed_up"]) == (3, 2)
    assert town["follow_up_rate"] == round(2 / 3, 4)
    # Known outcome: one closed on time, one open past its deadline; t2's is not yet due.
    assert (town["rectifications_due"], town["rectified_on_time"]) == (2, 1)
    assert town["on_time_rectification_rate"] == 0.5
    assert town["overdue_open"] == 1
    # 就近可办: t1 handles C1 and C2 (by its catalogue code), t2 only C1.
    assert (town["nearby_outlets"], town["nearby_complete"]) == (2, 1)
    assert town["nearby_coverage"] == 0.5
    assert town["nearby_item_share"] == 0.75
    # t1 has a 24-hour kiosk in its region; t2's kiosk keeps office hours.
    assert (town["centres"], town["centres_with_kiosk"], town["kiosk_coverage"]) == (2, 1, 0.5)
    assert (town["item_target_outlets"], town["item_target_met"]) == (2, 1)
    assert town["service_items_per_outlet"] == 100.5
    village = rows["village_station"]
    assert (village["nearby_coverage"], village["item_target_rate"]) == (1.0, 1.0)
    street = rows["street_centre"]
    assert street["nearby_coverage"] is None  # no catalogue item assigned to it there
    assert (street["kiosk_coverage"], street["item_target_rate"]) == (0.0, 0.0)
    assert street["active_evaluation_rate"] is None  # no cases: nothing to divide by
    kiosk = rows["kiosk"]
    assert (kiosk["outlets"], kiosk["centres"], kiosk["kiosk_coverage"]) == (2, 0, None)
    total = figures["total"]
    assert (total["outlets"], total["centres"], total["centres_with_kiosk"]) == (6, 3, 1)
    assert total["kiosk_coverage"] == round(1 / 3, 4)


def test_by_region_outlet_and_period(api: Api) -> None:
    rows = _rows(_figures(api, "by=region"))
    assert set(rows) == {"410522", "410523"}
    assert (rows["410522"]["outlets"], rows["410523"]["outlets"]) == (5, 1)
    assert rows["410523"]["kiosk_coverage"] == 0.0
    assert _rows(_figures(api, "by=region&region_digits=9"))["410522100"]["outlets"] == 3
    # One county's outlets, one row each.
    only = _figures(api, "by=outlet&region=410523")
    assert [row["key"] for row in only["rows"]] == ["s1"]
    # The last 7 days: only t2's records.
    since = (NOW - timedelta(days=7)).isoformat().replace("+00:00", "Z")
    week = _rows(_figures(api, f"by=outlet&since={since}"))
    assert (week["t1"]["cases"], week["t1"]["evaluations"]) == (0, 0)
    assert (week["t2"]["cases"], week["t2"]["active_evaluation_rate"]) == (4, 1.0)
    # 40 days back: the old 差评 and cases count too.
    since = (NOW - timedelta(days=41)).isoformat().replace("+00:00", "Z")
    old = _rows(_figures(api, f"by=outlet&since={since}"))["t1"]
    assert (old["cases"], old["bad_reviews"]) == (15, 5)


def test_bad_queries_are_refused(api: Api) -> None:
    headers = api.as_role(Role.VIEWER)
    backwards = "since=2026-12-05T00:00:00Z&until=2026-12-01T00:00:00Z"
    for query, named in (("by=window", "by"), ("region=41x", "region"),
                         ("region_digits=1", "region_digits"), (backwards, "since")):  # fmt: skip
        answer = api.client.get(f"/api/v1/evaluations/figures?{query}", headers=headers)
        assert answer.status_code == 422, (query, answer.text)
        assert named in str(answer.json()["detail"]), (query, answer.text)
    # 30 days before the first instant there is: a clear refusal, not a crash.
    for route in ("figures", "stats"):
        answer = api.client.get(
            f"/api/v1/evaluations/{route}?until=0001-01-01T00:00:00Z", headers=headers
        )
        assert answer.status_code == 422, answer.text
        assert "give since" in answer.json()["detail"]


def test_a_county_operator_sees_only_the_county(api: Api) -> None:
    with api.session() as session, session.begin():
        token = create_user(session, name="county-b", role=Role.VIEWER, ttl=timedelta(hours=1),
                            actor="test", regions=["410523"]).token  # fmt: skip
    answer = api.client.get(
        "/api/v1/evaluations/figures?by=outlet", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    figures = answer.json()
    assert [row["key"] for row in figures["rows"]] == ["s1"]
    # The other county's kiosks and centres count for nothing here.
    total = figures["total"]
    assert (total["outlets"], total["centres"], total["centres_with_kiosk"]) == (1, 1, 0)
    assert total["evaluations"] == 0


def test_metrics_carry_the_counts_by_city_and_kind_never_outlets(api: Api) -> None:
    answer = api.client.get("/metrics", headers=api.as_role(Role.ADMIN))
    assert answer.status_code == 200, answer.text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }

    def figure(name: str, region: str, kind: str) -> float:
        return samples[(f"govedge_figure_{name}", (("kind", kind), ("region", region)))]

    # Region codes cut to 4 digits (city): both counties fall under 4105.
    assert figure("cases", "4105", "township_centre") == 14
    assert figure("active_evaluations", "4105", "township_centre") == 11
    assert figure("followed_up", "4105", "township_centre") == 2
    assert figure("centres", "4105", "street_centre") == 1
    assert figure("centres_with_kiosk", "4105", "township_centre") == 1
    assert figure("nearby_complete", "4105", "village_station") == 1
    assert samples[("govedge_figure_target", (("figure", "kiosk_coverage"),))] == 0.2
    labels = {label for (name, labels) in samples if name.startswith("govedge_figure_")
              for label in labels}  # fmt: skip
    assert {key for key, _ in labels} <= {"region", "kind", "figure"}
    assert not {value for _, value in labels} & {"t1", "t2", "k1", "k2", "v1", "s1"}


def test_the_figures_dashboard_queries_series_the_server_serves(api: Api) -> None:
    """Each series the policy-figures dashboard queries is one /metrics serves, with the
    labels its queries and variables use."""
    served = {
        s.name
        for family in text_string_to_metric_families(
            api.client.get("/metrics", headers=api.as_role(Role.ADMIN)).text
        )
        for s in family.samples
    }
    (board,) = [b for b in load_dashboards() if b["uid"] == "govedge-policy-figures"]
    exprs = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    queried = {name for expr in exprs for name in re.findall(r"\bgovedge_[a-z_]+", expr)}
    assert len(queried) >= 10
    assert sorted(queried - served) == []
    labels = {label for expr in exprs for label in re.findall(r"by \((\w+)\)", expr)}
    assert labels == {"region", "kind"}
    variables = {v["name"]: v["definition"] for v in board["templating"]["list"]}
    assert variables == {
        "region": "label_values(govedge_figure_outlets, region)",
        "kind": "label_values(govedge_figure_outlets, kind)",
    }


def test_the_county_dashboards_query_series_the_server_serves(api: Api) -> None:
    """A county's copies (fleet-server grafana sync --scope) read the region-labelled
    series: each ``govedge_*`` one they query is one /metrics serves (the others are the
    outlets' telemetry, tagged by the time-series writer)."""
    # By family: a family this fixture has no outlets for is served, without samples.
    served = {
        family.name
        for family in text_string_to_metric_families(
            api.client.get("/metrics", headers=api.as_role(Role.ADMIN)).text
        )
    }
    (_fleet, county) = folder_plans(load_dashboards(), [("4101",)])
    exprs = [t["expr"] for b in county.dashboards for p in b["panels"] for t in p["targets"]]
    queried = {name for expr in exprs for name in re.findall(r"\bgovedge_[a-z_]+", expr)}
    assert "govedge_region_outlets" in queried
    assert sorted(queried - served) == []
