"""Driver settings of kind ``id_card_reader``: what its profile (and local config) may set."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, field_validator

from edge_agent.devices.id_card_reader.frame import (
    Command,
)
from edge_agent.devices.settings import DriverSettings, seconds

# The rates of the module's set-baud command 60 ii (ii = index), probed in this order.
BAUD_RATES: Final = (115200, 57600, 38400, 19200, 9600)


class SamReaderSettings(DriverSettings):
    """Settings keys of ``sam_id_reader`` (profile + local config); times in seconds."""

    baudrate: Literal[115200, 57600, 38400, 19200, 9600] = Field(
        default=115200, description="serial speed the SAM module answers at (8N1)"
    )
    baud_probe: bool = Field(
        default=True,
        description="if the module is silent at baudrate after opening, try the other rates "
        "of 60 ii (115200, 57600, 38400, 19200, 9600) and use the one it answers at",
    )
    # short, so that probing all rates stays inside the device manager's 5 s probe
    baud_probe_timeout: float = seconds(0.3, "wait for an answer at each rate tried", most=5.0)
    command_timeout: float = seconds(1.0, "status, SAM id, find, select")
    # 30 01 / 30 10 / 30 03 / 30 05: 1.3 kB at 115200 plus the card's own I/O
    read_timeout: float = seconds(3.0, "reads of text, photo, fingerprint, extra address")
    open_timeout: float = seconds(2.0, "opening the port (or claiming the USB interface)")
    busy_timeout: float = seconds(5.0, "how long a second request waits for the reader")
    find_retries: int = Field(
        default=1, ge=0, le=5, description="extra find attempts when no card is found"
    )
    fingerprint: bool = Field(default=False, description="read_card() uses 30 10 by default")
    extra_address: bool = Field(default=False, description="read_card() also reads 30 03")
    reset_command: str = Field(
        default="10 FF",
        description="CMD PARA of reset() in hex: 10 FF (GA/T 467 modules); some families use 01 FF",
    )

    @field_validator("reset_command", mode="before")
    @classmethod
    def _two_hex_bytes(cls, value: object) -> str:
        """Two bytes in hex, and not another command of the module; normalised to ``10 FF``."""
        hint = 'write it as two hex bytes in quotes, e.g. "10 FF" or "01 FF"'
        if not isinstance(value, str):
            # YAML reads 01 as a number; pydantic reports ValueError (not TypeError) per field
            raise ValueError(f"{value!r} is not a command: {hint}")  # noqa: TRY004
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{value!r} is not hex: {hint}") from None
        if len(raw) != 2:
            raise ValueError(f"{value!r} is {len(raw)} bytes, a command is CMD PARA: {hint}")
        other = next((c for c in Command if c.value == raw and c is not Command.RESET), None)
        if other is not None:
            raise ValueError(f"{value!r} is the module's {other.name} command, not a reset")
        return raw.hex(" ").upper()
