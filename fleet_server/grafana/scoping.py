"""A region scope's copy of the shipped dashboards: every query kept to its outlets.

A county operator (region prefix ``4101``) gets the dashboards of ``dashboards/`` with
``region=~"4101.*"`` added to every series selector, in a folder of their own
(``sync``). Which series can be cut by region:

- the outlets' telemetry (``outlet_*``, ``device_*``): tagged with the outlet's full
  region code by the server (``fleet_server.timeseries.regions``);
- the policy figures' counts (``govedge_figure_*{region,kind}`` from ``/metrics``):
  their region label is cut to ``GOVEDGE_METRICS_REGION_DIGITS`` digits, so a scope
  deeper than that cannot be told apart in them and is refused (``ScopeRefused``).

- outlets by presence: ``govedge_outlets{state}`` is one fleet total, so the copy sums
  its twin ``govedge_region_outlets{region,state}`` over the scope instead (region cut
  as the figures').

Policy targets (``FLEET_CONSTANTS``) are the same for every county and stay as they
are. Every other series is a whole-fleet total or the server's own counter (ingest,
queue, database latency, fleet-wide 好差评 rates): a panel that reads one is left out
of the scoped copy, as scoped users' ``/metrics`` leaves those out; a dashboard left
with no panel is not made.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable
from typing import Any, Final

from fleet_server.grafana.sync import FolderPlan
from fleet_server.security.scope import ScopeError, normalise

# The dashboards' series, by whether they carry a ``region`` label.
REGIONAL_PREFIXES: Final = ("outlet_", "device_", "govedge_figure_", "govedge_region_")
FLEET_CONSTANTS: Final = frozenset(
    {
        "govedge_figure_target",
        "govedge_figure_service_items_target",
        "govedge_evaluations_active_rate_target",
    }
)
# Fleet totals with a per-region twin: the scoped copy sums the twin over the scope.
REGIONAL_TWINS: Final = {"govedge_outlets": "govedge_region_outlets"}
# A double-quoted PromQL string, or a series name with its optional ``{matchers}``.
_TOKEN: Final = re.compile(
    r'"(?:[^"\\]|\\.)*"'
    r"|(?<![\w:])(?P<name>(?:govedge|outlet|device)_[\w:]*)(?:\{(?P<matchers>[^}]*)\})?"
)
UID_MAX: Final = 40  # Grafana's limit on dashboard and folder uids


class ScopeRefused(ValueError):
    """A scope no dashboard can be cut to (bad prefix, or deeper than the figures')."""


def check_scope(prefixes: Iterable[str], *, region_digits: int) -> tuple[str, ...]:
    """The normalised prefixes of one scope, or ``ScopeRefused`` saying why not."""
    try:
        scope = normalise(prefixes)
    except ScopeError as exc:
        raise ScopeRefused(str(exc)) from None
    if not scope:
        raise ScopeRefused("an empty scope is the whole fleet, which the shipped dashboards show")
    deep = [p for p in scope if len(p) > region_digits]
    if deep:
        raise ScopeRefused(
            f"region prefix {deep[0]} is deeper than the policy figures' region label "
            f"({region_digits} digits, GOVEDGE_METRICS_REGION_DIGITS): raise that setting "
            "on the server first"
        )
    return scope


def scope_key(scope: tuple[str, ...]) -> str:
    """A short, stable name for a scope: ``4101`` or ``4101-4102`` (a hash when long)."""
    key = "-".join(scope)
    if len(key) > 16:
        key = "h" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return key


def region_matcher(scope: tuple[str, ...]) -> str:
    """The PromQL label matcher of a scope (prefixes are digits: nothing to escape)."""
    alternatives = scope[0] if len(scope) == 1 else "(" + "|".join(scope) + ")"
    return f'region=~"{alternatives}.*"'


class _Unscopable(Exception):
    """An expression reads a series without a region label."""


def scope_expr(expr: str, matcher: str) -> str:
    """``expr`` with ``matcher`` in every regional series selector; ``_Unscopable`` when
    it reads a whole-fleet series."""

    def rewrite(found: re.Match[str]) -> str:
        name = found.group("name")
        if name is None or name in FLEET_CONSTANTS:
            return found.group(0)
        inner = found.group("matchers")
        matchers = f"{matcher},{inner}" if inner else matcher
        twin = REGIONAL_TWINS.get(name)
        if twin is not None and not found.string.startswith("[", found.end()):
            return f"sum without (region) ({twin}{{{matchers}}})"
        if not name.startswith(REGIONAL_PREFIXES):
            raise _Unscopable(name)
        return f"{name}{{{matchers}}}"

    return _TOKEN.sub(rewrite, expr)


def _scoped_variables(board: dict[str, Any], matcher: str) -> None:
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict) and isinstance(query.get("query"), str):
            query["query"] = scope_expr(query["query"], matcher)
        elif isinstance(query, str):
            variable["query"] = scope_expr(query, matcher)
        if isinstance(variable.get("definition"), str):
            variable["definition"] = scope_expr(variable["definition"], matcher)


def scoped_dashboard(board: dict[str, Any], scope: tuple[str, ...]) -> dict[str, Any] | None:
    """The scope's copy of ``board``, or ``None`` when no panel of it can be scoped."""
    matcher = region_matcher(scope)
    scoped = copy.deepcopy(board)
    panels = []
    for panel in scoped["panels"]:
        try:
            for target in panel["targets"]:
                target["expr"] = scope_expr(target["expr"], matcher)
        except _Unscopable:
            continue
        panels.append(panel)
    if not panels:
        return None
    try:
        _scoped_variables(scoped, matcher)
    except _Unscopable:
        return None
    key = scope_key(scope)
    scoped.update(
        uid=f"{board['uid'][: UID_MAX - len(key) - 1]}-{key}",
        title=f"{board['title']} · {' '.join(scope)}",
        tags=[*board.get("tags", []), f"region:{key}"],
        panels=panels,
    )
    return scoped


FLEET_FOLDER_UID: Final = "govedge-fleet"
FLEET_TEAM: Final = "govedge-fleet"


def folder_plans(
    boards: list[dict[str, Any]], scopes: Iterable[tuple[str, ...]]
) -> list[FolderPlan]:
    """The whole fleet's folder (team ``govedge-fleet``) and one folder per scope (team
    ``govedge-region-KEY``) with the scope's copies of ``boards``."""
    plans = [FolderPlan(FLEET_FOLDER_UID, "govedge 全网 Whole fleet", FLEET_TEAM, boards)]
    for scope in sorted(set(scopes)):
        key = scope_key(scope)
        scoped = [b for b in (scoped_dashboard(board, scope) for board in boards) if b]
        plans.append(
            FolderPlan(
                f"govedge-region-{key}",
                f"govedge 地区 Region {' '.join(scope)}",
                f"govedge-region-{key}",
                scoped,
            )
        )
    return plans
