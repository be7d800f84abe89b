"""The agent's installer (docs/updates.md, "The agent's installer").

``layout`` (the on-disk contract shared with the supervisor), ``download``, ``install``
(beside the running version, offline), ``installer`` (offer → restart), ``trial`` (the
health proof and the trial report at start), ``reporting`` (statuses on the agent's
connection, the health proof), ``service`` (built for the running agent),
``cli`` (``edge-agent update install/status`` for technicians).

Exceptions: ``UpdateFailed`` (its ``reason`` is a protocol reason code).
"""

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
