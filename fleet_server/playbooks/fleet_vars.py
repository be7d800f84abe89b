"""What the fleet server supplies to a run of the outlet playbooks (docs/playbook-runs.md,
"Variables the server supplies").

A playbook that takes ``govedge_agent_release_file`` gets the stored release named by
``govedge_agent_version`` (its artifact from the releases dir and its signed manifest)
and the fleet's config-signing public keys, so the role checks the release exactly as an
agent's download does. One that takes ``govedge_agent_enroll_token`` gets a one-time
token per host, minted when the run starts. One that takes ``govedge_agent_archive_dir``
gets a folder of the run's own, whose files are attached to the outlets' records.
Callers never set these (catalogue.FLEET_SUPPLIED): a path on the server's disk given by
a caller could copy any file to an outlet or write anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.playbooks.catalogue import Playbook, PlaybookError
from fleet_server.releases.tables import Release


@dataclass(frozen=True, slots=True)
class Supply:
    """What the worker prepares for one run."""

    artifact: Path | None = None
    manifest: dict[str, Any] | None = None
    config_keys: dict[str, str] = field(default_factory=dict)
    enroll_tokens: bool = False
    archives: bool = False


def _release(session: Session, version: object, releases_dir: Path) -> tuple[Path, dict[str, Any]]:
    from packaging.version import InvalidVersion, Version

    if not isinstance(version, str) or not version:
        raise PlaybookError("govedge_agent_version: required (the release to install)")
    try:
        wanted = Version(version)
    except InvalidVersion:
        raise PlaybookError(f"govedge_agent_version: not a version: {version[:64]!r}") from None
    row = next((r for r in session.scalars(select(Release)) if Version(r.version) == wanted), None)
    if row is None:
        raise PlaybookError(f"govedge_agent_version: no release {version!r} on this server")
    if row.bad_at is not None:
        raise PlaybookError(f"govedge_agent_version: release {row.version} is marked bad")
    artifact = releases_dir / row.version / row.file_name
    if not artifact.is_file():
        raise PlaybookError(f"release {row.version}: its file is missing from the releases dir")
    return artifact, dict(row.manifest)


def plan(
    session: Session,
    playbook: Playbook,
    extra_vars: dict[str, Any],
    *,
    releases_dir: Path,
    config_keys: dict[str, str],
) -> Supply:
    """The supply for a run of ``playbook``; ``PlaybookError`` when it cannot be made."""
    takes = playbook.variables
    artifact = manifest = None
    if "govedge_agent_release_file" in takes:
        if not config_keys:
            raise PlaybookError("the server has no config-signing key to check releases with")
        version = extra_vars.get("govedge_agent_version")
        artifact, manifest = _release(session, version, releases_dir)
    return Supply(
        artifact=artifact,
        manifest=manifest,
        config_keys=dict(config_keys),
        enroll_tokens="govedge_agent_enroll_token" in takes,
        archives="govedge_agent_archive_dir" in takes,
    )
