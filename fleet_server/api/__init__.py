"""HTTP API routers, one per resource, mounted by ``fleet_server.app.create_app``."""
