"""``DeviceManager``: turns device events into running, probed drivers.

Debounces udev bursts per device, brings drivers up through ``lifecycle.GuardedCalls``
(retrying with backoff), marks removals offline and reconciles against the source's
device list, all in one TaskGroup owned by the ``async with`` block. One class on
purpose: every device's state lives in it and changes only on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from edge_agent.backoff import backoff_ceiling, jittered
from edge_agent.devices import (
    DeviceEvent,
    DeviceUnavailable,
    Driver,
    Health,
    driver_class,
)
from edge_agent.devices.description import Action, DeviceDescription, SourceEvent
from edge_agent.devices.network_config import NetworkDeviceConfig
from edge_agent.discovery.events import EventHub, Subscription
from edge_agent.discovery.lifecycle import GuardedCalls, ManagedDevice, State
from edge_agent.discovery.matching import Matcher
from edge_agent.discovery.registered import RegisteredDevices, RegistrationRefused
from edge_agent.discovery.retired import RetiredDevices
from edge_agent.discovery.sources import EventSource
from edge_agent.profiles import Profile, ProfileSet
from govedge_wire import DeviceInfo

log = logging.getLogger(__name__)

DriverFactory = Callable[[str], type[Driver]]


class UnknownRetirement(LookupError):
    """No device seen since start has the serial number or device id to retire."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"no device seen since the agent started has serial number or id {key!r}; "
            "plug it in, or retire it by the device id the fleet shows, with --force"
        )
        self.key = key


