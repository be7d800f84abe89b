"""What goes inside the ciphertext, and the checks that make every accepted entry sendable.

A transaction body is validated against the wire model (``govedge_wire.Transaction``)
and sized with the largest envelope it can get at put time: an entry that could never
be published must be refused while the clerk is still there, not found days later as a
poison message at the head of the queue.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Final

from pydantic import JsonValue, ValidationError

from edge_agent.outbox.errors import InvalidEntry
from govedge_wire import MAX_PAYLOAD_BYTES, Transaction
from govedge_wire.pii import field_path

ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MATERIAL_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{8,48}$")
# Room for the longest outlet id and the longest counters of a real envelope.
_ENVELOPE_MARGIN: Final = 128
_BIG: Final = 2**63 - 1
# base64 of one chunk plus the chunk's metadata and the envelope must fit one payload.
_CHUNK_OVERHEAD: Final = 1024
DEFAULT_CHUNK_BYTES: Final = 180 * 1024


def check_id(value: str, *, what: str, pattern: re.Pattern[str] = ID_PATTERN) -> str:
    """``value`` if it is a valid id (letters, digits, ``_``, ``-``), else ``InvalidEntry``."""
    if not pattern.fullmatch(value):
        raise InvalidEntry(f"{what} must match {pattern.pattern}")
    return value


def encode_body(tx_id: str, tx_kind: str, body: dict[str, JsonValue]) -> bytes:
    """The plaintext to seal: compact JSON of ``body``, refused if it cannot be sent."""
    try:
        message = Transaction(
            outlet_id="x",
            session=_BIG,
            seq=_BIG,
            tx_id=tx_id,
            tx_kind=tx_kind,
            created_ts=_BIG,
            attempt=_BIG,
            body=body,
        )
    except ValidationError as exc:
        # Field paths only: the error's own text would quote the (personal) values.
        where = ",".join(sorted({".".join(field_path(e["loc"])) for e in exc.errors()})[:5])
        raise InvalidEntry(f"transaction does not fit the wire model at: {where}") from None
    size = len(message.model_dump_json()) + _ENVELOPE_MARGIN
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidEntry(
            f"transaction of about {size} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte payload "
            "limit; store scans and other large content with put_material"
        )
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidEntry("transaction body is not plain JSON") from None
    return text.encode()


def decode_body(plaintext: bytes) -> dict[str, JsonValue]:
    """The body dict back from its plaintext; ``ValueError``/``TypeError`` if it is not one."""
    value = json.loads(plaintext)
    if not isinstance(value, dict):
        raise TypeError("stored body is not a JSON object")
    return value


def check_chunk_bytes(chunk_bytes: int) -> int:
    """``chunk_bytes`` if one chunk's message fits ``MAX_PAYLOAD_BYTES``, else ``ValueError``."""
    encoded = 4 * -(-chunk_bytes // 3)
    if chunk_bytes < 1 or encoded + _CHUNK_OVERHEAD > MAX_PAYLOAD_BYTES:
        raise ValueError(f"chunk_bytes {chunk_bytes} does not fit one {MAX_PAYLOAD_BYTES} payload")
    return chunk_bytes


def chunk_tx_id(material_id: str, index: int) -> str:
    """The transaction id of chunk ``index``: fixed, so a resend is recognisably the same."""
    return f"{material_id}.c{index}"


def chunk_body(
    data: bytes, *, material_id: str, index: int, count: int, size: int, sha256: str
) -> dict[str, JsonValue]:
    """The ``material.chunk`` body (see docs/outbox.md, "Material transfer")."""
    return {
        "material_id": material_id,
        "index": index,
        "count": count,
        "size": size,
        "sha256": sha256,
        "chunk_sha256": hashlib.sha256(data).hexdigest(),
        "data": base64.b64encode(data).decode("ascii"),
    }
