"""The profile schema's ``kind`` enum, generated from the device-kind registry.

``edge-agent profiles schema --write`` rewrites ``device_profiles/schema.json``'s enum
from the kind packages in ``edge_agent.devices``; tests fail while the file is stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edge_agent.devices.registry import kind_names
from edge_agent.profiles.loader import SCHEMA_PATH

# The "kind" property's enum block; only that block is rewritten, the rest of the
# hand-formatted file is left as it is.
_KIND_ENUM = re.compile(r'("kind": \{\s*"type": "string",\s*"enum": )\[[^\]]*\]', re.DOTALL)


def schema_with_kinds(text: str, kinds: list[str]) -> str:
    """``text`` (schema.json) with its kind enum set to ``kinds``."""
    indent = " " * 8
    listed = ",\n".join(f"{indent}{json.dumps(kind)}" for kind in kinds)
    new, count = _KIND_ENUM.subn(lambda m: f"{m.group(1)}[\n{listed}\n{indent[:-2]}]", text)
    if count != 1:
        raise ValueError("schema.json: no single kind enum found")
    json.loads(new)  # still a valid JSON document
    return new


def schema_is_current(path: Path = SCHEMA_PATH) -> bool:
    """Whether ``path``'s kind enum lists exactly the registered kinds."""
    text = path.read_text(encoding="utf-8")
    return schema_with_kinds(text, kind_names()) == text


def write_schema(path: Path = SCHEMA_PATH) -> bool:
    """Regenerate ``path``'s kind enum from the registry; True if the file changed."""
    text = path.read_text(encoding="utf-8")
    new = schema_with_kinds(text, kind_names())
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True
