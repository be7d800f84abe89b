"""Keep device state, events, clock skew and telemetry history current from the uplink.

The ingest worker calls ``observe`` for every accepted message (in memory, cheap) and
``flush`` once per batch, which writes what changed in one transaction. Telemetry is
also handed to the time-series sink, which only appends to its own bounded buffer, so a
slow or dead sink never holds up the ingest. A failed write keeps the changes for the
next batch; nothing here raises into the ingest.

Device state rules (``device_states.state``):

* a birth lists the outlet's devices: each takes the state, model and health it reports;
  a device known before and missing from the birth becomes ``offline`` (unplugged);
* telemetry ``devices[id]`` merges into ``health``; ``state`` (a string metric) or
  ``connected`` (0/false → ``offline``) update the state; the counters ``reads_ok``,
  ``reads_failed``, ``protocol_errors``, ``timeouts``, ``bad_frames`` feed the reads and
  error counters; ``firmware`` is kept; a change in only the usage counters
  (``_USAGE_COUNTERS``: good reads) is written with the row's next due write;
* events: ``device.unplugged`` → offline, ``device.ready`` → ready, ``device.error`` →
  error (+1 error); ``paper.low``/``paper.near_end`` and ``paper.out``/``paper.end``
  set ``health.paper``;
* an outlet whose agent is not online shows its devices as ``stale`` (derived at read
  time, never stored), so a dead agent raises one outlet alert, not one per device.

Over 400 lines as one thing: one in-memory picture of device state and the one batch
write that keeps it in the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.bulkwrite import insert_rows, insert_statement, update_rows, update_statement
from fleet_server.health.live import LiveHub
from fleet_server.health.tables import DeviceEvent, DeviceState, OutletHealth, TelemetrySample
from govedge_wire import Birth, Death, Event, Telemetry

logger = logging.getLogger(__name__)

_ERROR_COUNTERS = ("reads_failed", "protocol_errors", "timeouts", "bad_frames")
_PAPER_EVENTS = {
    "paper.low": "near_end",
    "paper.near_end": "near_end",
    "paper.out": "end",
    "paper.end": "end",
    "paper.ok": "ok",
}
_STATE_EVENTS = {"device.unplugged": "offline", "device.ready": "ready", "device.error": "error"}
_DEVICE_STATES = frozenset({"ready", "probing", "offline", "error"})
# Counters of ordinary use: their rise is no news, so a device row whose only change is
# one of these is written with its next due write (at most one history interval later),
# like ``last_seen``. Failures, errors, state, paper and everything else go at once.
_USAGE_COUNTERS = frozenset({"reads_ok", "no_card"})
_PRUNE_EVERY_S = 300.0
# An outlet health row whose clock skew moved less than this (and whose flaps did not)
# waits up to a history interval before it is written again (see ``_outlet_due``).
_SKEW_WRITE_S = 1.0


class TelemetrySinkLike(Protocol):
    """What the recorder needs of the time-series sink."""

    def offer_telemetry(self, message: Telemetry, *, received_at: datetime) -> None:
        """Queue one telemetry message's points; never blocks."""


@dataclass(slots=True)
class _Device:
    values: dict[str, Any]
    stored: bool
    # True while the row's content (all but last_seen) differs from what was last
    # written: set where a value changes, so a repeat costs no copy-and-compare.
    changed: bool = True
    # When the row was last written (monotonic), or None since this process started.
    written_at: float | None = None


@dataclass(slots=True)
class _Pending:
    devices: set[tuple[str, str]] = field(default_factory=set)
    retired: set[tuple[str, str]] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    outlets: set[str] = field(default_factory=set)
    samples: list[dict[str, Any]] = field(default_factory=list)


