"""The agent's installer (docs/updates.md, "The agent's installer").

``layout`` (the on-disk contract shared with the supervisor), ``download``, ``install``
(beside the running version, offline), ``installer`` (offer → restart), ``trial`` (the
health proof and the trial report at start), ``reporting`` (statuses on the agent's
connection, the health proof), ``service`` (built for the running agent),
``cli`` (``edge-agent update install/status`` for technicians).

Exceptions: ``UpdateFailed`` (its ``reason`` is a protocol reason code).

The names below load on first use (PEP 562): the supervisor, which runs on every outlet
PC beside the agent, reads ``layout`` and must not carry the installer, the enrollment
client and the agent's settings with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.updates.errors import UpdateFailed
    from edge_agent.updates.installer import Installer, InstallerSettings, StatusReporter
    from edge_agent.updates.layout import RESTART_EXIT_CODE, Layout
    from edge_agent.updates.service import SUPERVISED_ENV, build_installer, supervised
    from edge_agent.updates.trial import settle_trial

__all__ = [
    "RESTART_EXIT_CODE",
    "SUPERVISED_ENV",
    "Installer",
    "InstallerSettings",
    "Layout",
    "StatusReporter",
    "UpdateFailed",
    "build_installer",
    "settle_trial",
    "supervised",
]

_HOMES = {
    "UpdateFailed": "errors",
    "Installer": "installer",
    "InstallerSettings": "installer",
    "StatusReporter": "installer",
    "RESTART_EXIT_CODE": "layout",
    "Layout": "layout",
    "SUPERVISED_ENV": "service",
    "build_installer": "service",
    "supervised": "service",
    "settle_trial": "trial",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'edge_agent.updates' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edge_agent.updates.{home}"), name)
