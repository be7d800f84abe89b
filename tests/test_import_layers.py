"""The import rules between the packages and inside the fleet server (docs/development.md).

Read from the source with ``ast`` (nothing is imported): every ``import`` counts, at
module level or inside a function, since a lazy import is a dependency all the same.
A *unit* is a top-level module or subpackage, e.g. ``fleet_server.ingest``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("govedge_wire", "govedge_systemd", "edge_agent", "fleet_server")

# Packages each package may not import at all.
FORBIDDEN = {
    "govedge_wire": {"edge_agent", "fleet_server", "govedge_testbed"},
    # shared by both units (the agent's and the server's): imports neither side
    "govedge_systemd": {"edge_agent", "fleet_server", "govedge_testbed"},
    "edge_agent": {"fleet_server", "govedge_testbed"},
    "fleet_server": {"edge_agent", "govedge_testbed"},
}

# The fleet server's layers, highest first: a unit never imports a unit of a higher
# layer. Units not listed are only held to "no cycles".
FLEET_LAYERS: list[set[str]] = [
    {"__main__", "cli", "server", "app"},
    {"runtime", "schema"},  # the process's wiring, and every table for migrations
    {"metrics_endpoint"},  # /metrics: the whole fleet's registry or a scope's series
    {"metrics", "web"},
    {"alerts"},
    {"campaigns"},  # update campaigns: waves, offers, reports (drives releases)
    # agent releases (stored artifacts, signed manifests, downloads); playbook runs
    {"releases", "playbooks"},
    {"config"},  # desired config: scopes, signing, publishing, drift
    {"health"},
    {"api"},  # shared auth and dependencies of every router
    {"ingest", "routing", "timeseries"},
    {"models"},
]

# Known cycles, each to be removed by the work named next to it.
KNOWN_CYCLES: list[set[str]] = []


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _imports(path: Path, module: str) -> Iterator[str]:
    """Absolute names imported by one file (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _existing_unit(name: str) -> str | None:
    """The unit ``name`` belongs to, if it is a unit of our packages (not an attribute)."""
    parts = name.split(".")
    if parts[0] not in (*PACKAGES, "govedge_testbed"):
        return None
    if len(parts) == 1:
        return parts[0]
    candidate = ROOT / parts[0] / parts[1]
    if candidate.is_dir() or candidate.with_suffix(".py").exists():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]  # a name defined in the package's __init__


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for module, path in _modules(package):
            source = _unit(module)
            edges.setdefault(source, set())
            for name in _imports(path, module):
                target = _existing_unit(name)
                if target is not None and target != source:
                    edges[source].add(target)
    return edges


GRAPH = _graph()


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_imports_it_must() -> None:
    # The checks below are only as good as the graph: a few imports known to exist.
    assert "fleet_server.ingest" in GRAPH["fleet_server.runtime"]
    assert "fleet_server.runtime" in GRAPH["fleet_server.app"]
    assert "fleet_server.models" in GRAPH["fleet_server.ingest"]
    assert "govedge_wire" in GRAPH["fleet_server.ingest"]
    edge_targets = set().union(*(GRAPH[u] for u in GRAPH if u.split(".")[0] == "edge_agent"))
    assert "govedge_wire" in edge_targets


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_keep_to_their_side(package: str) -> None:
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        if source.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in FORBIDDEN[package]
    )
    assert wrong == []


def test_fleet_server_layers_import_only_downwards() -> None:
    rank = {f"fleet_server.{unit}": i for i, layer in enumerate(FLEET_LAYERS) for unit in layer}
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        if source in rank
        for target in targets
        if target in rank and rank[target] < rank[source]
    )
    assert upward == []


def test_no_import_cycles_between_units() -> None:
    cycles = [sorted(c) for c in _cycles(GRAPH) if c not in KNOWN_CYCLES]
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
