"""What the local API's wire shapes share: the strict base of every request body, the
``examples`` shown in ``/openapi.json``, the device id field and the warning body.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeviceId", "StrictIn", "WarningPublic", "examples"]

DeviceId = Annotated[str, Field(min_length=1, max_length=128)]


# A clerk app's body is refused whole when it carries a field we do not know, never
# trimmed silently; and nothing downstream may change what the clerk sent.
class StrictIn(BaseModel):
    """The base of the ``…Create`` bodies: unknown fields refused, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def examples(*examples: dict[str, Any]) -> ConfigDict:
    """A model config whose only content is the ``examples`` of its JSON schema."""
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class WarningPublic(BaseModel):
    """Something went wrong beside the main result (ticket issued, but not printed)."""

    code: str
    message: str
    hint: str = ""
