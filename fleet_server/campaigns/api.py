"""``/api/v1/campaigns``: create, pause, resume, abort (operators); read (viewers).

Shapes are documented in docs/updates.md ("Campaigns"); ``fleetctl`` and the UI read
exactly these.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import AppStateDep, SessionDep
from fleet_server.api.errors import RowId
from fleet_server.api.scope import ScopeDep, refuse_outside
from fleet_server.campaigns import service, views
from fleet_server.campaigns.plan import CampaignCreate, candidates
from fleet_server.campaigns.states import OUTLET_STATES
from fleet_server.campaigns.tables import CampaignOutlet
from fleet_server.security.scope import Scope

write_router = APIRouter(prefix="/campaigns", tags=["campaigns"])
read_router = APIRouter(prefix="/campaigns", tags=["campaigns"])

CampaignId = RowId


class Transition(BaseModel):
    """The body of pause and abort: why (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=1, max_length=1000)] | None = None


class Resume(Transition):
    """The body of resume: why, and optionally a fixed release to continue with."""

    release: Annotated[str, Field(min_length=1, max_length=64)] | None = None


def _http(exc: service.CampaignError) -> HTTPException:
    return HTTPException(exc.status, detail=str(exc))


@write_router.post("", status_code=status.HTTP_201_CREATED)
def create_campaign(
    body: CampaignCreate, state: AppStateDep, principal: Authenticated, scope: ScopeDep
) -> dict[str, Any]:
    """Start a campaign; 409 when the release is missing or bad, 422 for a bad body or a
    target that selects no outlet. ``excluded`` lists (first 50) the targeted outlets
    left out because they are in another running or paused campaign."""
    try:
        with state.sessions.begin() as session:
            # A region-scoped operator may only update their own outlets: 403 naming
            # the targeted ones outside (campaign reads and steering: path_guard).
            refuse_outside(session, scope, [c.outlet_id for c in candidates(session, body.target)])
            campaign, excluded = service.create(session, body, actor=principal.name)
            answer = views.detail(session, campaign)
    except service.CampaignError as exc:
        raise _http(exc) from None
    state.campaigns_changed()
    answer["excluded"] = {"count": len(excluded), "outlets": excluded[: service.EXCLUDED_SHOWN]}
    return answer


def _transition(state: AppStateDep, action: str, campaign_id: int, **kwargs: Any) -> Any:
    try:
        with state.sessions.begin() as session:
            campaign = getattr(service, action)(session, campaign_id, **kwargs)
            answer = views.detail(session, campaign)
    except service.CampaignError as exc:
        raise _http(exc) from None
    state.campaigns_changed()
    return answer


@write_router.post("/{campaign_id}/pause")
def pause_campaign(
    campaign_id: CampaignId, state: AppStateDep, principal: Authenticated,
    body: Transition | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Stop new offers (outlets mid-install finish); 409 unless running."""
    reason = body.reason if body else None
    result: dict[str, Any] = _transition(state, "pause", campaign_id, reason=reason,
                                         actor=principal.name)  # fmt: skip
    return result


@write_router.post("/{campaign_id}/resume")
def resume_campaign(
    campaign_id: CampaignId, state: AppStateDep, principal: Authenticated,
    body: Resume | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run a paused campaign again, optionally with a fixed release; 409 unless paused."""
    result: dict[str, Any] = _transition(
        state, "resume", campaign_id, reason=body.reason if body else None,
        release=body.release if body else None, actor=principal.name,
    )  # fmt: skip
    return result


@write_router.post("/{campaign_id}/abort")
def abort_campaign(
    campaign_id: CampaignId, state: AppStateDep, principal: Authenticated,
    body: Transition | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Stop for good: no more offers; installed outlets stay. 409 when already over."""
    reason = body.reason if body else None
    result: dict[str, Any] = _transition(state, "abort", campaign_id, reason=reason,
                                         actor=principal.name)  # fmt: skip
    return result


@read_router.get("")
def list_campaigns(session: SessionDep, scope: ScopeDep) -> list[dict[str, Any]]:
    """Every campaign, newest first, with its outlets counted per state (a region-scoped
    user: those whose outlets are all theirs)."""
    outside = _reaching_outside(session, scope)
    return [row for row in views.list_campaigns(session) if row["id"] not in outside]


def _reaching_outside(session: Session, scope: Scope) -> set[int]:
    """Campaigns with an outlet outside ``scope``."""
    if scope.whole_fleet:
        return set()
    query = select(CampaignOutlet.campaign_id).where(~scope.outlet_clause(CampaignOutlet.outlet_id))
    return set(session.scalars(query.distinct()))


@read_router.get("/{campaign_id}")
def read_campaign(campaign_id: CampaignId, session: SessionDep) -> dict[str, Any]:
    """One campaign: settings, target, waves and totals."""
    try:
        campaign = service.get(session, campaign_id)
    except service.CampaignError as exc:
        raise _http(exc) from None
    return views.detail(session, campaign)


@read_router.get("/{campaign_id}/outlets")
def campaign_outlets(
    campaign_id: CampaignId,
    session: SessionDep,
    state: Annotated[str | None, Query(pattern=f"^({'|'.join(OUTLET_STATES)})$")] = None,
    wave: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """A page of the campaign's outlets: {"outlets": [...], "total": n}."""
    try:
        service.get(session, campaign_id)
    except service.CampaignError as exc:
        raise _http(exc) from None
    return views.outlets(session, campaign_id, state=state, wave=wave, limit=limit,
                         offset=offset)  # fmt: skip


@read_router.get("/{campaign_id}/outlets/{outlet_id}")
def campaign_outlet(
    campaign_id: CampaignId,
    outlet_id: Annotated[str, Path(min_length=1, max_length=64)],
    session: SessionDep,
) -> dict[str, Any]:
    """One outlet of a campaign with every transition ("history")."""
    row = session.get(CampaignOutlet, (campaign_id, outlet_id))
    if row is None:
        raise HTTPException(404, detail=f"outlet {outlet_id} is not in campaign {campaign_id}")
    return {**views.outlet_view(row), "history": views.history(session, campaign_id, outlet_id)}
