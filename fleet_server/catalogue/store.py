"""Catalogue reads: list items, and resolve the item a submission names in its region."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fleet_server.models import CatalogueItem

__all__ = ["list_items", "resolve_item"]


def list_items(
    session: Session, *, region: str | None = None, target: str | None = None
) -> list[CatalogueItem]:
    """Items ordered by code; optionally those handled in ``region`` or owned by ``target``."""
    query = select(CatalogueItem).order_by(CatalogueItem.code)
    if target is not None:
        query = query.where(CatalogueItem.target == target)
    items = list(session.scalars(query))
    if region is not None:
        items = [item for item in items if _covers(item, region)]
    return items


def _covers(item: CatalogueItem, region_code: str) -> int:
    """Length of the longest region prefix of ``item`` covering ``region_code`` (0: none)."""
    return max(
        (len(prefix) for prefix in item.region_codes if region_code.startswith(prefix)), default=0
    )


def resolve_item(session: Session, *, item_code: str, region_code: str) -> CatalogueItem | None:
    """The item a submission for ``item_code`` filed in ``region_code`` belongs to.

    ``item_code`` may be an implementation code (实施编码, exact) or a catalogue code
    (基本编码, shared by regions); among the candidates that cover the region, the one
    with the most specific (longest) region prefix wins; ties go to the lowest code.
    """
    candidates = session.scalars(
        select(CatalogueItem)
        .where(or_(CatalogueItem.code == item_code, CatalogueItem.base_code == item_code))
        .order_by(CatalogueItem.code)
    ).all()
    best: CatalogueItem | None = None
    best_len = 0
    for item in candidates:
        length = _covers(item, region_code)
        if length > best_len:
            best, best_len = item, length
    return best
