"""Every table of the fleet database on one ``Base.metadata``, for migrations and checks.

The tables live next to the code that owns them (``models``, ``health.tables``,
``transactions.usage``); importing this module registers them all.
"""

from fleet_server.models import Base

metadata = Base.metadata

__all__ = ["metadata"]
