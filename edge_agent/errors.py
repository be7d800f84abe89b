"""Errors of the edge agent; each one ends the process with a one-line message.

Exception tree::

    AgentError                 (exit_code: int)
    ├── SettingsError          bad or missing setting; exit code 2
    ├── SessionStoreError      the session counter cannot be read or persisted; exit code 1
    └── StartupError           the outbox, queue or device discovery cannot be opened; exit 1

Network trouble is never an ``AgentError``: the daemon reconnects forever instead.
"""

from __future__ import annotations


class AgentError(Exception):
    """A condition the agent cannot run through; ``exit_code`` is what the CLI returns."""

    exit_code: int = 1


class SettingsError(AgentError):
    """A setting is missing or invalid; the message names it and where it can be set."""

    exit_code = 2


class SessionStoreError(AgentError):
    """The session counter in the data directory cannot be read or written durably."""

    exit_code = 1


class StartupError(AgentError):
    """A durable part (outbox, queue) or device discovery cannot be opened at start."""

    exit_code = 1
