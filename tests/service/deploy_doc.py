"""The install and upgrade procedures of docs/deploy.md, read from the page itself.

The deploy test runs what this returns, so the page and the test cannot drift: a
changed step is run as changed. A step is a numbered item of the section; its shell is
every ```` ```sh ```` block in the item, dedented to the item's indentation.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

DEPLOY_MD = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
SECTION = "## Install: one procedure, from a bare Debian 12 to a working server"
UPGRADE_SECTION = "## Upgrade the server"

_STEP = re.compile(r"^(\d+)\. \*\*(.+?)\*\*", re.MULTILINE)
_BLOCK = re.compile(r"^( *)```sh\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
_FENCE = re.compile(r"^ *```(\S*)", re.MULTILINE)


@dataclass(frozen=True)
class Step:
    number: int
    title: str
    shell: str  # empty when the step has no commands (the firewall table, say)


def section_of(text: str, title: str) -> str:
    """The section headed ``title``, up to the next section of the same level."""
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end >= 0 else len(text)]


def install_section(text: str) -> str:
    return section_of(text, SECTION)


def install_steps(text: str | None = None) -> list[Step]:
    """The numbered steps of the install section, in order."""
    return _steps(install_section(DEPLOY_MD.read_text() if text is None else text), "install")


def upgrade_steps(text: str | None = None) -> list[Step]:
    """The numbered steps of the upgrade section, in order ("Rolling back" after them
    is prose, not a step)."""
    page = DEPLOY_MD.read_text() if text is None else text
    return _steps(section_of(page, UPGRADE_SECTION), "upgrade")


def _steps(section: str, name: str) -> list[Step]:
    # A block in another language would be skipped by the test without a word.
    openings = _FENCE.findall(section)[::2]
    if any(info != "sh" for info in openings):
        raise ValueError(f"the {name} section has a block that is not ```sh: {openings}")
    heads = list(_STEP.finditer(section))
    steps = []
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        body = section[head.end() : following.start() if following else len(section)]
        blocks = [textwrap.dedent(b.group(2)) for b in _BLOCK.finditer(body)]
        steps.append(Step(int(head.group(1)), head.group(2).rstrip(".:"), "\n".join(blocks)))
    numbers = [s.number for s in steps]
    if numbers != list(range(1, len(steps) + 1)):
        raise ValueError(f"the {name} steps are not numbered 1..N: {numbers}")
    return steps
