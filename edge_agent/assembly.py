"""Open the agent's runtime parts in order, and close them in reverse, from the settings.

Order: device profiles (problems are logged and reported, never fatal; the schema check
is skipped for texts that passed it before, ``profiles/schema_memo.py``), the outbox
(``DATA_DIR/outbox.db``, key ``DATA_DIR/outbox.key``), the queue (``DATA_DIR/queue``),
the simulated hardware when ``simulate`` is set, the configured windows applied to the
queue (``QueueEngine.apply_windows``: idempotent, removed windows retired; with
``simulate`` and no ``[[queue_windows]]``, the simulated outlet's windows), then the
``DeviceManager`` over udev (or the simulators); last, queue events a crash left out of
the outbox are put in (``transactions.relay_queue_events``). Everything is entered on
the caller's ``AsyncExitStack``; the daemon closes that stack shielded, after the MQTT
session said goodbye, so the outbox's and the queue's last writes finish even if
shutdown is hurried.

An outbox or queue that cannot be opened (locked by another agent, unsafe key file,
damaged database) is a ``StartupError``: the agent must not run without its durable
store. A udev monitor that cannot be opened is not: the agent logs it and runs with the
configured network devices only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.counters import AgentCounters
from edge_agent.credentials import (
    DATA_DIR_OUTBOX_KEY,
    adopt_data_dir_key,
    outbox_key_location,
)
from edge_agent.discovery import (
    ControlledSource,
    DeviceManager,
    EventSource,
    NetworkDeviceConfig,
    UdevSource,
)
from edge_agent.discovery.registered import RegisteredDevices
from edge_agent.discovery.retired import RetiredDevices, RetiredFileError
from edge_agent.errors import StartupError
from edge_agent.fleet_config import (
    ConfigApplier,
    ConfigKeysError,
    LiveSettings,
    Outlet,
    load_config_keys,
    load_last_good,
)
from edge_agent.fleet_config.applier import static_device_ids
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.profiles import ProfileSet, load_profiles
from edge_agent.profiles.schema_memo import MEMO_FILE as SCHEMA_MEMO_FILE
from edge_agent.queueing import QueueEngine, QueueError, WindowConfig
from edge_agent.runtime import AgentRuntime
from edge_agent.settings import AgentSettings
from edge_agent.simulate import SimulatedHardware, simulated_windows
from edge_agent.transactions import relay_queue_events

__all__ = ["Assembled", "configured_windows", "open_runtime"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Assembled:
    """The runtime plus what the session reports about it."""

    runtime: AgentRuntime
    profile_problems: tuple[str, ...]
    simulation: SimulatedHardware | None


async def open_runtime(
    settings: AgentSettings, *, stack: AsyncExitStack, counters: AgentCounters | None = None
) -> Assembled:
    """Open every runtime part on ``stack`` (closed by the caller, in reverse order)."""
    data_dir = settings.data_dir
    profiles = await asyncio.to_thread(
        functools.partial(
            load_profiles, settings.profiles_dir, schema_memo=data_dir / SCHEMA_MEMO_FILE
        )
    )
    problems = tuple(str(problem) for problem in profiles.problems)
    if problems:
        log.warning("%d device profile problem(s); running with %d good profiles",
                    len(problems), len(profiles))  # fmt: skip
    keys = _config_keys(settings)
    local_windows = configured_windows(settings)
    # The last good fleet config is in force before anything starts or connects.
    start, applied = await asyncio.to_thread(
        load_last_good,
        settings,
        keys,
        Outlet(device_ids=None, profiles=profiles, local_windows=local_windows),
    )
    logging.getLogger().setLevel(start.log_level)
    key = outbox_key_location(data_dir=data_dir, outbox_key_file=settings.outbox_key_file)
    log.info("outbox key: %s (%s)", key.path, key.source)
    try:
        adopted = await asyncio.to_thread(adopt_data_dir_key, data_dir, key)
    except OSError as exc:
        raise StartupError(f"cannot move the outbox key to {key.path}: {exc}") from exc
    if adopted in ("moved", "removed_copy"):
        log.info("outbox key moved from %s to %s", data_dir / DATA_DIR_OUTBOX_KEY, key.path)
    if key.source != "data_dir" and (data_dir / DATA_DIR_OUTBOX_KEY).exists():
        log.warning(
            "%s still holds an outbox key although the key is read from %s: once the "
            "outbox opens, delete that copy, or whoever copies the data directory has it",
            data_dir / DATA_DIR_OUTBOX_KEY,
            key.path,
        )
    try:
        outbox = await stack.enter_async_context(
            Outbox(
                data_dir / "outbox.db",
                key_path=key.path,
                quota_bytes=start.outbox_quota_bytes,
            )
        )
    except OutboxError as exc:
        raise StartupError(f"cannot open the outbox in {data_dir}: {exc}") from exc
    queue_dir = data_dir / "queue"
    try:
        await asyncio.to_thread(queue_dir.mkdir, mode=0o700, exist_ok=True)
        queue = await stack.enter_async_context(
            QueueEngine(
                queue_dir,
                start.business_types,
                timezone=settings.timezone,
                template=start.template,
                appointment_grace=timedelta(minutes=settings.queue_appointment_grace_minutes),
            )
        )
    except (OSError, QueueError) as exc:
        raise StartupError(f"cannot open the queue in {queue_dir}: {exc}") from exc
    simulation: SimulatedHardware | None = None
    network = [device.to_config() for device in settings.devices]
    source: EventSource
    if settings.simulate:
        simulation = await stack.enter_async_context(
            SimulatedHardware(ratings=settings.simulate_ratings, pcsc=settings.simulate_pcsc)
        )
        source = simulation.source
        network.extend(simulation.network_devices)
    else:
        source = UdevSource()
    try:
        await queue.apply_windows(start.windows)
        if start.appointments:  # the last good fleet config's bookings
            await queue.load_appointments(start.appointments)
    except QueueError as exc:
        raise StartupError(f"cannot apply the queue windows or bookings: {exc}") from exc
    registered = _registered(settings, network)
    devices = await _open_devices(
        profiles,
        source,
        network=network,
        overrides=start.driver_overrides,
        retired=_retired(settings),
        registered=registered,
        stack=stack,
    )
    windows = {window.window: window for window in start.windows}
    live = LiveSettings(
        telemetry_interval_s=start.telemetry_interval_s,
        outbox_rate_per_s=start.outbox_rate_per_s,
        voice_enabled=start.voice_enabled,
        voice_volume=start.voice_volume,
        evaluation=start.evaluation,
        opening_hours=start.opening_hours,
        alerts=start.alerts,
    )
    applier = ConfigApplier(
        settings,
        keys=keys,
        outlet=Outlet(
            device_ids=static_device_ids([d.device_id for d in network], local_windows),
            profiles=profiles,
            local_windows=local_windows,
        ),
        current=start,
        applied=applied,
        queue=queue,
        devices=devices,
        outbox=outbox,
        windows=windows,
        live=live,
        counters=counters or AgentCounters(),
    )
    runtime = AgentRuntime(
        outlet_id=settings.outlet_id,
        devices=devices,
        outbox=outbox,
        queue=queue,
        windows=windows,
        live=live,
        config=applier,
    )
    await _relay_queue_events(runtime)
    return Assembled(runtime=runtime, profile_problems=problems, simulation=simulation)


def configured_windows(settings: AgentSettings) -> tuple[WindowConfig, ...]:
    """The configured windows, or the simulated outlet's when simulating without any."""
    if settings.queue_windows or not settings.simulate:
        return tuple(window.to_window() for window in settings.queue_windows)
    return simulated_windows([t.code for t in settings.queue_business_types])


