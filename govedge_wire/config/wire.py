"""The signed envelope inside the ``down/config`` message, both ways (docs/config.md).

The message keeps the protocol's envelope rules (``session``, ``seq``, ``msg_id``);
its ``body`` is the ``SignedConfig`` as JSON. The agent verifies the body's canonical
JSON, never the outer message, so the outer fields cannot affect a signature.
"""

from __future__ import annotations

from typing import Final

from govedge_wire.config.signing import SignedConfig, canonical_json
from govedge_wire.messages import DesiredConfig as ConfigMessage

# The server refuses effective configs whose envelope is larger, leaving the outer
# message room within the protocol's 256 KiB payload limit.
MAX_ENVELOPE_BYTES: Final = 192 * 1024


def config_message(signed: SignedConfig, *, session: int, seq: int) -> ConfigMessage:
    """The ``down/config`` message carrying ``signed``."""
    return ConfigMessage(
        outlet_id=signed.outlet_id,
        session=session,
        seq=seq,
        version=signed.version,
        body=signed.model_dump(mode="json"),
    )


def envelope_bytes(message: ConfigMessage) -> bytes:
    """The bytes ``verify_config`` checks: the body as canonical JSON."""
    return canonical_json(message.body)
