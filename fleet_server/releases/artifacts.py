"""What an uploaded artifact must be: a govedge wheel of the stated version, or a bundle.

A **wheel** is a zip whose file name (``govedge-1.2.0-py3-none-any.whl``) and
``*.dist-info/METADATA`` both name the package ``govedge`` at the given version. A
**bundle** (``.tar``, ``.tar.gz``, ``.tgz`` or ``.zip``) holds exactly one such wheel,
the wheels it depends on and optionally text files (a requirements lock), so an outlet
without a package index can install it; no links, no paths out of the archive. Anything
else raises ``ArtifactRefused`` with a sentence and a counter key.
"""

from __future__ import annotations

import email.parser
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Final, Literal

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from govedge_wire.releases import FILE_NAME_PATTERN, ReleaseKind

PACKAGE: Final = "govedge"
BUNDLE_SUFFIXES: Final = (".tar", ".tar.gz", ".tgz", ".zip")
# METADATA is a few KiB; a larger one is not ours (and is not read whole into memory).
MAX_METADATA_BYTES: Final = 1024 * 1024
MAX_BUNDLE_MEMBERS: Final = 2000
_FILE_NAME: Final = re.compile(rf"^{FILE_NAME_PATTERN}$")

RefusalReason = Literal["bad_version", "bad_name", "not_a_wheel", "wrong_package", "bad_bundle"]


class ArtifactRefused(Exception):
    """The upload is not a release this server accepts; ``reason`` is its counter key."""

    def __init__(self, message: str, *, reason: RefusalReason) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason


def normal_version(text: str) -> str:
    """``text`` as a PEP 440 version in normal form; ``ArtifactRefused`` if it is not one."""
    try:
        return str(Version(text))
    except InvalidVersion:
        raise ArtifactRefused(f"{text!r} is not a PEP 440 version", reason="bad_version") from None


def version_key(text: str) -> str:
    """What equal versions share (``1.4`` for ``1.4.0`` too); ``ArtifactRefused`` if none."""
    return canonicalize_version(normal_version(text))


def _same_version(stated: object, version: str) -> bool:
    try:
        return stated is not None and Version(str(stated)) == Version(version)
    except InvalidVersion:
        return False


def kind_for(file_name: str) -> ReleaseKind:
    """``wheel`` or ``bundle`` by the file name; ``ArtifactRefused`` for any other name."""
    if not _FILE_NAME.match(file_name):
        raise ArtifactRefused(
            "file name must be letters, digits and ._+- (not starting with a dot)",
            reason="bad_name",
        )
    if file_name.endswith(".whl"):
        return "wheel"
    if file_name.endswith(BUNDLE_SUFFIXES):
        return "bundle"
    raise ArtifactRefused(
        f"{file_name!r} is neither a wheel (.whl) nor a bundle ({', '.join(BUNDLE_SUFFIXES)})",
        reason="bad_name",
    )


def check_artifact(path: Path, *, file_name: str, version: str) -> ReleaseKind:
    """Check the file at ``path`` uploaded as ``file_name`` for ``version`` (normal form)."""
    kind = kind_for(file_name)
    if kind == "wheel":
        check_wheel(path, file_name=file_name, version=version)
    else:
        check_bundle(path, file_name=file_name, version=version)
    return kind


def check_wheel(path: Path, *, file_name: str, version: str) -> None:
    """A govedge wheel of ``version``: by its file name and by its METADATA."""
    _check_wheel_name(file_name, version=version)
    try:
        with zipfile.ZipFile(path) as wheel:
            metadata = [
                name
                for name in wheel.namelist()
                if PurePosixPath(name).parent.name.endswith(".dist-info")
                and PurePosixPath(name).name == "METADATA"
                and len(PurePosixPath(name).parts) == 2
            ]
            if len(metadata) != 1:
                raise ArtifactRefused(
                    f"{file_name}: a wheel has exactly one .dist-info/METADATA, found "
                    f"{len(metadata)}",
                    reason="not_a_wheel",
                )
            with wheel.open(metadata[0]) as stream:
                text = stream.read(MAX_METADATA_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError):
        raise ArtifactRefused(f"{file_name} is not a readable zip", reason="not_a_wheel") from None
    if len(text) > MAX_METADATA_BYTES:
        raise ArtifactRefused(f"{file_name}: METADATA is too large", reason="not_a_wheel")
    fields = email.parser.BytesHeaderParser().parsebytes(text)
    name, stated = fields.get("Name"), fields.get("Version")
    if name is None or canonicalize_name(str(name)) != PACKAGE:
        raise ArtifactRefused(
            f"{file_name}: METADATA names package {name!r}, not {PACKAGE!r}",
            reason="wrong_package",
        )
    if not _same_version(stated, version):
        raise ArtifactRefused(
            f"{file_name}: METADATA says version {stated!r}, not {version}",
            reason="wrong_package",
        )


