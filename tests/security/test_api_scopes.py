"""Every route by a region-scoped user, like the role table (test_api_roles.py).

Two outlets: ``in-1`` inside the users' scope (prefix 4101) and ``out-1`` outside
(4201), each with an alert, dead letter, rectification, evaluation, campaign, playbook
run, config layer and alert override. ``ROUTES`` classifies every mounted route (a new
route fails ``test_every_route_is_classified`` until it is added):

- ``read``: no outlet in the path; the answer never names ``out-1`` (or its region),
  and ``shows`` routes name ``in-1``, so an empty answer cannot pass;
- ``one``: the path names an outlet or a row of outlets: inside → not 404/403,
  outside → 404, as for a thing that does not exist;
- ``target``: a write whose body chooses outlets: inside → not 403, outside → 403;
- ``layer``: a config layer's write, the layer in the path: the same as ``target``;
- ``fleet``: a fleet-wide write or the whole server's figures: 403 for scoped users;
- ``admin``, ``open``: no scoped user can call it / no outlet data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet_server.security import Role
from govedge_testbed import Mosquitto
from tests.security.api_harness import Api, running_api
from tests.security.scope_seed import INSIDE, OUTSIDE, REGIONS, Rows, scoped_users, seed_two_outlets
from tests.security.test_api_roles import TABLE, _admits, _mounted


@dataclass(frozen=True)
class Case:
    kind: str
    # read: how the answer shows an outlet it may show ("id": its id, "region": its region
    # code, "count": one evaluation each in "evaluations"); "": it shows none.
    shows: str = ""
    body: Any = None  # target: a function (outlet id, region) → body


def _campaign(outlet: str, region: str) -> dict[str, Any]:
    return {"release": "9.9.9", "target": {"regions": [region]}}


def _run(outlet: str, region: str) -> dict[str, Any]:
    return {"playbook": "noop.yml", "target": {"outlets": [outlet]}}


def _validate(outlet: str, region: str) -> dict[str, Any]:
    return {"scope": f"outlet:{outlet}", "document": {}}


def _registry(outlet: str, region: str) -> list[dict[str, Any]]:
    return [{"id": outlet, "name": "网点", "kind": "township_centre", "region": region}]


def _override(outlet: str, region: str) -> dict[str, Any]:
    return {"scope": "outlet", "scope_value": outlet, "rule": "outlet_offline", "params": {}}


READ, SHOWS, ONE, FLEET, ADMIN, OPEN = (
    Case("read"), Case("read", shows="id"), Case("one"), Case("fleet"), Case("admin"),
    Case("open"),
)  # fmt: skip
ROUTES: dict[tuple[str, str], Case] = {
    ("GET", "/api/v1/alert-rules/effective/{outlet_id}"): ONE,
    ("DELETE", "/api/v1/alert-rules/{override_id}"): ONE,
    ("GET", "/api/v1/alert-rules"): SHOWS,
    ("PUT", "/api/v1/alert-rules"): Case("target", body=_override),
    ("POST", "/api/v1/alerts/evaluate"): FLEET,
    ("POST", "/api/v1/alerts/{alert_id}/ack"): ONE,
    ("POST", "/api/v1/alerts/{alert_id}/silence"): ONE,
    ("GET", "/api/v1/alerts/{alert_id}"): ONE,
    ("GET", "/api/v1/alerts"): SHOWS,
    ("GET", "/api/v1/audit"): ADMIN,
    ("POST", "/api/v1/catalogue/import"): FLEET,
    ("GET", "/api/v1/catalogue/items"): READ,
    ("GET", "/api/v1/config/drift"): READ,
    ("POST", "/api/v1/config/validate"): Case("target", body=_validate),
    ("GET", "/api/v1/config/{scope}/diff"): ONE,
    ("POST", "/api/v1/config/{scope}/rollback"): Case("layer", body=lambda o, r: {"version": 1}),
    ("GET", "/api/v1/config/{scope}/versions/{version}"): ONE,
    ("GET", "/api/v1/config/{scope}/versions"): ONE,
    ("GET", "/api/v1/config/{scope}"): ONE,
    ("PUT", "/api/v1/config/{scope}"): Case("layer", body=lambda o, r: {}),
    ("GET", "/api/v1/config"): SHOWS,
    ("POST", "/api/v1/campaigns/{campaign_id}/abort"): ONE,
    ("GET", "/api/v1/campaigns/{campaign_id}/outlets/{outlet_id}"): ONE,
    ("GET", "/api/v1/campaigns/{campaign_id}/outlets"): ONE,
    ("POST", "/api/v1/campaigns/{campaign_id}/pause"): ONE,
    ("POST", "/api/v1/campaigns/{campaign_id}/resume"): ONE,
    ("GET", "/api/v1/campaigns/{campaign_id}"): ONE,
    ("GET", "/api/v1/campaigns"): SHOWS,
    ("POST", "/api/v1/campaigns"): Case("target", body=_campaign),
    ("POST", "/api/v1/dead-letters/{dead_letter_id}/replay"): ONE,
    ("GET", "/api/v1/dead-letters/{dead_letter_id}"): ONE,
    ("GET", "/api/v1/dead-letters"): SHOWS,
    ("POST", "/api/v1/enroll/renew"): OPEN,
    ("POST", "/api/v1/enroll"): OPEN,
    ("POST", "/api/v1/enrollments"): FLEET,
    ("GET", "/api/v1/evaluations/figures"): Case("read", shows="region"),
    ("GET", "/api/v1/evaluations/stats"): Case("read", shows="count"),
    ("GET", "/api/v1/fleet/overview"): SHOWS,
    ("GET", "/api/v1/fleet/map-points"): SHOWS,
    ("GET", "/api/v1/ingest/rate-limits"): READ,
    ("GET", "/api/v1/ingest/stats"): FLEET,
    ("GET", "/api/v1/me"): READ,
    ("PUT", "/api/v1/outlet-profiles"): FLEET,
    ("GET", "/api/v1/outlets.geojson"): SHOWS,
    ("GET", "/api/v1/outlets/export"): SHOWS,
    ("POST", "/api/v1/outlets/import"): Case("target", body=_registry),
    ("GET", "/api/v1/outlets/{outlet_id}/access"): ONE,
    ("PUT", "/api/v1/outlets/{outlet_id}/access"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}/certificates"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}/config"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}/health"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}/playbook-runs"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}/archives"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}/archives/{archive_id}"): ONE,
    ("DELETE", "/api/v1/outlets/{outlet_id}/host-key"): ADMIN,
    ("POST", "/api/v1/outlets/{outlet_id}/revoke"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}/transactions/{tx_id}"): ONE,
    ("GET", "/api/v1/outlets/{outlet_id}"): ONE,
    ("GET", "/api/v1/outlets"): SHOWS,
    ("GET", "/api/v1/playbooks"): READ,
    ("GET", "/api/v1/playbook-runs"): SHOWS,
    ("POST", "/api/v1/playbook-runs"): Case("target", body=_run),
    ("GET", "/api/v1/playbook-runs/{run_id}"): ONE,
    ("POST", "/api/v1/playbook-runs/{run_id}/cancel"): ONE,
    ("GET", "/api/v1/playbook-runs/{run_id}/events"): ONE,
    ("GET", "/api/v1/playbook-runs/{run_id}/stream"): ONE,
    ("POST", "/api/v1/rectifications/{rectification_id}/follow-up"): ONE,
    ("GET", "/api/v1/rectifications"): SHOWS,
    ("GET", "/api/v1/regions"): READ,
    ("GET", "/api/v1/releases/{version}/artifact"): READ,
    ("POST", "/api/v1/releases/{version}/bad"): FLEET,
    ("GET", "/api/v1/releases/{version}/manifest"): READ,
    ("GET", "/api/v1/releases/{version}"): READ,
    ("GET", "/api/v1/releases"): READ,
    ("POST", "/api/v1/releases"): FLEET,
    ("PUT", "/api/v1/regions"): FLEET,
    ("POST", "/api/v1/regions/import"): FLEET,
    # Carries a version number only; what a client refetches is scoped. Its body is read
    # (the first event): test_the_stream_names_no_outlet.
    ("GET", "/api/v1/stream"): READ,
    ("GET", "/api/v1/timeseries/stats"): FLEET,
    ("GET", "/api/v1/transactions/status"): READ,
    ("GET", "/api/v1/transactions"): SHOWS,
    ("POST", "/api/v1/users/{name}/disable"): ADMIN,
    ("PUT", "/api/v1/users/{name}/scope"): ADMIN,
    ("POST", "/api/v1/users/{name}/tokens"): ADMIN,
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users/{name}/password"): ADMIN,
    ("POST", "/api/v1/users/{name}/unlock"): ADMIN,
    ("POST", "/api/v1/users/{name}/sessions/revoke"): ADMIN,
    ("GET", "/api/v1/enrollments"): ADMIN,
    ("GET", "/api/v1/certificates"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/healthz"): OPEN,
    # A probe without a credential; a user's own scope with one (test_metrics_by_scope_kind).
    ("GET", "/metrics"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/ui/campaigns"): READ,
    # The operators' pages: shells whose data comes from the scoped APIs above.
    ("GET", "/ui/alerts"): READ,
    ("GET", "/ui/dead-letters"): READ,
    ("GET", "/ui/transactions"): READ,
    ("GET", "/ui/rectifications"): READ,
    ("GET", "/ui/playbook-runs"): READ,
    ("GET", "/ui/playbook-runs/{run_id}"): ONE,
    ("GET", "/ui/campaigns/{campaign_id}"): ONE,
    ("GET", "/ui/config"): SHOWS,
    ("GET", "/ui/data/config"): SHOWS,
    ("GET", "/ui/data/evaluations"): SHOWS,
    ("GET", "/ui/data/map"): SHOWS,
    ("GET", "/ui/evaluations"): SHOWS,
    ("GET", "/"): OPEN,
    ("GET", "/ui/login"): OPEN,
    ("POST", "/ui/login"): OPEN,
    ("POST", "/ui/logout"): OPEN,
    ("GET", "/ui/map"): SHOWS,
    ("GET", "/ui/outlets/{outlet_id}"): ONE,
    ("GET", "/ui/outlets"): READ,
    ("GET", "/ui/audit"): ADMIN,
    ("GET", "/ui/users"): ADMIN,
    ("GET", "/ui/enrollment"): ADMIN,
    ("GET", "/ui/overview"): SHOWS,
    ("GET", "/ui/static/{name}"): OPEN,
    ("GET", "/ui"): READ,
}


@pytest.fixture
def api(tmp_path: Path, broker: Mosquitto) -> Iterator[Api]:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "noop.yml").write_text("- name: noop\n  hosts: all\n  tasks: []\n")
    with running_api(tmp_path, mqtt_url=broker.url, playbooks_dir=playbooks) as running:
        yield running


def _values(rows: dict[str, Rows], outlet: str) -> dict[str, str]:
    row = rows[outlet]
    return {
        "outlet_id": outlet, "alert_id": str(row.alert), "dead_letter_id": str(row.dead_letter),
        "rectification_id": str(row.rectification), "campaign_id": str(row.campaign),
        "run_id": str(row.run), "override_id": str(row.override), "scope": f"outlet:{outlet}",
        "tx_id": f"tx-{outlet}", "version": "1", "archive_id": str(row.archive),
    }  # fmt: skip


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: values.get(m.group(1), "1"), path)


def _role_for(method: str, path: str) -> Role:
    """The lowest non-admin role the role table admits (scoped users are never admins)."""
    policy = TABLE[method, path]
    for role in (Role.VIEWER, Role.OPERATOR, Role.TECHNICIAN):
        if isinstance(policy, Role | frozenset) and _admits(policy, role):
            return role
    return Role.TECHNICIAN


def _call(api: Api, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    """(status, body); of an event stream, its first event."""
    kwargs: dict[str, Any] = {"headers": headers}
    if method not in ("GET", "HEAD"):
        kwargs["json"] = {} if body is None else body
    with api.client.stream(
        method, path, params={"minutes": "5", "from": "1", "to": "1"}, **kwargs
    ) as response:
        if "event-stream" in response.headers.get("content-type", ""):
            text = ""
            for chunk in response.iter_text():
                text += chunk
                if "\n\n" in text:
                    break
            return response.status_code, text
        response.read()
        return response.status_code, response.text


def _shown(how: str, text: str, outlet: str) -> bool:
    """The answer of a ``shows`` route carries ``outlet`` (counts name none: _counted)."""
    if how == "region":
        return REGIONS[outlet] in text
    return outlet in text


def _counted(how: str, text: str, expected: set[str]) -> bool:
    """A ``count`` route counts exactly the ``expected`` outlets' evaluations (one each)."""
    return how != "count" or json.loads(text)["evaluations"] == len(expected)


