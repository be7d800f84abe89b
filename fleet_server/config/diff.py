"""What changed between two config documents, and which changes take devices away.

``diff_documents`` walks two JSON objects: objects are compared key by key, anything
else (lists included, as in merging) is one value. ``devices_taken_away`` reads two
effective configs for what citizens would lose at once: a queue window gone, or a
window's pad, LED or keypad unbound or moved to another device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

Op = Literal["added", "removed", "changed"]
_MISSING = object()
_WINDOW_DEVICES = ("pad", "led", "keypad")


class Change(TypedDict):
    """One difference: the dotted path, what happened, the value before and after."""

    path: str
    op: Op
    before: Any
    after: Any


def diff_documents(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every difference from ``old`` to ``new``, in path order.

    A key present with ``null`` (a scope document's "delete") differs from an absent
    key. An object added or removed whole is one change at its own path.
    """
    changes: list[Change] = []
    _walk(old, new, "", changes)
    return sorted(changes, key=lambda change: change["path"])


def _walk(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str, out: list[Change]) -> None:
    for key in sorted(set(old) | set(new)):
        path = f"{prefix}{key}"
        before = old.get(key, _MISSING)
        after = new.get(key, _MISSING)
        if before is _MISSING:
            out.append(Change(path=path, op="added", before=None, after=after))
        elif after is _MISSING:
            out.append(Change(path=path, op="removed", before=before, after=None))
        elif isinstance(before, Mapping) and isinstance(after, Mapping):
            _walk(before, after, f"{path}.", out)
        elif before != after or type(before) is not type(after):
            out.append(Change(path=path, op="changed", before=before, after=after))


def as_json(change: Change) -> dict[str, Any]:
    """The change as the API answers it: ``{path, op, from, to}``."""
    return {
        "path": change["path"],
        "op": change["op"],
        "from": change["before"],
        "to": change["after"],
    }


def _windows(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    queue = config.get("queue")
    windows = queue.get("windows") if isinstance(queue, Mapping) else None
    if not isinstance(windows, list):
        return {}
    return {str(w.get("window")): w for w in windows if isinstance(w, Mapping)}


def devices_taken_away(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Sentences naming each window or device citizens would lose going ``old`` → ``new``."""
    before, after = _windows(old), _windows(new)
    found: list[str] = []
    for name in sorted(before):
        if name not in after:
            found.append(f"window {name} removed")
            continue
        for part in _WINDOW_DEVICES:
            was, now = before[name].get(part), after[name].get(part)
            if was is None or was == now:
                continue
            if now is None:
                found.append(f"window {name}: {part} {was} unbound")
            else:
                found.append(f"window {name}: {part} moved from {was} to {now}")
    return found
