"""The policy figures of the 好差评 page, computed live per region, outlet kind or outlet.

Every figure is kept as a numerator and a denominator (``FigureCounts``) so groups add
up exactly and ``/metrics`` can export counts that Grafana divides (a rate of rates
would be wrong). Definitions, sources and targets: docs/fleet-health.md, "The policy
figures". In short, over ``[since, until)``:

* active evaluation rate: evaluations a citizen made (system defaults excluded) ÷ cases;
* satisfaction: (非常满意 + 满意 + 基本满意) ÷ evaluations;
* 差评 follow-up rate: tickets opened in the period with at least one follow-up ÷ tickets;
* on-time rectification rate: tickets closed by their deadline ÷ tickets whose outcome
  is known (closed, or still open past the deadline);
* 就近可办 coverage: outlets handling every catalogue item assigned to their kind in
  their region ÷ outlets with such items;
* 24-hour kiosk coverage: township/street centres with a 24-hour kiosk outlet in their
  region ÷ centres;
* service items: outlets listing at least their level's target ÷ outlets with a target.

The registry figures (the last three) describe the outlets as they are now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import Session

from fleet_server.evaluations.scoping import ALL_OUTLETS, OutletFilter
from fleet_server.health.hours import is_24h
from fleet_server.health.tables import OutletProfile
from fleet_server.models import (
    CatalogueItem,
    Evaluation,
    InboxEntry,
    Rectification,
    RectificationFollowUp,
)

__all__ = [
    "CENTRE_KINDS",
    "ITEM_TARGETS",
    "TARGETS",
    "FigureCounts",
    "FigureGroup",
    "GroupBy",
    "figures_by_region_and_kind",
    "fleet_figures",
    "record_counts",
]

GroupBy = Literal["region", "kind", "outlet"]
# Township (乡镇) and street (街道) service centres: the level the kiosk target counts.
CENTRE_KINDS: Final = ("township_centre", "street_centre")
# Items an outlet of the level must handle on site (the Anyang standard: 200 / 150 / 40).
ITEM_TARGETS: Final = {"township_centre": 200, "street_centre": 150, "village_station": 40}
TARGETS: Final = {
    "active_evaluation_rate": 0.60,
    "follow_up_rate": 1.0,
    "on_time_rectification_rate": 1.0,
    "kiosk_coverage": 0.20,
}
UNKNOWN: Final = "-"


@dataclass(slots=True)
class FigureCounts:
    """Numerators and denominators of one group (or one outlet)."""

    outlets: int = 0
    cases: int = 0
    evaluations: int = 0
    active_evaluations: int = 0
    satisfied: int = 0
    bad_reviews: int = 0
    rectifications: int = 0
    followed_up: int = 0
    rectifications_due: int = 0
    rectified_on_time: int = 0
    overdue_open: int = 0
    nearby_outlets: int = 0
    nearby_complete: int = 0
    nearby_items_assigned: int = 0
    nearby_items_handled: int = 0
    centres: int = 0
    centres_with_kiosk: int = 0
    item_target_outlets: int = 0
    item_target_met: int = 0
    service_items: int = 0

    def add(self, other: FigureCounts) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def rates(self) -> dict[str, float | None]:
        """Each figure as a share (null where its denominator is 0)."""
        return {
            "active_evaluation_rate": _share(self.active_evaluations, self.cases),
            "satisfaction_rate": _share(self.satisfied, self.evaluations),
            "follow_up_rate": _share(self.followed_up, self.rectifications),
            "on_time_rectification_rate": _share(self.rectified_on_time, self.rectifications_due),
            "nearby_coverage": _share(self.nearby_complete, self.nearby_outlets),
            "nearby_item_share": _share(self.nearby_items_handled, self.nearby_items_assigned),
            "kiosk_coverage": _share(self.centres_with_kiosk, self.centres),
            "item_target_rate": _share(self.item_target_met, self.item_target_outlets),
            "service_items_per_outlet": (
                round(self.service_items / self.outlets, 2) if self.outlets else None
            ),
        }


@dataclass(frozen=True, slots=True)
class FigureGroup:
    """One row: the group's key (region prefix, kind or outlet id), counts and rates."""

    key: str
    counts: FigureCounts

    def as_dict(self) -> dict[str, Any]:
        """Key, every count, every rate."""
        return {"key": self.key, **asdict(self.counts), **self.counts.rates()}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True, slots=True)
class _Outlet:
    outlet_id: str
    kind: str | None
    region_code: str | None
    opening_hours: Any
    service_items: tuple[str, ...]