def test_every_route_is_classified(api: Api) -> None:
    mounted = {(m, r.path) for r in _mounted(api.client.app) for m in r.methods}
    assert sorted(mounted - set(ROUTES)) == [], "classify the new routes in ROUTES"
    assert sorted(set(ROUTES) - mounted) == [], "routes in ROUTES that are gone"


def test_every_route_by_a_scoped_user(api: Api) -> None:
    rows = seed_two_outlets(api)
    users = scoped_users(api)
    inside, outside = _values(rows, INSIDE), _values(rows, OUTSIDE)
    seen: dict[str, int] = {}
    # Reads first: the writes (a DELETE, an abort) change what the reads see.
    for (method, path), case in sorted(ROUTES.items(), key=lambda kv: (kv[0][0] != "GET", kv)):
        if case.kind in ("admin", "open"):
            continue
        headers = users[_role_for(method, path)]
        where = f"{method} {path}"
        if case.kind == "read":
            code, text = _call(api, method, _fill(path, inside), headers)
            if method == "GET":
                assert OUTSIDE not in text, where
                assert REGIONS[OUTSIDE] not in text, where
            if case.shows:
                assert code == 200, f"{where} → {code}: {text[:300]}"
                if case.shows != "count":
                    assert _shown(case.shows, text, INSIDE), f"{where}: {text[:300]}"
                assert _counted(case.shows, text, {INSIDE}), f"{where}: {text[:300]}"
        elif case.kind == "one":
            code, text = _call(api, method, _fill(path, inside), headers)
            assert code not in (403, 404), f"{where} inside → {code}: {text[:300]}"
            if method == "GET":
                assert OUTSIDE not in text, where
            code, _ = _call(api, method, _fill(path, outside), headers)
            assert code == 404, f"{where} outside → {code}"
        elif case.kind in ("target", "layer"):
            url = _fill(path, inside)
            code, text = _call(api, method, url, headers, case.body(INSIDE, REGIONS[INSIDE]))
            assert code not in (403, 404), f"{where} inside → {code}: {text[:300]}"
            url = _fill(path, outside)
            code, text = _call(api, method, url, headers, case.body(OUTSIDE, REGIONS[OUTSIDE]))
            assert code == 403, f"{where} outside → {code}: {text[:300]}"
            assert "region scope" in text, f"{where}: the reason is given"
        elif case.kind == "fleet":
            code, _ = _call(api, method, _fill(path, inside), headers)
            assert code == 403, f"{where} → {code}"
            whole = api.as_role(_role_for(method, path))
            code, _ = _call(api, method, _fill(path, inside), whole)
            assert code != 403, f"{where} as a whole-fleet user → {code}"
        seen[case.kind] = seen.get(case.kind, 0) + 1
    # Every kind ran, so a classification typo cannot empty the loop.
    assert set(seen) == {"read", "one", "target", "layer", "fleet"}
    assert sum(seen.values()) == sum(c.kind not in ("admin", "open") for c in ROUTES.values())


