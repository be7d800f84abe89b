"""An effective config as it would be signed: validated, normalised, hashed; or refused.

The stored ``desired_hash`` is the hash of the normalised body (``sign_config`` drops
unset keys and sends floats as floats), so a pass must compare that, not the raw merge.
Outlets share their effective configs widely (a global change), so results are cached
by the raw config's hash and most outlets cost one canonical dump and one SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from govedge_wire.config import MAX_ENVELOPE_BYTES, DesiredConfig, canonical_json, config_hash

_CACHE_MAX: Final = 4096
# The envelope's fields around the config (ids, hash, time, signature) stay well under this.
_ENVELOPE_OVERHEAD: Final = 512


@dataclass(frozen=True, slots=True)
class Normalised:
    """The body to sign and its hash."""

    body: dict[str, Any]
    hash: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The server will not sign this effective config: ``invalid`` or ``oversize``."""

    reason: str
    detail: str


class Normaliser:
    """``normalise(config)`` with a bounded cache (dropped whole when full)."""

    def __init__(self) -> None:
        self._cache: dict[str, Normalised | Refused] = {}

    def normalise(self, config: Mapping[str, Any]) -> Normalised | Refused:
        """Validate and normalise one effective config."""
        try:
            raw = canonical_json(config)
        except (TypeError, ValueError) as exc:
            return Refused("invalid", str(exc))
        key = hashlib.sha256(raw).hexdigest()
        found = self._cache.get(key)
        if found is None:
            found = _normalise(config, raw_size=len(raw))
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = found
        return found


def _normalise(config: Mapping[str, Any], *, raw_size: int) -> Normalised | Refused:
    if raw_size + _ENVELOPE_OVERHEAD > MAX_ENVELOPE_BYTES:
        return Refused("oversize", f"effective config of {raw_size} bytes")
    try:
        model = DesiredConfig.model_validate(config)
    except ValidationError as exc:
        where = ", ".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()})[:5])
        return Refused("invalid", f"does not validate at: {where}")
    body = model.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return Normalised(body=body, hash=config_hash(body))
