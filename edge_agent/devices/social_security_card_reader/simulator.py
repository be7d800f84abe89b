"""A virtual social-security card for vsmartcard's ``vpcd`` reader in pcscd.

``vpcd`` is an IFD handler that pcscd loads from reader.conf; it listens on a TCP port
and the virtual card *connects* to it: connected = card inserted, disconnected = card
removed. Every message is a 2-byte big-endian length and data; a 1-byte message is a
control (00 power off, 01 power on, 02 reset, 04 get ATR, answered with the ATR), any
other is a C-APDU answered with an R-APDU. The card answers as
docs/devices/social-security-card.md describes.

    with SocialSecurityCardSimulator(port=vpcd_port) as card:   # card inserted
        ...                                                       # pcscd sees a card
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from edge_agent.devices.social_security_card_reader.apdu import (
    RECORD_SIZE,
    SSSE_AID,
    Record,
    StatusWord,
)
from govedge_wire.pii import make_id_number

__all__ = ["DEFAULT_ATR", "CardLogic", "SocialSecurityCardData", "SocialSecurityCardSimulator"]

_log = logging.getLogger(__name__)

# TS 3B, T0 80 (TD1 follows), TD1 80 (T=0, TD2 follows), TD2 01 (T=1), TCK 01.
DEFAULT_ATR = bytes.fromhex("3B80800101")


@dataclass(frozen=True, slots=True, kw_only=True)
class SocialSecurityCardData:
    """What a fictitious card holds; ``region`` is the 6-digit issuing area code."""

    card_number: str = "A01234567"
    region: str = "330100"
    ssn: str = make_id_number("330106", "19900101", 123)
    name: str = "张三丰"
    has_ssse: bool = True  # False: a bank card without the SSSE application

    def records(self) -> dict[int, dict[int, bytes]]:
        """EF short id → record number → TLV bytes."""
        id_code = bytes.fromhex(self.region + "D156000005") + self.card_number.encode()[:8]
        name = self.name.encode("gbk").ljust(RECORD_SIZE[Record.NAME], b"\x00")

        def tlv(tag: Record, value: bytes) -> bytes:
            return bytes([tag, len(value)]) + value

        return {
            0x05: {
                Record.CARD_ID_CODE: tlv(Record.CARD_ID_CODE, id_code.ljust(16, b"\x00")),
                Record.CARD_NUMBER: tlv(Record.CARD_NUMBER, self.card_number.encode("ascii")),
            },
            0x06: {
                Record.SSN: tlv(Record.SSN, self.ssn.encode("ascii")),
                Record.NAME: tlv(Record.NAME, name),
            },
        }


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class CardLogic:
    """The card's file system and APDU answers, without any socket (usable on its own)."""

    def __init__(self, data: SocialSecurityCardData) -> None:
        self.data = data
        self.files = data.records() if data.has_ssse else {}
        self.in_ssse = False
        self.current_ef: int | None = None

    def reset(self) -> None:
        self.in_ssse = False
        self.current_ef = None

    def answer(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return _sw(StatusWord.WRONG_LENGTH)
        cla, ins, p1, p2 = apdu[:4]
        if cla != 0x00:
            return _sw(StatusWord.CLA_NOT_SUPPORTED)
        if ins == 0xA4:
            return self._select(p1, apdu[5 : 5 + apdu[4]] if len(apdu) > 4 else b"")
        if ins == 0xB2:
            le = apdu[4] if len(apdu) == 5 else 0
            return self._read_record(p1, p2, le)
        return _sw(StatusWord.INS_NOT_SUPPORTED)

    def _select(self, p1: int, data: bytes) -> bytes:
        if p1 == 0x04:
            if self.files and data == SSSE_AID:
                self.in_ssse, self.current_ef = True, None
                return _sw(StatusWord.OK)
            return _sw(StatusWord.FILE_NOT_FOUND)
        if p1 in (0x00, 0x02) and len(data) == 2 and data[0] == 0xEF:
            if self.in_ssse and data[1] in self.files:
                self.current_ef = data[1]
                return _sw(StatusWord.OK)
            return _sw(StatusWord.FILE_NOT_FOUND)
        return _sw(StatusWord.WRONG_P1P2)

    def _read_record(self, record: int, p2: int, le: int) -> bytes:
        if p2 & 0x07 != 0x04:
            return _sw(StatusWord.WRONG_P1P2)
        sfi = p2 >> 3
        ef = self.current_ef if sfi == 0 else sfi
        if not self.in_ssse or ef is None or ef not in self.files:
            return _sw(StatusWord.FILE_NOT_FOUND)
        if sfi:
            self.current_ef = sfi  # reading by SFI also selects the file (ISO 7816-4)
        value = self.files[ef].get(record)
        if value is None:
            return _sw(StatusWord.RECORD_NOT_FOUND)
        if le and le < len(value):
            return bytes([0x6C, len(value)])
        return value + _sw(StatusWord.OK)


class SocialSecurityCardSimulator:
    """A card that is "inserted" while connected to vpcd at ``host:port``."""

    def __init__(
        self,
        data: SocialSecurityCardData | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 35963,
        atr: bytes = DEFAULT_ATR,
        connect_timeout: float = 5.0,
    ) -> None:
        self.data = data or SocialSecurityCardData()
        self.host = host
        self.port = port
        self.atr = atr
        self.connect_timeout = connect_timeout
        self.apdus: list[bytes] = []  # every C-APDU received, in order
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # Set by vpcd's first message: only then is this card the one in the reader.
        # vpcd serves one card at a time and leaves later connections in its listen
        # backlog, so a connected card is not yet necessarily the one pcscd talks to.
        self._attached = threading.Event()
        self._logic = CardLogic(self.data)

    @property
    def inserted(self) -> bool:
        """True while connected to vpcd."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Insert the card: connect to vpcd (retrying until ``connect_timeout``)."""
        if self._thread is not None:
            raise RuntimeError("card already inserted")
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ConnectionError(
                        f"vpcd does not listen on {self.host}:{self.port}: {exc}"
                    ) from exc
                time.sleep(0.05)  # vpcd (in pcscd) may still be starting
        # Blocking reads: ``stop`` shuts the socket down, which ends a waiting ``recv`` at
        # once, so an idle card needs no polling timeout (docs/performance.md).
        sock.settimeout(None)
        self._sock = sock
        self._stop.clear()
        self._attached.clear()
        self._logic = CardLogic(self.data)
        self._thread = threading.Thread(target=self._serve, name="ssc-card-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout: float = 2.0) -> None:
        """Remove the card: disconnect from vpcd; safe to call twice."""
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    insert = start
    remove = stop

    def wait_attached(self, within: float = 10.0) -> None:
        """Block until vpcd talks to this card (its first message), or raise.

        Another card holding vpcd (a simulated agent on the same machine-wide pcscd)
        would otherwise answer in its place.
        """
        if not self._attached.wait(within):
            raise ConnectionError(
                f"vpcd on {self.host}:{self.port} did not talk to this card within "
                f"{within} s: another virtual card holds the reader"
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _recv_exact(self, size: int) -> bytes | None:
        sock = self._sock
        buf = b""
        while len(buf) < size and sock is not None:
            if self._stop.is_set():
                return None
            try:
                chunk = sock.recv(size - len(buf))
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def _send(self, payload: bytes) -> None:
        if self._sock is not None:
            self._sock.sendall(len(payload).to_bytes(2, "big") + payload)

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                header = self._recv_exact(2)
                if header is None:
                    return
                message = self._recv_exact(int.from_bytes(header, "big"))
                if message is None:
                    return
                self._attached.set()
                if len(message) == 1:
                    control = message[0]
                    if control == 0x04:
                        self._send(self.atr)
                    elif control in (0x00, 0x01, 0x02):
                        self._logic.reset()
                    continue
                self.apdus.append(message)
                self._send(self._logic.answer(message))
        except OSError as exc:
            _log.debug("virtual card connection ended: %s", exc)
