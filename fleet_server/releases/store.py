"""Storing releases: the upload on disk, its checks, the signed manifest, the row.

An upload is streamed into ``releases_dir/.incoming`` (``Upload``: counted, hashed,
fsynced), checked (``artifacts``), signed with the config-signing key under the release
context (``govedge_wire.releases``), then renamed into ``releases_dir/{version}/`` in the
transaction that inserts its row and audit entry, so a release row always has its file.
The same version again is refused unless it is the same file (then it is answered as is).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.config.keys import ConfigKeyError, load_config_keys
from fleet_server.releases.artifacts import (
    ArtifactRefused,
    check_artifact,
    normal_version,
    version_key,
)
from fleet_server.releases.tables import Release
from fleet_server.security import audit
from fleet_server.settings import Settings
from govedge_wire.releases import sign_manifest

logger = logging.getLogger(__name__)

INCOMING: Final = ".incoming"
# An upload file this old in .incoming is what a crash or kill left behind (an upload
# is renamed or removed when its request ends); each new upload sweeps them.
STALE_UPLOAD_S: Final = 86_400


class ReleaseError(Exception):
    """A request the store refuses; ``status`` is the HTTP answer."""

    status = 409


class ReleaseNotFound(ReleaseError):
    """No such release (or its file is gone)."""

    status = 404


class ReleaseTooLarge(ReleaseError):
    """The upload grew past ``release_max_bytes``."""

    status = 413


class Upload:
    """One upload being written to a temporary file: size and SHA-256 as it streams."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.release_max_bytes
        directory = settings.releases_dir / INCOMING
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        _sweep(directory, older_than=time.time() - STALE_UPLOAD_S)
        handle, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        self.path = Path(name)
        self._file = os.fdopen(handle, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; ``ReleaseTooLarge`` past the limit."""
        self.size += len(chunk)
        if self.size > self.limit:
            raise ReleaseTooLarge(f"the release is over {self.limit} bytes")
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> None:
        """Flush and fsync: what is checked and renamed is on disk."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of what was written."""
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Remove the temporary file (whatever happened)."""
        self._file.close()
        self.path.unlink(missing_ok=True)


def _sweep(directory: Path, *, older_than: float) -> None:
    for leftover in directory.glob("upload-*"):
        try:
            if leftover.stat().st_mtime < older_than:
                leftover.unlink()
                logger.warning("removed %s, an upload left by a crash", leftover.name)
        except FileNotFoundError:  # another process swept it first
            continue


@dataclass(frozen=True, slots=True)
class Added:
    """The stored release and whether this call stored it (False: same file again)."""

    release: Release
    created: bool


def add_release(
    sessions: sessionmaker[Session],
    settings: Settings,
    upload: Upload,
    *,
    version: str,
    file_name: str,
    notes: str | None,
    actor: str,
) -> Added:
    """Check, sign and store ``upload`` (finished) as ``version``; see the module doc."""
    version = normal_version(version)
    kind = check_artifact(upload.path, file_name=file_name, version=version)
    key = version_key(version)
    with sessions() as session:
        existing = _by_key(session, key)
        if existing is not None:
            return Added(_same_or_conflict(existing, upload, file_name), created=False)
        try:
            keys = load_config_keys(settings)
        except ConfigKeyError as exc:
            raise ReleaseError(f"releases cannot be signed: {exc}") from None
        if keys.private_key is None or keys.key_id is None:
            raise ReleaseError(
                "the server has no signing key (GOVEDGE_CONFIG_SIGNING_KEY): "
                "releases cannot be signed"
            )
        now = datetime.now(UTC)
        manifest = sign_manifest(
            keys.private_key,
            key_id=keys.key_id,
            version=version,
            file_name=file_name,
            size=upload.size,
            sha256=upload.sha256,
            kind=kind,
            created_at=now,
        )
        row = Release(
            version=version,
            version_key=key,
            file_name=file_name,
            kind=kind,
            size=upload.size,
            sha256=upload.sha256,
            created_at=now,
            created_by=actor,
            notes=notes,
            manifest=manifest.model_dump(mode="json"),
        )
        session.add(row)
        audit.record(
            session,
            actor=actor,
            action="release.add",
            target=f"release:{version}",
            after={"file_name": file_name, "kind": kind, "size": upload.size,
                   "sha256": upload.sha256},
            at=now,
        )  # fmt: skip
        try:
            session.flush()
        except IntegrityError:  # another upload of this version won the race
            session.rollback()
            other = _by_key(session, key)
            if other is None:
                raise
            return Added(_same_or_conflict(other, upload, file_name), created=False)
        _install(upload.path, artifact_path(settings, row))
        session.commit()
        logger.info("release %s stored (%s, %d bytes)", version, kind, upload.size)
        return Added(row, created=True)


def _same_or_conflict(existing: Release, upload: Upload, file_name: str) -> Release:
    if existing.sha256 == upload.sha256 and existing.file_name == file_name:
        return existing
    raise ReleaseError(
        f"release {existing.version} exists with another file (sha256 {existing.sha256}); "
        "releases are immutable: give the new build a new version"
    )


def _install(source: Path, target: Path) -> None:
    """Rename into place and fsync the directory, so the rename survives a power cut."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    os.replace(source, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def artifact_path(settings: Settings, release: Release) -> Path:
    """Where ``release``'s file is kept."""
    return settings.releases_dir / release.version / release.file_name


def _by_key(session: Session, key: str) -> Release | None:
    return session.scalars(select(Release).where(Release.version_key == key)).first()


def get_release(session: Session, version: str) -> Release:
    """The release ``version`` (any equal PEP 440 spelling); ``ReleaseNotFound`` otherwise."""
    try:
        key = version_key(version)
    except ArtifactRefused:  # not a version at all: then no release has it
        raise ReleaseNotFound(f"release {version!r} not found") from None
    row = _by_key(session, key)
    if row is None:
        raise ReleaseNotFound(f"release {version!r} not found")
    return row


def list_releases(session: Session) -> list[Release]:
    """Every release, newest upload first."""
    return list(session.scalars(select(Release).order_by(Release.created_at.desc())).all())


def mark_bad(session: Session, version: str, *, reason: str, actor: str) -> Release:
    """Mark ``version`` bad (who, when, why); a release already bad keeps its first mark."""
    row = get_release(session, version)
    if row.bad_at is not None:
        return row
    now = datetime.now(UTC)
    row.bad_at, row.bad_by, row.bad_reason = now, actor, reason
    audit.record(
        session,
        actor=actor,
        action="release.bad",
        target=f"release:{row.version}",
        before={"bad": False},
        after={"bad": True, "reason": reason},
        at=now,
    )
    session.commit()
    logger.info("release %s marked bad by %s", row.version, actor)
    return row
