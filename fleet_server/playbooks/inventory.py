"""The inventory of a run, generated from the registry (never a hand-kept file).

A target names outlets, regions (prefixes of a region code), kinds, tags (of the
outlet profile) and alert rules (outlets with an open alert of that rule, so a fix can
go exactly where the problem is); the union is taken. Outlets whose certificate is
revoked and none left valid (decommissioned) are left out. Each host is named by its
outlet id, with the vars of its ``outlet_access`` row that access.py allows. Unless
``during_opening_hours``, an outlet that is open now (its effective config's
``opening_hours``, else its profile's; a 24h outlet outside its quiet window) is held
back: listed with the reason, not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.config.effective import effective_all, outlet_places
from fleet_server.config.holds import hours_for
from fleet_server.health.hours import is_24h, may_take_devices, zone_of
from fleet_server.health.tables import Alert, OutletProfile
from fleet_server.models import Certificate
from fleet_server.playbooks import access
from fleet_server.playbooks.tables import OutletAccess


@dataclass(frozen=True, slots=True)
class Target:
    """Which outlets a run is for (the union of the five lists)."""

    outlets: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    alert_rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Chosen:
    """The hosts to run on (outlet id → host vars) and those held back (→ why)."""

    hosts: dict[str, dict[str, Any]]
    held: dict[str, str]


def _decommissioned(session: Session) -> set[str]:
    """Outlets with certificates, every one of them revoked."""
    rows = session.execute(select(Certificate.outlet_id, Certificate.revoked_at))
    live: dict[str, bool] = {}
    for outlet, revoked_at in rows:
        live[outlet] = live.get(outlet, False) or revoked_at is None
    return {outlet for outlet, any_live in live.items() if not any_live}


def _tagged(session: Session, tags: tuple[str, ...]) -> set[str]:
    """Outlets whose profile carries any of ``tags``."""
    if not tags:
        return set()
    wanted = set(tags)
    rows = session.execute(select(OutletProfile.outlet_id, OutletProfile.tags))
    return {outlet for outlet, have in rows if wanted.intersection(have or ())}


def _alerting(session: Session, rules: tuple[str, ...]) -> set[str]:
    """Outlets with an alert of any of ``rules`` still open (not resolved): the alert
    engine resolves an alert once its condition stops holding, so these are the outlets
    where the problem is now. Acknowledged or silenced alerts are still open."""
    if not rules:
        return set()
    return set(
        session.scalars(
            select(Alert.outlet_id).where(Alert.state == "open", Alert.rule.in_(rules)).distinct()
        )
    )


def host_vars(row: OutletAccess | None, rules: access.Rules) -> dict[str, Any]:
    """The inventory vars of one outlet: only what ``rules`` allow, whatever the row
    holds (access.py)."""
    if row is None:
        return {}
    return access.inventory_vars(
        row.outlet_id, ansible_host=row.ansible_host, ansible_port=row.ansible_port,
        ansible_user=row.ansible_user, host_vars=dict(row.host_vars or {}), rules=rules,
    )  # fmt: skip


def choose(
    session: Session,
    target: Target,
    *,
    now: datetime,
    during_opening_hours: bool,
    zone: str,
    rules: access.Rules,
) -> Chosen:
    """The target's outlets from the registry, split into hosts and held."""
    places = outlet_places(session)
    gone = _decommissioned(session)
    tagged = _tagged(session, target.tags)
    alerting = _alerting(session, target.alert_rules)
    wanted = [
        p.outlet_id
        for p in places
        if p.outlet_id not in gone
        and (
            p.outlet_id in target.outlets
            or any((p.region_code or "").startswith(r) for r in target.regions)
            or (p.kind is not None and p.kind in target.kinds)
            or p.outlet_id in tagged
            or p.outlet_id in alerting
        )
    ]
    records = {
        row.outlet_id: row
        for row in session.scalars(select(OutletAccess).where(OutletAccess.outlet_id.in_(wanted)))
    }
    held: dict[str, str] = {}
    if not during_opening_hours and wanted:
        configs = effective_all(session, outlet_ids=wanted)
        profile_hours: dict[str, Any] = dict(
            session.execute(
                select(OutletProfile.outlet_id, OutletProfile.opening_hours).where(
                    OutletProfile.outlet_id.in_(wanted)
                )
            ).all()
        )
        for outlet in wanted:
            config = configs[outlet].config if outlet in configs else {}
            hours = hours_for(config, profile_hours.get(outlet))
            if not may_take_devices(hours, now.astimezone(zone_of(hours, zone))):
                held[outlet] = (
                    "never closes: outside its quiet window"
                    if is_24h(hours)
                    else "open now (opening hours)"
                )
    hosts = {o: host_vars(records.get(o), rules) for o in wanted if o not in held}
    return Chosen(hosts=hosts, held=held)


def unknown_outlets(session: Session, target: Target) -> list[str]:
    """Outlets the target names that the registry does not know."""
    known = {p.outlet_id for p in outlet_places(session, list(target.outlets))}
    return sorted(set(target.outlets) - known)
