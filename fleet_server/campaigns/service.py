"""Creating campaigns and the operator's transitions: pause, resume, abort.

Each writes its audit entry in the same transaction as the change. ``CampaignError``
carries the HTTP answer (409 for a transition the campaign's state forbids).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.campaigns.plan import CampaignCreate, assign_waves, candidates, wave_sizes
from fleet_server.campaigns.states import FAILED, OPEN_CAMPAIGN, move
from fleet_server.campaigns.tables import Campaign, CampaignOutlet
from fleet_server.releases.artifacts import ArtifactRefused, version_key
from fleet_server.releases.tables import Release
from fleet_server.security import audit

logger = logging.getLogger(__name__)

EXCLUDED_SHOWN: Final = 50


class CampaignError(Exception):
    """A request refused; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def usable_release(session: Session, version: str) -> Release:
    """The stored release ``version``; 409 when missing or marked bad."""
    try:
        key = version_key(version)
    except ArtifactRefused as exc:
        raise CampaignError(422, f"release: {exc}") from None
    row = session.scalars(select(Release).where(Release.version_key == key)).first()
    if row is None:
        raise CampaignError(409, f"release {version} does not exist")
    if row.bad_at is not None:
        raise CampaignError(409, f"release {row.version} is marked bad: {row.bad_reason}")
    return row


def busy_outlets(session: Session) -> set[str]:
    """Outlets in a running or paused campaign (one campaign per outlet at a time)."""
    query = (
        select(CampaignOutlet.outlet_id)
        .join(Campaign, Campaign.id == CampaignOutlet.campaign_id)
        .where(Campaign.state.in_(OPEN_CAMPAIGN))
    )
    return set(session.scalars(query))


def create(session: Session, body: CampaignCreate, *, actor: str) -> tuple[Campaign, list[str]]:
    """Store a new running campaign; also the targeted outlets left out (already in one)."""
    release = usable_release(session, body.release)
    found = candidates(session, body.target)
    busy = busy_outlets(session)
    excluded = [c.outlet_id for c in found if c.outlet_id in busy]
    chosen = [c for c in found if c.outlet_id not in busy]
    if not chosen:
        why = f" ({len(excluded)} already in another campaign)" if excluded else ""
        raise CampaignError(422, f"the target matches no outlet that could take part{why}")
    sizes = wave_sizes(body.waves, len(chosen))
    now = datetime.now(UTC)
    campaign = Campaign(
        name=body.name or f"{release.version} rollout",
        release=release.version,
        target=body.target.model_dump(mode="json", exclude_none=True),
        settings={**body.settings(), "counted_from": None},
        waves=sizes,
        wave_times={},
        current_wave=-1,
        state="running",
        state_reason=None,
        created_by=actor,
        created_at=now,
        updated_at=now,
        next_wave_at=now,
    )
    session.add(campaign)
    session.flush()
    versions = {c.outlet_id: c.agent_version for c in chosen}
    for position, (outlet_id, wave) in enumerate(assign_waves(list(versions), sizes)):
        session.add(
            CampaignOutlet(
                campaign_id=campaign.id, outlet_id=outlet_id, position=position, wave=wave,
                state="pending", since=now, reason=None, detail=None,
                from_version=versions[outlet_id], release=release.version, attempts=0,
                offered_at=None, last_report_at=None,
            )
        )  # fmt: skip
    audit.record(
        session, actor=actor, action="campaign.create", target=f"campaign:{campaign.id}",
        after={"release": release.version, "outlets": len(chosen), "waves": sizes,
               "excluded": len(excluded)},
    )  # fmt: skip
    logger.info("campaign %d created by %s: %s to %d outlets in %d waves",
                campaign.id, actor, release.version, len(chosen), len(sizes))  # fmt: skip
    return campaign, excluded


def get(session: Session, campaign_id: int, *, lock: bool = False) -> Campaign:
    """The campaign; 404 when unknown."""
    query = select(Campaign).where(Campaign.id == campaign_id)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise CampaignError(404, f"campaign {campaign_id} does not exist")
    return row


def set_state(
    session: Session, campaign: Campaign, state: str, *, reason: str | None, actor: str,
    action: str, extra: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """Change the campaign's state, audited (``engine`` for automatic pauses)."""
    before = {"state": campaign.state, "release": campaign.release}
    campaign.state, campaign.state_reason = state, reason
    campaign.updated_at = datetime.now(UTC)
    audit.record(
        session, actor=actor, action=action, target=f"campaign:{campaign.id}",
        before=before, after={"state": state, "reason": reason, **(extra or {})},
    )  # fmt: skip
    logger.info("campaign %d %s by %s: %s", campaign.id, state, actor, reason or "-")


def pause(session: Session, campaign_id: int, *, reason: str | None, actor: str) -> Campaign:
    """Stop new offers (outlets mid-install finish); 409 unless running."""
    campaign = get(session, campaign_id, lock=True)
    if campaign.state != "running":
        raise CampaignError(409, f"campaign {campaign_id} is {campaign.state}, not running")
    set_state(session, campaign, "paused", reason=reason or "paused by an operator",
              actor=actor, action="campaign.pause")  # fmt: skip
    return campaign


def resume(
    session: Session, campaign_id: int, *, reason: str | None, release: str | None, actor: str
) -> Campaign:
    """Run again; with ``release``, outlets not yet healthy are offered that one (those
    that failed or rolled back in a started wave are scheduled again). The failures so
    far are acknowledged: the failure share counts from now."""
    campaign = get(session, campaign_id, lock=True)
    if campaign.state != "paused":
        raise CampaignError(409, f"campaign {campaign_id} is {campaign.state}, not paused")
    now = datetime.now(UTC)
    extra: dict[str, Any] = {}
    if release is not None:
        fixed = usable_release(session, release)
        extra["release"] = fixed.version
        rows = session.scalars(
            select(CampaignOutlet).where(CampaignOutlet.campaign_id == campaign.id)
        )
        for row in rows:
            if row.state in FAILED and row.wave <= campaign.current_wave:
                row.release, row.offered_at = fixed.version, None
                move(session, row, "scheduled", at=now, reason="retry",
                     detail=f"resumed with {fixed.version}", force=True)  # fmt: skip
            elif row.state in ("pending", "scheduled"):
                row.release, row.offered_at = fixed.version, None
        campaign.release = fixed.version
    settings = dict(campaign.settings)
    settings["counted_from"] = now.isoformat()
    # The wave that paused below the success threshold is accepted as it is.
    settings["accepted_wave"] = campaign.current_wave
    campaign.settings = settings
    set_state(session, campaign, "running", reason=reason, actor=actor,
              action="campaign.resume", extra=extra)  # fmt: skip
    return campaign


def abort(session: Session, campaign_id: int, *, reason: str | None, actor: str) -> Campaign:
    """No more offers; outlets that have not begun become skipped (``aborted``); what is
    installed stays. 409 when already aborted or completed."""
    campaign = get(session, campaign_id, lock=True)
    if campaign.state not in OPEN_CAMPAIGN:
        raise CampaignError(409, f"campaign {campaign_id} is {campaign.state}")
    now = datetime.now(UTC)
    rows = session.scalars(
        select(CampaignOutlet).where(
            CampaignOutlet.campaign_id == campaign.id,
            CampaignOutlet.state.in_(("pending", "scheduled")),
        )
    )
    for row in rows:
        move(session, row, "skipped", at=now, reason="aborted", detail=reason)
    set_state(session, campaign, "aborted", reason=reason or "aborted by an operator",
              actor=actor, action="campaign.abort")  # fmt: skip
    return campaign
