"""Network devices a technician registered: the replacement for a retired one.

A USB replacement registers itself when plugged in (udev). A network device (a ticket
printer on the LAN, a queue screen, an evaluation pad) is found only where it is told
to look: the agent's ``[[devices]]`` settings, or this list in
``DATA_DIR/registered-devices.json``, which ``edge-agent device register`` (and the
``replace_device`` playbook) adds to while the agent runs. The agent starts the device
at once and again at every start; the list is written to a temporary file, fsynced and
renamed, like the retired list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from edge_agent.devices.network_config import NetworkDeviceConfig
from edge_agent.discovery.retired import (
    RetiredFileError,
    check_key,
    read_list_file,
    write_list_file,
)

__all__ = ["MAX_REGISTERED", "REGISTERED_FILE", "RegisteredDevices", "RegistrationRefused"]

REGISTERED_FILE: Final = "registered-devices.json"
MAX_REGISTERED: Final = 64


class RegistrationRefused(ValueError):
    """A registration that cannot be taken (bad value, id in use, list full); nothing
    changed."""


def _entry(config: NetworkDeviceConfig) -> dict[str, str | None]:
    return {
        "profile": config.profile,
        "address": config.address,
        "device_id": config.device_id,
        "serial": config.serial,
    }


def check_config(config: NetworkDeviceConfig) -> NetworkDeviceConfig:
    """``config`` if its id, serial and address can be stored; ``RegistrationRefused`` if
    not."""
    try:
        check_key(config.device_id)
        if config.serial is not None:
            check_key(config.serial)
    except RetiredFileError as exc:
        raise RegistrationRefused(str(exc)) from None
    address = config.address
    if len(address) > 256 or any(c.isspace() or c in "\"'\\" for c in address):
        raise RegistrationRefused(f"{address!r} is not a device address (host or host:port)")
    return config


@dataclass
class RegisteredDevices:
    """The registered network devices of one data dir."""

    path: Path
    entries: list[NetworkDeviceConfig] = field(default_factory=list)

    @classmethod
    def load(cls, data_dir: Path) -> RegisteredDevices:
        """The list in ``data_dir`` (empty when there is none yet)."""
        path = data_dir / REGISTERED_FILE
        raw = read_list_file(path)
        if raw is None:
            return cls(path)
        try:
            entries = [
                check_config(NetworkDeviceConfig.from_mapping(item)) for item in raw["registered"]
            ]
        except (KeyError, TypeError, ValueError) as exc:  # RegistrationRefused included
            raise RetiredFileError(f"{path}: not a registered-devices list ({exc})") from exc
        return cls(path, entries)

    def add(self, config: NetworkDeviceConfig) -> bool:
        """Record ``config`` and save; False if it is registered already, just so.
        ``RegistrationRefused`` when its device id is registered with other values."""
        check_config(config)
        for entry in self.entries:
            if entry.device_id == config.device_id:
                if _entry(entry) == _entry(config):
                    return False
                raise RegistrationRefused(
                    f"device id {config.device_id!r} is registered already as {_entry(entry)}"
                )
        if len(self.entries) >= MAX_REGISTERED:
            raise RegistrationRefused(f"{MAX_REGISTERED} network devices are registered already")
        self.entries.append(config)
        self._save()
        return True

    def _save(self) -> None:
        write_list_file(self.path, {"registered": [_entry(e) for e in self.entries]})
