"""Devices a technician retired: the agent never uses them again, even if plugged back.

A technician replacing a broken printer or reader retires the old one by its serial
number or device id (``edge-agent device retire``). The list lives in
``DATA_DIR/retired-devices.json`` (written to a temporary file, fsynced and renamed, so
a crash leaves the old list or the new one), survives restarts and reinstalls of the
same data dir, and travels in every birth so the fleet drops the device from the
outlet's record and closes its alerts. It is bounded: the oldest entries go first, and
by then the fleet has long forgotten those devices.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

__all__ = [
    "MAX_RETIRED", "RETIRED_FILE", "Retired", "RetiredDevices", "RetiredFileError",
    "read_list_file", "write_list_file",
]  # fmt: skip

RETIRED_FILE: Final = "retired-devices.json"
# The birth carries every retired device id; the wire allows 64.
MAX_RETIRED: Final = 64
# A serial or device id as udev and the profiles make them: printable, no spaces.
_KEY: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")


class RetiredFileError(ValueError):
    """The retired-devices file or a key given for it is not acceptable."""


@dataclass(frozen=True, slots=True)
class Retired:
    """One retirement: what the technician named and the device ids it matched."""

    key: str
    device_ids: tuple[str, ...]
    at: str

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "device_ids": list(self.device_ids), "at": self.at}


def check_key(key: str) -> str:
    """``key`` if it can be a serial number or a device id; ``RetiredFileError`` if not."""
    if not _KEY.match(key):
        raise RetiredFileError(
            f"{key!r} is not a serial number or device id (letters, digits, _.:@+-)"
        )
    return key


@dataclass
class RetiredDevices:
    """The retired list of one data dir; ``matches`` asks about a device."""

    path: Path
    entries: list[Retired] = field(default_factory=list)
    # Set when the file could not be read: nothing may overwrite it until it is fixed.
    broken: str | None = None

    @classmethod
    def load_or_broken(cls, data_dir: Path) -> RetiredDevices:
        """Like ``load``, but an unreadable file gives an empty list that refuses changes."""
        try:
            return cls.load(data_dir)
        except RetiredFileError as exc:
            return cls(data_dir / RETIRED_FILE, broken=str(exc))

    @classmethod
    def load(cls, data_dir: Path) -> RetiredDevices:
        """The list in ``data_dir`` (empty when there is none yet)."""
        path = data_dir / RETIRED_FILE
        raw = read_list_file(path)
        if raw is None:
            return cls(path)
        try:
            entries = [
                Retired(
                    key=check_key(str(item["key"])),
                    device_ids=tuple(str(d) for d in item["device_ids"]),
                    at=str(item["at"]),
                )
                for item in raw["retired"]
            ]
        except (KeyError, TypeError) as exc:
            raise RetiredFileError(f"{path}: not a retired-devices list ({exc})") from exc
        return cls(path, entries)

    def matches(self, *, device_id: str, serial: str | None) -> bool:
        """Whether a device with this id (and serial, if known) is retired."""
        for entry in self.entries:
            if device_id in entry.device_ids or entry.key in (device_id, serial):
                return True
        return False

    def entry(self, key: str) -> Retired | None:
        """The retirement of ``key``, if it was retired already."""
        return next((entry for entry in self.entries if entry.key == key), None)

    def device_ids(self) -> list[str]:
        """Every retired device id, for the birth (oldest first)."""
        ids: list[str] = []
        for entry in self.entries:
            ids.extend(d for d in entry.device_ids if d not in ids)
        return ids[-MAX_RETIRED:]

    def add(self, key: str, device_ids: list[str]) -> bool:
        """Record a retirement and save; False if ``key`` was retired already."""
        check_key(key)
        if self.broken is not None:
            raise RetiredFileError(f"{self.broken}: fix or remove it first")
        if any(entry.key == key for entry in self.entries):
            return False
        at = datetime.now(UTC).isoformat(timespec="seconds")
        self.entries.append(Retired(key=key, device_ids=tuple(device_ids), at=at))
        self.entries = self.entries[-MAX_RETIRED:]
        self._save()
        return True

    def remove(self, key: str) -> bool:
        """Take ``key`` off the list (a device retired by mistake); False if absent."""
        if self.broken is not None:
            raise RetiredFileError(f"{self.broken}: fix or remove it first")
        kept = [entry for entry in self.entries if entry.key != key]
        if len(kept) == len(self.entries):
            return False
        self.entries = kept
        self._save()
        return True

    def _save(self) -> None:
        write_list_file(self.path, {"retired": [entry.as_json() for entry in self.entries]})


def read_list_file(path: Path) -> Any:
    """The JSON in ``path``; None when there is no file yet; ``RetiredFileError`` when it
    cannot be read (the retired and the registered devices' files)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RetiredFileError(f"{path}: unreadable ({exc})") from exc


def write_list_file(path: Path, data: object) -> None:
    """``data`` as JSON in ``path``, atomically and durably.

    Its own few lines of atomic write: the helpers in updates/ and fleet_config/ import
    the device manager, which imports this.
    """
    tmp = path.with_name(f".{path.name}.new")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(json.dumps(data, indent=2) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
