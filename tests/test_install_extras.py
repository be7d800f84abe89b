"""The built wheel's extras, and what each machine gets when it installs one.

The wheel is built offline with the pinned ``uv`` (hatchling from uv's cache, put there
by ``scripts/bootstrap``). Each extra is then installed, offline from the same cache,
into a fresh environment with the locked versions (``uv sync --no-editable``: the
project as a built wheel, no development tools) and run as that machine would run it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from contextlib import closing
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import missing
from tests.test_dependencies import DECLARED, ROOT, normalized

SERVER_ONLY = {
    "psycopg",
    "alembic",
    "sqlalchemy",
    "influxdb-client",
    "grafana-client",
    "prometheus-client",
    "ansible-runner",
    "ansible-core",
}
AGENT_ONLY = {
    "pyscard",
    "opencv-python-headless",
    "numpy",
    "pyudev",
    "pyusb",
    "pyserial",
    "aiomqtt",
}


def find_uv() -> str:
    pinned = ROOT / ".tools" / "venv" / "bin" / "uv"
    found = str(pinned) if pinned.exists() else shutil.which("uv")
    if found is None:
        missing("uv is not installed (scripts/bootstrap puts it in .tools/venv)")
    return found


def run_uv(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [find_uv(), *args],
        cwd=ROOT,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        # Offline, uv can only use what its cache holds; bootstrap fills it.
        missing(f"uv {args[0]} offline failed (run scripts/bootstrap first): {done.stderr[-800:]}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run_uv("build", "--wheel", "--offline", "--out-dir", str(out))
    (built,) = out.glob("govedge-*.whl")
    return built


def requires_by_extra(wheel: Path) -> dict[str, set[str]]:
    """Distribution names the wheel's METADATA requires, per extra (the base under "")."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    extras = metadata.get_all("Provides-Extra") or []
    found: dict[str, set[str]] = {extra: set() for extra in ["", *extras]}
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        owners = [e for e in extras if marker.evaluate({"extra": e})] if marker else [""]
        for extra in owners:
            found[extra].add(normalized(requirement.name))
    return found


def test_the_wheel_declares_each_machine_its_own_dependencies(wheel: Path) -> None:
    requires = requires_by_extra(wheel)
    assert requires == DECLARED  # what pyproject.toml says is what the wheel says
    assert requires[""] == {"pydantic", "cryptography", "packaging"}
    assert requires["cli"] == {"click", "httpx", "rich"}
    assert requires["agent"] & SERVER_ONLY == set()
    assert requires["server"] & AGENT_ONLY == set()
    assert requires["server"] >= SERVER_ONLY
    assert requires["agent"] >= AGENT_ONLY


def installed(extra: str, where: Path) -> Path:
    """A fresh environment with govedge[extra] at the locked versions; its bin directory."""
    run_uv(
        *("sync", "--frozen", "--offline", "--no-dev", "--no-editable", "--extra", extra),
        *("--python", sys.executable),
        env={"UV_PROJECT_ENVIRONMENT": str(where / extra)},
    )
    return where / extra / "bin"


def distributions(bin_dir: Path) -> set[str]:
    listing = subprocess.run(
        [
            bin_dir / "python",
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {normalized(name) for name in json.loads(listing.stdout)}


def run(bin_dir: Path, *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [bin_dir / args[0], *args[1:]],
        cwd=cwd,  # outside the checkout, so only the installed packages are importable
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_outlet_pc_gets_the_agent_without_the_servers_libraries(tmp_path: Path) -> None:
    bin_dir = installed("agent", tmp_path)
    assert distributions(bin_dir) & (SERVER_ONLY | {"rich"}) == set()
    assert distributions(bin_dir) >= AGENT_ONLY
    # every device kind loads (the camera's OpenCV, the card reader's pyscard), the
    # local API and the daemon import, and the shipped device profiles validate
    kinds = run(
        bin_dir,
        "python",
        "-c",
        "import edge_agent.daemon, edge_agent.local_api.app;"
        "from edge_agent.devices.registry import kinds; print(' '.join(kinds()))",
        cwd=tmp_path,
    )
    assert {"document_camera", "social_security_card_reader", "id_card_reader"} <= set(
        kinds.split()
    )
    assert "9 profiles ok" in run(bin_dir, "edge-agent", "profiles", "check", cwd=tmp_path)


def test_a_fleet_server_gets_the_server_without_the_agents_libraries(tmp_path: Path) -> None:
    bin_dir = installed("server", tmp_path)
    assert distributions(bin_dir) & (AGENT_ONLY | {"rich", "websockets"}) == set()
    # the migrations ship in the wheel and run: a real SQLite database gets its tables
    database = tmp_path / "fleet.db"
    run(bin_dir, "fleet-server", "migrate", "--database-url", f"sqlite:///{database}", cwd=tmp_path)
    with closing(sqlite3.connect(database)) as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master")}
    assert {"outlets", "inbox", "alembic_version"} <= tables
    run(bin_dir, "python", "-c", "import fleet_server.app, fleet_server.cli", cwd=tmp_path)


def test_an_operators_laptop_gets_fleetctl_alone(tmp_path: Path) -> None:
    bin_dir = installed("cli", tmp_path)
    assert distributions(bin_dir) & (SERVER_ONLY | AGENT_ONLY | {"fastapi", "uvicorn"}) == set()
    assert "outlets" in run(bin_dir, "fleetctl", "--help", cwd=tmp_path)
