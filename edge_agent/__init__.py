"""govedge edge agent: one asyncio daemon per outlet PC.

It keeps one MQTT 5 session to the broker with Sparkplug-style presence (persisted
session counter in the will and the birth, per-session ``seq``), host telemetry, and the
downlink for commands, desired config and server state. Start it with ``edge-agent run``.

The names below load on first use (PEP 562): importing one submodule, as the document
camera's capture process does (``devices/document_camera/worker.py``), must not pull in
the daemon, the local API and every device kind.

Exception tree::

    AgentError                 (exit_code)
    ├── SettingsError          bad or missing setting; exit code 2
    └── SessionStoreError      session counter unreadable or not durable; exit code 1
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.daemon import Agent, run_agent
    from edge_agent.errors import AgentError, SessionStoreError, SettingsError
    from edge_agent.settings import AgentSettings, load_settings

__all__ = [
    "Agent",
    "AgentError",
    "AgentSettings",
    "SessionStoreError",
    "SettingsError",
    "load_settings",
    "run_agent",
]

_HOMES = {
    "Agent": "edge_agent.daemon",
    "run_agent": "edge_agent.daemon",
    "AgentError": "edge_agent.errors",
    "SessionStoreError": "edge_agent.errors",
    "SettingsError": "edge_agent.errors",
    "AgentSettings": "edge_agent.settings",
    "load_settings": "edge_agent.settings",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'edge_agent' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
