"""Every API endpoint by every role, found by walking ``app.routes`` (new ones included).

For each route the required role is read from its ``require_role``/``require_roles``
dependency. No token → 401; a role below → 403; the required role and above → anything
but 401/403. Routes without a role must be explicitly open (enrollment, probes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from fleet_server.security import Role
from govedge_testbed import Mosquitto
from tests.security.api_harness import Api, running_api

_READS = {"GET", "HEAD", "OPTIONS"}


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


@dataclass(frozen=True)
class Route:
    """One API route as mounted (prefix and router-level dependencies applied)."""

    path: str
    methods: frozenset[str]
    dependant: Dependant


def _mounted(app: Any) -> list[Route]:
    """Every API route of ``app``; FastAPI ≥ 0.16x mounts included routers lazily."""
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]
    except ImportError:
        return [
            Route(r.path, frozenset(r.methods), r.dependant)
            for r in app.routes
            if isinstance(r, APIRoute)
        ]
    return [
        Route(ctx.path, frozenset(ctx.methods), ctx.dependant)
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute)
    ]


def _policy(route: Route, method: str) -> Role | str:
    """The role ``method`` on ``route`` needs, or "open"/"probe"."""
    needed: list[Role] = []
    kind = ""
    for call in _calls(route.dependant):
        if method not in _READS and hasattr(call, "write_role"):
            needed.append(call.write_role)
        elif hasattr(call, "required_role"):
            needed.append(call.required_role)
        if getattr(call, "open_endpoint", False):
            kind = "open"
        if getattr(call, "probe", False):
            kind = "probe"
    if needed:
        return max(needed, key=lambda role: role.rank)
    return kind or "unguarded"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
def api(tmp_path: Path, broker: Mosquitto) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url=broker.url) as running:
        yield running


def _routes(api: Api) -> list[tuple[Route, str]]:
    return [
        (route, method) for route in _mounted(api.client.app) for method in sorted(route.methods)
    ]


def _call(api: Api, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method not in _READS:
        kwargs["json"] = {}
    # Streamed so an event-stream endpoint answers with its status and is left at once.
    with api.client.stream(method, path, **kwargs) as response:
        return response.status_code


def test_every_route_has_a_policy(api: Api) -> None:
    unguarded = [
        f"{method} {route.path}"
        for route, method in _routes(api)
        if _policy(route, method) == "unguarded"
    ]
    assert unguarded == [], (
        "add dependencies=[Depends(require_role(Role.X))] where the router is included "
        "in fleet_server/app.py (or mark the route open on purpose)"
    )


def test_writes_need_more_than_viewer(api: Api) -> None:
    weak = [
        f"{method} {route.path}"
        for route, method in _routes(api)
        if method not in _READS and _policy(route, method) == Role.VIEWER
    ]
    assert weak == []


def test_every_endpoint_by_role(api: Api) -> None:
    checked = 0
    for route, method in _routes(api):
        policy = _policy(route, method)
        path = _concrete(route.path)
        if not isinstance(policy, Role):
            continue
        assert _call(api, method, path, {}) == 401, f"{method} {path} without a token"
        bad = {"Authorization": "Bearer gvt_not-a-real-token"}
        assert _call(api, method, path, bad) == 401, f"{method} {path} with a bad token"
        for role in Role:
            code = _call(api, method, path, api.as_role(role))
            if role.allows(policy):
                assert code not in (401, 403), f"{method} {path} as {role} → {code}"
            else:
                assert code == 403, f"{method} {path} as {role} → {code}, needs {policy}"
        checked += 1
    assert checked >= 10


def test_open_routes_need_no_token(api: Api) -> None:
    for route, method in _routes(api):
        if _policy(route, method) in ("open", "probe"):
            code = _call(api, method, _concrete(route.path), {})
            assert code not in (401, 403), f"{method} {route.path} → {code}"


def test_probes_can_require_a_token(tmp_path: Path, broker: Mosquitto) -> None:
    with running_api(tmp_path, mqtt_url=broker.url, probes_require_auth=True) as api:
        assert api.client.get("/healthz").status_code == 401
        assert api.client.get("/healthz", headers=api.as_role(Role.VIEWER)).status_code == 200


def test_development_switch_lets_everyone_in(tmp_path: Path, broker: Mosquitto) -> None:
    with running_api(tmp_path, mqtt_url=broker.url, api_auth="off") as api:
        assert api.client.get("/api/v1/me").json() == {"name": "dev", "role": "admin"}
