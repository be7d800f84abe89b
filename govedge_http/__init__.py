"""HTTP plumbing shared by the agent's local API and the fleet server's API.

The two packages never import each other; what both need at the HTTP layer (and not on
the wire, which is ``govedge_wire``) lives here once.
"""

from govedge_http.bodylimit import BodyTooLarge, run_counted

__all__ = ["BodyTooLarge", "run_counted"]
