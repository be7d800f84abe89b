"""What both systemd units (the agent's and the fleet server's) check and share.

The values a unit file carries unquoted (paths, user and group names) must be safe for
systemd's syntax, and the state directories must be ``/var/lib/NAME``; both units also
end their hardening with the same sandbox lines. The agent may not import the server
and the server may not import the agent (docs/development.md), so these live here.
Imports neither side.
"""

from __future__ import annotations

from govedge_systemd.unit import (
    SANDBOX,
    UnitError,
    check_names,
    check_paths,
    check_state_dirs,
)

__all__ = ["SANDBOX", "UnitError", "check_names", "check_paths", "check_state_dirs"]
