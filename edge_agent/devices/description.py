"""What discovery knows about one device node, independent of where the facts came from.

``UdevSource`` builds these from pyudev devices; tests and the network config build them
directly. Matching and the device manager only ever see this type, so a test-fed event
goes through exactly the code a real hot-plug does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_agent.devices.base import UsbFacts

Action = Literal["add", "remove"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDescription:
    """Facts about one device node; ids are lower-case hex, strings as the device gives them.

    ``subsystem`` is the udev subsystem (``tty``, ``usb``, ``usbmisc``, ``video4linux``,
    ``hidraw``) or ``network`` for a configured network device. ``by_id_links`` are the
    ``/dev/serial/by-id``, ``/dev/v4l/by-id`` … symlinks; ``port_path`` is udev's
    ``ID_PATH`` (the physical port); ``kernel_driver`` is the driver bound to the USB
    interface (``ch341``, ``cp210x``, ``ftdi_sio``, ``usblp``, ``uvcvideo``);
    ``interface_classes`` are two-digit class codes of the USB interfaces;
    ``interface_name`` is the interface string (iInterface) where there is one (pcscd puts
    it in a CCID reader's name); ``bus_number``/``device_number`` are ``busnum``/``devnum``
    of the USB device (what libusb opens it by).
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
    interface_name: str | None = None
    bus_number: int | None = None
    device_number: int | None = None
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

    def usb_facts(self) -> UsbFacts | None:
        """The USB facts a driver may need to find its device (None for non-USB devices)."""
        if self.vendor_id is None:
            return None
        return UsbFacts(
            vendor_id=self.vendor_id,
            product_id=self.product_id,
            manufacturer=self.manufacturer,
            product=self.product,
            serial=self.serial,
            interface=self.interface_name,
            bus=self.bus_number,
            device=self.device_number,
        )

    @property
    def where(self) -> str:
        """Where to reach the device now: the device node, or the network address."""
        return self.device_node or self.address or self.sys_path or "?"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceEvent:
    """A device appeared (``add``) or vanished (``remove``) according to an event source."""

    action: Action
    device: DeviceDescription
