"""What the alert engine reads of campaigns: failed installs and paused campaigns.

The alert engine (one layer above) turns them into ``update_failed`` (per outlet) and
``campaign_paused`` alerts. Alerts are keyed by outlet and device; a campaign is not an
outlet, so a paused campaign's alert is filed under ``CAMPAIGN_OUTLET`` ("_fleet", which
can never be an outlet id) with the device id ``campaign:{id}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.campaigns.states import FAILED, OPEN_CAMPAIGN
from fleet_server.campaigns.tables import Campaign, CampaignOutlet

CAMPAIGN_OUTLET: Final = "_fleet"


@dataclass(frozen=True, slots=True)
class FailedInstall:
    outlet_id: str
    campaign_id: int
    release: str
    state: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class PausedCampaign:
    campaign_id: int
    name: str
    release: str
    reason: str | None


def failed_installs(session: Session) -> list[FailedInstall]:
    """Outlets failed or rolled back in a running or paused campaign."""
    query = (
        select(CampaignOutlet.outlet_id, Campaign.id, CampaignOutlet.release,
               CampaignOutlet.state, CampaignOutlet.reason)
        .join(Campaign, Campaign.id == CampaignOutlet.campaign_id)
        .where(Campaign.state.in_(OPEN_CAMPAIGN), CampaignOutlet.state.in_(FAILED))
    )  # fmt: skip
    return [FailedInstall(*row) for row in session.execute(query)]


def paused_campaigns(session: Session) -> list[PausedCampaign]:
    """Every paused campaign."""
    query = select(Campaign.id, Campaign.name, Campaign.release, Campaign.state_reason).where(
        Campaign.state == "paused"
    )
    return [PausedCampaign(*row) for row in session.execute(query)]