# The scope kinds: none (the whole fleet), one prefix, two prefixes, another county's.
SCOPE_KINDS = pytest.mark.parametrize(
    ("prefixes", "expected"),
    [((), {INSIDE, OUTSIDE}), (("4101",), {INSIDE}), (("4101", "4201"), {INSIDE, OUTSIDE}),
     (("4102",), set())],
    ids=["none", "one-prefix", "two-prefixes", "other-prefix"],
)  # fmt: skip


@SCOPE_KINDS
def test_every_route_that_shows_outlets_by_scope_kind(
    api: Api, prefixes: tuple[str, ...], expected: set[str]
) -> None:
    """Every read that shows outlet data, and every read naming one outlet, for each
    scope kind: exactly the outlets of the scope, never one outside, never none when
    the scope has some."""
    rows = seed_two_outlets(api)
    users = scoped_users(api, prefixes)
    values = {outlet: _values(rows, outlet) for outlet in (INSIDE, OUTSIDE)}
    checked = 0
    for (method, path), case in sorted(ROUTES.items()):
        if method != "GET" or not (case.shows or case.kind == "one"):
            continue
        headers = users[_role_for(method, path)]
        if case.kind == "one":
            for outlet in (INSIDE, OUTSIDE):
                code, text = _call(api, method, _fill(path, values[outlet]), headers)
                where = f"{path} {outlet} {prefixes}"
                if outlet in expected:
                    assert code not in (403, 404), f"{where} → {code}: {text[:300]}"
                else:
                    assert code == 404, f"{where} → {code}"
        else:
            code, text = _call(api, method, _fill(path, values[INSIDE]), headers)
            where = f"{path} {prefixes}"
            assert code == 200, f"{where} → {code}: {text[:300]}"
            for outlet in (INSIDE, OUTSIDE):
                if case.shows != "count":
                    seen = _shown(case.shows, text, outlet)
                    assert seen == (outlet in expected), f"{where} {outlet}: {text[:300]}"
            assert _counted(case.shows, text, expected), f"{where}: {text[:300]}"
        checked += 1
    assert checked == sum(
        m == "GET" and (c.shows != "" or c.kind == "one") for (m, _), c in ROUTES.items()
    )


