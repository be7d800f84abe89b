"""Every API endpoint by every role, against the role table written once in docs/security.md.

The table ("Every route and its role") is the specification; the routes are found by
walking ``app.routes``. Every mounted route must have a row and every row a route. Then
each route is called: no token → 401; a role below its row's → 403; that role and above
→ anything but 401/403; ``open``/``probe`` rows → anything but 401/403 without a token.
So a wrong ``require_role`` in the code fails here, whatever the code declares. The
declarations are also compared with the table, to name the culprit.
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
_DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
_HEADING = "### Every route and its role"
# A role (that role and every one above it on the ladder), or roles joined by "+" (exactly
# those: config writes are "operator+admin", technicians only read).
_ROW = re.compile(r"^\| `([A-Z]+)` \| `([^`]+)` \| ([\w+]+) \|$")
_OPEN = ("open", "probe")

Policy = Role | str | frozenset[Role]


def _parse_policy(text: str) -> Policy:
    if text in _OPEN:
        return text
    if "+" in text:
        return frozenset(Role(name) for name in text.split("+"))
    return Role(text)


def _admits(policy: Role | frozenset[Role], role: Role) -> bool:
    return role in policy if isinstance(policy, frozenset) else role.allows(policy)


def role_table(text: str) -> dict[tuple[str, str], Policy]:
    """(method, path) → role, or "open"/"probe", from the table under ``_HEADING``."""
    section = text.split(_HEADING, 1)[1].split("\n#", 1)[0]
    table: dict[tuple[str, str], Policy] = {}
    for line in section.splitlines():
        found = _ROW.match(line.strip())
        if found is None:
            continue
        method, path, role = found.groups()
        assert (method, path) not in table, f"{method} {path} twice in the table"
        table[method, path] = _parse_policy(role)
    return table


TABLE = role_table(_DOC.read_text(encoding="utf-8"))


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


def _policy(route: Route, method: str) -> Policy:
    """The role ``method`` on ``route`` declares in the code, or "open" or "probe"."""
    needed: list[Role] = []
    kind = ""
    for call in _calls(route.dependant):
        if method not in _READS and hasattr(call, "write_roles"):
            return frozenset(call.write_roles)
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


def test_the_table_is_read() -> None:
    """The parser found the table: rows of every kind, so an empty parse cannot pass."""
    assert len(TABLE) >= 50
    assert {p for p in TABLE.values() if not isinstance(p, frozenset)} == {*Role, *_OPEN}
    assert TABLE["PUT", "/api/v1/config/{scope}"] == frozenset({Role.OPERATOR, Role.ADMIN})
    assert TABLE["POST", "/api/v1/users"] == Role.ADMIN
    assert TABLE["GET", "/healthz"] == "probe"


def test_every_route_is_in_the_table(api: Api) -> None:
    mounted = {(method, route.path) for route, method in _routes(api)}
    missing = sorted(f"{method} {path}" for method, path in mounted - set(TABLE))
    stale = sorted(f"{method} {path}" for method, path in set(TABLE) - mounted)
    assert missing == [], f"routes without a row in docs/security.md ({_HEADING})"
    assert stale == [], "rows in docs/security.md for routes that are gone"


def test_declarations_match_the_table(api: Api) -> None:
    wrong = [
        f"{method} {route.path}: declares {_policy(route, method)}, table says {TABLE[key]}"
        for route, method in _routes(api)
        if (key := (method, route.path)) in TABLE and _policy(route, method) != TABLE[key]
    ]
    assert wrong == [], "the route's dependencies in fleet_server/app.py disagree with the table"


def test_writes_need_more_than_viewer() -> None:
    weak = [
        f"{method} {path}"
        for (method, path), policy in TABLE.items()
        if method not in _READS and (policy == Role.VIEWER or policy == frozenset({Role.VIEWER}))
    ]
    assert weak == []


def test_every_endpoint_by_role(api: Api) -> None:
    checked = 0
    for method, path in sorted(TABLE):
        policy = TABLE[method, path]
        if not isinstance(policy, Role | frozenset):
            continue
        path = _concrete(path)
        assert _call(api, method, path, {}) == 401, f"{method} {path} without a token"
        bad = {"Authorization": "Bearer gvt_not-a-real-token"}
        assert _call(api, method, path, bad) == 401, f"{method} {path} with a bad token"
        for role in Role:
            code = _call(api, method, path, api.as_role(role))
            if _admits(policy, role):
                assert code not in (401, 403), f"{method} {path} as {role} → {code}"
            else:
                assert code == 403, f"{method} {path} as {role} → {code}, needs {policy}"
        checked += 1
    assert checked == sum(isinstance(policy, Role | frozenset) for policy in TABLE.values())


def test_open_routes_need_no_token(api: Api) -> None:
    opened = []
    for method, path in sorted(TABLE):
        if TABLE[method, path] in _OPEN:
            code = _call(api, method, _concrete(path), {})
            assert code not in (401, 403), f"{method} {path} → {code}"
            opened.append(f"{method} {path}")
    # The loop body ran for each open row: enrollment, the web entry and login with its
    # CSS/JS, and the probes.
    assert len(opened) == 10, opened


def test_probes_can_require_a_token(tmp_path: Path, broker: Mosquitto) -> None:
    with running_api(tmp_path, mqtt_url=broker.url, probes_require_auth=True) as api:
        assert api.client.get("/healthz").status_code == 401
        assert api.client.get("/healthz", headers=api.as_role(Role.VIEWER)).status_code == 200


def test_development_switch_lets_everyone_in(tmp_path: Path, broker: Mosquitto) -> None:
    with running_api(tmp_path, mqtt_url=broker.url, api_auth="off") as api:
        assert api.client.get("/api/v1/me").json() == {
            "name": "dev",
            "role": "admin",
            "regions": [],
        }
