"""A scope change tried without storing it: which outlets' effective configs change and how.

The stored current documents are merged twice for every outlet, once as they are and
once with the one scope replaced; outlets whose effective config differs are listed
with the differences and with what citizens would lose at once (``devices_taken_away``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from fleet_server.config.diff import as_json, devices_taken_away, diff_documents
from fleet_server.config.effective import current_documents, effective_all
from fleet_server.config.store import current_version
from govedge_wire.config import MAX_ENVELOPE_BYTES, Scope, canonical_json

# The envelope's fields around the config (ids, hash, time, signature) stay well under this.
_ENVELOPE_OVERHEAD = 1024


def dry_run(session: Session, scope: Scope, document: Mapping[str, Any]) -> dict[str, Any]:
    """What storing ``document`` at ``scope`` would change, outlet by outlet."""
    before_docs = current_documents(session)
    after_docs = dict(before_docs) | {str(scope): dict(document)}
    before = effective_all(session, documents=before_docs)
    after = effective_all(session, documents=after_docs)
    outlets = []
    for outlet_id, new in after.items():
        old = before[outlet_id]
        changes = diff_documents(old.config, new.config)
        if not changes:
            continue
        size = len(canonical_json(new.config)) + _ENVELOPE_OVERHEAD
        outlets.append(
            {
                "outlet_id": outlet_id,
                "changes": [as_json(change) for change in changes],
                "takes_devices_away": devices_taken_away(old.config, new.config),
                "too_large": size > MAX_ENVELOPE_BYTES,
            }
        )
    return {
        "scope": str(scope),
        "current_version": current_version(session, str(scope)),
        "outlets_changed": len(outlets),
        "outlets_taking_devices_away": sum(bool(o["takes_devices_away"]) for o in outlets),
        "outlets": outlets,
    }
