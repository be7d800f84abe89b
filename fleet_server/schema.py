"""Every table of the fleet database on one ``Base.metadata``, for migrations and checks.

The tables live next to the code that owns them (``models``, ``health.tables``,
``transactions.usage``, ``config.tables``,
``releases.tables``, ``campaigns.tables``, ``playbooks.tables``); importing this module
registers them all.
"""

from fleet_server.campaigns import tables as campaign_tables
from fleet_server.config import tables as config_tables
from fleet_server.health import tables as health_tables
from fleet_server.models import Base
from fleet_server.playbooks import tables as playbook_tables
from fleet_server.releases import tables as release_tables
from fleet_server.transactions import usage as usage_tables

metadata = Base.metadata

__all__ = [
    "campaign_tables",
    "config_tables",
    "health_tables",
    "metadata",
    "playbook_tables",
    "release_tables",
    "usage_tables",
]