def test_the_stream_names_no_outlet(api: Api) -> None:
    """``/api/v1/stream`` as a scoped user, its body read: a change event carrying only
    a version number and the server process's id, nothing of an outlet inside or
    outside the scope."""
    seed_two_outlets(api)
    headers = scoped_users(api)[Role.VIEWER]
    code, text = _call(api, "GET", "/api/v1/stream", headers)
    assert code == 200
    assert text.startswith("event: change\ndata: "), text
    data = json.loads(text.split("data: ", 1)[1])
    assert sorted(data) == ["hub", "version"], text
    assert isinstance(data["version"], int), text
    assert re.fullmatch(r"[0-9a-f]{8}", data["hub"]), text
    for outlet in (INSIDE, OUTSIDE):
        assert outlet not in text
        assert REGIONS[outlet] not in text


@SCOPE_KINDS
def test_outlet_list_and_overview_by_scope_kind(
    api: Api, prefixes: tuple[str, ...], expected: set[str]
) -> None:
    seed_two_outlets(api)
    headers = scoped_users(api, prefixes)[Role.VIEWER]
    page = api.client.get("/api/v1/outlets", headers=headers).json()
    assert {item["outlet_id"] for item in page["items"]} == expected
    assert page["total"] == len(expected)
    overview = api.client.get("/api/v1/fleet/overview", headers=headers).json()
    assert overview["outlets"] == len(expected)
    assert overview["by_state"] == ({"online": len(expected)} if expected else {})
    regions = {row["region_code"] for row in overview["by_region"]}
    assert regions == {REGIONS[o] for o in expected}
    assert {a["outlet_id"] for a in overview["open_alerts"]} == expected


