"""``python -m govedge_wire.config --write-schema | --check``: keep the shipped schema current."""

from __future__ import annotations

import argparse
import sys

from govedge_wire.config.schema import SCHEMA_PATH, schema_text


def main(argv: list[str] | None = None) -> int:
    """Write or check ``desired-config.schema.json``; 1 when ``--check`` finds it stale."""
    parser = argparse.ArgumentParser(prog="python -m govedge_wire.config")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-schema", action="store_true", help="rewrite the schema file")
    action.add_argument("--check", action="store_true", help="fail if the schema file is stale")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.write_schema:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_PATH.name}")
        return 0
    current = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
    if current != text:
        print(f"{SCHEMA_PATH.name} is stale: run python -m govedge_wire.config --write-schema")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
