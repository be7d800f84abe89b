"""``UdevSource``: hot-plug events from udev's netlink monitor, and udev's device list.

pyudev's ``MonitorObserver`` reads the netlink socket in its own thread (Home Assistant's
usb integration does the same); each event is turned into a ``DeviceDescription`` there,
since that may read sysfs, and handed to the event loop with ``call_soon_threadsafe``.
``scan`` enumerates the udev database in a worker thread. Only USB-attached devices are
described: a tty without USB ids (``ttyS0``, virtual consoles) is no device of ours,
hubs are skipped, and of a camera only its capture node is offered.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any, Final

import pyudev  # type: ignore[import-untyped]

from edge_agent.devices.description import DeviceDescription, SourceEvent
from edge_agent.discovery.sources import EventCallback, EventSource

log = logging.getLogger(__name__)

DEFAULT_SUBSYSTEMS: Final = ("tty", "usb", "usbmisc", "video4linux", "hidraw")
_ESCAPE: Final = re.compile(rb"\\x([0-9a-fA-F]{2})")
_HEX4: Final = re.compile(r"^[0-9a-fA-F]{1,4}$")
_HUB_CLASS: Final = "09"


def _decode_enc(value: str) -> str:
    # udev's *_ENC properties escape every unsafe byte as \xNN (UTF-8 bytes).
    raw = _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), value.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "replace").strip()


def _hex4(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text.lower().zfill(4) if _HEX4.match(text) else None


def _attr(device: Any, name: str) -> str | None:
    """A sysfs attribute as text, or None (missing, or the device is already gone)."""
    try:
        text = str(device.attributes.asstring(name)).strip()
    except (KeyError, OSError, UnicodeDecodeError, AttributeError):
        return None
    return text or None


def _usb_parent(device: Any) -> Any:
    if device.subsystem == "usb" and device.device_type == "usb_device":
        return device
    try:
        return device.find_parent("usb", "usb_device")
    except (OSError, ValueError, pyudev.DeviceNotFoundError):
        return None


def _int(value: object) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() else None


def _interface_name(usb_device: Any) -> str | None:
    """The first interface string (iInterface) of a USB device's interfaces, if any.

    pcscd puts it in brackets in a CCID reader's name ("... [CCID Interface] (serial)").
    """
    try:
        children = list(usb_device.children)
    except (OSError, AttributeError):
        return None
    for child in children:
        if getattr(child, "device_type", None) == "usb_interface":
            name = _attr(child, "interface")
            if name:
                return name
    return None


def description_from_udev(device: Any) -> DeviceDescription | None:
    """Describe a pyudev device, or None if it is not a USB device node of interest."""
    props: Mapping[str, str] = dict(device.properties)
    subsystem = str(device.subsystem or "")
    if subsystem == "usb" and device.device_type != "usb_device":
        return None  # interfaces and endpoints; the usb_device carries the facts
    if subsystem == "video4linux":
        capabilities = props.get("ID_V4L_CAPABILITIES")
        if capabilities is not None and ":capture:" not in capabilities:
            return None  # the metadata node of a UVC camera
    interfaces = tuple(c[:2] for c in props.get("ID_USB_INTERFACES", "").split(":") if len(c) >= 2)
    if subsystem == "usb" and interfaces and all(c == _HUB_CLASS for c in interfaces):
        return None
    vendor_id = _hex4(props.get("ID_VENDOR_ID"))
    product_id = _hex4(props.get("ID_MODEL_ID"))
    if vendor_id is None and "PRODUCT" in props:  # kernel's "400/c35a/100" on usb devices
        parts = props["PRODUCT"].split("/")
        if len(parts) >= 2:
            vendor_id, product_id = _hex4(parts[0]), _hex4(parts[1])
    parent = None if device.action == "remove" else _usb_parent(device)
    if vendor_id is None and parent is not None:
        vendor_id, product_id = _hex4(_attr(parent, "idVendor")), _hex4(_attr(parent, "idProduct"))
    if vendor_id is None:
        return None  # not USB: ttyS*, virtual consoles, platform cameras

    def text(enc: str, plain: str, attribute: str) -> str | None:
        if props.get(enc):
            return _decode_enc(props[enc])
        if props.get(plain):
            return props[plain].replace("_", " ")
        return _attr(parent, attribute) if parent is not None else None

    links = tuple(sorted(str(link) for link in device.device_links))
    return DeviceDescription(
        subsystem=subsystem,
        device_node=str(device.device_node) if device.device_node else None,
        sys_path=str(device.sys_path),
        vendor_id=vendor_id,
        product_id=product_id,
        serial=props.get("ID_SERIAL_SHORT") or (_attr(parent, "serial") if parent else None),
        product=text("ID_MODEL_ENC", "ID_MODEL", "product"),
        manufacturer=text("ID_VENDOR_ENC", "ID_VENDOR", "manufacturer"),
        by_id_links=tuple(link for link in links if "/by-id/" in link),
        port_path=props.get("ID_PATH"),
        kernel_driver=props.get("ID_USB_DRIVER") or (str(device.driver) if device.driver else None),
        interface_classes=interfaces,
        interface_num=props.get("ID_USB_INTERFACE_NUM"),
        interface_name=_interface_name(parent) if parent is not None else None,
        bus_number=_int(props.get("BUSNUM")) or (_int(_attr(parent, "busnum")) if parent else None),
        device_number=_int(props.get("DEVNUM"))
        or (_int(_attr(parent, "devnum")) if parent else None),
    )


class UdevSource(EventSource):
    """Device events from udev's netlink monitor; devices present from udev's database."""

    def __init__(
        self,
        *,
        subsystems: tuple[str, ...] = DEFAULT_SUBSYSTEMS,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.subsystems = subsystems
        self.stop_timeout_s = stop_timeout_s
        self._context: Any = None
        self._observer: Any = None

    @property
    def running(self) -> bool:
        """True while the monitor thread is alive."""
        return self._observer is not None and bool(self._observer.is_alive())

    async def start(self, deliver: EventCallback) -> None:
        """Open the netlink monitor and start its observer thread."""
        loop = asyncio.get_running_loop()
        self._context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(self._context)
        for subsystem in self.subsystems:
            monitor.filter_by(subsystem)
        monitor.start()  # bind now, so a netlink error surfaces here and not in the thread

        def on_device(device: Any) -> None:  # runs in the observer thread
            action = str(device.action)
            if action not in ("add", "remove"):
                return
            try:
                description = description_from_udev(device)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cannot describe udev device %s: %s", device.sys_path, exc)
                return
            if description is None:
                return
            event = SourceEvent(action="add" if action == "add" else "remove", device=description)
            try:
                loop.call_soon_threadsafe(deliver, event)
            except RuntimeError:
                log.debug("event loop closed; dropping udev event for %s", device.sys_path)

        self._observer = pyudev.MonitorObserver(monitor, callback=on_device, name="udev-monitor")
        self._observer.start()
        log.info("udev monitor started for %s", ", ".join(self.subsystems))

    async def stop(self) -> None:
        """Stop the observer thread, waiting at most ``stop_timeout_s`` for it."""
        observer, self._observer = self._observer, None
        if observer is None:
            return
        observer.send_stop()
        await asyncio.to_thread(observer.join, self.stop_timeout_s)
        if observer.is_alive():
            log.warning("udev monitor thread did not stop within %.1f s", self.stop_timeout_s)

    async def scan(self) -> list[DeviceDescription]:
        """Describe every matching device in udev's database (in a worker thread)."""
        return await asyncio.to_thread(self._enumerate)

    def _enumerate(self) -> list[DeviceDescription]:
        context = self._context if self._context is not None else pyudev.Context()
        found: list[DeviceDescription] = []
        for subsystem in self.subsystems:
            for device in context.list_devices(subsystem=subsystem):
                try:
                    description = description_from_udev(device)
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("cannot describe udev device %s: %s", device.sys_path, exc)
                    continue
                if description is not None:
                    found.append(description)
        return found
