"""The registry of clerk apps allowed to call the local API: name, origins, hashed token.

``edge-agent apps add NAME --origin ORIGIN`` creates an app and prints its token once;
only a salted SHA-256 of the token is kept, in ``DATA_DIR/apps.json`` (mode 0600,
written to a temporary file, fsynced and renamed into place, so a crash never leaves a
half-written registry). Tokens are 256 random bits, so a fast salted hash is enough:
a slow KDF only matters for guessable secrets, and it would cost every request.

The running agent re-reads the file when its modification time changes, so an app
added or removed on the command line takes effect without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from edge_agent.local_api.roles import DEFAULT_ROLE, ROLES

__all__ = ["APPS_FILE", "AppRegistry", "AppRegistryError", "ClerkApp", "normalise_origin"]

log = logging.getLogger(__name__)

APPS_FILE: Final = "apps.json"
TOKEN_PREFIX: Final = "gva_"  # noqa: S105 - a prefix that makes tokens greppable
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_FORMAT_VERSION: Final = 1


class AppRegistryError(Exception):
    """The registry file is unsafe or broken, or an app name/origin is invalid."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClerkApp:
    """One registered app; ``token_sha256`` = SHA-256(salt ‖ token), hex.

    ``role`` says what it may call (``roles.py``): a clerk app, a hall display or a kiosk.
    """

    name: str
    origins: tuple[str, ...]
    salt: str
    token_sha256: str
    created: str
    role: str = DEFAULT_ROLE

    def matches(self, token: str) -> bool:
        """True if ``token`` is this app's token (constant-time comparison)."""
        digest = _hash(self.salt, token)
        return hmac.compare_digest(digest, self.token_sha256)

    def as_json(self) -> dict[str, Any]:
        """The stored form (no token, only its salted hash)."""
        return {
            "name": self.name,
            "origins": list(self.origins),
            "salt": self.salt,
            "token_sha256": self.token_sha256,
            "created": self.created,
            "role": self.role,
        }


def _role(value: object) -> str:
    """A stored role; an unknown one is a broken file (never silently a clerk's rights)."""
    if value not in ROLES:
        raise ValueError(f"unknown role {value!r}")
    return str(value)


def _hash(salt: str, token: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + token.encode("utf-8")).hexdigest()


def normalise_origin(origin: str) -> str:
    """``HTTPS://Clerk.Example:443/`` → ``https://clerk.example``; errors for non-origins.

    An origin is a scheme (http or https), a host and an optional port — no path, query,
    user or fragment — exactly what browsers send in the ``Origin`` header.
    """
    text = origin.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise AppRegistryError(f"origin {origin!r} must look like https://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise AppRegistryError(f"origin {origin!r} must not have a path, query or user")
    try:
        port = parts.port
    except ValueError as exc:
        raise AppRegistryError(f"origin {origin!r} has a bad port") from exc
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


class AppRegistry:
    """The clerk apps of one agent, backed by ``DATA_DIR/apps.json``.

    Thread-safe: the command line and the API may use it at once; the file is the truth.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / APPS_FILE
        self._lock = threading.Lock()
        self._apps: dict[str, ClerkApp] = {}
        self._stamp: tuple[int, int] | None = None
        self._refresh()

    # ---- reading -------------------------------------------------------------------

    def apps(self) -> list[ClerkApp]:
        """Every registered app, by name."""
        self._refresh()
        return [self._apps[name] for name in sorted(self._apps)]

    def get(self, name: str) -> ClerkApp | None:
        """The app called ``name``, or None."""
        self._refresh()
        return self._apps.get(name)

    def authenticate(self, token: str) -> ClerkApp | None:
        """The app whose token this is, or None. Every app is checked (no early exit)."""
        self._refresh()
        found: ClerkApp | None = None
        for app in self._apps.values():
            if app.matches(token):
                found = app
        return found

    def all_origins(self) -> frozenset[str]:
        """The union of every app's origins (for answering CORS preflights)."""
        self._refresh()
        return frozenset(origin for app in self._apps.values() for origin in app.origins)

    # ---- changing ------------------------------------------------------------------

    def add(
        self, name: str, *, origins: list[str] | tuple[str, ...], role: str = DEFAULT_ROLE
    ) -> tuple[ClerkApp, str]:
        """Register ``name`` with its allowed origins; returns the app and its new token.

        The token is returned once and never stored. Re-adding an existing name is an
        error (remove it first), so a token is never replaced by accident.
        """
        if not _NAME.match(name):
            raise AppRegistryError(
                "app name must be 1-64 lower-case letters, digits, '.', '_' or '-'"
            )
        if role not in ROLES:
            raise AppRegistryError(f"role must be one of {', '.join(ROLES)}")
        clean = tuple(dict.fromkeys(normalise_origin(o) for o in origins))
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        app = ClerkApp(
            name=name,
            origins=clean,
            salt=salt,
            token_sha256=_hash(salt, token),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            role=role,
        )
        with self._lock:
            apps = self._read()
            if name in apps:
                raise AppRegistryError(f"app {name!r} exists; remove it first to get a new token")
            apps[name] = app
            self._write(apps)
        return app, token

    def remove(self, name: str) -> bool:
        """Forget ``name`` (its token stops working at once); False if it was unknown."""
        with self._lock:
            apps = self._read()
            if apps.pop(name, None) is None:
                return False
            self._write(apps)
        return True

    # ---- file ----------------------------------------------------------------------

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            self._apps = self._read()
            self._stamp = stamp

    def _read(self) -> dict[str, ClerkApp]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AppRegistryError(f"cannot read {self.path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise AppRegistryError(
                    f"{self.path} is readable or writable by group/others; chmod 600 it"
                )
            raw = handle.read()
        try:
            data = json.loads(raw)
            if data.get("version") != _FORMAT_VERSION:
                raise AppRegistryError(f"{self.path}: unknown format version")
            apps = {
                entry["name"]: ClerkApp(
                    name=str(entry["name"]),
                    origins=tuple(str(o) for o in entry["origins"]),
                    salt=str(entry["salt"]),
                    token_sha256=str(entry["token_sha256"]),
                    created=str(entry.get("created", "")),
                    role=_role(entry.get("role", DEFAULT_ROLE)),
                )
                for entry in data["apps"]
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AppRegistryError(f"{self.path} is not a valid app registry: {exc}") from exc
        return apps

    def _write(self, apps: dict[str, ClerkApp]) -> None:
        """Atomically replace the file: temp file 0600 → fsync → rename → fsync the dir."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = json.dumps(
            {"version": _FORMAT_VERSION, "apps": [apps[n].as_json() for n in sorted(apps)]},
            ensure_ascii=False,
            indent=2,
        ).encode("utf-8")
        tmp = directory / f".{APPS_FILE}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._apps = dict(apps)
        st = os.stat(self.path)
        self._stamp = (st.st_mtime_ns, st.st_size)
        log.info("clerk app registry now has %d app(s)", len(apps))
