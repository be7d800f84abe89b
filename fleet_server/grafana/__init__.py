"""Grafana provisioning through ``grafana-client``: one datasource and the dashboards of
``dashboards/``, created or updated idempotently (``fleet-server grafana sync``).

Exception tree::

    GrafanaSyncError     Grafana refused or could not be reached; ``step`` names what failed
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