class HealthRecorder:
    """Device state, events and telemetry history; owned by the one ingest worker."""

    def __init__(
        self,
        *,
        history_interval_s: float,
        retention: timedelta,
        sink: TelemetrySinkLike | None = None,
        live: LiveHub | None = None,
        on_db_latency: Callable[[str, float], None] | None = None,
    ) -> None:
        self._history_interval_s = history_interval_s
        self._retention = retention
        self._sink = sink
        self._live = live
        self._on_db_latency = on_db_latency
        self._devices: dict[tuple[str, str], _Device] = {}
        # Device ids per outlet, so a birth looks at its own outlet's devices only
        # (scanning every device of the fleet per birth made births O(fleet)).
        self._outlet_devices: dict[str, set[str]] = {}
        self._outlets: dict[str, dict[str, Any]] = {}
        self._outlets_stored: set[str] = set()
        # Per outlet: clock skew and flaps as last written, and when (monotonic).
        self._outlet_written: dict[str, tuple[float | None, int, float]] = {}
        self._last_sample: dict[str, float] = {}
        self._pending = _Pending()
        self._changed = False
        self._loaded = False
        self._last_prune = 0.0
        self.write_errors = 0

    # -- observing (in memory) --------------------------------------------------

    def observe(self, message: object, *, received_at: datetime) -> None:
        """Take one accepted uplink message into memory; never raises."""
        try:
            if isinstance(message, Birth):
                self._birth(message, received_at)
            elif isinstance(message, Telemetry):
                self._telemetry(message, received_at)
            elif isinstance(message, Event):
                self._event(message, received_at)
            elif isinstance(message, Death):
                self._death(message, received_at)
        except Exception:  # a recorder bug must never stop the ingest
            logger.exception("health recorder could not take a %s", type(message).__name__)

    def _device(self, outlet_id: str, device_id: str, at: datetime) -> _Device:
        key = (outlet_id, device_id)
        device = self._devices.get(key)
        if device is None:
            device = self._devices[key] = _Device(
                values={
                    "outlet_id": outlet_id,
                    "device_id": device_id,
                    "kind": None,
                    "model": None,
                    "firmware": None,
                    "state": "ready",
                    "state_since": at,
                    "last_seen": at,
                    "health": {},
                    "error_count": 0,
                    "reads_ok": 0,
                    "reads_failed": 0,
                },
                stored=False,
            )
            self._outlet_devices.setdefault(outlet_id, set()).add(device_id)
        self._pending.devices.add(key)
        return device

    def _set_state(self, device: _Device, state: str, at: datetime) -> None:
        values = device.values
        if values["state"] != state:
            values["state"] = state
            values["state_since"] = at
            device.changed = True
            self._changed = True

    def _birth(self, birth: Birth, at: datetime) -> None:
        self._retire(birth.outlet_id, birth.retired_devices)
        listed = set()
        for info in birth.devices:
            listed.add(info.device_id)
            device = self._device(birth.outlet_id, info.device_id, at)
            values = device.values
            _put(device, "kind", info.kind)
            _put(device, "model", info.model)
            values["last_seen"] = at
            health = dict(info.health)
            _put(device, "health", health)
            self._counters(device, health)
            self._set_state(device, info.state, at)
        for device_id in self._outlet_devices.get(birth.outlet_id, set()) - listed:
            key = (birth.outlet_id, device_id)
            self._pending.devices.add(key)
            self._set_state(self._devices[key], "offline", at)
        self._changed = True

    def _retire(self, outlet_id: str, device_ids: list[str]) -> None:
        """A technician retired these devices: the outlet's record forgets them (and with
        their rows gone, their alerts resolve). Every birth repeats the list; only ids
        still known (or not yet loaded from the database) cost a delete."""
        known = self._outlet_devices.get(outlet_id, set())
        for device_id in device_ids:
            key = (outlet_id, device_id)
            if device_id not in known and self._loaded:
                continue
            known.discard(device_id)
            self._devices.pop(key, None)
            self._pending.devices.discard(key)
            self._pending.retired.add(key)
            self._changed = True

    def _death(self, death: Death, at: datetime) -> None:
        outlet = self._outlet(death.outlet_id, at)
        outlet["flaps"] += 1
        self._changed = True

    def _outlet(self, outlet_id: str, at: datetime) -> dict[str, Any]:
        outlet = self._outlets.get(outlet_id)
        if outlet is None:
            outlet = self._outlets[outlet_id] = {
                "outlet_id": outlet_id,
                "clock_skew_s": None,
                "last_telemetry_at": None,
                "flaps": 0,
                "updated_at": at,
            }
        outlet["updated_at"] = at
        self._pending.outlets.add(outlet_id)
        return outlet

    def _counters(self, device: _Device, health: dict[str, Any]) -> None:
        if "firmware" in health:
            _put(device, "firmware", str(health["firmware"])[:64])
        if isinstance(health.get("reads_ok"), int | float):
            _put(device, "reads_ok", int(health["reads_ok"]), news=False)
        if isinstance(health.get("reads_failed"), int | float):
            _put(device, "reads_failed", int(health["reads_failed"]))
        errors = [health[name] for name in _ERROR_COUNTERS if isinstance(health.get(name), int)]
        if errors:
            _put(device, "error_count", max(device.values["error_count"], int(sum(errors))))

    def _telemetry(self, message: Telemetry, at: datetime) -> None:
        outlet_id = message.outlet_id
        outlet = self._outlet(outlet_id, at)
        outlet["clock_skew_s"] = round(at.timestamp() - message.ts / 1000, 3)
        outlet["last_telemetry_at"] = at
        for device_id, metrics in message.devices.items():
            device = self._device(outlet_id, device_id, at)
            values = device.values
            values["last_seen"] = at
            health = values["health"]
            # Most telemetry repeats a device's figures (a C-level subset test): then
            # neither the health nor the counters taken from it can have moved.
            if not metrics.items() <= health.items():
                moved = [k for k, v in metrics.items() if k not in health or health[k] != v]
                values["health"] = {**health, **metrics}
                if not _USAGE_COUNTERS.issuperset(moved):
                    device.changed = True
                self._counters(device, metrics)
            state = metrics.get("state")
            if isinstance(state, str) and state in _DEVICE_STATES:
                self._set_state(device, state, at)
            elif "connected" in metrics:
                connected = metrics["connected"]
                if connected in (False, 0):
                    self._set_state(device, "offline", at)
                elif connected in (True, 1) and values["state"] == "offline":
                    self._set_state(device, "ready", at)
        now = time.monotonic()
        last = self._last_sample.get(message.outlet_id)
        if last is None or now - last >= self._history_interval_s:
            self._last_sample[message.outlet_id] = now
            self._pending.samples.append(
                {
                    "outlet_id": message.outlet_id,
                    "at": at,
                    "metrics": {k: v for k, v in message.metrics.items() if _numeric(v)},
                    "devices": {
                        d: {k: v for k, v in m.items() if _numeric(v)}
                        for d, m in message.devices.items()
                    },
                }
            )
        if self._sink is not None:
            self._sink.offer_telemetry(message, received_at=at)

    def _event(self, event: Event, at: datetime) -> None:
        self._pending.events.append(
            {
                "outlet_id": event.outlet_id,
                "device_id": event.device_id,
                "name": event.name,
                "severity": event.severity,
                "data": dict(event.data),
                "ts": _event_time(event.ts, fallback=at),
                "received_at": at,
            }
        )
        self._changed = True
        if event.device_id is None:
            return
        device = self._device(event.outlet_id, event.device_id, at)
        values = device.values
        values["last_seen"] = at
        if event.name in _STATE_EVENTS:
            self._set_state(device, _STATE_EVENTS[event.name], at)
            if event.name == "device.error":
                _put(device, "error_count", values["error_count"] + 1)
        if event.name in _PAPER_EVENTS:
            _put(device, "health", {**values["health"], "paper": _PAPER_EVENTS[event.name]})
            self._changed = True

    # -- writing (one transaction per batch) ------------------------------------

    def flush(self, sessions: sessionmaker[Session]) -> None:
        """Write what changed since the last flush; on failure keep it for the next."""
        pending = self._pending
        if not (
            pending.devices or pending.retired or pending.events or pending.outlets
            or pending.samples
        ):  # fmt: skip
            return
        started = time.perf_counter()
        try:
            with sessions.begin() as session:
                if not self._loaded:
                    self._load(session)
                written, outlets_written = self._write(session, pending)
        except SQLAlchemyError:
            self.write_errors += 1
            logger.exception("could not write device health; retrying with the next batch")
            self._loaded = False
            return
        finally:
            if self._on_db_latency is not None:
                self._on_db_latency("health_flush", time.perf_counter() - started)
        now = time.monotonic()
        for key in pending.devices:
            device = self._devices[key]
            device.stored = True
            if key in written:
                device.changed = False
                device.written_at = now
        for outlet_id in outlets_written:
            outlet = self._outlets[outlet_id]
            self._outlet_written[outlet_id] = (outlet["clock_skew_s"], outlet["flaps"], now)
        self._outlets_stored |= pending.outlets
        self._pending = _Pending()
        if self._changed and self._live is not None:
            self._live.bump()
        self._changed = False
        self._maybe_prune(sessions)

    def _load(self, session: Session) -> None:
        """Learn which rows exist already (server restart), so updates are not inserts."""
        for row in session.scalars(select(DeviceState)):
            key = (row.outlet_id, row.device_id)
            if key in self._devices:
                self._devices[key].stored = True
            else:
                self._devices[key] = _Device(
                    values={c: getattr(row, c) for c in _DEVICE_COLUMNS}, stored=True, changed=False
                )
                self._outlet_devices.setdefault(row.outlet_id, set()).add(row.device_id)
        for health in session.scalars(select(OutletHealth)):
            self._outlets_stored.add(health.outlet_id)
            if health.outlet_id not in self._outlets:
                self._outlets[health.outlet_id] = {c: getattr(health, c) for c in _OUTLET_COLUMNS}
            else:
                # Counters continue from what the database remembers.
                self._outlets[health.outlet_id]["flaps"] += health.flaps
        self._loaded = True

    def _write(self, session: Session, pending: _Pending) -> tuple[set[tuple[str, str]], list[str]]:
        """Write the pending rows; returns the device keys and the outlet ids written.

        A device row whose content (all but ``last_seen``) is what was last written
        is skipped until ``history_interval_s`` has passed: telemetry that repeats a
        device's figures then costs no device write, and the stored ``last_seen`` of a
        device is at most one history interval old (the agent's is always current).
        Outlet health rows follow the same rule (``_outlet_due``).
        """
        now = time.monotonic()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        written: set[tuple[str, str]] = set()
        for outlet_id, device_id in pending.retired:
            session.execute(
                delete(DeviceState).where(
                    DeviceState.outlet_id == outlet_id, DeviceState.device_id == device_id
                )
            )
        for key in pending.devices:
            device = self._devices[key]
            if not device.stored:
                inserts.append(device.values)
            elif (
                device.changed
                or device.written_at is None
                or now - device.written_at >= self._history_interval_s
            ):
                updates.append(device.values)
            else:
                continue
            written.add(key)
        if inserts:
            insert_rows(session, _INSERT_DEVICE, inserts)
        update_rows(session, _UPDATE_DEVICE, updates, keys=_DEVICE_KEYS, columns=_DEVICE_VALUES)
        outlet_new = [self._outlets[o] for o in pending.outlets if o not in self._outlets_stored]
        old_ids = [
            o for o in pending.outlets if o in self._outlets_stored and self._outlet_due(o, now)
        ]
        outlet_old = [self._outlets[o] for o in old_ids]
        if outlet_new:
            insert_rows(session, _INSERT_OUTLET, outlet_new)
        update_rows(session, _UPDATE_OUTLET, outlet_old, keys=_OUTLET_KEYS, columns=_OUTLET_VALUES)
        if pending.events:
            insert_rows(session, _INSERT_EVENT, pending.events)
        if pending.samples:
            insert_rows(session, _INSERT_SAMPLE, pending.samples)
        return written, [o["outlet_id"] for o in outlet_new] + old_ids

    def _outlet_due(self, outlet_id: str, now: float) -> bool:
        """Whether a stored outlet health row must be written now.

        Every telemetry message moves ``last_telemetry_at`` and the clock skew by a few
        milliseconds; writing the row for that was one of the three row writes per
        message. It is written when the flaps change, the skew moves by a second or
        more (the clock-skew rule's threshold is minutes), or a history interval passed.
        """
        last = self._outlet_written.get(outlet_id)
        if last is None:
            return True
        skew, flaps, at = last
        outlet = self._outlets[outlet_id]
        new_skew = outlet["clock_skew_s"]
        if now - at >= self._history_interval_s or outlet["flaps"] != flaps:
            return True
        if new_skew is None or skew is None:
            return new_skew is not skew
        return bool(abs(new_skew - skew) >= _SKEW_WRITE_S)

    def _maybe_prune(self, sessions: sessionmaker[Session]) -> None:
        now = time.monotonic()
        if now - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        cutoff = datetime.now(UTC) - self._retention
        try:
            with sessions.begin() as session:
                session.execute(delete(TelemetrySample).where(TelemetrySample.at < cutoff))
                session.execute(delete(DeviceEvent).where(DeviceEvent.received_at < cutoff))
        except SQLAlchemyError:
            self.write_errors += 1
            logger.exception("could not prune old telemetry samples and events")


