"""Per-outlet states of a campaign and the one way they change (``move``).

States only move forward (``RANK``): a late ``downloading`` after ``healthy`` changes
nothing. Every change is written to ``campaign_outlet_history`` in the same session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy.orm import Session

from fleet_server.campaigns.tables import CampaignOutlet, CampaignOutletHistory

OUTLET_STATES: Final = (
    "pending", "scheduled", "downloading", "verifying", "installing", "restarting",
    "healthy", "failed", "rolled_back", "skipped",
)  # fmt: skip
FINAL: Final = frozenset({"healthy", "failed", "rolled_back", "skipped"})
IN_PROGRESS: Final = frozenset({"downloading", "verifying", "installing", "restarting"})
FAILED: Final = frozenset({"failed", "rolled_back"})
RANK: Final = {
    "pending": 0, "scheduled": 1, "downloading": 2, "verifying": 3, "installing": 4,
    "restarting": 5, "healthy": 6, "failed": 6, "rolled_back": 6, "skipped": 6,
}  # fmt: skip
CAMPAIGN_STATES: Final = ("running", "paused", "aborted", "completed")
OPEN_CAMPAIGN: Final = frozenset({"running", "paused"})


def forward(current: str, new: str) -> bool:
    """Whether ``new`` is a step forward from ``current`` (finals never change)."""
    return RANK[new] > RANK[current]


def move(
    session: Session,
    row: CampaignOutlet,
    state: str,
    *,
    at: datetime,
    reason: str | None = None,
    detail: str | None = None,
    force: bool = False,
) -> bool:
    """Set ``row`` to ``state`` and record it; False (nothing written) when it is not a
    step forward. ``force`` is for the operator's retry with a fixed release."""
    if not force and not forward(row.state, state):
        return False
    session.add(
        CampaignOutletHistory(
            campaign_id=row.campaign_id,
            outlet_id=row.outlet_id,
            at=at,
            from_state=row.state,
            state=state,
            reason=reason,
            detail=detail,
        )
    )
    row.state, row.since, row.reason, row.detail = state, at, reason, detail
    return True
