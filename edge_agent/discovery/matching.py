"""Find the profile of a device description, and the device's stable identity.

Every field a rule names must match; among matching rules the most specific one wins,
scored by how many facts it pinned and how exactly (a literal string beats a glob, ids
beat a bare subsystem). A generic USB-serial bridge (CH340, CP210x, FTDI, PL2303) never
matches on its ids alone. The identity comes from the serial number, then the
``by-id`` link, then the physical port, never from ``/dev/ttyUSBn``, which changes with
plug order. Devices no profile wants are ignored and logged once per ``(vid, pid)``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Final

from edge_agent.devices.description import DeviceDescription
from edge_agent.profiles import Profile, ProfileSet, UsbRule, is_generic_bridge

log = logging.getLogger(__name__)

MAX_DEVICE_ID: Final = 128
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.:-]+")
_GLOB_CHARS: Final = frozenset("*?[")
# Specificity weights; a string pinned literally says more than a glob.
SCORE_SUBSYSTEM: Final = 1
SCORE_VENDOR: Final = 3
SCORE_PRODUCT_ID: Final = 3
SCORE_INTERFACE_CLASS: Final = 2
SCORE_KERNEL_DRIVER: Final = 1
SCORE_LITERAL: Final = 4
SCORE_GLOB: Final = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileMatch:
    """The winning profile for a device, which of its rules matched, and the device id."""

    profile: Profile
    rule_index: int
    score: int
    device_id: str


def _pattern_score(patterns: tuple[str, ...], value: str | None) -> int | None:
    """The score of the best pattern matching ``value``; None if none does (0 if no rule)."""
    if not patterns:
        return 0
    if value is None:
        return None
    folded = value.casefold()
    best: int | None = None
    for pattern in patterns:
        if fnmatch.fnmatchcase(folded, pattern.casefold()):
            score = SCORE_GLOB if _GLOB_CHARS & set(pattern) else SCORE_LITERAL
            best = max(best or 0, score)
    return best


def rule_score(rule: UsbRule, device: DeviceDescription) -> int | None:
    """How specifically ``rule`` matches ``device``; None if any field it names differs."""
    if rule.subsystem != device.subsystem:
        return None
    score = SCORE_SUBSYSTEM
    for wanted, actual, weight in (
        (rule.vendor_id, device.vendor_id, SCORE_VENDOR),
        (rule.product_id, device.product_id, SCORE_PRODUCT_ID),
        (rule.kernel_driver, device.kernel_driver, SCORE_KERNEL_DRIVER),
    ):
        if wanted is not None:
            if wanted != actual:
                return None
            score += weight
    if rule.interface_class is not None:
        if rule.interface_class not in device.interface_classes:
            return None
        score += SCORE_INTERFACE_CLASS
    strings = 0
    for patterns, value in (
        (rule.product, device.product),
        (rule.manufacturer, device.manufacturer),
        (rule.serial, device.serial),
        (rule.port_path, device.port_path),
    ):
        part = _pattern_score(patterns, value)
        if part is None:
            return None
        strings += part
    if strings == 0 and is_generic_bridge(device.vendor_id, device.product_id):
        return None  # a bridge chip's ids say nothing about what is behind it
    return score + strings


def stable_identity(device: DeviceDescription) -> str | None:
    """A name for the device that survives replugging and reboots, or None if there is none.

    Serial number (with the USB ids and interface number, since one serial can have
    several ports), else the ``by-id`` link name, else the physical port path.
    """
    if device.serial:
        ids = f"{device.vendor_id or ''}{device.product_id or ''}"
        suffix = f"-if{device.interface_num}" if device.interface_num else ""
        return f"sn-{ids}-{device.serial}{suffix}"
    by_id = sorted(link for link in device.by_id_links if "/by-id/" in link)
    if by_id:
        return f"byid-{by_id[0].rsplit('/', 1)[-1]}"
    if device.port_path:
        return f"port-{device.port_path}"
    return None


def make_device_id(profile_id: str, identity: str) -> str:
    """``{profile_id}.{identity}``, made safe for topics and logs and at most 128 chars."""
    text = _UNSAFE.sub("_", f"{profile_id}.{identity}")
    if len(text) <= MAX_DEVICE_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{text[: MAX_DEVICE_ID - 13]}~{digest}"


class Matcher:
    """Matches descriptions against one ``ProfileSet``; remembers what it already logged."""

    def __init__(self, profiles: ProfileSet) -> None:
        self.profiles = profiles
        self._logged_unknown: set[tuple[str | None, str | None]] = set()
        self._logged_other: set[tuple[str, ...]] = set()

    def best(self, device: DeviceDescription) -> tuple[Profile, int, int] | None:
        """``(profile, rule_index, score)`` of the most specific matching rule, or None."""
        candidates: list[tuple[int, str, int, Profile]] = []
        for profile in self.profiles:
            for index, rule in enumerate(profile.match):
                if rule.usb is None:
                    continue
                score = rule_score(rule.usb, device)
                if score is not None:
                    candidates.append((score, profile.id, index, profile))
        if not candidates:
            return None
        # Highest score first; ties broken by profile id so the choice never flips.
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        top = candidates[0]
        rivals = sorted({c[1] for c in candidates if c[0] == top[0]})
        if len(rivals) > 1 and self._first(("tie", *rivals)):
            log.warning(
                "device %s:%s matches profiles %s equally well; using %s",
                device.vendor_id,
                device.product_id,
                ", ".join(rivals),
                top[1],
            )
        return top[3], top[2], top[0]

    def match(self, device: DeviceDescription) -> ProfileMatch | None:
        """The profile and device id for ``device``; None (logged once) if it is not ours."""
        found = self.best(device)
        if found is None:
            key = device.usb_id
            if key not in self._logged_unknown:
                self._logged_unknown.add(key)
                log.info(
                    "ignoring unknown %s device %s:%s (no profile matches)",
                    device.subsystem,
                    device.vendor_id,
                    device.product_id,
                )
            return None
        profile, index, score = found
        identity = stable_identity(device)
        if identity is None:
            if self._first(("noid", profile.id, device.vendor_id or "", device.product_id or "")):
                log.warning(
                    "device %s:%s matches profile %s but has no serial, by-id link or port "
                    "path to name it by; ignored",
                    device.vendor_id,
                    device.product_id,
                    profile.id,
                )
            return None
        return ProfileMatch(
            profile=profile,
            rule_index=index,
            score=score,
            device_id=make_device_id(profile.id, identity),
        )

    def _first(self, key: tuple[str, ...]) -> bool:
        if key in self._logged_other:
            return False
        self._logged_other.add(key)
        return True
