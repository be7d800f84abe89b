"""Each part of govedge imports only what its extra declares (docs/development.md).

The base dependencies are the wire contract's; an outlet PC installs ``govedge[agent]``,
the fleet server ``govedge[server]``, an operator's laptop ``govedge[cli]``. The third-
party imports of every part are read from the source with ``ast`` (lazy imports count
too), mapped to the distributions that provide them, and must be declared in the base
or in that part's extra; every declared distribution must be used by its part.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
OWN = {*PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"], "device_profiles"}
FLEETCTL = ("fleet_server/__init__.py", "fleet_server/fleetctl*.py")

# Declared but never imported by name: each with the reason it is needed.
USED_WITHOUT_IMPORT = {
    # the PostgreSQL driver SQLAlchemy loads for a postgresql+psycopg:// URL; and
    # ansible-playbook, the command ansible-runner starts for each playbook run
    "server": {"psycopg", "ansible-core"},
    # uvicorn's WebSocket protocol, serving the local API's /v1/events
    "agent": {"websockets"},
}


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them (PyYAML == pyyaml)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, set[str]]:
    """Distribution names per extra, the base under ``""``, from pyproject.toml."""
    project = PYPROJECT["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    return {
        extra: {normalized(Requirement(r).name) for r in reqs} for extra, reqs in groups.items()
    }


DECLARED = declared()


def part_files(part: str) -> Iterator[Path]:
    """The source files of a part: a package, fleetctl's modules, or the rest of the server."""
    fleetctl = {p for pattern in FLEETCTL for p in ROOT.glob(pattern)}
    if part == "fleetctl":
        yield from sorted(fleetctl)
    else:
        yield from (p for p in sorted((ROOT / part).rglob("*.py")) if p not in fleetctl)


def third_party_imports(files: Iterator[Path]) -> dict[str, set[str]]:
    """Top-level module names imported from outside this repository -> the files importing them."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@cache
def installed_modules() -> dict[str, list[str]]:
    return packages_distributions()


def distributions_of(module: str) -> set[str]:
    """The installed distributions providing a top-level module (cv2 -> opencv-python-headless)."""
    return {normalized(d) for d in installed_modules().get(module, [])}


# part -> the extras whose every one must provide what the part imports (besides the base)
PARTS = {
    "govedge_wire": ("",),
    # the ASGI helpers both HTTP servers use: on the outlet and on the server
    "govedge_http": ("agent", "server"),
    # the systemd units' shared checks: the standard library only, on either machine
    "govedge_systemd": ("agent", "server"),
    "edge_agent": ("agent",),
    "fleet_server": ("server",),
    "fleetctl": ("cli",),
    # the demo and the test services run every side: any of the three may provide
    "govedge_testbed": ("agent+server+cli",),
}


def undeclared(part: str) -> list[str]:
    problems = []
    for module, files in sorted(third_party_imports(part_files(part)).items()):
        dists = distributions_of(module)
        if not dists:
            problems.append(f"{module}: no installed distribution provides it ({sorted(files)})")
            continue
        for extra in PARTS[part]:
            allowed = DECLARED[""].union(*(DECLARED[name] for name in extra.split("+")))
            if not dists & allowed:
                where = f"govedge[{extra}]" if extra else "the base dependencies"
                problems.append(
                    f"{module} ({'/'.join(sorted(dists))}) not in {where}: {sorted(files)}"
                )
    return problems


@pytest.mark.parametrize("part", list(PARTS))
def test_every_import_is_declared_for_its_part(part: str) -> None:
    assert undeclared(part) == []


@pytest.mark.parametrize(
    ("extra", "parts"),
    [
        ("", ("govedge_wire",)),
        ("agent", ("edge_agent", "govedge_http", "govedge_systemd")),
        ("server", ("fleet_server", "govedge_http", "govedge_systemd")),
        ("cli", ("fleetctl",)),
    ],
)
def test_every_declared_dependency_is_used(extra: str, parts: tuple[str, ...]) -> None:
    # A dependency nobody imports any more would stay installed on every machine.
    imported = set().union(
        *(distributions_of(m) for part in parts for m in third_party_imports(part_files(part)))
    )
    unused = DECLARED[extra] - imported - USED_WITHOUT_IMPORT.get(extra, set())
    assert unused == set()


def test_the_import_reader_sees_what_it_must() -> None:
    # The checks above are only as good as the reader: a few imports known to exist,
    # among them lazy ones (pyusb inside functions) and renamed ones (yaml, cv2).
    agent = third_party_imports(part_files("edge_agent"))
    assert {"cv2", "smartcard", "usb", "yaml", "aiomqtt"} <= agent.keys()
    assert distributions_of("cv2") == {"opencv-python-headless"}
    assert distributions_of("yaml") == {"pyyaml"}
    assert distributions_of("smartcard") == {"pyscard"}
    server = third_party_imports(part_files("fleet_server"))
    assert {"sqlalchemy", "alembic", "influxdb_client", "grafana_client"} <= server.keys()
    assert "rich" not in server  # only fleetctl prints tables
    assert third_party_imports(part_files("fleetctl")).keys() == {"click", "httpx", "rich"}


def test_an_undeclared_import_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DECLARED, "agent", DECLARED["agent"] - {"pyscard"})
    assert any(
        p.startswith("smartcard (pyscard) not in govedge[agent]") for p in undeclared("edge_agent")
    )


def test_fleetctl_imports_nothing_else_of_the_server() -> None:
    # govedge[cli] suffices only while fleetctl's modules (and the package's empty
    # __init__) import no server module, which would pull in SQLAlchemy and the rest.
    others = []
    for path in part_files("fleetctl"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fleet_server"):
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            others += [
                f"{path.name}: {n}"
                for n in names
                if n.startswith("fleet_server") and not n.startswith("fleet_server.fleetctl")
            ]
    assert others == []
