"""What the 好差评 reads need of a user's scope (``fleet_server.security.scope.Scope``).

A protocol, not an import: ``fleet_server.security`` reads the settings, which read this
package, so importing it here would close a cycle.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from sqlalchemy import ColumnElement, true


class OutletFilter(Protocol):
    """Anything that turns an outlet-id column into "inside the scope"."""

    def outlet_clause(self, outlet_id: Any) -> ColumnElement[bool]:
        """SQL: the column names an outlet inside the scope."""
        ...


class _AllOutlets:
    def outlet_clause(self, outlet_id: Any) -> ColumnElement[bool]:
        return true()


ALL_OUTLETS: Final[OutletFilter] = _AllOutlets()
