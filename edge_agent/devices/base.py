"""The one driver interface every device kind implements, and the errors drivers raise.

A driver owns all I/O with one device (Home Assistant's coordinator pattern): it opens
the transport, probes that the device really is what its profile says, answers the
operations of its kind, reports health, and turns transport errors into ``DeviceError``
subclasses at its boundary (``serial.SerialException`` or ``OSError`` never leak).
Blocking calls run off the event loop.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from edge_agent.devices.settings import DriverSettings

Metric = float | int | bool | str
Health = dict[str, Metric]


class DeviceError(Exception):
    """A device operation failed; ``reason`` is the counter key, the message is for people."""

    reason: str = "device_error"

    def __init__(self, message: str, *, device_id: str | None = None) -> None:
        super().__init__(message)
        self.device_id = device_id


class DeviceUnavailable(DeviceError):
    """The device is gone (unplugged) or its port cannot be opened."""

    reason = "unavailable"


class DeviceTimeout(DeviceError):
    """The device did not answer within its deadline."""

    reason = "timeout"


class ProtocolError(DeviceError):
    """A frame from the device was malformed: checksum, length, or noise."""

    reason = "protocol"


class DeviceBusy(DeviceError):
    """Another operation is using the device."""

    reason = "busy"


class DeviceRefused(DeviceError):
    """The device reports a condition a person can fix; ``hint`` tells them how."""

    reason = "refused"

    def __init__(self, message: str, *, hint: str, code: str, device_id: str | None = None) -> None:
        super().__init__(message, device_id=device_id)
        self.hint = hint
        self.code = code  # e.g. "no_card", "paper_out", "cover_open"


class DriverSettingsError(DeviceError, ValueError):
    """A driver's settings are invalid; the message names their source and each field."""

    reason = "bad_settings"

    def __init__(
        self,
        message: str,
        *,
        problems: tuple[tuple[str, str], ...] = (),
        device_id: str | None = None,
    ) -> None:
        super().__init__(message, device_id=device_id)
        self.problems = problems  # (field, message) pairs, field as "settings.KEY"


@dataclass(frozen=True, slots=True, kw_only=True)
class UsbFacts:
    """What udev said about the USB device behind a device node (strings as the device gives them).

    Drivers that must find their device somewhere other than its node (a CCID reader's
    PC/SC name, a libusb handle) use these; ``None`` where udev had nothing.
    """

    vendor_id: str | None = None
    product_id: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    serial: str | None = None
    interface: str | None = None  # the USB interface string (iInterface), if any
    bus: int | None = None  # USB bus number (busnum)
    device: int | None = None  # USB device number on that bus (devnum)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceIdentity:
    """Who a device is, independent of which ``/dev/ttyUSBn`` it landed on today.

    ``device_id`` is stable: built from the serial number or ``/dev/serial/by-id`` name,
    or the configured name of a network device. ``address`` is where to reach it now:
    a device path (``/dev/ttyUSB0``, a pseudo-terminal, ``/dev/video0``), ``host:port``
    for network devices, or a PC/SC reader name.
    """

    device_id: str
    profile: str
    kind: str
    address: str
    model: str | None = None
    serial: str | None = None
    usb: UsbFacts | None = None
    # where the driver's settings came from, for error messages: the profile file, and
    # the local config entry when it overrides settings
    settings_source: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """What a probe learned; a device is called ready only after a successful probe."""

    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    details: Mapping[str, Metric] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceEvent:
    """Something a device did that clerk apps and the fleet may want to know.

    ``data`` must never hold personal data (names, ID numbers, addresses, photos);
    a reference to a person is masked (``3301**********1234``).
    """

    device_id: str
    name: str  # e.g. "card.placed", "rating.given", "paper.low", "device.unplugged"
    severity: str = "info"
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


EventSink = Callable[[DeviceEvent], None]


class Driver(abc.ABC):
    """Base class of every device driver; one instance per attached device.

    Subclasses set ``kind`` and ``settings_model`` and implement ``open``, ``probe``,
    ``health`` and ``close``, plus the operations of their kind as ``async`` methods.
    ``settings`` come from the device's profile (baud rate, timeouts, encodings) merged
    with local config; they are validated against ``settings_model`` here (unknown keys
    are errors) and the result is ``self.config``. Bad settings raise
    ``DriverSettingsError`` naming ``identity.settings_source`` and the field.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[DriverSettings] | None] = None
    config: DriverSettings

    def __init__(
        self,
        identity: DeviceIdentity,
        *,
        settings: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        from edge_agent.devices.settings import DriverSettings, parse_settings

        self.identity = identity
        self.settings: Mapping[str, Any] = dict(settings or {})
        self._on_event = on_event
        self.config = parse_settings(
            self.settings_model or DriverSettings,
            self.settings,
            driver=type(self).__name__,
            source=identity.settings_source or f"profile {identity.profile!r}",
            device_id=identity.device_id,
        )

    @property
    def device_id(self) -> str:
        """The stable device id."""
        return self.identity.device_id

    def emit(self, name: str, *, severity: str = "info", **data: Any) -> None:
        """Report an event to whoever listens (the device manager, the local API)."""
        if self._on_event is not None:
            self._on_event(
                DeviceEvent(device_id=self.device_id, name=name, severity=severity, data=data)
            )

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the transport; raise ``DeviceUnavailable`` if it cannot be opened."""

    @abc.abstractmethod
    async def probe(self) -> ProbeResult:
        """Check the device answers as its kind should; raise ``DeviceError`` if not."""

    @abc.abstractmethod
    async def health(self) -> Health:
        """Current health metrics (counters, paper state, …); cheap, no long I/O."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the transport; safe to call twice and after the device vanished."""

    async def self_test(self) -> Health:
        """A technician's check after fitting the device: it answers its probe now.

        Kinds that can show more override it (a test print, one camera frame); the result
        is health-like and never holds personal data.
        """
        probe = await self.probe()
        return {**dict(probe.details), **(await self.health()), "probe": "ok"}

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