def _check_wheel_name(file_name: str, *, version: str) -> None:
    try:
        name, stated, _, _ = parse_wheel_filename(file_name)
    except (InvalidWheelFilename, InvalidVersion):
        raise ArtifactRefused(f"{file_name!r} is not a wheel name", reason="bad_name") from None
    if name != PACKAGE or stated != Version(version):
        raise ArtifactRefused(
            f"{file_name} is {name} {stated}, not {PACKAGE} {version}", reason="wrong_package"
        )


def check_bundle(path: Path, *, file_name: str, version: str) -> None:
    """Exactly one govedge wheel of ``version``, other wheels, optional text files."""
    with _members(path, file_name) as members:
        ours: list[tuple[str, IO[bytes]]] = []
        for member, opened in members:
            base = PurePosixPath(member).name
            if base.endswith(".txt"):
                continue
            if not base.endswith(".whl"):
                raise ArtifactRefused(
                    f"{file_name}: {member!r} is neither a wheel nor a text file",
                    reason="bad_bundle",
                )
            try:
                name, _, _, _ = parse_wheel_filename(base)
            except (InvalidWheelFilename, InvalidVersion):
                raise ArtifactRefused(
                    f"{file_name}: {member!r} is not a wheel file name", reason="bad_bundle"
                ) from None
            if name == PACKAGE:
                ours.append((base, opened()))
        if len(ours) != 1:
            raise ArtifactRefused(
                f"{file_name}: a bundle holds exactly one {PACKAGE} wheel, found {len(ours)}",
                reason="bad_bundle",
            )
        base, stream = ours[0]
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".whl") as copy:
            shutil.copyfileobj(stream, copy)
            copy.flush()
            check_wheel(Path(copy.name), file_name=base, version=version)


class _Opener:
    """Opens one archive member when called (only the govedge wheel is ever read)."""

    def __init__(self, archive: zipfile.ZipFile | tarfile.TarFile, member: str) -> None:
        self._archive = archive
        self._member = member

    def __call__(self) -> IO[bytes]:
        if isinstance(self._archive, zipfile.ZipFile):
            return self._archive.open(self._member)
        stream = self._archive.extractfile(self._member)
        if stream is None:  # pragma: no cover - only regular files are listed
            raise ArtifactRefused(f"{self._member!r} is not a file", reason="bad_bundle")
        return stream


@contextmanager
def _members(path: Path, file_name: str) -> Iterator[Iterator[tuple[str, _Opener]]]:
    """The bundle's regular files as (name, opener); links and escaping paths refused."""
    try:
        if file_name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                names = [i.filename for i in archive.infolist() if not i.is_dir()]
                yield _listed(archive, names, file_name)
        else:
            with tarfile.open(path, "r:*") as archive:
                names = []
                for info in archive:
                    if info.isdir():
                        continue
                    if not info.isreg():
                        raise ArtifactRefused(
                            f"{file_name}: {info.name!r} is a link or device", reason="bad_bundle"
                        )
                    names.append(info.name)
                    if len(names) > MAX_BUNDLE_MEMBERS:
                        break
                yield _listed(archive, names, file_name)
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, OSError, EOFError) as exc:
        raise ArtifactRefused(
            f"{file_name} is not a readable archive ({exc.__class__.__name__})",
            reason="bad_bundle",
        ) from None


def _listed(
    archive: zipfile.ZipFile | tarfile.TarFile, names: list[str], file_name: str
) -> Iterator[tuple[str, _Opener]]:
    if len(names) > MAX_BUNDLE_MEMBERS:
        raise ArtifactRefused(
            f"{file_name}: more than {MAX_BUNDLE_MEMBERS} files", reason="bad_bundle"
        )
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise ArtifactRefused(f"{file_name}: {name!r} leaves the archive", reason="bad_bundle")
        yield name, _Opener(archive, name)