class DeviceManager:
    """Owns every attached device's driver, from plug-in to unplug.

    Use as ``async with DeviceManager(profiles, source) as devices:``; leaving the block
    stops the source, cancels background work and closes every driver.
    """

    def __init__(
        self,
        profiles: ProfileSet,
        source: EventSource,
        *,
        network_devices: Iterable[NetworkDeviceConfig] = (),
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        driver_factory: DriverFactory = driver_class,
        debounce_s: float = 0.3,
        open_timeout_s: float = 5.0,
        probe_timeout_s: float = 5.0,
        close_timeout_s: float = 5.0,
        health_timeout_s: float = 2.0,
        scan_timeout_s: float = 30.0,
        reconcile_interval_s: float = 30.0,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
        retired: RetiredDevices | None = None,
        registered: RegisteredDevices | None = None,
    ) -> None:
        self.profiles = profiles
        self.retired = retired
        self.registered = registered
        self.source = source
        self.network_devices = tuple(network_devices)
        self.debounce_s = debounce_s
        self.open_timeout_s = open_timeout_s
        self.probe_timeout_s = probe_timeout_s
        self.close_timeout_s = close_timeout_s
        self.health_timeout_s = health_timeout_s
        self.scan_timeout_s = scan_timeout_s
        self.reconcile_interval_s = reconcile_interval_s
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self._driver_factory = driver_factory
        self._matcher = Matcher(profiles)
        self._hub = EventHub()
        # Shared with the rest of the agent (transaction results travel on it too).
        self.events = self._hub
        self._errors: Counter[str] = Counter()
        self._calls = GuardedCalls(self._errors)
        self._devices: dict[str, ManagedDevice] = {}
        self._by_node: dict[str, str] = {}
        self._pending: dict[str, tuple[Action, DeviceDescription, Profile]] = {}
        self._debouncers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closing = False
        # Fleet config driver settings, by profile id; they win over profile and local config.
        self._overrides: dict[str, Mapping[str, Any]] = dict(overrides or {})

    # ---- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            # Monitor first, then enumerate: a device plugged in between is seen twice
            # (and debounced), never missed.
            await self.source.start(self._on_source_event)
            for device in await self._scan():
                self._on_source_event(SourceEvent(action="add", device=device))
            for config in self.network_devices:
                self._add_network_device(config)
            self._spawn(self._reconcile_loop(), name="devices:reconcile")
        except BaseException as exc:
            await self._shutdown()
            await self._tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()
        if self._tg is not None:
            await self._tg.__aexit__(exc_type, exc, tb)

    async def _shutdown(self) -> None:
        """Stop taking events, cancel background work, then close every driver."""
        self._closing = True
        try:
            async with asyncio.timeout(self.close_timeout_s):
                await self.source.stop()
        except (OSError, TimeoutError) as exc:
            log.warning("event source did not stop cleanly: %s", exc)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.close_timeout_s)
        for device in self._devices.values():
            driver, device.driver = device.driver, None
            if driver is not None:
                await self._calls.close(driver, timeout_s=self.close_timeout_s)
            if device.state != "offline":
                self._set_state(device, "offline")

    def _spawn(self, coro: Any, *, name: str) -> asyncio.Task[None]:
        if self._tg is None:
            raise RuntimeError("DeviceManager is not running; use 'async with'")
        task: asyncio.Task[None] = self._tg.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- public API ----------------------------------------------------------------

    def inventory(self) -> list[DeviceInfo]:
        """Every device seen since start, with state and the last health sample."""
        return [
            DeviceInfo(
                device_id=device.device_id,
                kind=device.profile.kind,
                model=(device.model or device.profile.model or device.profile.name)[:128],
                state=device.state,
                health=dict(device.health),
            )
            for device in sorted(self._devices.values(), key=lambda d: d.device_id)
        ]

    def retired_device_ids(self) -> list[str]:
        """Every device id a technician retired here (the birth tells the fleet)."""
        return self.retired.device_ids() if self.retired is not None else []

    async def retire(self, key: str, *, force: bool = False) -> tuple[list[str], bool]:
        """Stop using the device with serial number or device id ``key``, for good.

        Returns the device ids taken out of the inventory and whether the list changed.
        ``UnknownRetirement`` when no device seen since start has that serial or id,
        unless ``force`` (then ``key`` is recorded as a device id the fleet knows).
        """
        if self.retired is None:
            raise RuntimeError("this device manager keeps no retired list")
        earlier = self.retired.entry(key)
        if earlier is not None:
            return list(earlier.device_ids), False
        matched = [
            device
            for device in self._devices.values()
            if key in (device.device_id, device.description.serial)
        ]
        if not matched and not force:
            raise UnknownRetirement(key)
        ids = [device.device_id for device in matched] or [key]
        changed = self.retired.add(key, ids)
        for device in matched:
            async with device.lock:
                device.present = False
                await self._take_down(device)
                self._devices.pop(device.device_id, None)
                self._by_node.pop(self._node_key(device.description), None)
                self._set_state(device, "offline")
            log.info("device %s retired by a technician", device.device_id)
            self._emit(device, "device.retired", severity="warning")
        return ids, changed

    async def register(self, config: NetworkDeviceConfig) -> bool:
        """Start a network device a technician registered (a replacement) and keep it in
        the registered list for every later start; False if it is registered already.

        ``RegistrationRefused`` (nothing changed) for an unknown or non-network profile,
        an id configured in the settings or used by another device, a retired id or
        serial; ``RetiredFileError`` when the list cannot be written.
        """
        if self.registered is None:
            raise RuntimeError("this device manager keeps no registered list")
        profile = self.profiles.get(config.profile)
        if profile is None or profile.network_rule is None:
            raise RegistrationRefused(f"profile {config.profile!r} is not a network device profile")
        if self.retired is not None and self.retired.matches(
            device_id=config.device_id, serial=config.serial
        ):
            raise RegistrationRefused(
                f"{config.device_id!r} ({config.serial or 'no serial'}) was retired"
            )
        registered_ids = {entry.device_id for entry in self.registered.entries}
        configured = {c.device_id for c in self.network_devices} - registered_ids
        if config.device_id in configured:
            raise RegistrationRefused(
                f"device id {config.device_id!r} is configured in the agent's settings already"
            )
        known = self._devices.get(config.device_id)
        if known is not None and not known.network:
            raise RegistrationRefused(f"device id {config.device_id!r} is a USB device's")
        changed = self.registered.add(config)
        if changed:
            self.network_devices = (*self.network_devices, config)
            self._add_network_device(config)
            log.info("network device %s registered by a technician", config.device_id)
        return changed

    def _is_retired(self, device_id: str, description: DeviceDescription) -> bool:
        return self.retired is not None and self.retired.matches(
            device_id=device_id, serial=description.serial
        )

    async def health(self) -> dict[str, Health]:
        """Ask every ready driver for its health (deadline each); failures are counted.

        The profile's thresholds add ``level`` (``ok``/``warn``/``crit``); a driver whose
        ``health()`` fails reports ``{"health_error": reason}`` and stays ready.
        """
        ready = [d for d in self._devices.values() if d.state == "ready" and d.driver]
        await asyncio.gather(
            *(
                self._calls.sample_health(device, timeout_s=self.health_timeout_s)
                for device in ready
            )
        )
        return {device.device_id: dict(device.health) for device in ready}

    def driver(self, device_id: str) -> Driver:
        """The ready driver of ``device_id``; ``DeviceUnavailable`` if it is not ready."""
        device = self._devices.get(device_id)
        if device is None:
            raise DeviceUnavailable(f"no device {device_id!r}", device_id=device_id)
        if device.state != "ready" or device.driver is None:
            raise DeviceUnavailable(f"device {device_id!r} is {device.state}", device_id=device_id)
        return device.driver

    def subscribe(self, *, maxsize: int = 256) -> Subscription:
        """A queue of every ``DeviceEvent`` from now on (manager's and drivers' own)."""
        return self._hub.subscribe(maxsize=maxsize)

    def errors(self) -> dict[str, int]:
        """Failures counted by ``stage.reason`` (``probe.timeout``, ``health.unexpected``)."""
        return dict(self._errors)

    def state(self, device_id: str) -> State | None:
        """The state of ``device_id``, or None if it was never seen."""
        device = self._devices.get(device_id)
        return device.state if device is not None else None

    async def wait_for_state(self, device_id: str, *states: State, timeout_s: float) -> State:
        """Wait until ``device_id`` is in one of ``states``; ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout_s):
            while True:
                current = self.state(device_id)
                if current in states:
                    return current
                await self._tick.wait()

    async def reconcile(self) -> None:
        """Compare the source's device list with ours and fix any difference now."""
        seen: dict[str, tuple[DeviceDescription, Profile]] = {}
        for description in await self._scan():
            found = self._matcher.match(description)
            if found is not None:
                seen[found.device_id] = (description, found.profile)
        for device_id, (description, profile) in seen.items():
            known = self._devices.get(device_id)
            if device_id in self._pending or (known is not None and known.present):
                continue
            self._errors["reconcile.missed_add"] += 1
            log.info("reconcile: %s is present but its add event was missed", device_id)
            await self._apply(device_id, "add", description, profile)
        for device in list(self._devices.values()):
            gone = device.present and not device.network and device.device_id not in seen
            if gone and device.device_id not in self._pending:
                self._errors["reconcile.missed_remove"] += 1
                log.info("reconcile: %s is gone but its remove event was missed", device.device_id)
                await self._apply(device.device_id, "remove", device.description, device.profile)

    # ---- events --------------------------------------------------------------------

    def _on_source_event(self, event: SourceEvent) -> None:
        """Called on the loop thread for each source event: match, then debounce by id."""
        if self._closing:
            return
        found = self._matcher.match(event.device)
        if found is not None:
            device_id, profile = found.device_id, found.profile
        else:
            # A remove may lack the strings its add had; find the device by node.
            device_id = self._by_node.get(self._node_key(event.device)) or ""
            known = self._devices.get(device_id)
            if event.action != "remove" or known is None:
                return
            profile = known.profile
        # The last event of a window wins: udev sends bursts (a USB-serial adapter's usb,
        # tty and interface events; a loose plug's add/remove/add) that must start one driver.
        self._pending[device_id] = (event.action, event.device, profile)
        if device_id not in self._debouncers:
            self._debouncers[device_id] = self._spawn(
                self._debounce(device_id), name=f"devices:debounce:{device_id}"
            )

    async def _debounce(self, device_id: str) -> None:
        try:
            await asyncio.sleep(self.debounce_s)
        finally:
            self._debouncers.pop(device_id, None)
        action, description, profile = self._pending.pop(device_id)
        await self._apply(device_id, action, description, profile)

    async def _apply(
        self, device_id: str, action: Action, description: DeviceDescription, profile: Profile
    ) -> None:
        device = self._devices.get(device_id)
        if device is None:
            if action == "remove":
                return
            if self._is_retired(device_id, description):
                log.info("device %s is retired: not used", device_id)
                return
            device = ManagedDevice(device_id=device_id, profile=profile, description=description)
            self._devices[device_id] = device
        async with device.lock:
            if action == "add":
                await self._plugged(device, description)
            else:
                await self._unplugged(device)

    async def _plugged(self, device: ManagedDevice, description: DeviceDescription) -> None:
        moved = device.present and device.description.where != description.where
        if device.present and not moved:
            return  # a repeated add of a device already up or coming up
        if moved:  # it came back on another node without a remove we saw
            await self._take_down(device)
        device.description = description
        device.present = True
        self._by_node[self._node_key(description)] = device.device_id
        self._start(device)

    async def _unplugged(self, device: ManagedDevice) -> None:
        if not device.present:
            return
        device.present = False
        await self._take_down(device)
        self._set_state(device, "offline")
        self._emit(device, "device.unplugged", severity="warning")

    async def set_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Use ``overrides`` (profile id -> settings) and restart only the drivers they change.

        Returns the ids of the devices restarted; every other driver keeps running.
        """
        changed = {
            pid
            for pid in set(overrides) | set(self._overrides)
            if dict(overrides.get(pid, {})) != dict(self._overrides.get(pid, {}))
        }
        self._overrides = {pid: dict(values) for pid, values in overrides.items()}
        restarted = []
        for device in list(self._devices.values()):
            if device.profile.id in changed and device.present:
                await self._take_down(device)
                self._start(device)
                restarted.append(device.device_id)
        return restarted

    def _start(self, device: ManagedDevice) -> None:
        device.task = self._spawn(self._bring_up(device), name=f"devices:up:{device.device_id}")

    async def _take_down(self, device: ManagedDevice) -> None:
        task, device.task = device.task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task], timeout=self.close_timeout_s)
        driver, device.driver = device.driver, None
        if driver is not None:
            await self._calls.close(driver, timeout_s=self.close_timeout_s)

    # ---- bringing a device up ------------------------------------------------------

    async def _bring_up(self, device: ManagedDevice) -> None:
        """Open and probe until it works or the device goes away, backing off between."""
        while device.present and not self._closing:
            self._set_state(device, "probing")
            reason = await self._open_and_probe(device)
            if reason is None:
                device.failures = 0
                device.last_error = None
                self._set_state(device, "ready")
                self._emit(device, "device.ready", model=device.model or "")
                return
            device.failures += 1
            device.last_error = reason
            delay = random.uniform(0.5, 1.0) * backoff_ceiling(
                device.failures - 1, base=self.retry_base_s, cap=self.retry_cap_s
            )
            self._set_state(device, "error")
            self._emit(
                device,
                "device.error",
                severity="error",
                reason=reason,
                attempt=device.failures,
                retry_in_s=round(delay, 3),
            )
            await asyncio.sleep(delay)

    async def _open_and_probe(self, device: ManagedDevice) -> str | None:
        """Start the profile's driver; None when it probed fine, else the failure reason."""
        profile = device.profile
        try:
            cls = self._driver_factory(profile.driver)
        except (KeyError, ImportError):
            cls = None
        if cls is None:
            self._errors["driver.missing"] += 1
            log.error("no driver %r for %s", profile.driver, device.device_id)
            return "driver_missing"
        return await self._calls.start(
            device,
            cls,
            settings=dict(profile.settings)
            | dict(self._network_settings(device))
            | dict(self._overrides.get(profile.id, {})),
            settings_source=self._settings_source(device),
            on_event=self._driver_event,
            open_timeout_s=self.open_timeout_s,
            probe_timeout_s=self.probe_timeout_s,
            close_timeout_s=self.close_timeout_s,
        )

    def _settings_source(self, device: ManagedDevice) -> str:
        """Where the device's settings come from, for a ``DriverSettingsError`` message."""
        source = str(device.profile.source or f"profile {device.profile.id!r}")
        if self._network_settings(device):
            source += f" + agent config devices[{device.device_id!r}].settings"
        if device.profile.id in self._overrides:
            source += f" + fleet config devices[{device.profile.id!r}]"
        return source

    def _network_settings(self, device: ManagedDevice) -> Mapping[str, Any]:
        for config in self.network_devices:
            if device.network and config.device_id == device.device_id:
                return config.settings
        return {}

    def _add_network_device(self, config: NetworkDeviceConfig) -> None:
        profile = self.profiles.get(config.profile)
        rule = profile.network_rule if profile is not None else None
        if profile is None or rule is None:
            self._errors["config.bad_network_device"] += 1
            log.error(
                "network device %s: profile %r is unknown or not a network profile",
                config.device_id,
                config.profile,
            )
            return
        description = DeviceDescription(
            subsystem="network",
            address=config.address_with_port(rule.default_port),
            serial=config.serial,
        )
        if self._is_retired(config.device_id, description):
            log.info("network device %s is retired: not used", config.device_id)
            return
        device = ManagedDevice(
            device_id=config.device_id, profile=profile, description=description, network=True
        )
        device.present = True
        self._devices[config.device_id] = device
        self._start(device)

    # ---- helpers -------------------------------------------------------------------

    async def _scan(self) -> list[DeviceDescription]:
        try:
            async with asyncio.timeout(self.scan_timeout_s):
                return await self.source.scan()
        except (OSError, TimeoutError) as exc:
            self._errors["scan.failed"] += 1
            log.warning("device scan failed: %s", exc)
            return []

    async def _reconcile_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(jittered(self.reconcile_interval_s))
            await self.reconcile()

    def _set_state(self, device: ManagedDevice, state: State) -> None:
        if device.state != state:
            log.info("device %s: %s -> %s", device.device_id, device.state, state)
        device.state = state
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _emit(
        self, device: ManagedDevice, name: str, *, severity: str = "info", **data: Any
    ) -> None:
        data = {"profile": device.profile.id, "kind": device.profile.kind, **data}
        self._hub.publish(
            DeviceEvent(device_id=device.device_id, name=name, severity=severity, data=data)
        )

    def _driver_event(self, event: DeviceEvent) -> None:
        """A driver's own event; drivers may emit from a worker thread."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            self._hub.publish(event)
            return
        try:
            self._loop.call_soon_threadsafe(self._hub.publish, event)
        except RuntimeError:
            log.debug("event loop closed; dropped %s from %s", event.name, event.device_id)

    @staticmethod
    def _node_key(description: DeviceDescription) -> str:
        return description.sys_path or description.where
