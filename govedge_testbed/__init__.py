"""Real services on loopback for tests, benchmarks and the demo.

Starts a private Mosquitto or a throwaway PostgreSQL cluster on a free 127.0.0.1 port.
Nothing here is mocked: these are the OS packages' own binaries.

Exception tree::

    ServiceUnavailable     the binary is missing or the service did not come up
"""

from govedge_testbed.mosquitto import Mosquitto, TlsMaterial
from govedge_testbed.ports import free_port, wait_for_port
from govedge_testbed.postgres import Postgres
from govedge_testbed.services import ServiceUnavailable
from govedge_testbed.victoria import VictoriaMetrics

__all__ = [
    "Mosquitto",
    "Postgres",
    "ServiceUnavailable",
    "TlsMaterial",
    "VictoriaMetrics",
    "free_port",
    "wait_for_port",
]