def test_a_new_scope_applies_at_once(api: Api) -> None:
    seed_two_outlets(api)
    headers = scoped_users(api)[Role.VIEWER]
    assert api.client.get(f"/api/v1/outlets/{OUTSIDE}", headers=headers).status_code == 404
    admin = api.as_role(Role.ADMIN)
    answer = api.client.put("/api/v1/users/s1-viewer/scope", json={"regions": []}, headers=admin)
    assert answer.status_code == 200
    assert answer.json()["regions"] == []
    # The same token, no new login: the whole fleet now.
    assert api.client.get(f"/api/v1/outlets/{OUTSIDE}", headers=headers).status_code == 200
    api.client.put("/api/v1/users/s1-viewer/scope", json={"regions": ["4201"]}, headers=admin)
    assert api.client.get(f"/api/v1/outlets/{INSIDE}", headers=headers).status_code == 404
    assert api.client.get("/api/v1/me", headers=headers).json()["regions"] == ["4201"]


def test_admins_are_always_whole_fleet(api: Api) -> None:
    admin = api.as_role(Role.ADMIN)
    answer = api.client.put("/api/v1/users/u-admin/scope", json={"regions": ["4101"]},
                            headers=admin)  # fmt: skip
    assert answer.status_code == 400
    assert "whole-fleet" in answer.text


