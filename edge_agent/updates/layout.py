"""The install layout at the outlet: the one on-disk contract of the installer and the
supervisor (docs/updates.md).

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
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, cast

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


# The typed reading of the same files, used by the supervisor.
HOME_ENV = "GOVEDGE_INSTALL_HOME"
Outcome = Literal["pending", "healthy", "rolled_back", "abandoned"]
OUTCOMES: frozenset[str] = frozenset(("pending", "healthy", "rolled_back", "abandoned"))


def home_from_env() -> Path:
    """GOVEDGE_INSTALL_HOME, else /opt/govedge."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)


def switch_link(home: Path, name: str, version: str) -> None:
    """Point ``home/name`` at ``versions/{version}`` (relative), atomically."""
    tmp = home / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(Path("versions") / version, tmp)
    os.replace(tmp, home / name)
    fsync_dir(home)


def linked_version(home: Path, name: str) -> str | None:
    """The version ``home/name`` points at, or None when missing or dangling."""
    link = home / name
    try:
        target = os.readlink(link)
    except OSError:
        return None
    parts = Path(target).parts
    if len(parts) != 2 or parts[0] != "versions":  # versions/{v}
        return None
    if not venv_agent(home, parts[1]).exists():
        return None
    return parts[1]


def venv_agent(home: Path, version: str) -> Path:
    """The ``edge-agent`` script of one installed version."""
    return home / "versions" / version / "venv" / "bin" / "edge-agent"


@dataclass(frozen=True)
class Trial:
    """update/trial.json: one switched version on trial."""

    version: str
    previous: str | None
    campaign_id: int | None
    health_timeout_s: float
    # ISO 8601 as the installer writes it; kept as found (it names the history file).
    created_at: str
    starts: int = 0
    outcome: Outcome = "pending"
    reason: str | None = None
    detail: str | None = None

    def with_(self, **changes: object) -> Trial:
        """A copy with ``changes``."""
        return replace(self, **changes)  # type: ignore[arg-type]


def trial_path(home: Path) -> Path:
    """Where the trial lives."""
    return home / "update" / "trial.json"


def health_path(home: Path) -> Path:
    """Where the new version writes its health proof."""
    return home / "update" / "health.json"


class BadStateFile(ValueError):
    """A state file exists but cannot be read as the contract says."""


def read_trial(home: Path) -> Trial | None:
    """The trial, or None when there is none; BadStateFile when it is unreadable."""
    try:
        raw = json.loads(trial_path(home).read_bytes())
        trial = Trial(
            version=str(raw["version"]),
            previous=None if raw.get("previous") is None else str(raw["previous"]),
            campaign_id=None if raw.get("campaign_id") is None else int(raw["campaign_id"]),
            health_timeout_s=float(raw["health_timeout_s"]),
            created_at=str(raw.get("created_at") or ""),
            starts=int(raw.get("starts") or 0),
            outcome=cast(Outcome, raw.get("outcome", "pending")),
            reason=raw.get("reason"),
            detail=raw.get("detail"),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise BadStateFile(f"trial.json unreadable: {type(exc).__name__}") from exc
    if not trial.health_timeout_s > 0 or trial.outcome not in OUTCOMES:
        raise BadStateFile("trial.json unreadable: health_timeout_s or outcome out of range")
    return trial


def write_trial(home: Path, trial: Trial) -> None:
    """Persist the trial atomically."""
    write_atomic(trial_path(home), json.dumps(asdict(trial), sort_keys=True).encode())


@dataclass(frozen=True)
class Health:
    """update/health.json: the new version's proof that it runs."""

    version: str
    pid: int
    at: str  # ISO 8601, as the agent writes it


def read_health(home: Path) -> Health | None:
    """The health proof, or None when absent or not (yet) readable."""
    try:
        raw = json.loads(health_path(home).read_bytes())
        return Health(version=str(raw["version"]), pid=int(raw["pid"]), at=str(raw["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_health(home: Path, version: str, pid: int) -> None:
    """Write the health proof (used by the new version once healthy)."""
    body = {"version": version, "pid": pid, "at": utc_now_iso()}
    write_atomic(health_path(home), json.dumps(body).encode())


def install_status(home: Path) -> dict[str, Any]:
    """What is installed under ``home``: the links, the versions, the trial and the last
    finished one (``edge-agent update status``, the diagnosis archive)."""
    layout = Layout(home)
    return {
        "home": str(home),
        "current": layout.link("current"),
        "good": layout.link("good"),
        "versions": layout.installed(),
        "trial": layout.read_trial(),
        "last": layout.last_history(),
    }
