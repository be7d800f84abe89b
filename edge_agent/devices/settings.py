"""Driver settings: one pydantic model per driver, one way to parse and report them.

Each driver declares ``settings_model``, a subclass of ``DriverSettings``: frozen, unknown
keys forbidden (a typo in a profile is an error, not a silently ignored key), every key
with its default and bounds in one place. Settings reach a driver as the profile's
``settings`` merged with the outlet's local config; both are checked here:

- ``edge-agent profiles check`` (and the agent at start) validates each profile's
  ``settings`` against its driver's model and reports ``FILE:LINE: settings.KEY: message``
  through ``settings_problems``;
- a driver built with bad merged settings raises ``DriverSettingsError`` naming where
  they came from (``identity.settings_source``, e.g. the profile file) and the field.

``settings_table`` renders a model's keys, defaults and meanings for the docs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.devices.base import DriverSettingsError

__all__ = [
    "Baudrate",
    "DriverSettings",
    "DriverSettingsError",
    "default_text",
    "parse_settings",
    "seconds",
    "settings_problems",
    "settings_table",
]

S = TypeVar("S", bound="DriverSettings")


class DriverSettings(BaseModel):
    """Base of every driver's settings model: frozen, unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _field(loc: tuple[int | str, ...]) -> str:
    path = "settings"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown setting for this driver (check the spelling; see the driver's docs)"
    return str(error.get("msg", "invalid value"))


def settings_problems(
    model: type[DriverSettings], settings: Mapping[str, Any]
) -> Iterator[tuple[tuple[int | str, ...], str, str]]:
    """Each problem of ``settings`` for ``model``: (path below settings, field, message)."""
    try:
        model.model_validate(dict(settings))
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            yield loc, _field(loc), _message(error)


def parse_settings(
    model: type[S],
    settings: Mapping[str, Any],
    *,
    driver: str,
    source: str | None = None,
    device_id: str | None = None,
) -> S:
    """Validate ``settings`` for ``driver``; ``DriverSettingsError`` names source and fields."""
    problems = tuple((name, message) for _, name, message in settings_problems(model, settings))
    if problems:
        where = source or "driver settings"
        detail = "; ".join(f"{name}: {message}" for name, message in problems)
        raise DriverSettingsError(
            f"{where}: {driver}: {detail}", problems=problems, device_id=device_id
        )
    return model.model_validate(dict(settings))


def default_text(model: type[DriverSettings], key: str) -> str:
    """How the docs show ``key``'s default: its JSON value in backticks, ``—`` for none."""
    value = model().model_dump(mode="json")[key]
    if value is None:
        return "—"
    return "`" + json.dumps(value, ensure_ascii=False).replace("|", "\\|") + "`"


def settings_table(model: type[DriverSettings]) -> str:
    """A markdown table of ``model``'s keys, defaults and descriptions (for the docs)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        rows.append(f"| `{name}` | {default_text(model, name)} | {info.description or ''} |")
    return "\n".join(rows)


# ---- field types shared by the drivers' models

Baudrate = Annotated[
    Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200],
    Field(description="serial speed, 8N1 (ignored for TCP addresses)"),
]


def seconds(default: float, description: str, *, most: float = 60.0) -> Any:
    """A ``Field`` for a time in seconds, in (0, ``most``]."""
    return Field(default=default, gt=0, le=most, description=description)
