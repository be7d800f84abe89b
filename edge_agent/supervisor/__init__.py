"""``edge-agent supervise``: run the agent from ``current`` and roll a failed update back.

See docs/updates.md, "The supervisor and rollback".
"""

from edge_agent.supervisor.layout import home_from_env
from edge_agent.supervisor.runner import Supervisor

__all__ = ["Supervisor", "home_from_env"]
