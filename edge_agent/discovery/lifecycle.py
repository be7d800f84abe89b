"""One managed device's record, and the guarded driver calls that bring it up and down.

Drivers are written by other people for hardware that misbehaves; every call into one
here has a timeout and turns any exception into a counted reason, so a bad driver can
put its own device in ``error`` but never take the manager down.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from edge_agent.devices import DeviceError, Driver, Health
from edge_agent.discovery.description import DeviceDescription
from edge_agent.profiles import Profile

log = logging.getLogger(__name__)

State = Literal["ready", "probing", "offline", "error"]
_T = TypeVar("_T")


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
