"""systemd's notify protocol (sd_notify(3)): one datagram of ``KEY=VALUE`` lines.

Written here rather than taken from a library: ``python-systemd`` needs libsystemd's
headers and a compiler on every outlet PC, and ``sdnotify`` has had no release since
2017. The protocol is small and stable: a datagram to the ``AF_UNIX`` socket named by
``$NOTIFY_SOCKET`` (a name starting with ``@`` is in the abstract namespace).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"


def socket_address(name: str) -> str | bytes:
    """The ``connect`` address of ``$NOTIFY_SOCKET`` (``@name`` is abstract)."""
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


@dataclass(frozen=True, slots=True)
class Notifier:
    """Sends notify messages when the service manager asked for them; else does nothing."""

    address: str | bytes | None
    watchdog_s: float | None  # the watchdog timeout; ping at half of it

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        name = env.get(SOCKET_ENV) or None
        watchdog = None
        usec = env.get(WATCHDOG_USEC_ENV, "")
        pid = env.get(WATCHDOG_PID_ENV, "")
        # WATCHDOG_PID names the process the watchdog is for; the supervisor removes it
        # from its child's environment so the agent it runs pings on its behalf.
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec) / 1_000_000
        return cls(address=None if name is None else socket_address(name), watchdog_s=watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines (``READY="1"`` → ``READY=1``); whether it was sent."""
        if self.address is None or not fields:
            return False
        text = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(text.encode(), self.address)
        except OSError as exc:
            log.warning("service manager notification failed: %s", exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def stopping(self) -> bool:
        return self.send(STOPPING="1", STATUS="stopping")


def _one_line(value: str) -> str:
    return value.replace("\n", " ")[:200]
