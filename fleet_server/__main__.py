"""``python -m fleet_server`` is ``fleet-server``."""

from fleet_server.cli import main

main()
