"""One managed device's record, and the guarded driver calls that bring it up and down.

Drivers are written by other people for hardware that misbehaves; every call into one
here has a timeout and turns any exception into a counted reason, so a bad driver can
put its own device in ``error`` but never take the manager down.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from edge_agent.devices import DeviceError, DeviceEvent, DeviceIdentity, Driver, Health
from edge_agent.devices.description import DeviceDescription
from edge_agent.profiles import Profile

log = logging.getLogger(__name__)

State = Literal["ready", "probing", "offline", "error"]
_T = TypeVar("_T")
_METRIC_TYPES: Final = (bool, int, float, str)


@dataclass(eq=False, kw_only=True)
class ManagedDevice:
    """What the manager knows about one device id, across unplugs and replugs."""

    device_id: str
    profile: Profile
    description: DeviceDescription
    network: bool = False
    present: bool = False
    state: State = "offline"
    driver: Driver | None = None
    model: str | None = None
    health: Health = field(default_factory=dict)
    failures: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def reason_of(exc: BaseException) -> str:
    """A short stable counter key for an exception a driver raised."""
    if isinstance(exc, DeviceError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "unexpected"


class GuardedCalls:
    """Runs driver coroutines with a deadline; failures become ``stage.reason`` counts."""

    def __init__(self, errors: Counter[str]) -> None:
        self.errors = errors

    async def call(
        self,
        stage: str,
        device_id: str,
        make: Callable[[], Awaitable[_T]],
        *,
        timeout_s: float,
    ) -> tuple[_T | None, str | None]:
        """``(result, None)`` on success, ``(None, reason)`` on any failure or timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                return await make(), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = reason_of(exc)
            self.errors[f"{stage}.{reason}"] += 1
            if reason == "unexpected":
                log.exception("%s of %s raised", stage, device_id)
            else:
                log.warning("%s of %s failed (%s): %s", stage, device_id, reason, exc)
            return None, reason

    async def close(self, driver: Driver, *, timeout_s: float) -> None:
        """Close ``driver``, finishing even if the caller is cancelled meanwhile."""
        closing = asyncio.ensure_future(
            self.call("close", driver.device_id, driver.close, timeout_s=timeout_s)
        )
        await asyncio.shield(closing)

    async def start(
        self,
        device: ManagedDevice,
        cls: type[Driver],
        *,
        settings: Mapping[str, Any],
        settings_source: str,
        on_event: Callable[[DeviceEvent], None],
        open_timeout_s: float,
        probe_timeout_s: float,
        close_timeout_s: float,
    ) -> str | None:
        """Create, open and probe ``device``'s driver; None when it probed fine, else why.

        On success the driver and its model are set on ``device``; on any failure the
        driver is closed again.
        """
        profile, description = device.profile, device.description
        identity = DeviceIdentity(
            device_id=device.device_id,
            profile=profile.id,
            kind=profile.kind,
            address=description.where,
            model=profile.model,
            serial=description.serial,
            usb=description.usb_facts(),
            settings_source=settings_source,
        )

        async def create() -> Driver:
            return cls(identity, settings=settings, on_event=on_event)

        driver, reason = await self.call(
            "create", device.device_id, create, timeout_s=open_timeout_s
        )
        if driver is None:
            return reason or "unexpected"
        try:
            _, reason = await self.call(
                "open", device.device_id, driver.open, timeout_s=open_timeout_s
            )
            if reason is None:
                probe, reason = await self.call(
                    "probe", device.device_id, driver.probe, timeout_s=probe_timeout_s
                )
                if probe is not None:
                    device.driver = driver
                    device.model = probe.model or profile.model
                    return None
        except asyncio.CancelledError:  # unplugged or shutting down mid-probe
            await self.close(driver, timeout_s=close_timeout_s)
            raise
        await self.close(driver, timeout_s=close_timeout_s)
        return reason

    async def sample_health(self, device: ManagedDevice, *, timeout_s: float) -> None:
        """Read the driver's health into ``device.health``, keeping plain metric values."""
        driver = device.driver
        if driver is None:
            return
        sample, reason = await self.call(
            "health", device.device_id, driver.health, timeout_s=timeout_s
        )
        if sample is None:
            device.health = {"health_error": reason or "unexpected"}
            return
        clean: Health = {
            str(k)[:128]: v for k, v in sample.items() if k and isinstance(v, _METRIC_TYPES)
        }
        clean["level"] = device.profile.health_level(clean)
        device.health = clean
