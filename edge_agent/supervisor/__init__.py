"""``edge-agent supervise``: run the agent from ``current`` and roll a failed update back.

See docs/updates.md, "The supervisor and rollback".
"""

from edge_agent.supervisor.runner import Supervisor
from edge_agent.updates.layout import home_from_env

__all__ = ["Supervisor", "home_from_env"]
