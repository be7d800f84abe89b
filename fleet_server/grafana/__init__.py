"""Grafana provisioning through ``grafana-client``: one datasource and the dashboards of
``dashboards/``, created or updated idempotently (``fleet-server grafana sync``), and
per region scope a folder of dashboards cut to it, for one team (``scoping``).

Exception tree::

    GrafanaSyncError     Grafana refused or could not be reached; ``step`` names what failed
    ScopeRefused         a scope no dashboard can be cut to (``scoping``; before any request)
"""

from fleet_server.grafana.sync import (
    DATASOURCE_UID,
    GrafanaSyncError,
    SyncReport,
    load_dashboards,
    sync,
    validate_dashboard,
)

__all__ = [
    "DATASOURCE_UID",
    "GrafanaSyncError",
    "SyncReport",
    "load_dashboards",
    "sync",
    "validate_dashboard",
]
