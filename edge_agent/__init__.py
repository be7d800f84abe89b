"""govedge edge agent: one asyncio daemon per outlet PC.

It keeps one MQTT 5 session to the broker with Sparkplug-style presence (persisted
session counter in the will and the birth, per-session ``seq``), host telemetry, and the
downlink for commands, desired config and server state. Start it with ``edge-agent run``.

Exception tree::

    AgentError                 (exit_code)
    ├── SettingsError          bad or missing setting; exit code 2
    └── SessionStoreError      session counter unreadable or not durable; exit code 1
"""

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
