"""Which region each outlet is in, for the ``region`` tag of its telemetry series.

A scoped Grafana dashboard filters by ``region=~"<prefix>.*"`` (docs/fleet-health.md,
"Grafana"), so each outlet's series carry its profile's ``region_code`` (an
administrative code, not personal data). The ingest asks ``region_of`` for every
message, so it must be a dictionary read; the sink's writer thread refreshes the
dictionary from ``outlet_profiles`` at most every ``refresh_s`` seconds, off the
ingest's path. An outlet without a profile or region has no tag, and so no scope
sees its series, as no scope sees the outlet anywhere else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)


class OutletRegions:
    """outlet id → region code, refreshed from the database by ``refresh_if_due``."""

    def __init__(self, read: Callable[[], dict[str, str]], *, refresh_s: float = 60.0) -> None:
        # ``read`` is given by the runtime (``health.queries.outlet_regions``): the
        # time series sit below the fleet-health package and do not import it.
        self._read = read
        self._refresh_s = refresh_s
        self._regions: dict[str, str] = {}
        self._loaded_at: float | None = None

    def region_of(self, outlet_id: str) -> str | None:
        """The outlet's region code as last read, or ``None``."""
        return self._regions.get(outlet_id)

    def refresh_if_due(self) -> None:
        """Re-read the profiles when the last read is older than ``refresh_s``."""
        now = time.monotonic()
        if self._loaded_at is not None and now - self._loaded_at < self._refresh_s:
            return
        self._loaded_at = now
        try:
            regions = self._read()
        except SQLAlchemyError as exc:  # keep the last map; the next refresh tries again
            logger.warning("could not read outlet regions (%s)", exc.__class__.__name__)
            return
        # One assignment: the ingest threads read either the old or the new dictionary.
        self._regions = regions
