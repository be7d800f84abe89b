"""A transaction's identity on the server, and the key it is delivered under.

An outlet's apps choose ``tx_id`` (the local API's ``Idempotency-Key``) and only need
to keep it unique within that outlet, so the server names a transaction by
``(outlet_id, tx_id)`` everywhere. Upstream platforms see one key per case that is
unique across the province and the same on every retry, ``upstream_idempotency_key``:

    {outlet_id}:{tx_id}             when tx_id is made of A-Z a-z 0-9 _ . -
    {outlet_id}:~{sha256(tx_id)}    otherwise (64 hex digits; keeps the header ASCII)

Outlet ids never contain ``:`` (``govedge_wire.OUTLET_ID_PATTERN``) and ``~`` is not a
token character, so two different transactions never share a key. The key is computed
once, when the row is stored, and kept in ``inbox.idempotency_key``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

__all__ = ["upstream_idempotency_key"]

_TOKEN: Final = re.compile(r"\A[A-Za-z0-9_.-]+\Z")


def upstream_idempotency_key(outlet_id: str, tx_id: str) -> str:
    """The ``Idempotency-Key`` upstream sees for the outlet's transaction ``tx_id``."""
    if _TOKEN.match(tx_id):
        return f"{outlet_id}:{tx_id}"
    return f"{outlet_id}:~{hashlib.sha256(tx_id.encode()).hexdigest()}"
