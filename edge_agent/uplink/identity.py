"""What the agent says about itself in every birth: version, host name, OS."""

from __future__ import annotations

import platform
import socket
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

UNKNOWN_VERSION = "0+unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostIdentity:
    """Facts about this agent and host that do not change while it runs."""

    agent_version: str
    hostname: str
    os: str

    @classmethod
    def detect(cls) -> HostIdentity:
        """Read the installed govedge version and the host's name and platform."""
        try:
            agent_version = version("govedge")
        except PackageNotFoundError:
            agent_version = UNKNOWN_VERSION
        hostname = socket.gethostname()[:128] or "unknown"
        return cls(
            agent_version=agent_version[:128], hostname=hostname, os=platform.platform()[:256]
        )
