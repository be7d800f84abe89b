"""The directory of wheels docs/deploy.md installs from offline (its ``/srv/wheels``).

The project's wheel is built fresh each time (``uv build --wheel``, as the doc says), so
the install tries the code under test. The dependencies' wheels are the locked
``server`` extra (``uv export``) fetched or built by the target machine's own
``python3`` (``pip wheel``), so their tags fit the Python the doc's venv will have.
They change only with the lock, so they are kept between runs under ``.tools/``
(ignored by git), one directory per lock and Python version. The upgrade test's newer
wheel is the same code with another version stamped in (``build_project_wheel``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UV = REPO / ".tools" / "venv" / "bin" / "uv"
CACHE = REPO / ".tools" / "deploy-wheelhouse"
SYSTEM_PYTHON = Path("/usr/bin/python3")


class WheelhouseError(RuntimeError):
    """The wheels could not be made; the message says which step failed and why."""


def _run(argv: list[str], *, timeout: float, cwd: Path | None = None) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
    if done.returncode != 0:
        raise WheelhouseError(f"{' '.join(argv[:3])} … failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _locked_server_requirements() -> str:
    return _run(
        [str(UV), "export", "--frozen", "--extra", "server", "--no-dev", "--no-hashes",
         "--no-emit-project", "--format", "requirements-txt", "--quiet"],
        timeout=120, cwd=REPO,
    )  # fmt: skip


def _dependency_wheels(requirements: str) -> Path:
    """The cached wheels of ``requirements`` for the system Python, made once."""
    python_version = _run([str(SYSTEM_PYTHON), "-VV"], timeout=30)
    key = hashlib.sha256(f"{python_version}\n{requirements}".encode()).hexdigest()[:16]
    done = CACHE / key
    if (done / ".complete").exists():
        return done
    CACHE.mkdir(parents=True, exist_ok=True)
    # Another test process may be building the same cache: one builds, the other waits
    # and finds it done (two builders removed each other's half-made folder).
    with (CACHE / f"{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (done / ".complete").exists():
            return done
        return _build_dependency_wheels(requirements, key, done)


def _build_dependency_wheels(requirements: str, key: str, done: Path) -> Path:
    partial = CACHE / f"{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    (partial / "requirements.txt").write_text(requirements)
    # The system Python has no pip of its own (Debian's python3-pip is not a
    # dependency of the procedure): a throw-away venv's bundled pip builds the wheels.
    _run([str(SYSTEM_PYTHON), "-m", "venv", str(partial / "pip-venv")], timeout=120)
    _run(
        [str(partial / "pip-venv" / "bin" / "pip"), "wheel", "--quiet",
         "--disable-pip-version-check", "--wheel-dir", str(partial / "wheels"),
         "--requirement", str(partial / "requirements.txt")],
        timeout=900,
    )  # fmt: skip
    shutil.rmtree(partial / "pip-venv")
    (partial / ".complete").touch()
    shutil.rmtree(done, ignore_errors=True)
    partial.rename(done)
    return done


def build_wheelhouse(out: Path) -> Path:
    """``out`` filled with the project's fresh wheel and its locked dependencies'."""
    if not UV.exists():
        raise WheelhouseError(f"{UV} is missing: run scripts/bootstrap first")
    deps = _dependency_wheels(_locked_server_requirements())
    out.mkdir(parents=True, exist_ok=True)
    for wheel in (deps / "wheels").glob("*.whl"):
        try:
            os.link(wheel, out / wheel.name)
        except OSError:  # another file system
            shutil.copy2(wheel, out / wheel.name)
    _uv_build(REPO, out)
    return out


def build_project_wheel(out: Path, version: str) -> Path:
    """The project's wheel with ``version`` stamped in, built into ``out``; its path.

    Built as ``scripts/build-bundle --version`` builds one: from a copy of the tracked
    files with the version set in the copy's pyproject.toml, so the checkout is never
    changed (a test run beside it may be reading it).
    """
    with tempfile.TemporaryDirectory(prefix="govedge-wheel-") as tmp:
        src = Path(tmp)
        listed = _run(["git", "ls-files", "-z"], timeout=60, cwd=REPO)
        for name in filter(None, listed.split("\0")):
            source = REPO / name
            if source.is_file():  # a tracked file deleted in the work tree is not built
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, src / name)
        pyproject = src / "pyproject.toml"
        stamped, count = re.subn(
            r'^version = ".*"$', f'version = "{version}"', pyproject.read_text(), count=1,
            flags=re.MULTILINE,
        )  # fmt: skip
        if count != 1:
            raise WheelhouseError("pyproject.toml has no version line to stamp")
        pyproject.write_text(stamped)
        # Offline: the build backend is in uv's cache since build_wheelhouse's build.
        _uv_build(src, out, "--offline")
    wheel = out / f"govedge-{version}-py3-none-any.whl"
    if not wheel.exists():
        raise WheelhouseError(f"uv build made no {wheel.name} in {out}")
    return wheel


def _uv_build(src: Path, out: Path, *options: str) -> None:
    _run([str(UV), "build", "--wheel", "--quiet", *options, "--out-dir", str(out)],
         timeout=300, cwd=src)  # fmt: skip