async def _relay_queue_events(runtime: AgentRuntime) -> None:
    """Queue events committed but not yet in the outbox go in now: the windows this start
    configured, and any left by a crash between an operation and its put."""
    try:
        replayed = await relay_queue_events(runtime)
    except (OutboxError, QueueError) as exc:  # the next queue operation tries again
        log.warning("queue events not replayed into the outbox at start: %s", exc)
        return
    if replayed:
        log.info(
            "%d queue event(s) put into the outbox at start (window setup, or left by a crash)",
            replayed,
        )


async def _open_devices(
    profiles: ProfileSet,
    source: EventSource,
    *,
    network: list[NetworkDeviceConfig],
    overrides: Mapping[str, Mapping[str, Any]],
    retired: RetiredDevices,
    registered: RegisteredDevices | None,
    stack: AsyncExitStack,
) -> DeviceManager:
    try:
        return await stack.enter_async_context(
            DeviceManager(
                profiles,
                source,
                network_devices=network,
                overrides=overrides,
                retired=retired,
                registered=registered,
            )
        )
    except OSError as exc:
        if not isinstance(source, UdevSource):
            raise StartupError(f"cannot start device discovery: {exc}") from exc
        log.error(  # noqa: TRY400 - one line: the cause is in the message
            "udev monitor unavailable (%s): no hot-plug; network devices only", exc
        )
    return await stack.enter_async_context(
        DeviceManager(
            profiles,
            ControlledSource(),
            network_devices=network,
            overrides=overrides,
            retired=retired,
            registered=registered,
        )
    )


def _registered(
    settings: AgentSettings, network: list[NetworkDeviceConfig]
) -> RegisteredDevices | None:
    """The technicians' registered network devices, added to ``network`` (a device id the
    settings configure already keeps the settings' entry); an unreadable list is logged
    and left as it is (None: registering is refused until it is fixed)."""
    try:
        registered = RegisteredDevices.load(settings.data_dir)
    except RetiredFileError as exc:
        log.error("%s: registered network devices not started", exc)  # noqa: TRY400
        return None
    configured = {config.device_id for config in network}
    for config in registered.entries:
        if config.device_id in configured:
            log.error("registered device %s is in the settings too: the settings' entry "
                      "is used", config.device_id)  # fmt: skip
            continue
        network.append(config)
    return registered


def _retired(settings: AgentSettings) -> RetiredDevices:
    """The technicians' retired devices; an unreadable list is logged and left as it is
    (nothing retired is known, and a retire is refused until the file is fixed)."""
    retired = RetiredDevices.load_or_broken(settings.data_dir)
    if retired.broken is not None:
        log.error("%s: every device is used until it is fixed", retired.broken)
    return retired


def _config_keys(settings: AgentSettings) -> dict[str, Ed25519PublicKey]:
    """The held config-signing keys; unusable files are logged and trust nothing."""
    try:
        keys = load_config_keys(settings.keys_dir, settings.config_keys_file)
    except ConfigKeysError as exc:
        log.error("%s: no fleet config is trusted", exc)  # noqa: TRY400
        return {}
    if not keys:
        log.info("no config-signing key held: fleet configs are refused (unknown_key)")
    return keys