def fleet_figures(
    session: Session,
    *,
    by: GroupBy,
    since: datetime,
    until: datetime,
    now: datetime,
    scope: OutletFilter = ALL_OUTLETS,
    region: str | None = None,
    kind: str | None = None,
    region_digits: int = 6,
) -> tuple[FigureCounts, list[FigureGroup]]:
    """The total and one group per region prefix (``region_digits`` long), kind or
    outlet, for the outlets in ``scope`` (narrowed to the ``region`` prefix and ``kind``).

    Outlets known only from their records (no profile) fall under kind and region "-".
    """
    profiles, selected = _per_outlet(
        session, since=since, until=until, now=now, scope=scope, region=region, kind=kind
    )
    total = FigureCounts()
    groups: dict[str, FigureCounts] = defaultdict(FigureCounts)
    for outlet_id, counts in selected.items():
        total.add(counts)
        groups[_key(by, outlet_id, profiles.get(outlet_id), region_digits)].add(counts)
    rows = [FigureGroup(key, counts) for key, counts in sorted(groups.items())]
    return total, rows


def figures_by_region_and_kind(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    region_digits: int,
    scope: OutletFilter = ALL_OUTLETS,
) -> dict[tuple[str, str], FigureCounts]:
    """The counts of the outlets in ``scope`` (the whole fleet by default) per (region
    prefix, kind): ``/metrics``' labels, bounded by the number of regions at that depth
    times the kinds, never per outlet."""
    profiles, selected = _per_outlet(session, since=since, until=until, now=now, scope=scope)
    groups: dict[tuple[str, str], FigureCounts] = defaultdict(FigureCounts)
    for outlet_id, counts in selected.items():
        profile = profiles.get(outlet_id)
        key = (
            _key("region", outlet_id, profile, region_digits),
            _key("kind", outlet_id, profile, region_digits),
        )
        groups[key].add(counts)
    return dict(groups)


def record_counts(
    session: Session, *, since: datetime, until: datetime, now: datetime
) -> dict[str, FigureCounts]:
    """Cases, evaluations and tickets of ``[since, until)`` per outlet, the registry left
    out (the alert rule on the week's evaluation rate reads only these)."""
    per_outlet: dict[str, FigureCounts] = defaultdict(FigureCounts)
    _add_records(session, per_outlet, scope=ALL_OUTLETS, since=since, until=until, now=now)
    return dict(per_outlet)


def _per_outlet(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    now: datetime,
    scope: OutletFilter = ALL_OUTLETS,
    region: str | None = None,
    kind: str | None = None,
) -> tuple[dict[str, _Outlet], dict[str, FigureCounts]]:
    """The profiles, and the counts of every selected outlet."""
    profiles = {
        p.outlet_id: p
        for p in _profiles(session, scope)
        if region is None or (p.region_code or "").startswith(region)
    }
    per_outlet: dict[str, FigureCounts] = defaultdict(FigureCounts)
    _add_records(session, per_outlet, scope=scope, since=since, until=until, now=now)
    _add_registry(session, per_outlet, profiles.values())
    selected: dict[str, FigureCounts] = {}
    for outlet_id, counts in per_outlet.items():
        profile = profiles.get(outlet_id)
        if profile is None and region is not None:
            continue  # no region known: it cannot be inside the asked one
        if kind is not None and (profile is None or profile.kind != kind):
            continue
        selected[outlet_id] = counts
    return profiles, selected


def _key(by: GroupBy, outlet_id: str, profile: _Outlet | None, digits: int) -> str:
    if by == "outlet":
        return outlet_id
    if profile is None:
        return UNKNOWN
    if by == "kind":
        return profile.kind or UNKNOWN
    return (profile.region_code or UNKNOWN)[:digits]


def _profiles(session: Session, scope: OutletFilter) -> list[_Outlet]:
    rows = session.execute(
        select(
            OutletProfile.outlet_id,
            OutletProfile.kind,
            OutletProfile.region_code,
            OutletProfile.opening_hours,
            OutletProfile.service_items,
        ).where(scope.outlet_clause(OutletProfile.outlet_id))
    )
    return [
        _Outlet(r.outlet_id, r.kind, r.region_code, r.opening_hours, tuple(r.service_items or ()))
        for r in rows
    ]


