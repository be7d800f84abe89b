"""Which profile texts already passed ``schema.json``, so a start skips jsonschema and YAML.

jsonschema (with referencing, attrs and the bundled meta-schemas) costs the agent ~3 MiB
of RSS, and the shipped profiles are the same at nearly every start. The agent keeps the
SHA-256 of each profile text that passed the schema, taken together with the schema's
own bytes, in ``DATA_DIR/profiles-checked.json``; a file whose digest is there is not
checked against the schema again. Everything after the schema check (the typed model,
the match rules, the driver and its settings) runs at every start, and a changed file
or schema is checked in full. The memo is a cache: a missing, unreadable or damaged one
only means a full check, and one that cannot be written is retried at the next start.

It also keeps each such text's parsed data (``parsed``: digest → the plain data, when
it is plain JSON, as every profile the schema accepts is), so a start whose profiles are
all remembered does not import PyYAML either (~0.9 MiB; ``profiles/yamlsrc.py``). The
data is only ever the parse of the text whose digest it is filed under, and the memo
lives in the agent's own 0700 data directory, as the outbox does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Final

from edge_agent.profiles.yamlsrc import ParsedYaml

__all__ = ["MEMO_FILE", "SchemaMemo"]

log = logging.getLogger(__name__)

MEMO_FILE: Final = "profiles-checked.json"


class SchemaMemo:
    """The digests of profile texts that passed the schema whose bytes are ``schema``."""

    def __init__(self, path: Path, *, schema: bytes) -> None:
        self.path = path
        self._salt = hashlib.sha256(schema).digest()
        self._known = self._read()
        # What this load found passing: the memo keeps only these, so digests of
        # profiles since edited or removed do not pile up.
        self._seen: dict[str, object] = {}

    def _read(self) -> dict[str, object]:
        """digest → parsed data (``_NO_DATA`` for a digest remembered without it)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            digests = data["passed"]
            parsed = data.get("parsed", {})
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}
        if not isinstance(digests, list) or not isinstance(parsed, dict):
            return {}
        # A profile is a mapping: anything else filed here is damage, not data.
        return {
            d: data if isinstance(data := parsed.get(d), dict) else _NO_DATA
            for d in digests
            if isinstance(d, str)
        }

    def _digest(self, text: str) -> str:
        return hashlib.sha256(self._salt + text.encode("utf-8")).hexdigest()

    def passed(self, text: str) -> bool:
        """Whether ``text`` passed this schema before."""
        digest = self._digest(text)
        if digest in self._known:
            self._seen.setdefault(digest, self._known[digest])
            return True
        return False

    def parsed(self, text: str) -> ParsedYaml | None:
        """``text``'s data as it parsed when it passed before, or None (parse it)."""
        digest = self._digest(text)
        data = self._known.get(digest, _NO_DATA)
        if data is _NO_DATA:
            return None
        self._seen[digest] = data
        return ParsedYaml.remembered(data, text)

    def remember(self, text: str, data: object = None) -> None:
        """``text`` passed the schema; ``data`` is what it parsed to, kept when plain
        JSON (a YAML date or set, which no profile field takes, is not)."""
        try:
            plain = json.loads(json.dumps(data)) == data
        except (TypeError, ValueError):
            plain = False
        self._seen[self._digest(text)] = data if plain and data is not None else _NO_DATA

    def save(self) -> None:
        """Write what this load found passing, if that differs from the file; a failure
        is logged (the next start checks in full again)."""
        if self._seen == self._known:
            return
        parsed = {d: data for d, data in self._seen.items() if data is not _NO_DATA}
        tmp = self.path.with_name(f".{self.path.name}.new")
        try:
            tmp.write_text(
                json.dumps({"passed": sorted(self._seen), "parsed": parsed}) + "\n",
                encoding="utf-8",
            )
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("profile schema memo not written (%s): the next start checks again", exc)
            return
        self._known = dict(self._seen)


class _NoData:
    """A digest remembered without its data (a memo from before ``parsed``)."""


_NO_DATA: Final[object] = _NoData()
