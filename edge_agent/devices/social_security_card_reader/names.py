"""Which PC/SC reader is the USB CCID reader udev told us about.

pcscd names readers ``{friendly name} [{interface}] ({serial}) {reader} {slot}``, the
friendly name from the driver bundle's ``Info.plist``. ``match_reader`` picks the reader
whose name fits the udev facts, or raises ``LookupError`` saying why (then the ``reader``
setting pins the name). The naming rules: docs/devices/social-security-card.md.
"""

from __future__ import annotations

import functools
import logging
import plistlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.devices.base import UsbFacts

__all__ = [
    "PCSC_DRIVERS_DIR",
    "ReaderName",
    "expected_bases",
    "friendly_names",
    "match_reader",
    "parse_reader_name",
]

_log = logging.getLogger(__name__)

PCSC_DRIVERS_DIR: Final = Path("/usr/lib/pcsc/drivers")
_NAME: Final = re.compile(
    r"^(?P<head>.*?) (?P<reader>[0-9A-Fa-f]{2}) (?P<slot>[0-9A-Fa-f]{2})$", re.DOTALL
)
_SERIAL: Final = re.compile(r"^(?P<head>.*) \((?P<serial>[^()]*)\)$", re.DOTALL)
_INTERFACE: Final = re.compile(r"^(?P<head>.*) \[(?P<interface>[^\[\]]*)\]$", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderName:
    """One PC/SC reader name, split as pcscd builds it."""

    name: str
    base: str
    interface: str | None
    serial: str | None
    reader: int
    slot: int

    @property
    def reader_key(self) -> str:
        """The name without the slot: every slot of one physical reader shares it."""
        return self.name[: -len(" 00")]


def parse_reader_name(name: str) -> ReaderName | None:
    """Split ``name``; None if it does not end in pcscd's two hex bytes."""
    found = _NAME.match(name)
    if found is None:
        return None
    head = found["head"]
    serial = interface = None
    if (tail := _SERIAL.match(head)) is not None:
        head, serial = tail["head"], tail["serial"]
    if (tail := _INTERFACE.match(head)) is not None:
        head, interface = tail["head"], tail["interface"]
    return ReaderName(
        name=name,
        base=head,
        interface=interface,
        serial=serial,
        reader=int(found["reader"], 16),
        slot=int(found["slot"], 16),
    )


@functools.cache
def _bundles(drivers_dir: Path) -> tuple[tuple[int, int, str], ...]:
    """(vendor, product, friendly name) of every entry of every driver bundle."""
    entries: list[tuple[int, int, str]] = []
    for plist in sorted(drivers_dir.glob("*.bundle/Contents/Info.plist")):
        try:
            data = plistlib.loads(plist.read_bytes())
            vendors, products, names = (
                data["ifdVendorID"],
                data["ifdProductID"],
                data["ifdFriendlyName"],
            )
        except (OSError, plistlib.InvalidFileException, KeyError, ValueError) as exc:
            _log.warning("cannot read PC/SC driver bundle %s: %s", plist, exc)
            continue
        if isinstance(vendors, str):  # a bundle for one reader has plain strings
            vendors, products, names = [vendors], [products], [names]
        for vendor, product, name in zip(vendors, products, names, strict=False):
            try:
                entries.append((int(str(vendor), 16), int(str(product), 16), str(name)))
            except ValueError:
                continue
    return tuple(entries)


def friendly_names(
    vendor_id: str | None, product_id: str | None, *, drivers_dir: Path = PCSC_DRIVERS_DIR
) -> list[str]:
    """The ``ifdFriendlyName``s the installed PC/SC drivers give ``vendor_id:product_id``."""
    if not vendor_id or not product_id:
        return []
    try:
        vendor, product = int(vendor_id, 16), int(product_id, 16)
    except ValueError:
        return []
    return [name for v, p, name in _bundles(drivers_dir) if (v, p) == (vendor, product)]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def expected_bases(usb: UsbFacts, *, drivers_dir: Path = PCSC_DRIVERS_DIR) -> list[str]:
    """Names a reader with these udev facts may have before its ``[interface] (serial)``."""
    bases = friendly_names(usb.vendor_id, usb.product_id, drivers_dir=drivers_dir)
    if usb.manufacturer and usb.product:
        bases.append(f"{usb.manufacturer} {usb.product}")
    if usb.product:
        bases.append(usb.product)
    unique: dict[str, str] = {}
    for base in bases:
        unique.setdefault(_norm(base), base)
    return list(unique.values())


def _fits(reader: ReaderName, usb: UsbFacts, bases: Iterable[str]) -> bool:
    if _norm(reader.base) not in {_norm(base) for base in bases}:
        return False
    if usb.serial and reader.serial is not None and reader.serial != usb.serial:
        return False
    return not (usb.interface and reader.interface and reader.interface != usb.interface)


def match_reader(
    names: Sequence[str], usb: UsbFacts, *, drivers_dir: Path = PCSC_DRIVERS_DIR
) -> str:
    """The first slot of the one reader in ``names`` that is this USB device.

    ``LookupError`` (with what was looked for and what pcscd lists) when none or
    several readers fit.
    """
    bases = expected_bases(usb, drivers_dir=drivers_dir)
    parsed = [r for r in (parse_reader_name(n) for n in names) if r is not None]
    fitting = [r for r in parsed if _fits(r, usb, bases)]
    if usb.serial and any(r.serial == usb.serial for r in fitting):
        fitting = [r for r in fitting if r.serial == usb.serial]
    readers: dict[str, list[ReaderName]] = {}
    for reader in fitting:
        readers.setdefault(reader.reader_key, []).append(reader)
    wanted = f"{usb.vendor_id}:{usb.product_id} named {bases or '(no name known)'}" + (
        f" with serial {usb.serial!r}" if usb.serial else ""
    )
    if not readers:
        raise LookupError(f"no PC/SC reader is the USB reader {wanted}; pcscd lists {list(names)}")
    if len(readers) > 1:
        raise LookupError(
            f"{len(readers)} PC/SC readers fit the USB reader {wanted} ({sorted(readers)}); "
            "set the 'reader' setting to the exact name"
        )
    [slots] = readers.values()
    return min(slots, key=lambda r: r.slot).name