def _add_records(
    session: Session,
    per_outlet: dict[str, FigureCounts],
    *,
    scope: OutletFilter,
    since: datetime,
    until: datetime,
    now: datetime,
) -> None:
    """Cases, evaluations and rectification tickets of the period, per outlet."""
    cases = select(InboxEntry.outlet_id, func.count()).where(
        InboxEntry.tx_kind == "submission",
        InboxEntry.received_at >= since,
        InboxEntry.received_at < until,
        scope.outlet_clause(InboxEntry.outlet_id),
    )
    for outlet_id, count in session.execute(cases.group_by(InboxEntry.outlet_id)):
        per_outlet[outlet_id].cases += int(count)
    evaluations = select(
        Evaluation.outlet_id, Evaluation.stars, Evaluation.is_default, func.count()
    ).where(
        Evaluation.evaluated_at >= since,
        Evaluation.evaluated_at < until,
        scope.outlet_clause(Evaluation.outlet_id),
    )
    grouped = evaluations.group_by(Evaluation.outlet_id, Evaluation.stars, Evaluation.is_default)
    for outlet_id, stars, is_default, count in session.execute(grouped):
        counts, n = per_outlet[outlet_id], int(count)
        counts.evaluations += n
        counts.active_evaluations += 0 if is_default else n
        counts.satisfied += n if stars >= 3 else 0
        counts.bad_reviews += n if stars <= 2 else 0
    followed = exists().where(RectificationFollowUp.rectification_id == Rectification.id)
    tickets = select(
        Rectification.outlet_id,
        Rectification.status,
        Rectification.deadline_at,
        Rectification.closed_at,
        case((followed, True), else_=False).label("followed"),
    ).where(
        Rectification.opened_at >= since,
        Rectification.opened_at < until,
        scope.outlet_clause(Rectification.outlet_id),
    )
    for row in session.execute(tickets):
        counts = per_outlet[row.outlet_id]
        counts.rectifications += 1
        counts.followed_up += 1 if row.followed else 0
        if row.closed_at is not None:
            counts.rectifications_due += 1
            counts.rectified_on_time += 1 if row.closed_at <= row.deadline_at else 0
        elif row.deadline_at < now:
            counts.rectifications_due += 1
            counts.overdue_open += 1


def _add_registry(
    session: Session, per_outlet: dict[str, FigureCounts], outlets: Iterable[_Outlet]
) -> None:
    """Outlet counts, 就近可办 coverage, kiosk coverage and service items, per outlet."""
    outlets = list(outlets)
    assigned = _AssignedItems(session)
    kiosks = [
        o.region_code
        for o in outlets
        if o.kind == "kiosk" and o.region_code and is_24h(o.opening_hours)
    ]
    for outlet in outlets:
        counts = per_outlet[outlet.outlet_id]
        counts.outlets += 1
        counts.service_items += len(outlet.service_items)
        items = assigned.for_outlet(outlet.kind, outlet.region_code)
        if items:
            handled = sum(1 for codes in items if codes & set(outlet.service_items))
            counts.nearby_outlets += 1
            counts.nearby_items_assigned += len(items)
            counts.nearby_items_handled += handled
            counts.nearby_complete += 1 if handled == len(items) else 0
        if outlet.kind in CENTRE_KINDS:
            counts.centres += 1
            own = outlet.region_code
            counts.centres_with_kiosk += 1 if own and any(k.startswith(own) for k in kiosks) else 0
        target = ITEM_TARGETS.get(outlet.kind or "")
        if target is not None:
            counts.item_target_outlets += 1
            counts.item_target_met += 1 if len(outlet.service_items) >= target else 0


class _AssignedItems:
    """The catalogue items assigned to a kind in a region, each as the set of codes
    (implementation code and catalogue code) an outlet may list it under; memoised per
    (kind, region), since many outlets share both."""

    def __init__(self, session: Session) -> None:
        self._by_kind: dict[str, list[tuple[frozenset[str], tuple[str, ...]]]] = defaultdict(list)
        rows = session.execute(
            select(
                CatalogueItem.code,
                CatalogueItem.base_code,
                CatalogueItem.outlet_kinds,
                CatalogueItem.region_codes,
            )
        )
        for code, base_code, kinds, regions in rows:
            for item_kind in kinds or ():
                self._by_kind[item_kind].append((frozenset((code, base_code)), tuple(regions)))
        self._memo: dict[tuple[str, str], list[frozenset[str]]] = {}

    def for_outlet(self, kind: str | None, region_code: str | None) -> list[frozenset[str]]:
        if not kind or not region_code:
            return []
        key = (kind, region_code)
        found = self._memo.get(key)
        if found is None:
            found = [
                codes
                for codes, regions in self._by_kind.get(kind, ())
                if any(region_code.startswith(prefix) for prefix in regions)
            ]
            self._memo[key] = found
        return found
