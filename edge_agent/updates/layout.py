"""The install layout at the outlet, shared with the supervisor (docs/updates.md).

``GOVEDGE_HOME/versions/{version}/venv/`` holds one virtualenv per version (PEP 440
normal form); ``current`` and ``good`` are relative symlinks ``versions/{v}``, switched
atomically (a temporary link renamed over the old one, then the directory fsynced);
``update/`` holds the installer's state: ``trial.json``, ``health.json``,
``downloads/{version}/{file}.part`` and ``history/``. Every JSON file is written
atomically (temporary file, fsync, rename, directory fsync), so a power cut leaves the
old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from packaging.version import InvalidVersion, Version

DEFAULT_HOME: Final = Path("/opt/govedge")
# The exit code that asks the supervisor to start ``current`` again (EX_TEMPFAIL).
RESTART_EXIT_CODE: Final = 75
TrialOutcome = Literal["pending", "healthy", "rolled_back", "abandoned"]
FINAL_OUTCOMES: Final[frozenset[str]] = frozenset({"healthy", "rolled_back", "abandoned"})


def normal_version(version: str) -> str:
    """The PEP 440 normal form (``1.4`` → ``1.4``, ``1.04.0`` → ``1.4.0``); ``ValueError``."""
    try:
        return str(Version(version))
    except InvalidVersion:
        raise ValueError(f"not a PEP 440 version: {version[:64]!r}") from None


def same_release(a: str, b: str) -> bool:
    """PEP 440 equality: ``1.4`` and ``1.4.0`` are one release; ``ValueError`` if invalid."""
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        raise ValueError(f"not a PEP 440 version: {a[:64]!r} or {b[:64]!r}") from None


def fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, directory fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, written with :func:`write_atomic`."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Layout:
    """The paths under one ``GOVEDGE_HOME``."""

    home: Path

    @property
    def versions(self) -> Path:
        return self.home / "versions"

    @property
    def update(self) -> Path:
        return self.home / "update"

    @property
    def trial_file(self) -> Path:
        return self.update / "trial.json"

    @property
    def health_file(self) -> Path:
        return self.update / "health.json"

    @property
    def history(self) -> Path:
        return self.update / "history"

    def version_dir(self, version: str) -> Path:
        return self.versions / normal_version(version)

    def partial_dir(self, version: str) -> Path:
        """Where a version is installed before it is renamed complete."""
        return self.versions / f".{normal_version(version)}.partial"

    def venv(self, version: str) -> Path:
        return self.version_dir(version) / "venv"

    def download_dir(self, version: str) -> Path:
        return self.update / "downloads" / normal_version(version)

    def installed(self) -> list[str]:
        """Complete versions (a ``.partial`` never counts), oldest first."""
        if not self.versions.is_dir():
            return []
        found = [
            p.name for p in self.versions.iterdir() if not p.name.startswith(".") and p.is_dir()
        ]
        return sorted(found, key=_sort_key)

    def link(self, name: Literal["current", "good"]) -> str | None:
        """The version ``current`` or ``good`` points at, or None."""
        path = self.home / name
        try:
            target = os.readlink(path)
        except (FileNotFoundError, OSError):
            return None
        return Path(target).name

    def switch(self, name: Literal["current", "good"], version: str) -> None:
        """Point ``name`` at ``versions/{version}`` atomically."""
        target = Path("versions") / normal_version(version)
        if not (self.home / target / "venv").is_dir():
            raise FileNotFoundError(f"version {version} is not installed under {self.home}")
        tmp = self.home / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, self.home / name)
        fsync_dir(self.home)

    def read_trial(self) -> dict[str, Any] | None:
        return _read_json(self.trial_file)

    def write_trial(self, trial: dict[str, Any]) -> None:
        write_json_atomically(self.trial_file, trial)

    def read_health(self) -> dict[str, Any] | None:
        return _read_json(self.health_file)

    def archive_trial(self, trial: dict[str, Any]) -> Path:
        """Move ``trial.json`` to ``history/{created_at}-{version}.json``."""
        # The name the contract gives; created_at is ISO, sorting by time.
        stamp = str(trial.get("created_at", utc_now_iso())).replace("/", "_")
        target = self.history / f"{stamp}-{trial.get('version', 'unknown')}.json"
        self.history.mkdir(parents=True, exist_ok=True)
        os.replace(self.trial_file, target)
        fsync_dir(self.update)
        self.health_file.unlink(missing_ok=True)
        return target

    def last_history(self) -> dict[str, Any] | None:
        if not self.history.is_dir():
            return None
        files = sorted(self.history.glob("*.json"))
        return _read_json(files[-1]) if files else None


def new_trial(
    *, version: str, previous: str | None, campaign_id: int | None, health_timeout_s: int
) -> dict[str, Any]:
    """A trial as the installer writes it, before switching ``current``."""
    return {
        "version": normal_version(version),
        "previous": previous,
        "campaign_id": campaign_id,
        "health_timeout_s": health_timeout_s,
        "created_at": utc_now_iso(),
        "starts": 0,
        "outcome": "pending",
        "reason": None,
        "detail": None,
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _sort_key(name: str) -> tuple[int, Version | str]:
    try:
        return (0, Version(name))
    except InvalidVersion:
        return (1, name)
