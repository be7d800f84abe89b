"""Revocation asked by a run (a decommission): the same steps as
``POST /api/v1/outlets/{id}/revoke``, with the run as the audit actor."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from fleet_server.security import enrollment as ops
from fleet_server.security.broker_control import after_revocation

if TYPE_CHECKING:
    from fleet_server.api.auth import SecurityContext
    from fleet_server.ingest import Ingest

log = logging.getLogger(__name__)


def revoker(
    sessions: sessionmaker[Session], security: SecurityContext, ingest: Ingest
) -> Callable[[str, str], None]:
    """``revoke(outlet_id, actor)``: certificates revoked, CRL rewritten, the ingest
    refuses the outlet at once and the broker reloads its CRL (when configured)."""

    def revoke(outlet_id: str, actor: str) -> None:
        with sessions() as session:
            serials = ops.revoke_outlet(session, security.ca(), outlet_id=outlet_id, actor=actor)
        ingest.revoked.add(outlet_id)
        action = after_revocation(security.settings, outlet_id)
        log.info(
            "outlet %s decommissioned by %s: %d certificate(s) revoked, broker reloaded: %s",
            outlet_id, actor, len(serials), action.reloaded,
        )  # fmt: skip

    return revoke
