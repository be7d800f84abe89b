"""``edge-agent profiles check [PATH]``: list profile problems the way compilers do."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from edge_agent.profiles.loader import DEFAULT_PROFILES_DIR, load_profiles


def profiles_check_main(path: Path | None, *, out: TextIO | None = None) -> int:
    """Print ``FILE:LINE: FIELD: message`` per problem; return 0 if none, else 1.

    ``path`` is a profile file or a folder of them (default: the shipped
    ``device_profiles/``). A summary line goes to ``out`` (stdout) when all is well, so a
    technician sees that the check ran.
    """
    stream = sys.stdout if out is None else out
    root = DEFAULT_PROFILES_DIR if path is None else path
    result = load_profiles(root, log_problems=False)
    for problem in result.problems:
        print(problem, file=stream)
    if result.problems:
        return 1
    print(f"{root}: {len(result.profiles)} profiles ok", file=stream)
    return 0