_DEVICE_COLUMNS = (
    "outlet_id",
    "device_id",
    "kind",
    "model",
    "firmware",
    "state",
    "state_since",
    "last_seen",
    "health",
    "error_count",
    "reads_ok",
    "reads_failed",
)
_OUTLET_COLUMNS = ("outlet_id", "clock_skew_s", "last_telemetry_at", "flaps", "updated_at")
_DEVICE_KEYS = ("outlet_id", "device_id")
_DEVICE_VALUES = tuple(c for c in _DEVICE_COLUMNS if c not in _DEVICE_KEYS)
_OUTLET_KEYS = ("outlet_id",)
_OUTLET_VALUES = tuple(c for c in _OUTLET_COLUMNS if c not in _OUTLET_KEYS)
_UPDATE_DEVICE = update_statement(
    DeviceState.__table__,  # type: ignore[arg-type]
    keys=_DEVICE_KEYS,
    columns=_DEVICE_VALUES,
)
_INSERT_DEVICE = insert_statement(DeviceState.__table__)  # type: ignore[arg-type]
_INSERT_OUTLET = insert_statement(OutletHealth.__table__)  # type: ignore[arg-type]
_INSERT_EVENT = insert_statement(DeviceEvent.__table__)  # type: ignore[arg-type]
_INSERT_SAMPLE = insert_statement(TelemetrySample.__table__)  # type: ignore[arg-type]
_UPDATE_OUTLET = update_statement(
    OutletHealth.__table__,  # type: ignore[arg-type]
    keys=_OUTLET_KEYS,
    columns=_OUTLET_VALUES,
)


def _put(device: _Device, column: str, value: Any, *, news: bool = True) -> None:
    """Set one of a device row's values, noting a change (nested dicts are replaced,
    never mutated in place, so ``!=`` sees every change). A change that is no news
    (``_USAGE_COUNTERS``) waits for the row's next write."""
    if device.values[column] != value:
        device.values[column] = value
        if news:
            device.changed = True


def _event_time(ts_ms: int, *, fallback: datetime) -> datetime:
    """The outlet's event time, or the receive time when ``ts_ms`` is beyond ``datetime``."""
    try:
        return datetime.fromtimestamp(ts_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return fallback


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
