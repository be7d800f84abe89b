"""Which profile texts already passed ``schema.json``, so a start skips jsonschema.

jsonschema (with referencing, attrs and the bundled meta-schemas) costs the agent ~3 MiB
of RSS, and the shipped profiles are the same at nearly every start. The agent keeps the
SHA-256 of each profile text that passed the schema, taken together with the schema's
own bytes, in ``DATA_DIR/profiles-checked.json``; a file whose digest is there is not
checked against the schema again. Everything after the schema check (the typed model,
the match rules, the driver and its settings) runs at every start, and a changed file
or schema is checked in full. The memo is a cache: a missing, unreadable or damaged one
only means a full check, and one that cannot be written is retried at the next start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Final

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
        self._seen: set[str] = set()

    def _read(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            digests = data["passed"]
        except (OSError, ValueError, KeyError, TypeError):
            return set()
        return {d for d in digests if isinstance(d, str)} if isinstance(digests, list) else set()

    def _digest(self, text: str) -> str:
        return hashlib.sha256(self._salt + text.encode("utf-8")).hexdigest()

    def passed(self, text: str) -> bool:
        """Whether ``text`` passed this schema before."""
        digest = self._digest(text)
        if digest in self._known:
            self._seen.add(digest)
            return True
        return False

    def remember(self, text: str) -> None:
        """``text`` passed the schema."""
        self._seen.add(self._digest(text))

    def save(self) -> None:
        """Write what this load found passing, if that differs from the file; a failure
        is logged (the next start checks in full again)."""
        if self._seen == self._known:
            return
        tmp = self.path.with_name(f".{self.path.name}.new")
        try:
            tmp.write_text(json.dumps({"passed": sorted(self._seen)}) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("profile schema memo not written (%s): the next start checks again", exc)
            return
        self._known = set(self._seen)
