"""What discovery knows about one device node, independent of where the facts came from.

``UdevSource`` builds these from pyudev devices; tests and the network config build them
directly. Matching and the device manager only ever see this type, so a test-fed event
goes through exactly the code a real hot-plug does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["add", "remove"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDescription:
    """Facts about one device node; ids are lower-case hex, strings as the device gives them.

    ``subsystem`` is the udev subsystem (``tty``, ``usb``, ``usbmisc``, ``video4linux``,
    ``hidraw``) or ``network`` for a configured network device. ``by_id_links`` are the
    ``/dev/serial/by-id``, ``/dev/v4l/by-id`` … symlinks; ``port_path`` is udev's
    ``ID_PATH`` (the physical port); ``kernel_driver`` is the driver bound to the USB
    interface (``ch341``, ``cp210x``, ``ftdi_sio``, ``usblp``, ``uvcvideo``);
    ``interface_classes`` are two-digit class codes of the USB interfaces.
    """

    subsystem: str
    device_node: str | None = None
    sys_path: str | None = None
    vendor_id: str | None = None
    product_id: str | None = None
    serial: str | None = None
    product: str | None = None
    manufacturer: str | None = None
    by_id_links: tuple[str, ...] = ()
    port_path: str | None = None
    kernel_driver: str | None = None
    interface_classes: tuple[str, ...] = ()
    interface_num: str | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        for name in ("vendor_id", "product_id"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 4 or any(c not in "0123456789abcdefABCDEF" for c in value):
                    raise ValueError(f"{name} must be 4 hex digits, got {value!r}")
                object.__setattr__(self, name, value.lower())
        object.__setattr__(
            self, "interface_classes", tuple(c.lower() for c in self.interface_classes)
        )

    @property
    def usb_id(self) -> tuple[str | None, str | None]:
        """``(vendor_id, product_id)``; the key unknown devices are logged under."""
        return (self.vendor_id, self.product_id)

    @property
    def where(self) -> str:
        """Where to reach the device now: the device node, or the network address."""
        return self.device_node or self.address or self.sys_path or "?"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceEvent:
    """A device appeared (``add``) or vanished (``remove``) according to an event source."""

    action: Action
    device: DeviceDescription
