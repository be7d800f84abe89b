"""Build the broker's share guard: a small Mosquitto plugin, compiled on the broker host.

The plugin (``broker_plugin/govedge_share_guard.c``) refuses a ``$share/…`` SUBSCRIBE from
every identity but the fleet server's; Mosquitto 2.0.11's ACL file cannot (it grants
every subscription). Building needs a C compiler and Debian's ``mosquitto-dev`` and
``libmosquitto-dev`` headers: docs/security.md, "Shared subscriptions".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Final

__all__ = ["SHARE_GUARD_FILE", "ShareGuardError", "build_share_guard", "share_guard_conf_lines"]

SHARE_GUARD_FILE: Final = "govedge_share_guard.so"
_SOURCE: Final = Path(__file__).parent / "broker_plugin" / "govedge_share_guard.c"
# Both headers must be there: the plugin API (mosquitto-dev) includes neither the
# error codes nor the client calls (libmosquitto-dev).
_HEADERS: Final = ("mosquitto_plugin.h", "mosquitto_broker.h", "mosquitto.h")
_INCLUDE_DIRS: Final = (Path("/usr/include"), Path("/usr/local/include"))
_COMPILERS: Final = ("cc", "gcc", "clang")
_FLAGS: Final = ("-shared", "-fPIC", "-O2", "-Wall", "-Werror")
_BUILD_TIMEOUT_S: Final = 120.0
_OUTPUT_TAIL: Final = 600


class ShareGuardError(RuntimeError):
    """The plugin could not be built here (the message says what is missing)."""


def _compiler() -> str:
    for name in _COMPILERS:
        found = shutil.which(name)
        if found is not None:
            return found
    raise ShareGuardError("no C compiler (install gcc)")


def _check_headers() -> None:
    missing = [h for h in _HEADERS if not any((d / h).is_file() for d in _INCLUDE_DIRS)]
    if missing:
        raise ShareGuardError(
            f"Mosquitto plugin headers missing ({', '.join(missing)}): "
            "install mosquitto-dev and libmosquitto-dev"
        )


def build_share_guard(out: Path) -> Path:
    """Compile the plugin to ``out/govedge_share_guard.so`` (0644: the broker's user
    loads it) and return its path; ``ShareGuardError`` says why it could not."""
    compiler = _compiler()
    _check_headers()
    target = out / SHARE_GUARD_FILE
    partial = out / f".{SHARE_GUARD_FILE}.building"
    try:
        done = subprocess.run(  # our own source, fixed arguments
            [compiler, *_FLAGS, "-o", str(partial), str(_SOURCE)],
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ShareGuardError(f"compiler failed to run: {exc}") from exc
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        tail = (done.stderr or done.stdout).strip()[-_OUTPUT_TAIL:]
        raise ShareGuardError(f"compiling the share guard failed: {tail}")
    partial.chmod(0o644)
    partial.replace(target)  # a running broker keeps the file it loaded
    return target


def share_guard_conf_lines(plugin: Path | None, share_user: str) -> list[str]:
    """The config lines that load the plugin; none without one."""
    if plugin is None:
        return []
    return [
        "# Only the fleet server may join a share group (docs/security.md).",
        f"plugin {plugin}",
        f"plugin_opt_share_user {share_user}",
    ]
