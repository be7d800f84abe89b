"""What each kind of registered app may call: a clerk app, a hall display, a ticket kiosk.

A hall display (叫号大屏) and a ticket kiosk (取号机) are screens in the public hall, not
clerk apps: anyone can touch a kiosk, and their tokens sit in a browser in kiosk mode.
So they get their own role with the least they need, checked by ``security.LocalGuard``
after the token and origin:

- ``display``: read today's queue, fetch announcement audio, and the event stream with
  queue events only (``window.*``, ``ticket.*``; never card reads, ratings or
  transaction results);
- ``kiosk``: what a display may, plus taking a ticket and checking in an appointment;
- ``clerk`` (the default): every route.

Anything else answers 403 ``role_not_allowed``. docs/hall-pages.md says how to register
each screen.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["DEFAULT_ROLE", "ROLES", "allows", "sees_event"]

DEFAULT_ROLE: Final = "clerk"
ROLES: Final = ("clerk", "display", "kiosk")

_DISPLAY: Final = (
    ("GET", re.compile(r"^/v1/queue$")),
    ("GET", re.compile(r"^/v1/announcements/[0-9a-f]{32}\.wav$")),
    ("WS", re.compile(r"^/v1/events$")),
)
_KIOSK: Final = (
    *_DISPLAY,
    ("POST", re.compile(r"^/v1/tickets$")),
    ("POST", re.compile(r"^/v1/appointments/check-in$")),
)
_HALL_EVENT_PREFIXES: Final = ("window.", "ticket.")


def allows(role: str, method: str, path: str) -> bool:
    """True if an app of ``role`` may call ``method path`` (``WS`` for a WebSocket)."""
    if role == DEFAULT_ROLE:
        return True
    table = {"display": _DISPLAY, "kiosk": _KIOSK}.get(role, ())
    return any(m == method and pattern.match(path) for m, pattern in table)


def sees_event(role: str, name: str) -> bool:
    """True if an app of ``role`` is sent the event called ``name`` on ``/v1/events``."""
    return role == DEFAULT_ROLE or name.startswith(_HALL_EVENT_PREFIXES)
