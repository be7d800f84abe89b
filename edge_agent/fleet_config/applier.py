"""Verify a fleet config, check it against this outlet, apply it live, all or nothing.

``ConfigApplier.offer(envelope)`` answers with an ``Outcome`` to report (None: the
retained copy of the applied config arrived again). Applying switches the parts in
order — queue types and announcement, queue windows (one SQLite transaction; waiting
tickets keep their number and place), the windows' devices, intervals and rates, log
level, then the drivers whose settings changed (only those restart), then the day's
pushed bookings (``queue.appointments``, added or updated by reference) — and last writes
the envelope to ``DATA_DIR/config/last-good.json`` atomically. Any failure undoes the
parts already switched in reverse and reports ``apply_failed``. At start the agent
runs on the last good file only (``load_last_good``), so a kill at any moment leaves
the old config (file not yet replaced) or the new one (file replaced), never a mix.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.counters import AgentCounters
from edge_agent.discovery import DeviceManager
from edge_agent.fleet_config.effective import (
    Effective,
    LiveSettings,
    NotHereError,
    Outlet,
    effective,
)
from edge_agent.fleet_config.keys import write_atomically
from edge_agent.outbox import Outbox
from edge_agent.queueing import QueueEngine, WindowConfig
from edge_agent.settings import AgentSettings
from govedge_wire.config import ConfigRefused, SignedConfig, verify_config

log = logging.getLogger(__name__)

LAST_GOOD: Final = Path("config") / "last-good.json"

Undo = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What to report on ``up/reported`` after an offer."""

    status: Literal["applied", "refused"]
    reason: str | None = None
    detail: str | None = None
    offered_version: int | None = None
    offered_hash: str | None = None


def load_last_good(
    settings: AgentSettings, keys: dict[str, Ed25519PublicKey], outlet: Outlet
) -> tuple[Effective, SignedConfig | None]:
    """The effective parts at start: the last good config over the settings, if it holds.

    The file is verified again with the keys held now; one that no longer verifies (its
    key dropped) or fits is logged and the agent starts on its local settings alone.
    """
    path = settings.data_dir / LAST_GOOD
    try:
        envelope = path.read_bytes()
    except FileNotFoundError:
        return effective(settings, None, outlet=outlet), None
    except OSError as exc:
        log.error("last good config %s unreadable (%s); running on local settings", path, exc)  # noqa: TRY400
        return effective(settings, None, outlet=outlet), None
    try:
        config = verify_config(envelope, keys, outlet_id=settings.outlet_id, applied_version=None)
        signed = SignedConfig.model_validate_json(envelope)
        return effective(settings, config, outlet=outlet), signed
    except (ConfigRefused, NotHereError) as exc:
        log.error(  # noqa: TRY400 - one line: the reason is all an operator needs
            "last good config %s not used (%s); running on local settings", path, exc
        )
        return effective(settings, None, outlet=outlet), None


