"""A user's scope: the region-code prefixes whose outlets they see and act on.

An empty scope is the whole fleet (admins always have it). A scoped user sees an
outlet only when its profile's ``region_code`` starts with one of the prefixes; an
outlet without a profile or a region code belongs to no region and so to no scope.
The routes ask this module, through ``fleet_server.api.scope``, and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, column, or_, select, table, true
from sqlalchemy.orm import Session

# The outlet profile table as a lightweight construct: its mapped class lives in
# fleet_server.health, which imports this package (audit), so importing it here would
# make a cycle. tests/security/test_scope_unit.py checks the names against the model.
_PROFILES: Final = table("outlet_profiles", column("outlet_id"), column("region_code"))
PREFIX_RE: Final = re.compile(r"\A[0-9]{2,12}\Z")
MAX_PREFIXES: Final = 64


class ScopeError(ValueError):
    """A prefix that is not 2-12 digits, or too many of them."""


def normalise(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Sorted, unique, checked prefixes; one covered by a shorter one is dropped."""
    items = sorted(set(prefixes))
    for prefix in items:
        if not PREFIX_RE.match(prefix):
            raise ScopeError(f"region prefix {prefix!r} must be 2-12 digits")
    if len(items) > MAX_PREFIXES:
        raise ScopeError(f"at most {MAX_PREFIXES} region prefixes")
    return tuple(p for p in items if not any(p != q and p.startswith(q) for q in items))


@dataclass(frozen=True, slots=True)
class Scope:
    """Region-code prefixes; ``()`` is the whole fleet."""

    prefixes: tuple[str, ...] = ()

    @property
    def whole_fleet(self) -> bool:
        """No restriction at all."""
        return not self.prefixes

    def admits_region(self, region_code: str | None) -> bool:
        """An outlet in ``region_code`` is inside the scope."""
        if self.whole_fleet:
            return True
        return region_code is not None and region_code.startswith(self.prefixes)

    def region_clause(self, region: Any) -> ColumnElement[bool]:
        """SQL: a region-code column is inside the scope (no profile: outside)."""
        if self.whole_fleet:
            return true()
        return or_(*(region.startswith(prefix, autoescape=True) for prefix in self.prefixes))

    def outlet_ids_query(self) -> Select[Any]:
        """SQL: the ids of the outlets inside a (restricted) scope."""
        return select(_PROFILES.c.outlet_id).where(self.region_clause(_PROFILES.c.region_code))

    def outlet_clause(self, outlet_id: Any) -> ColumnElement[bool]:
        """SQL: an outlet-id column names an outlet inside the scope."""
        if self.whole_fleet:
            return true()
        clause: ColumnElement[bool] = outlet_id.in_(self.outlet_ids_query())
        return clause

    def outlet_ids(self, session: Session) -> frozenset[str] | None:
        """The outlets inside the scope, or ``None`` for the whole fleet (no limit)."""
        if self.whole_fleet:
            return None
        return frozenset(session.scalars(self.outlet_ids_query()).all())

    def admits_outlet(self, session: Session, outlet_id: str) -> bool:
        """One outlet is inside the scope."""
        if self.whole_fleet:
            return True
        found = session.scalar(
            select(_PROFILES.c.region_code).where(_PROFILES.c.outlet_id == outlet_id)
        )
        return self.admits_region(found)

    def admits_all(self, session: Session, outlet_ids: Iterable[str]) -> bool:
        """Every one of ``outlet_ids`` is inside the scope (a campaign's, a run's)."""
        inside = self.outlet_ids(session)
        return inside is None or set(outlet_ids) <= inside

    def keep(self, session: Session, outlet_ids: Iterable[str]) -> list[str]:
        """``outlet_ids`` without those outside the scope, order kept."""
        inside = self.outlet_ids(session)
        return [o for o in outlet_ids if inside is None or o in inside]


WHOLE_FLEET: Final = Scope()
