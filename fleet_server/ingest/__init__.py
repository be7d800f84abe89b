"""The fleet server's MQTT ingest: receive, apply presence, store, acknowledge, publish.

``Ingest`` (``client``) owns the paho client and the worker thread; the rest are its
parts. A submission's way through them: docs/development.md, "A submission's way".
"""

from fleet_server.ingest.client import Ingest
from fleet_server.ingest.ratelimit import OutletRateLimiter
from fleet_server.ingest.stats import IngestStats

__all__ = ["Ingest", "IngestStats", "OutletRateLimiter"]