def _series(text: str) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Metric name → the label sets of its samples."""
    found: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).add(tuple(sorted(sample.labels.items())))
    return found


def _values_of(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


@pytest.mark.parametrize(
    ("prefixes", "expected"),
    [((), {INSIDE, OUTSIDE}), (("4101",), {INSIDE}), (("4101", "4201"), {INSIDE, OUTSIDE}),
     (("4102",), set())],
    ids=["none", "one-prefix", "two-prefixes", "other-prefix"],
)  # fmt: skip
def test_metrics_by_scope_kind(
    tmp_path: Path, broker: Mosquitto, prefixes: tuple[str, ...], expected: set[str]
) -> None:
    """A user's token on /metrics: the outlets' series over the user's outlets only; a
    scoped user gets none of the server's own counters (whole-fleet traffic)."""
    with running_api(tmp_path, mqtt_url=broker.url, probes_require_auth=True) as api:
        seed_two_outlets(api)
        headers = scoped_users(api, prefixes)[Role.VIEWER]
        answer = api.client.get("/metrics", headers=headers)
        assert answer.status_code == 200, answer.text
        text = answer.text
    outlets = _values_of(text, "govedge_outlets")
    assert sum(outlets.values()) == len(expected)
    regions = {dict(labels)["region"] for labels in _values_of(text, "govedge_figure_outlets")}
    assert regions == {REGIONS[o][:4] for o in expected}
    if prefixes:
        assert "govedge_ingest_received_total" not in _series(text)
        assert "govedge_http_refused_total" not in _series(text)
        # One open alert, one evaluation and one 差评 per seeded outlet.
        assert _values_of(text, "govedge_alerts_open") == {(): float(len(expected))}
        assert _values_of(text, "govedge_evaluations_count") == {(): float(len(expected))}
    else:
        assert "govedge_http_refused_total" in _series(text)


def test_metrics_for_a_county_labels_the_county(tmp_path: Path, broker: Mosquitto) -> None:
    with running_api(tmp_path, mqtt_url=broker.url) as api:
        seed_two_outlets(api)
        headers = scoped_users(api, (REGIONS[INSIDE],))[Role.VIEWER]
        text = api.client.get("/metrics", headers=headers).text
    figure = _values_of(text, "govedge_figure_outlets")
    assert figure == {(("kind", "street_centre"), ("region", REGIONS[INSIDE])): 1.0}
    assert _values_of(text, "govedge_figure_bad_reviews") == {
        (("kind", "street_centre"), ("region", REGIONS[INSIDE])): 1.0
    }
    presence = _values_of(text, "govedge_region_outlets")  # the county's Grafana counts it
    assert {dict(labels)["region"] for labels in presence} == {REGIONS[INSIDE]}
    assert sum(presence.values()) == 1.0


def test_metrics_without_a_credential_is_the_fleet_probe(tmp_path: Path, broker: Mosquitto) -> None:
    """Open probes (the default): no credential gives the whole fleet's totals; a scoped
    user's token still gives only their series; a bad token is refused, not ignored."""
    with running_api(tmp_path, mqtt_url=broker.url) as api:
        seed_two_outlets(api)
        scoped = scoped_users(api)[Role.VIEWER]
        probe = api.client.get("/metrics")
        assert probe.status_code == 200
        assert "govedge_http_refused_total" in _series(probe.text)
        whole = _values_of(probe.text, "govedge_region_outlets")
        assert {dict(labels)["region"] for labels in whole} == {r[:4] for r in REGIONS.values()}
        assert sum(whole.values()) == len(REGIONS)
        mine = api.client.get("/metrics", headers=scoped)
        assert mine.status_code == 200
        assert sum(_values_of(mine.text, "govedge_outlets").values()) == 1
        bad = api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401


def test_metrics_probe_needs_a_token_when_the_operator_says_so(
    tmp_path: Path, broker: Mosquitto
) -> None:
    with running_api(tmp_path, mqtt_url=broker.url, probes_require_auth=True) as api:
        seed_two_outlets(api)
        scoped = scoped_users(api)[Role.VIEWER]
        assert api.client.get("/metrics").status_code == 401
        whole = api.client.get("/metrics", headers=api.as_role(Role.VIEWER))
        assert whole.status_code == 200
        assert "govedge_http_refused_total" in _series(whole.text)
        mine = api.client.get("/metrics", headers=scoped)
        assert mine.status_code == 200
        assert "govedge_http_refused_total" not in _series(mine.text)
        assert api.client.get("/healthz", headers=scoped).status_code == 200
