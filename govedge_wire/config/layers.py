"""Scopes, the order they apply in, and the deep merge of their documents (docs/config.md).

A document is a JSON object set at one scope. ``merge_layers`` applies documents in
order: objects merge key by key, anything else (a list, a string, a number) replaces
what was there, and ``None`` deletes the key, so a later layer can take back what an
earlier one set. The order for one outlet is ``layers_for``: global, every region
prefix shortest first, the outlet kind, the outlet.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from govedge_wire.topics import OUTLET_ID_PATTERN, is_valid_outlet_id

Level = Literal["global", "region", "kind", "outlet"]
LEVELS: Final[tuple[Level, ...]] = ("global", "region", "kind", "outlet")
# Region codes are the digits of the administrative division code (33 = Zhejiang,
# 330106 = a district), as outlet profiles and the catalogue store them.
REGION_CODE_RE: Final = re.compile(r"\A[0-9]{2,12}\Z")
# Outlet kinds (township_centre, kiosk, …) follow the outlet id's alphabet, up to the
# 32 characters the outlet profile stores.
OUTLET_KIND_RE: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")


class ScopeError(ValueError):
    """A scope string, region code, outlet kind or outlet id that is not valid."""


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """One scope: ``global``, ``region:{code}``, ``kind:{kind}`` or ``outlet:{id}``."""

    level: Level
    value: str = ""

    def __str__(self) -> str:
        return self.level if self.level == "global" else f"{self.level}:{self.value}"


GLOBAL: Final = Scope("global")


def _check_region(code: str) -> str:
    if not REGION_CODE_RE.match(code):
        raise ScopeError(f"region code must be 2-12 digits, got {code!r}")
    return code


def _check_kind(kind: str) -> str:
    if not OUTLET_KIND_RE.match(kind):
        raise ScopeError(
            f"outlet kind must be 1-32 letters, digits, '_', '.', '-' starting with a "
            f"letter or digit, got {kind!r}"
        )
    return kind


def _check_outlet(outlet_id: str) -> str:
    if not is_valid_outlet_id(outlet_id):
        raise ScopeError(f"outlet id must match {OUTLET_ID_PATTERN}, got {outlet_id!r}")
    return outlet_id


def parse_scope(text: str) -> Scope:
    """The scope written as ``text``; ``ScopeError`` saying what is wrong otherwise."""
    if text == "global":
        return GLOBAL
    level, sep, value = text.partition(":")
    if level == "global":
        raise ScopeError(f"scope {text!r}: global takes no value")
    if not sep:
        raise ScopeError(f"scope {text!r} is not global, region:CODE, kind:KIND or outlet:ID")
    if level == "region":
        return Scope("region", _check_region(value))
    if level == "kind":
        return Scope("kind", _check_kind(value))
    if level == "outlet":
        return Scope("outlet", _check_outlet(value))
    raise ScopeError(f"unknown scope level {level!r}; levels are {', '.join(LEVELS)}")


def layers_for(outlet_id: str, region_code: str | None, kind: str | None) -> list[Scope]:
    """The scopes that apply to one outlet, in merge order (later wins)."""
    layers = [GLOBAL]
    if region_code is not None:
        _check_region(region_code)
        layers += [Scope("region", region_code[:n]) for n in range(2, len(region_code) + 1)]
    if kind is not None:
        layers.append(Scope("kind", _check_kind(kind)))
    layers.append(Scope("outlet", _check_outlet(outlet_id)))
    return layers


def merge_layers(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Deep-merge ``documents`` in order into a new dict (the inputs are not changed).

    Objects merge key by key; a list or scalar replaces; ``None`` deletes the key (and
    so never appears in the result).
    """
    merged: dict[str, Any] = {}
    for document in documents:
        _merge_into(merged, document)
    return merged


def _merge_into(target: dict[str, Any], document: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in document.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            below = target.get(key)
            target[key] = _merge_into(below if isinstance(below, dict) else {}, value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def leaves(document: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.path, value)`` of every non-object value; a list counts as one leaf."""
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from leaves(value, f"{path}.")
        else:
            yield path, value


def provenance(layers: Sequence[tuple[Scope, Mapping[str, Any]]]) -> dict[str, Scope]:
    """For each leaf of the merged config, the scope that set it.

    The setter of a leaf is the last layer that has that path with a value: any later
    layer that deleted or replaced the leaf or one of its parents would have removed it
    from the merged config.
    """
    set_by: dict[str, Scope] = {}
    for scope, document in layers:
        for path, value in leaves(document):
            if value is not None:
                set_by[path] = scope
    merged = merge_layers([document for _, document in layers])
    return {path: set_by[path] for path, _ in leaves(merged)}
