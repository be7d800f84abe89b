"""A SAM_A ID-card reader on a pseudo-terminal, speaking the module's exact bytes.

The driver opens ``device_path`` (the pty slave) as if it were ``/dev/ttyUSB0``. A
thread serves the master side: it decodes request frames with the driver's own codec,
keeps the card state (no card → find 80, unselected → read 41, optionally no second
find until the card is lifted) and answers as docs/devices/id-card-reader.md describes.
Tests and the demo steer it: ``place_card``, ``remove_card`` and one-shot faults (noise,
bad checksum, truncation, silence, unplug); ``baudrate``, ``link`` and ``reset_command``
make it a module at another speed, behind a by-id style link, or of another family.

    with IdCardSimulator() as sim:
        sim.place_card(make_card(CardType.RESIDENT))
        driver = SamIdReader(DeviceIdentity(..., address=sim.device_path))
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import os
import select
import termios
import threading
import tty
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from edge_agent.devices.id_card_reader.frame import (
    Command,
    FrameChecksumError,
    FrameDecoder,
    FrameLengthError,
    Sw3,
    encode_response,
    parse_request,
)
from edge_agent.devices.id_card_reader.text import (
    IdCard,
    encode_extra_addresses,
    encode_text_block,
)

__all__ = ["BAUD_RATES", "Fault", "IdCardSimulator"]

_log = logging.getLogger(__name__)

BAUD_RATES = (115200, 57600, 38400, 19200, 9600)  # index ii of command 60 ii
DEFAULT_SAM_ID = bytes.fromhex("05000100a4b732014e61bc00d2029649")  # 05.01-20101028-…
_SPEEDS = {getattr(termios, f"B{rate}"): rate for rate in BAUD_RATES}


class Fault(enum.Enum):
    """One-shot misbehaviour applied to the next response (optionally of one command)."""

    GARBAGE = "garbage"  # noise bytes before the response
    BAD_CHECKSUM = "bad_checksum"  # last byte flipped
    BAD_LENGTH = "bad_length"  # length field claims far more than the maximum
    TRUNCATE = "truncate"  # only the first bytes are sent, then nothing
    HANG = "hang"  # no answer at all, and none to later requests until resume()
    UNPLUG = "unplug"  # the pty master closes: the port vanishes
    # the request arrived corrupted: not executed, answered SW3 10 (checksum error)
    REQUEST_CORRUPTED = "request_corrupted"


@dataclass(slots=True)
class _Pending:
    fault: Fault
    command: bytes | None
    data: bytes


class IdCardSimulator:
    """A SAM_A reader module behind a pseudo-terminal; thread-safe control methods.

    ``strict`` answers SW3 10/11 to bad request checksums/lengths (a real module does);
    with ``strict=False`` a bad checksum is served anyway, as some hosts need.
    ``baudrate`` is the module's speed (``60 ii`` changes it): requests sent while the
    host's end of the pty is set to another speed are ignored, as a module's UART
    would read them as garbage. ``link`` makes the simulator appear at a fixed path, a
    symlink to its pty (as udev's ``/dev/serial/by-id/…`` links are): a second simulator
    started with the same ``link`` after the first was unplugged is the same reader
    plugged back in.
    ``refuse_find_after_read`` makes find answer 80 after a read until the card is
    lifted (``remove_card``) and placed again. ``reset_command`` is the module family's
    reset (``10 FF``, or ``01 FF``); the other one is an unknown command (21).
    """

    def __init__(
        self,
        *,
        strict: bool = True,
        refuse_find_after_read: bool = False,
        sam_id: bytes = DEFAULT_SAM_ID,
        self_test_ok: bool = True,
        reset_command: bytes = Command.RESET.value,
        link: str | os.PathLike[str] | None = None,
        baudrate: int = BAUD_RATES[0],
    ) -> None:
        if baudrate not in BAUD_RATES:
            raise ValueError(f"baudrate must be one of {BAUD_RATES}")
        if len(sam_id) != 16:
            raise ValueError("sam_id must be 16 bytes")
        self.reset_command = reset_command  # 10 FF; 01 FF in some module families
        self.strict = strict
        self.refuse_find_after_read = refuse_find_after_read
        self.sam_id = sam_id
        self.self_test_ok = self_test_ok
        self.baudrate = baudrate  # the module's own speed; 60 ii changes it
        self.ignored_bytes = 0  # bytes that arrived while the line ran at another speed
        self.max_rf_frame: int | None = None
        self.requests: list[bytes] = []  # CMD PARA of every request served, in order
        self._lock = threading.Lock()
        self._card: IdCard | None = None
        self._found = False
        self._selected = False
        self._read_done = False
        self._hanging = False
        self._faults: list[_Pending] = []
        self._master: int | None = None
        self._slave: int | None = None
        self._device_path: str | None = None
        self._link = os.fspath(link) if link is not None else None
        self._link_made = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._unplugged = threading.Event()
        # The serving thread waits in select() on the pty and this pipe: stop/unplug
        # write to it, so an idle simulator needs no polling timeout (docs/performance.md).
        self._wake_r: int | None = None
        self._wake_w: int | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def device_path(self) -> str:
        """The path the driver opens: ``link`` if given, else the pty slave (``/dev/pts/7``)."""
        if self._device_path is None:
            raise RuntimeError("simulator not started")
        return self._link or self._device_path

    @property
    def pty_path(self) -> str:
        """The pty slave itself (``device_path`` is the ``link`` when there is one)."""
        if self._device_path is None:
            raise RuntimeError("simulator not started")
        return self._device_path

    def start(self) -> Self:
        """Open the pseudo-terminal and start serving; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or newline translation before the driver opens it
        self._master, self._slave = master, slave
        self._wake_r, self._wake_w = os.pipe()
        self._device_path = os.ttyname(slave)
        if self._link is not None:  # like udev's /dev/serial/by-id link: re-pointed atomically
            temporary = f"{self._link}.{os.getpid()}.new"
            os.symlink(self._device_path, temporary)
            os.replace(temporary, self._link)
            self._link_made = True
        self._thread = threading.Thread(target=self._serve, name="id-card-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout: float = 2.0) -> None:
        """Stop serving and close the pseudo-terminal; safe to call twice."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close_fds()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ control

    def place_card(self, card: IdCard) -> None:
        """Put ``card`` on the reader (replacing any card there)."""
        with self._lock:
            self._card = card
            self._found = self._selected = self._read_done = False

    def remove_card(self) -> None:
        """Lift the card off the reader."""
        with self._lock:
            self._card = None
            self._found = self._selected = self._read_done = False

    def inject(self, fault: Fault, *, on: Command | None = None, data: bytes = b"") -> None:
        """Apply ``fault`` once, to the next response (to command ``on`` if given).

        ``data`` is the noise for ``GARBAGE``; for ``TRUNCATE`` its length (default 20)
        is how many bytes of the response get through.
        """
        with self._lock:
            self._faults.append(_Pending(fault, bytes(on) if on else None, data))

    def resume(self) -> None:
        """Answer again after a ``HANG``."""
        with self._lock:
            self._hanging = False

    def unplug(self) -> None:
        """Close the master side now, so the driver's port vanishes."""
        self._unplugged.set()
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
            self._thread = None
        self._close_fds()

    # ------------------------------------------------------------ serving

    def _wake(self) -> None:
        """Wake the serving thread out of select() (it then sees the stop flag)."""
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _close_fds(self) -> None:
        if self._link_made and self._link is not None:
            # udev removes the by-id link with the device, unless it points elsewhere now
            self._link_made = False
            with contextlib.suppress(OSError):
                if os.readlink(self._link) == self._device_path:
                    os.unlink(self._link)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = self._wake_r = self._wake_w = None

    def _serve(self) -> None:
        decoder = FrameDecoder(max_body=64, verify=self.strict)
        master, wake = self._master, self._wake_r
        # Both set by start() before the thread runs.
        assert master is not None
        assert wake is not None
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([master, wake], [], [])
            except (OSError, ValueError):
                return  # the fds were closed under us (stop/unplug)
            if master not in ready:
                continue  # woken by stop/unplug: the loop condition ends it
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return  # the fds were closed under us (stop/unplug)
            if not self._line_matches():
                self.ignored_bytes += len(chunk)  # a UART at another speed reads garbage
                decoder.clear()
                continue
            decoder.feed(chunk)
            while not self._stop.is_set():
                try:
                    frame = decoder.next_frame()
                except FrameLengthError as exc:
                    _log.debug("simulator rejected a request frame: %s", exc)
                    self._send(master, None, encode_response(Sw3.BAD_LENGTH))
                    decoder.clear()
                    continue
                except FrameChecksumError as exc:  # only raised in strict mode
                    _log.debug("simulator rejected a request frame: %s", exc)
                    self._send(master, None, encode_response(Sw3.BAD_CHECKSUM))
                    decoder.clear()
                    continue
                if frame is None:
                    break
                self._handle(master, frame)

    def _line_matches(self) -> bool:
        """Whether the host's side of the pty runs at the module's speed.

        The kernel does not enforce a pty's speed, but it keeps the one the host set
        (termios, shared by both sides): a module at another speed would see garbage
        and answer nothing, so bytes sent at a different speed are ignored.
        """
        slave = self._slave
        if slave is None:
            return True
        try:
            speed = termios.tcgetattr(slave)[5]  # ospeed, as set by pyserial
        except (OSError, termios.error):
            return True
        return _SPEEDS.get(speed, self.baudrate) == self.baudrate

    def _handle(self, master: int, frame: bytes) -> None:
        request = parse_request(frame, verify=False)  # the decoder already checked
        with self._lock:
            self.requests.append(request.command)
            corrupted = next(
                (
                    p
                    for p in self._faults
                    if p.fault is Fault.REQUEST_CORRUPTED
                    and (p.command is None or p.command == request.command)
                ),
                None,
            )
            if corrupted is not None:
                self._faults.remove(corrupted)
                response = encode_response(Sw3.BAD_CHECKSUM)
            else:
                response = self._respond(request.command, request.data)
        self._send(master, request.command, response)

    def _send(self, master: int, command: bytes | None, response: bytes) -> None:
        with self._lock:
            if self._hanging:
                return
            pending = next(
                (
                    p
                    for p in self._faults
                    if p.fault is not Fault.REQUEST_CORRUPTED
                    and (p.command is None or p.command == command)
                ),
                None,
            )
            if pending is not None:
                self._faults.remove(pending)
        if pending is not None:
            fault = pending.fault
            if fault is Fault.HANG:
                with self._lock:
                    self._hanging = True
                return
            if fault is Fault.UNPLUG:
                self._unplugged.set()
                self._stop.set()
                self._close_fds()
                return
            if fault is Fault.GARBAGE:
                response = (pending.data or bytes.fromhex("00AA9669FF13AAAA37")) + response
            elif fault is Fault.BAD_CHECKSUM:
                response = response[:-1] + bytes([response[-1] ^ 0x5A])
            elif fault is Fault.BAD_LENGTH:
                response = response[:5] + b"\xff\xf0" + response[7:]
            elif fault is Fault.TRUNCATE:
                response = response[: len(pending.data) or 20]
        self._deliver(master, response)

    def _deliver(self, master: int, response: bytes) -> None:
        """Put a response on the wire (the USB variant overrides this)."""
        try:
            os.write(master, response)
        except OSError:
            _log.debug("simulator could not write its response (port closed)")

    def _respond(self, command: bytes, data: bytes) -> bytes:
        if not self.self_test_ok and command != Command.STATUS.value:
            return encode_response(Sw3.SELF_TEST_FAILED)
        if command == self.reset_command:
            self._found = self._selected = False
            return encode_response(Sw3.OK)
        match command:
            case Command.STATUS.value:
                return encode_response(Sw3.OK if self.self_test_ok else Sw3.SELF_TEST_FAILED)
            case Command.SAM_ID.value:
                return encode_response(Sw3.OK, self.sam_id)
            case Command.FIND.value:
                if self._card is None or (self.refuse_find_after_read and self._read_done):
                    return encode_response(Sw3.FIND_FAILED)
                self._found = True
                return encode_response(Sw3.FOUND, bytes(4))
            case Command.SELECT.value:
                if not self._found or self._card is None:
                    return encode_response(Sw3.SELECT_FAILED)
                self._selected = True
                return encode_response(Sw3.OK, bytes(8))
            case Command.READ_TEXT_PHOTO.value | Command.READ_WITH_FINGERPRINT.value:
                return self._read(with_fingerprint=command == Command.READ_WITH_FINGERPRINT.value)
            case Command.READ_EXTRA_ADDRESS.value:
                if not self._selected or self._card is None:
                    return encode_response(Sw3.READ_FAILED)
                extra = encode_extra_addresses(self._card.extra_addresses)
                return encode_response(Sw3.OK, extra) if extra else encode_response(Sw3.NO_CONTENT)
            case Command.READ_MANAGEMENT.value:
                if not self._selected or self._card is None:
                    return encode_response(Sw3.READ_FAILED)
                return encode_response(Sw3.OK, hashlib.sha256(self._card.photo).digest()[:28])
        if command[:1] == b"\x60" and command[1] < len(BAUD_RATES) and not data:
            self.baudrate = BAUD_RATES[command[1]]
            return encode_response(Sw3.OK)
        if command == b"\x61\xff" and len(data) == 1:
            self.max_rf_frame = data[0]
            return encode_response(Sw3.OK)
        return encode_response(Sw3.BAD_COMMAND)

    def _read(self, *, with_fingerprint: bool) -> bytes:
        card = self._card
        if not self._selected or card is None:
            return encode_response(Sw3.READ_FAILED)
        self._read_done = True
        text = encode_text_block(card)
        photo = card.photo.ljust(1024, b"\x00")[:1024]
        if not with_fingerprint:
            return encode_response(Sw3.OK, b"\x01\x00\x04\x00" + text + photo)
        prints = card.fingerprint or b""
        header = b"\x01\x00\x04\x00" + len(prints).to_bytes(2, "big")
        return encode_response(Sw3.OK, header + text + photo + prints)

    @property
    def unplugged(self) -> bool:
        """True once the port was unplugged."""
        return self._unplugged.is_set()
