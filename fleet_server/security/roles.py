"""The operator role model: a strict ladder, each role can do all the ones below it.

- ``viewer``: reads everything an operator sees (outlets, health, stats, config, rollouts).
- ``operator``: also changes the fleet's desired state: config, rollouts, dead-letter
  replays, rectification follow-ups.
- ``technician``: also acts on outlets: enrollment tokens, certificate revocation,
  playbook runs.
- ``admin``: also manages operators (users, tokens) and reads the audit log.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """An operator's role; compare with ``rank``."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    TECHNICIAN = "technician"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position on the ladder: viewer 0 … admin 3."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Tell whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank
