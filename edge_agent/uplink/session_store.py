"""The persisted session counter (Sparkplug's bdSeq) in ``DATA_DIR/session``.

Raised on every connect attempt, before the CONNECT, so a session number is never
reused (docs/protocol.md, rules 1 and 11; the file: docs/operations.md, "Edge agent").
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Final

from edge_agent.errors import SessionStoreError

log = logging.getLogger(__name__)

SESSION_FILE: Final = "session"
_MAX: Final = 2**63 - 1


class SessionStore:
    """Read and advance the session counter kept in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / SESSION_FILE

    def prepare(self) -> None:
        """Create the data directory (mode 0700) if it is missing."""
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SessionStoreError(
                f"cannot create data directory {self.data_dir}: {exc.strerror}"
            ) from None

    def current(self) -> int | None:
        """The last session used, or ``None`` if no connect was ever attempted."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionStoreError(f"cannot read {self.path}: {exc}") from None
        if not text.isdigit() or int(text) > _MAX:
            # Above any counter a real agent reaches, so numbers still never repeat.
            fallback = int(time.time())
            log.warning(
                "session file %s is corrupt; restarting the counter at %d", self.path, fallback
            )
            return fallback
        return int(text)

    def advance(self) -> int:
        """Persist and return the next session number (blocking: call it off the loop)."""
        previous = self.current()
        session = 0 if previous is None else (previous + 1) % (_MAX + 1)
        self._write(session)
        return session

    def raise_to(self, known: int) -> bool:
        """Persist ``known`` as the last session used if ours is lower; True if raised.

        The next ``advance`` then returns ``known + 1`` (blocking: call it off the loop).
        """
        if not 0 <= known < _MAX:
            raise ValueError(f"session {known} out of range")
        previous = self.current()
        if previous is not None and previous >= known:
            return False
        self._write(known)
        return True

    def _write(self, session: int) -> None:
        tmp = self.path.with_name(f".{SESSION_FILE}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, f"{session}\n".encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.path)
            _fsync_dir(self.data_dir)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SessionStoreError(
                f"cannot persist session to {self.path}: {exc.strerror}"
            ) from None


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; directories cannot be opened on Windows, so skip there."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
