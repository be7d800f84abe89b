"""The installed server's settings file, read by every ``fleet-server`` command.

The units read ``/etc/govedge/fleet-server.env`` as their ``EnvironmentFile=``; an
operator's ``fleet-server migrate`` (or ``users add``) typed in a shell reads the same
file, so it finds the same database, state directory and keys from any working
directory. ``GOVEDGE_ENV_FILE`` names another file, or none when empty. Variables
already in the environment win, as the unit's ``Environment=`` lines do. The syntax is
the part of systemd's ``EnvironmentFile=`` the docs use: ``NAME=VALUE`` lines, ``#`` or
``;`` comments, optional single or double quotes around the value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

DEFAULT_ENV_FILE: Final = Path("/etc/govedge/fleet-server.env")
ENV_FILE_VARIABLE: Final = "GOVEDGE_ENV_FILE"


class EnvFileError(Exception):
    """The settings file is named but missing, unreadable or malformed."""


def env_file_path() -> Path | None:
    """The file to read: ``GOVEDGE_ENV_FILE`` if set (None when empty), else the
    installed default when it exists."""
    named = os.environ.get(ENV_FILE_VARIABLE)
    if named is not None:
        return Path(named) if named else None
    return DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.exists() else None


def parse_env_file(text: str, *, source: Path) -> dict[str, str]:
    """``NAME=VALUE`` pairs of ``text``; a line that is neither that nor a comment is
    an ``EnvFileError`` naming the line (never its value, which may be a password)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise EnvFileError(f"{source}:{number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def load_env_file() -> Path | None:
    """Put the settings file's variables into ``os.environ`` (those not set already);
    the file read, or None."""
    path = env_file_path()
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(
            f"cannot read the settings file {path}: {exc.strerror} (run as root or the "
            f"service user, or set {ENV_FILE_VARIABLE} to another file, empty for none)"
        ) from None
    for name, value in parse_env_file(text, source=path).items():
        os.environ.setdefault(name, value)
    return path
