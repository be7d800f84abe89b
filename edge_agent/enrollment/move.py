"""Moving the keys out of ``DATA_DIR/tls`` into ``keys_dir`` (an upgraded outlet).

An outlet enrolled before ``keys_dir`` existed keeps its key, certificate, pinned CA
and config-signing keys in ``DATA_DIR/tls``. Once ``keys_dir`` names another place the
agent moves them there at start, file by file: a rename within one filesystem, else a
copy written to a temp name, fsynced and renamed into place, and only then the old file
removed. A crash at any point leaves each file whole in one place or identical in both;
the next start finishes the move. Two copies that differ are never merged or dropped:
that is a ``KeysMoveError`` for a person to look at.
"""

from __future__ import annotations

import errno
import filecmp
import logging
import os
import shutil
from pathlib import Path

from edge_agent.enrollment.errors import EnrollmentError
from edge_agent.enrollment.store import TlsStore, default_keys_dir, fsync_dir

log = logging.getLogger(__name__)

# A copy in progress in the keys dir; a crash leaves it behind and the next move
# overwrites it.
_PARTIAL_SUFFIX = ".moving"


class KeysMoveError(EnrollmentError):
    """The keys could not be moved (or the two places hold different files)."""


def move_keys(data_dir: Path, keys_dir: Path) -> bool:
    """Move what ``DATA_DIR/tls`` holds into ``keys_dir``; True if anything moved.

    Nothing to do when ``keys_dir`` is ``DATA_DIR/tls`` or that directory is absent.
    """
    old = default_keys_dir(data_dir)
    if not old.is_dir() or _same_dir(old, keys_dir):
        return False
    try:
        # A key/certificate swap a crash interrupted is finished where it began.
        TlsStore(old).exists()
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(keys_dir, 0o700)
        moved = [name for name in sorted(os.listdir(old)) if _move_one(old, keys_dir, name)]
        for partial in keys_dir.glob(f".*{_PARTIAL_SUFFIX}"):
            partial.unlink()  # a copy a crash interrupted; its source was moved above
        fsync_dir(keys_dir)
        os.rmdir(old)
        fsync_dir(data_dir)
    except OSError as exc:
        raise KeysMoveError(f"cannot move the keys from {old} to {keys_dir}: {exc}") from None
    log.info(
        "moved the keys from %s to %s (keys_dir): %s", old, keys_dir, ", ".join(moved) or "none"
    )
    return True


def _move_one(old: Path, new: Path, name: str) -> bool:
    source, target = old / name, new / name
    if name.startswith(".") or not source.is_file() or source.is_symlink():
        # Temp files of an interrupted atomic write (never whole) and anything that is
        # not a plain file stay out of the keys dir.
        if source.is_dir() and not source.is_symlink():
            shutil.rmtree(source)
        else:
            source.unlink()
        return False
    move_key_file(source, target)
    return True


def move_key_file(source: Path, target: Path) -> None:
    """Move one key file to ``target`` so that a crash leaves it whole somewhere.

    A ``target`` identical to ``source`` means an earlier move copied it before a crash:
    the source goes. Two different files raise ``KeysMoveError``.
    """
    if target.exists():
        if not filecmp.cmp(source, target, shallow=False):
            raise KeysMoveError(
                f"{source} and {target} differ: keep the right one, remove the other, "
                "and start the agent again"
            )
        source.unlink()  # the copy was made before a crash: the old one is not needed
        fsync_dir(source.parent)
        return
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_then_remove(source, target)
        return
    fsync_dir(target.parent)
    fsync_dir(source.parent)


def _copy_then_remove(source: Path, target: Path) -> None:
    """Across filesystems: whole copy under a temp name, fsync, rename, then remove."""
    partial = target.with_name(f".{target.name}{_PARTIAL_SUFFIX}")
    stat = source.stat()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.st_mode & 0o777)
    with os.fdopen(fd, "wb") as handle, source.open("rb") as original:
        shutil.copyfileobj(original, handle)
        handle.flush()
        os.fchmod(handle.fileno(), stat.st_mode & 0o777)
        if os.geteuid() == 0:  # a technician's command as root: the agent still owns it
            os.fchown(handle.fileno(), stat.st_uid, stat.st_gid)
        os.fsync(handle.fileno())
    os.replace(partial, target)
    fsync_dir(target.parent)
    source.unlink()


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False
