"""The start-up check of the agent's MQTT identity, before the first connect."""

from __future__ import annotations

import logging

from edge_agent.enrollment.errors import EnrollmentError
from edge_agent.enrollment.store import TlsStore
from edge_agent.settings import AgentSettings

log = logging.getLogger(__name__)


def check_tls_identity(settings: AgentSettings) -> None:
    """For ``mqtts://``: the enrolled certificate must load and name this outlet.

    For ``mqtt://``: warn once that the connection is plain and anonymous.
    """
    if not settings.mqtt_tls:
        log.warning("broker connection is plain mqtt:// (no TLS, no identity): development only")
        return
    store = TlsStore(settings.keys_dir)
    store.ssl_context()
    identity = store.identity()
    if identity.outlet_id != settings.outlet_id:
        raise EnrollmentError(
            f"the certificate in {store.dir} is for outlet {identity.outlet_id!r}, "
            f"not {settings.outlet_id!r}"
        )