class ConfigApplier:
    """Holds the applied config and switches the running parts to a new one."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        keys: dict[str, Ed25519PublicKey],
        outlet: Outlet,
        current: Effective,
        applied: SignedConfig | None,
        queue: QueueEngine,
        devices: DeviceManager,
        outbox: Outbox,
        windows: MutableMapping[str, WindowConfig],
        live: LiveSettings,
        counters: AgentCounters,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._outlet = outlet
        self.current = current
        self.applied = applied
        self._queue = queue
        self._devices = devices
        self._outbox = outbox
        self._windows = windows
        self._live = live
        self._counters = counters
        self._lock = asyncio.Lock()

    @property
    def key_ids(self) -> list[str]:
        """The config-signing key ids held, for the birth and the reports."""
        return sorted(self._keys)[:16]

    @property
    def version(self) -> int | None:
        return None if self.applied is None else self.applied.version

    @property
    def hash(self) -> str | None:
        return None if self.applied is None else self.applied.hash

    async def offer(self, envelope: bytes) -> Outcome | None:
        """Verify, check and apply ``envelope``; the outcome to report (None: nothing new)."""
        async with self._lock:
            try:
                config = verify_config(
                    envelope, self._keys, outlet_id=self._settings.outlet_id,
                    applied_version=self.version,
                )  # fmt: skip
            except ConfigRefused as exc:
                same = (exc.version, exc.hash) == (self.version, self.hash)
                if exc.reason == "replayed" and same:
                    return None  # the retained copy of what runs, again on reconnect
                return self._refused(exc.reason, str(exc), exc.version, exc.hash)
            signed = SignedConfig.model_validate(json.loads(envelope))
            try:
                new = effective(self._settings, config, outlet=self._here())
                await self._keeps_waiting_tickets(new)
            except NotHereError as exc:
                return self._refused("invalid_here", str(exc), signed.version, signed.hash)
            try:
                await self._switch(new, envelope)
            except Exception as exc:  # any part failing is reported, never fatal
                return self._refused("apply_failed", str(exc)[:400], signed.version, signed.hash)
            self.applied = signed
            self._counters.incr("config_applied")
            log.info("fleet config version %d applied (hash %s)", signed.version, signed.hash[:12])
            return Outcome(
                status="applied", offered_version=signed.version, offered_hash=signed.hash
            )

    async def _keeps_waiting_tickets(self, new: Effective) -> None:
        """A business type may go only when none of today's tickets of it still waits."""
        kept = {t.code for t in new.business_types}
        waiting = (await self._queue.snapshot()).waiting
        dropped = sorted(code for code, count in waiting.items() if count and code not in kept)
        if dropped:
            raise NotHereError(
                f"queue: business type(s) {', '.join(dropped)} still have tickets waiting today"
            )

    def _here(self) -> Outlet:
        present = {info.device_id for info in self._devices.inventory()}
        return Outlet(
            device_ids=set(self._outlet.device_ids or ()) | present,
            profiles=self._outlet.profiles,
            local_windows=self._outlet.local_windows,
        )

    def _refused(self, reason: str, detail: str, version: int | None, hash: str | None) -> Outcome:
        count = self._counters.incr(f"config_refused_{reason}")
        # The detail names keys, ids and versions only: configs carry no personal data.
        log.warning("fleet config refused (%s, %d so far): %s", reason, count, detail)
        return Outcome(
            status="refused", reason=reason, detail=detail[:512],
            offered_version=version, offered_hash=hash,
        )  # fmt: skip

    async def _switch(self, new: Effective, envelope: bytes) -> None:
        undo: list[Undo] = []
        try:
            await self._switch_parts(new, envelope, undo)
        except BaseException:
            for step in reversed(undo):
                try:
                    await step()
                except Exception:  # the next start runs on the last good file anyway
                    log.exception("rolling back a config part failed")
            raise
        self.current = new

    async def _switch_parts(self, new: Effective, envelope: bytes, undo: list[Undo]) -> None:
        old = self.current
        queue = self._queue
        types, template = queue.types, queue.template

        async def queue_back() -> None:
            queue.types, queue.template = types, template
            await queue.apply_windows(old.windows)

        undo.append(queue_back)
        queue.types = {t.code: t for t in new.business_types}
        queue.template = new.template
        await queue.apply_windows(new.windows)
        windows = dict(self._windows)

        async def windows_back() -> None:
            self._windows.clear()
            self._windows.update(windows)

        undo.append(windows_back)
        self._windows.clear()
        self._windows.update({w.window: w for w in new.windows})
        undo.append(lambda: self._live_parts(old))
        self._live_parts_now(new)
        if new.driver_overrides != old.driver_overrides:

            async def drivers_back() -> None:
                await self._devices.set_overrides(old.driver_overrides)

            undo.append(drivers_back)
            restarted = await self._devices.set_overrides(new.driver_overrides)
            log.info("fleet config restarted driver(s): %s", ", ".join(restarted) or "none")
        if new.appointments:
            # Not undone: loading adds or updates bookings of the outlet's day by
            # reference, so a later failure leaves real bookings, which a retry loads again.
            await queue.load_appointments(new.appointments)
        path = self._settings.data_dir / LAST_GOOD
        await asyncio.to_thread(write_atomically, path, envelope)

    async def _live_parts(self, parts: Effective) -> None:
        self._live_parts_now(parts)

    def _live_parts_now(self, parts: Effective) -> None:
        live = self._live
        live.telemetry_interval_s = parts.telemetry_interval_s
        if live.outbox_rate_per_s != parts.outbox_rate_per_s:
            live.outbox_rate_per_s = parts.outbox_rate_per_s
            for callback in live.on_rate:
                callback(parts.outbox_rate_per_s)
        live.voice_enabled, live.voice_volume = parts.voice_enabled, parts.voice_volume
        live.evaluation = parts.evaluation
        live.opening_hours, live.alerts = parts.opening_hours, parts.alerts
        self._outbox.set_quota_bytes(parts.outbox_quota_bytes)
        logging.getLogger().setLevel(parts.log_level)


def static_device_ids(settings_ids: Collection[str], windows: Collection[WindowConfig]) -> set[str]:
    """Device ids the agent knows without seeing them: configured devices and windows."""
    ids = set(settings_ids)
    for window in windows:
        ids.update(d for d in (window.pad, window.led, window.keypad) if d is not None)
    return ids
