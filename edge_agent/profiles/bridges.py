"""USB ids of generic USB-serial bridge chips, shared by thousands of unrelated products.

A profile rule with one of these ids must also pin a product, manufacturer, serial or
port string; matching never accepts such a device on its ids alone (a CH340 cable is as
likely to be a barcode scanner as an ID-card reader).
"""

from __future__ import annotations

from typing import Final

GENERIC_USB_SERIAL_BRIDGES: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("1a86", "7523"),  # WCH CH340/CH341
        ("1a86", "5523"),  # WCH CH341 (serial mode)
        ("1a86", "55d4"),  # WCH CH9102
        ("1a86", "55d3"),  # WCH CH343
        ("10c4", "ea60"),  # Silicon Labs CP210x
        ("10c4", "ea70"),  # Silicon Labs CP2105
        ("10c4", "ea71"),  # Silicon Labs CP2108
        ("0403", "6001"),  # FTDI FT232R
        ("0403", "6010"),  # FTDI FT2232
        ("0403", "6011"),  # FTDI FT4232
        ("0403", "6014"),  # FTDI FT232H
        ("0403", "6015"),  # FTDI FT-X
        ("067b", "2303"),  # Prolific PL2303
        ("067b", "23a3"),  # Prolific PL2303GC
    }
)
# Vendors that sell nothing but bridge chips: a rule naming only one of these vendor ids
# (no product id) is as generic as the ids above.
GENERIC_BRIDGE_VENDORS: Final[frozenset[str]] = frozenset({"1a86", "0403", "067b"})


def is_generic_bridge(vendor_id: str | None, product_id: str | None) -> bool:
    """True if ``vendor_id:product_id`` (lower-case hex) belongs to a generic bridge."""
    if vendor_id is None:
        return False
    if product_id is None:
        return vendor_id in GENERIC_BRIDGE_VENDORS
    return (vendor_id, product_id) in GENERIC_USB_SERIAL_BRIDGES
