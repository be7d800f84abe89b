"""``/api/v1/ingest/stats``: what the MQTT ingest received, accepted and rejected."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from fleet_server.api.deps import IngestDep
from fleet_server.api.schemas import IngestStatsPublic
from fleet_server.api.scope import WHOLE_FLEET_ONLY

router = APIRouter(prefix="/ingest", tags=["ingest"])


# The whole server's counters, not per outlet: whole-fleet users only.
@router.get("/stats", dependencies=[WHOLE_FLEET_ONLY])
def read_ingest_stats(ingest: IngestDep) -> IngestStatsPublic:
    """Counters since start; ``rejected`` and ``noted`` are keyed by reason."""
    snapshot = ingest.stats.snapshot(queue_depth=ingest.queue_depth)
    return IngestStatsPublic(**dataclasses.asdict(snapshot), server_session=ingest.server_session)
