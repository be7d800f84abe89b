"""govedge fleet server: registry, presence and MQTT ingest behind a REST API.

Run it with ``fleet-server run`` (``fleet_server.cli``). In code::

    from fleet_server.app import create_app         # FastAPI app; lifespan owns the ingest
    from fleet_server.server import serve           # uvicorn in this process, until a signal
    from fleet_server.settings import Settings      # GOVEDGE_* settings
    from fleet_server.migrate import upgrade_url    # Alembic upgrade head

This ``__init__`` stays empty of imports on purpose: ``fleetctl`` lives in this package
and must start without loading FastAPI, SQLAlchemy and paho.

Modules: ``presence`` (the Sparkplug-style state machine, pure), ``ingest`` (paho +
worker thread), ``registry`` (database reads and writes), ``models`` + ``migrations``
(schema), ``stats`` (counters), ``api`` (routers), ``db`` (engines).
"""

__all__: list[str] = []
