"""What the agent runs on: the local settings with a fleet config's keys on top.

``effective(settings, config, outlet=...)`` builds every part the config may change
and checks it against THIS outlet (devices it has, business types it knows, each
driver's settings model); a problem raises ``NotHereError`` (the ``invalid_here``
refusal). Keys the config does not set fall back to the local TOML. Nothing here
changes a running part: ``applier`` does that.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from edge_agent.devices.base import Driver
from edge_agent.devices.registry import driver_class
from edge_agent.devices.settings import settings_problems
from edge_agent.profiles import ProfileSet
from edge_agent.queueing import Appointment, BusinessType, WindowConfig
from edge_agent.queueing.announce import DEFAULT_TEMPLATE
from edge_agent.settings import AgentSettings
from edge_agent.settings_models import (
    BusinessTypeSetting,
    QueueWindowSetting,
    check_business_types,
    check_windows,
)
from govedge_wire.config import DesiredConfig, EvaluationConfig

EVALUATION_KIND = "evaluation_pad"


class NotHereError(ValueError):
    """The config is valid alone but not at this outlet (reason ``invalid_here``)."""


@dataclass(slots=True)
class LiveSettings:
    """The settings a fleet config changes in a running agent, read where they are used."""

    telemetry_interval_s: float
    outbox_rate_per_s: float
    voice_enabled: bool = True
    voice_volume: int | None = None
    # The region's 好差评 profile (the agent records its default ratings).
    evaluation: EvaluationConfig | None = None
    # Stored for later use (the agent does not act on them yet).
    opening_hours: dict[str, Any] | None = None
    alerts: dict[str, Any] | None = None
    # Called with the new rate when it changes (the connected session's outbox sender).
    on_rate: list[Callable[[float], None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Effective:
    """Every part a fleet config may set, as the running agent uses it."""

    business_types: tuple[BusinessType, ...]
    windows: tuple[WindowConfig, ...]
    template: str
    voice_enabled: bool
    voice_volume: int | None
    evaluation: EvaluationConfig | None
    telemetry_interval_s: float
    outbox_rate_per_s: float
    outbox_quota_bytes: int
    log_level: str
    driver_overrides: Mapping[str, Mapping[str, Any]]
    opening_hours: dict[str, Any] | None
    alerts: dict[str, Any] | None
    # The day's bookings pushed by the fleet (queue.appointments), loaded when applied.
    appointments: tuple[Appointment, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Outlet:
    """What the agent knows of its outlet: device ids, profiles, the local windows."""

    # None at start: the last good config was checked when applied, and a USB device
    # not plugged in yet must not drop it.
    device_ids: Collection[str] | None
    profiles: ProfileSet
    local_windows: tuple[WindowConfig, ...]


def effective(
    settings: AgentSettings, config: DesiredConfig | None, *, outlet: Outlet
) -> Effective:
    """The effective parts of ``config`` over ``settings``; ``NotHereError`` if not here."""
    config = config or DesiredConfig()
    queue = config.queue
    types = settings.queue_business_types
    if queue is not None and queue.business_types is not None:
        types = tuple(BusinessTypeSetting(**t.model_dump()) for t in queue.business_types)
    windows = outlet.local_windows
    if queue is not None and queue.windows is not None:
        windows = tuple(QueueWindowSetting(**w.model_dump()).to_window() for w in queue.windows)
    _check_queue(types, windows, outlet)
    appointments = _appointments(config, types)
    voice = queue.voice if queue is not None else None
    telemetry = config.telemetry.interval_s if config.telemetry is not None else None
    outbox = config.outbox
    return Effective(
        business_types=tuple(t.to_business_type() for t in types),
        windows=windows,
        template=(queue.announcement if queue is not None else None) or DEFAULT_TEMPLATE,
        voice_enabled=True if voice is None or voice.enabled is None else voice.enabled,
        voice_volume=None if voice is None else voice.volume,
        evaluation=config.evaluation,
        telemetry_interval_s=telemetry or settings.telemetry_interval_s,
        outbox_rate_per_s=(outbox.rate_per_s if outbox else None) or settings.outbox_rate_per_s,
        outbox_quota_bytes=(outbox.quota_bytes if outbox else None) or settings.outbox_quota_bytes,
        log_level=config.log_level or settings.log_level,
        driver_overrides=_driver_overrides(config, outlet.profiles),
        opening_hours=None
        if config.opening_hours is None
        else config.opening_hours.model_dump(mode="json", exclude_none=True),
        alerts=None if config.alerts is None else dict(config.alerts),
        appointments=appointments,
    )


def _appointments(
    config: DesiredConfig, types: tuple[BusinessTypeSetting, ...]
) -> tuple[Appointment, ...]:
    """The config's bookings, each of a business type this outlet's queue has."""
    pushed = config.queue.appointments if config.queue is not None else None
    known = {t.code for t in types}
    for i, booking in enumerate(pushed or ()):
        if booking.business_type not in known:
            raise NotHereError(
                f"queue.appointments[{i}]: {booking.business_type!r} is not a business type "
                f"of this outlet ({', '.join(sorted(known))})"
            )
    return tuple(Appointment(**booking.model_dump()) for booking in pushed or ())


def _check_queue(
    types: tuple[BusinessTypeSetting, ...], windows: tuple[WindowConfig, ...], outlet: Outlet
) -> None:
    try:
        check_business_types(types)
        settings = tuple(
            QueueWindowSetting(
                window=w.window,
                business_types=w.business_types,
                pad=w.pad,
                led=w.led,
                # to_window() filled in the default addresses, also without a device
                led_address=w.led_address if w.led is not None else None,
                keypad=w.keypad,
                keypad_address=w.keypad_address if w.keypad is not None else None,
            )
            for w in windows
        )
        check_windows(settings, types)
    except (ValueError, ValidationError) as exc:
        raise NotHereError(f"queue: {exc}") from None
    known = outlet.device_ids
    for window in windows:
        for name in ("pad", "led", "keypad"):
            device = getattr(window, name)
            if device is not None and known is not None and device not in known:
                raise NotHereError(
                    f"queue window {window.window!r}: {name} {device!r} is no device of this outlet"
                )


def _driver_overrides(config: DesiredConfig, profiles: ProfileSet) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for profile_id, values in (config.devices or {}).items():
        if profile_id not in profiles:
            raise NotHereError(f"devices: no device profile {profile_id!r} at this outlet")
        overrides[profile_id] = dict(values)
    evaluation = config.evaluation
    pad_settings: dict[str, Any] = {}
    if evaluation is not None and evaluation.level_coding is not None:
        pad_settings["level_coding"] = evaluation.level_coding
    if evaluation is not None and evaluation.indicator_tags is not None:
        pad_settings["indicator_tags"] = [t.model_dump() for t in evaluation.indicator_tags]
    for profile in profiles:
        cls = _driver(profile.driver)
        if pad_settings and cls is not None and cls.kind == EVALUATION_KIND:
            overrides[profile.id] = pad_settings | overrides.get(profile.id, {})
        model = None if cls is None else cls.settings_model
        if profile.id not in overrides or model is None:
            continue
        merged = dict(profile.settings) | overrides[profile.id]
        for _loc, where, message in settings_problems(model, merged):
            raise NotHereError(f"devices[{profile.id!r}]: {where}: {message}")
    return overrides


def _driver(name: str) -> type[Driver] | None:
    try:
        return driver_class(name)
    except (KeyError, ImportError):
        return None
