"""Catalogue items resolved once per (item code, region), until the catalogue changes.

The delivery worker routes every submission by its catalogue item. Resolving it is an
ORM query per transaction, and at 50 submissions/s those queries were the largest
share of the delivery thread's time under the interpreter lock, which the ingest and
the API need too (docs/performance.md, "Clerk → upstream"). A catalogue changes only by
an import, which stamps every row it writes with ``imported_at``, or by rows deleted;
``(count, max(imported_at))`` read once per delivery round therefore tells whether any
resolved item may be stale, in this process or after an import in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.catalogue.store import resolve_item
from fleet_server.models import CatalogueItem

__all__ = ["CatalogueRoutes", "RoutedItem"]

# Distinct (item, region) pairs kept; a province has thousands of items and regions, and
# forgetting them all when full costs one query per pair again, nothing else.
_MAX_ENTRIES: Final = 50_000


@dataclass(frozen=True, slots=True)
class RoutedItem:
    """What routing and the upstream document need of a catalogue item."""

    code: str
    base_code: str
    name: str
    department: str
    handling_type: str
    promised_days: int | None
    handling_mode: str
    target: str

    @classmethod
    def of(cls, item: CatalogueItem) -> RoutedItem:
        return cls(
            code=item.code,
            base_code=item.base_code,
            name=item.name,
            department=item.department,
            handling_type=item.handling_type,
            promised_days=item.promised_days,
            handling_mode=item.handling_mode,
            target=item.target,
        )


class CatalogueRoutes:
    """``resolve_item`` remembered per (item code, region code); ``refresh`` each round."""

    def __init__(self) -> None:
        self._version: tuple[Any, ...] | None = None
        self._items: dict[tuple[str, str], RoutedItem | None] = {}
        self.lookups = 0  # queries made (a test and the benchmark read it)

    def refresh(self, session: Session) -> None:
        """Forget every resolved item if the catalogue changed since the last call."""
        version = tuple(
            session.execute(
                select(func.count(), func.max(CatalogueItem.imported_at)).select_from(CatalogueItem)
            ).one()
        )
        if version != self._version:
            self._items.clear()
            self._version = version

    def resolve(self, session: Session, *, item_code: str, region_code: str) -> RoutedItem | None:
        """The item ``item_code`` filed in ``region_code`` belongs to (None: no such item)."""
        key = (item_code, region_code)
        try:
            return self._items[key]
        except KeyError:
            pass
        self.lookups += 1
        item = resolve_item(session, item_code=item_code, region_code=region_code)
        found = None if item is None else RoutedItem.of(item)
        if len(self._items) >= _MAX_ENTRIES:
            self._items.clear()
        self._items[key] = found
        return found
