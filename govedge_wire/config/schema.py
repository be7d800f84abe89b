"""The JSON Schema of ``DesiredConfig``, shipped beside this module for editors and the UI.

``python -m govedge_wire.config --write-schema`` rewrites it; ``--check`` (and a test)
fails when it no longer matches the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from govedge_wire.config.models import DesiredConfig

SCHEMA_PATH: Final = Path(__file__).with_name("desired-config.schema.json")


def schema_document() -> dict[str, Any]:
    """The schema, with its dialect named."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema"} | (
        DesiredConfig.model_json_schema()
    )


def schema_text() -> str:
    """The schema as written to ``SCHEMA_PATH``."""
    return json.dumps(schema_document(), indent=2, ensure_ascii=False) + "\n"
