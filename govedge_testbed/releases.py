"""Agent releases for tests: real wheels of this checkout, with an optional fault.

``build_release`` copies the tracked source tree (``git ls-files``), sets the version in
``pyproject.toml``, injects the fault into the copy and builds a wheel with
``uv build --wheel --offline``. Every release also carries one test hook: once the
agent is connected to the broker and runs under the supervisor (GOVEDGE_SUPERVISED=1)
it writes ``update/health.json`` for its version and pid. It stands in for the
installer's health proof so the supervisor can be tested apart; the agent code that
runs is the real one from the wheel.

``install_version`` makes ``versions/{v}/venv`` quickly: a fresh venv (``uv venv``) with
only the govedge wheel installed (``--no-deps``), and a ``.pth`` line that appends the
test environment's site-packages for the third-party libraries. Python adds a ``.pth``
line's directory *after* the venv's own site-packages and does not read the ``.pth``
files inside it, so ``edge_agent`` and the ``govedge`` version come from the installed
wheel, never from the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Literal

Fault = Literal["crash_on_start", "never_connects"]
ROOT = Path(__file__).resolve().parent.parent

HEALTH_HOOK = (
    "                    import os as _os  # test release hook\n"
    "                    if _os.environ.get('GOVEDGE_SUPERVISED'):\n"
    "                        from importlib.metadata import version as _version\n"
    "                        from edge_agent.updates.layout import home_from_env, write_health\n"
    "                        write_health(home_from_env(), _version('govedge'), _os.getpid())\n"
)
CONNECTED = "                    connected_at = loop.time()\n"
RUN_START = '    """Connect to the broker and run until SIGTERM/SIGINT."""\n'
FAULTS: dict[str, tuple[str, str]] = {
    # the agent exits with code 1 before it does anything
    "crash_on_start": (RUN_START, RUN_START + '    raise SystemExit("injected fault")\n'),
    # the configured broker is ignored: every connect goes to a closed port
    "never_connects": (
        RUN_START,
        RUN_START + '    cli_values["mqtt_url"] = "mqtt://127.0.0.1:9"\n',
    ),
}


def find_uv() -> str:
    """The pinned uv from scripts/bootstrap, else one on PATH."""
    pinned = ROOT / ".tools" / "venv" / "bin" / "uv"
    found = str(pinned) if pinned.exists() else shutil.which("uv")
    if found is None:
        raise FileNotFoundError("uv is not installed (scripts/bootstrap puts it in .tools/venv)")
    return found


def _uv(*args: str, cwd: Path) -> None:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [find_uv(), *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=300
    )


def _patch(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise ValueError(f"cannot inject into {path.name}: anchor not found")
    path.write_text(text.replace(old, new, 1))


def build_release(dest: Path, version: str, fault: Fault | None = None) -> Path:
    """Build govedge ``version`` (with ``fault`` injected) into ``dest``; the wheel."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, timeout=60
    ).stdout.decode()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="govedge-release-") as tmp:
        tree = Path(tmp)
        for name in filter(None, files.split("\0")):
            source = ROOT / name
            if source.is_file():
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, tree / name)
        pyproject = tree / "pyproject.toml"
        text = re.sub(
            r'(?m)^version = ".*"$', f'version = "{version}"', pyproject.read_text(), count=1
        )
        pyproject.write_text(text)
        _patch(tree / "edge_agent" / "daemon.py", CONNECTED, CONNECTED + HEALTH_HOOK)
        if fault is not None:
            _patch(tree / "edge_agent" / "cli.py", *FAULTS[fault])
        _uv("build", "--wheel", "--offline", "--out-dir", str(dest), cwd=tree)
    (wheel,) = dest.glob(f"govedge-{version}-*.whl")
    return wheel


def install_version(home: Path, wheel: Path, version: str) -> Path:
    """Install ``wheel`` as ``home/versions/{version}/venv``; the venv."""
    venv = home / "versions" / version / "venv"
    _uv("venv", "--offline", "--python", sys.executable, str(venv), cwd=home)
    _uv(
        "pip",
        "install",
        "--offline",
        "--no-deps",
        "--python",
        str(venv / "bin" / "python"),
        str(wheel),
        cwd=home,
    )
    (site,) = (venv / "lib").glob("python*/site-packages")
    (site / "_govedge_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv
