"""The install layout's on-disk contract: version links, trial.json, health.json.

Shared with the installer (docs/updates.md, "The install layout"): ``current`` and
``good`` are relative symlinks to ``versions/{v}``, switched by renaming a new link over
the old one; ``update/trial.json`` is written whole (temp file, fsync, rename, directory
fsync), so a power cut leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, cast

from edge_agent.updates.layout import fsync_dir, utc_now_iso, write_atomic

DEFAULT_HOME = Path("/opt/govedge")
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
