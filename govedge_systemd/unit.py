"""Checks of a unit's layout values, and the sandbox lines both units end with."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Final

# What systemd's unit syntax takes unquoted: absolute paths and names without spaces,
# quotes, specifiers or escapes.
_SAFE_PATH: Final = re.compile(r"^/[A-Za-z0-9_./-]*$")
_SAFE_NAME: Final = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_STATE_ROOT: Final = PurePosixPath("/var/lib")

# No privilege gain, no kernel or clock changes, no new namespaces or realtime
# scheduling, native system calls only: what neither the agent nor the server needs.
SANDBOX: Final = (
    "NoNewPrivileges=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
)


class UnitError(ValueError):
    """A layout value the unit cannot carry safely."""


def check_paths(paths: Iterable[tuple[str, PurePosixPath]]) -> None:
    """Each ``(what, path)``: an absolute path of safe characters, no ``..``."""
    for name, path in paths:
        if not _SAFE_PATH.match(str(path)) or ".." in path.parts:
            raise UnitError(f"{name} {str(path)!r}: an absolute path of A-Z a-z 0-9 _ . - /")


def check_names(names: Iterable[tuple[str, str]], *, kind: str) -> None:
    """Each ``(what, value)``: a system user or group name (``kind`` says which)."""
    for name, value in names:
        if not _SAFE_NAME.match(value):
            raise UnitError(f"{name} {value!r}: a system {kind} name")


def check_state_dirs(dirs: Iterable[tuple[str, PurePosixPath]], *, why: str) -> None:
    """Each ``(what, path)``: ``/var/lib/NAME``, as systemd's StateDirectory makes it
    (``why`` ends the message)."""
    for name, path in dirs:
        if path.parent != _STATE_ROOT:
            raise UnitError(f"{name}: must be /var/lib/NAME ({why})")
