"""Each outlet's effective config: its scopes' current documents merged in layer order.

An outlet's region and kind come from its profile (``outlet_profiles``); an outlet
known only from its agent (no profile yet) gets ``global`` and its own scope. A region
code or kind in a profile that is not a valid scope value is ignored for layering
(logged once per load), never an error that would stop every outlet's config.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.config.tables import ConfigScope, ConfigVersion
from fleet_server.health.tables import OutletProfile
from fleet_server.models import Outlet
from govedge_wire.config import Scope, ScopeError, layers_for, merge_layers, provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutletPlace:
    """Where an outlet sits for layering."""

    outlet_id: str
    region_code: str | None
    kind: str | None


@dataclass(frozen=True, slots=True)
class Effective:
    """One outlet's effective config, the scopes merged and which scope set each leaf."""

    outlet_id: str
    config: dict[str, Any]
    layers: list[Scope]
    provenance: dict[str, Scope]


def current_documents(session: Session) -> dict[str, dict[str, Any]]:
    """Every scope's current document, by scope text."""
    rows = session.execute(
        select(ConfigVersion.scope, ConfigVersion.document).join(
            ConfigScope,
            (ConfigScope.scope == ConfigVersion.scope)
            & (ConfigScope.version == ConfigVersion.version),
        )
    )
    return {str(scope): dict(document) for scope, document in rows}


def outlet_places(session: Session, outlet_ids: list[str] | None = None) -> list[OutletPlace]:
    """Every known outlet (registry or profile), or those of ``outlet_ids``, with place."""
    profiles = select(OutletProfile.outlet_id, OutletProfile.region_code, OutletProfile.kind)
    known = select(Outlet.id)
    if outlet_ids is not None:
        profiles = profiles.where(OutletProfile.outlet_id.in_(outlet_ids))
        known = known.where(Outlet.id.in_(outlet_ids))
    places = {
        outlet: OutletPlace(outlet, region, kind)
        for outlet, region, kind in session.execute(profiles)
    }
    for (outlet,) in session.execute(known):
        places.setdefault(outlet, OutletPlace(outlet, None, None))
    return [places[outlet] for outlet in sorted(places)]


def _layers(place: OutletPlace) -> list[Scope]:
    region, kind = place.region_code, place.kind
    try:
        return layers_for(place.outlet_id, region, kind)
    except ScopeError as exc:
        log.warning("outlet %s: profile not usable for config layers (%s)", place.outlet_id, exc)
    for region_try, kind_try in ((region, None), (None, kind), (None, None)):
        try:
            return layers_for(place.outlet_id, region_try, kind_try)
        except ScopeError:
            continue
    raise AssertionError("global and a valid outlet id always layer")


def effective_for(place: OutletPlace, documents: Mapping[str, Mapping[str, Any]]) -> Effective:
    """The effective config of one outlet given every scope's document."""
    layers = _layers(place)
    present = [(scope, documents[str(scope)]) for scope in layers if str(scope) in documents]
    return Effective(
        outlet_id=place.outlet_id,
        config=merge_layers([document for _, document in present]),
        layers=layers,
        provenance=provenance(present),
    )


def effective_all(
    session: Session,
    *,
    documents: Mapping[str, Mapping[str, Any]] | None = None,
    outlet_ids: list[str] | None = None,
) -> dict[str, Effective]:
    """Effective configs of every known outlet (or ``outlet_ids``).

    ``documents`` replaces the stored scope documents (a dry run passes the stored ones
    with one scope changed); by default the current versions are used.
    """
    docs = current_documents(session) if documents is None else documents
    return {
        place.outlet_id: effective_for(place, docs) for place in outlet_places(session, outlet_ids)
    }
