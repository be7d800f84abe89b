"""What the campaign API answers: lists, one campaign with its waves, its outlets."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.campaigns.states import OUTLET_STATES
from fleet_server.campaigns.tables import Campaign, CampaignOutlet, CampaignOutletHistory


def _counts(counter: Counter[str]) -> dict[str, int]:
    return {state: counter.get(state, 0) for state in OUTLET_STATES}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary(campaign: Campaign, counts: Counter[str]) -> dict[str, Any]:
    """One campaign as listed."""
    return {
        "id": campaign.id,
        "name": campaign.name,
        "release": campaign.release,
        "state": campaign.state,
        "state_reason": campaign.state_reason,
        "created_by": campaign.created_by,
        "created_at": _iso(campaign.created_at),
        "updated_at": _iso(campaign.updated_at),
        "current_wave": campaign.current_wave,
        "outlets": sum(counts.values()),
        "counts": _counts(counts),
    }


def list_campaigns(session: Session) -> list[dict[str, Any]]:
    """Every campaign, newest first, with its outlets counted per state."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for campaign_id, state, n in session.execute(
        select(CampaignOutlet.campaign_id, CampaignOutlet.state, func.count()).group_by(
            CampaignOutlet.campaign_id, CampaignOutlet.state
        )
    ):
        counts[campaign_id][state] = n
    rows = session.scalars(select(Campaign).order_by(Campaign.id.desc()))
    return [summary(row, counts[row.id]) for row in rows]


def detail(session: Session, campaign: Campaign) -> dict[str, Any]:
    """One campaign: settings, target, waves (size, state, times, counts) and totals."""
    per_wave: dict[int, Counter[str]] = defaultdict(Counter)
    for wave, state, n in session.execute(
        select(CampaignOutlet.wave, CampaignOutlet.state, func.count())
        .where(CampaignOutlet.campaign_id == campaign.id)
        .group_by(CampaignOutlet.wave, CampaignOutlet.state)
    ):
        per_wave[wave][state] = n
    totals: Counter[str] = Counter()
    waves = []
    for index, size in enumerate(campaign.waves):
        counts = per_wave[index]
        totals.update(counts)
        times = campaign.wave_times.get(str(index)) or {}
        if not times:
            state = "pending"
        elif times.get("finished_at"):
            state = "done"
        else:
            state = "running"
        waves.append({
            "index": index, "size": size, "state": state,
            "started_at": times.get("started_at"), "finished_at": times.get("finished_at"),
            "counts": _counts(counts),
        })  # fmt: skip
    settings = {k: v for k, v in campaign.settings.items()
                if k not in ("counted_from", "accepted_wave")}  # fmt: skip
    return {
        **summary(campaign, totals),
        "target": campaign.target,
        "settings": settings,
        "waves": waves,
        "totals": _counts(totals),
    }


def outlet_view(row: CampaignOutlet) -> dict[str, Any]:
    """One outlet of a campaign."""
    return {
        "outlet_id": row.outlet_id, "wave": row.wave, "state": row.state,
        "since": _iso(row.since), "reason": row.reason, "detail": row.detail,
        "from_version": row.from_version, "release": row.release, "attempts": row.attempts,
    }  # fmt: skip


def outlets(
    session: Session, campaign_id: int, *, state: str | None, wave: int | None, limit: int,
    offset: int,
) -> dict[str, Any]:  # fmt: skip
    """A page of the campaign's outlets (in campaign order) and how many match."""
    where = [CampaignOutlet.campaign_id == campaign_id]
    if state is not None:
        where.append(CampaignOutlet.state == state)
    if wave is not None:
        where.append(CampaignOutlet.wave == wave)
    total = session.scalar(select(func.count()).select_from(CampaignOutlet).where(*where)) or 0
    rows = session.scalars(
        select(CampaignOutlet).where(*where).order_by(CampaignOutlet.position)
        .limit(limit).offset(offset)
    )  # fmt: skip
    return {"outlets": [outlet_view(r) for r in rows], "total": total}


def history(session: Session, campaign_id: int, outlet_id: str) -> list[dict[str, Any]]:
    """Every transition of one outlet in one campaign, oldest first."""
    rows = session.scalars(
        select(CampaignOutletHistory)
        .where(
            CampaignOutletHistory.campaign_id == campaign_id,
            CampaignOutletHistory.outlet_id == outlet_id,
        )
        .order_by(CampaignOutletHistory.id)
    )
    return [
        {"at": _iso(r.at), "from_state": r.from_state, "state": r.state, "reason": r.reason,
         "detail": r.detail}
        for r in rows
    ]  # fmt: skip
