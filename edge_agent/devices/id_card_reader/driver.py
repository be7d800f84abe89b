"""Driver of SAM_A resident-ID-card readers (GA/T 467), serial or USB bulk (0400:C35A).

Operations follow the module's normal cycle (docs/devices/id-card-reader.md): status
and SAM id for the probe; find → select → read for a card. SW3 codes become the device
error tree: no card is ``DeviceRefused(code="no_card")``, silence ``DeviceTimeout``, a
bad frame or bad card data ``ProtocolError``, a vanished port ``DeviceUnavailable``
(the next operation opens the same address again, so a reader plugged back in just
works). A corrupted frame gets the command sent once more; a module silent since the
port opened gets the other baud rates tried. Events and logs carry masked data only;
the photo stays undecoded WLT. Over 400 lines as one thing: the command cycle, resends,
baud-rate hunt and reconnect all share one link and its lock; codecs live in frame.py,
text.py and the transports, settings in settings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from edge_agent.devices.base import (
    DeviceBusy,
    DeviceError,
    DeviceIdentity,
    DeviceRefused,
    DeviceTimeout,
    DeviceUnavailable,
    Driver,
    EventSink,
    Health,
    ProbeResult,
    ProtocolError,
)
from edge_agent.devices.id_card_reader.frame import (
    Command,
    FrameChecksumError,
    FrameLengthError,
    Response,
    SamStatusError,
    Sw3,
    encode_request,
)
from edge_agent.devices.id_card_reader.settings import BAUD_RATES, SamReaderSettings
from edge_agent.devices.id_card_reader.text import (
    EXTRA_ADDRESS_SEPARATOR,
    TEXT_BLOCK_SIZE,
    IdCard,
    decode_extra_addresses,
    parse_text_block,
)
from edge_agent.devices.id_card_reader.transport import SamTransport
from edge_agent.devices.id_card_reader.usb import UsbSamTransport, is_usb_address
from edge_agent.devices.registry import register_driver
from edge_agent.devices.settings import DriverSettings

__all__ = ["SamIdReader", "format_sam_id"]

_log = logging.getLogger(__name__)

PHOTO_SIZE = 1024
_RESENDS = 1  # a command whose answer (or request) was corrupted is sent once more
_REFUSALS: dict[int, tuple[str, str]] = {
    Sw3.FIND_FAILED: ("no_card", "place the ID card on the reader"),
    Sw3.SELECT_FAILED: ("select_failed", "lift the card and place it flat on the reader again"),
    Sw3.READ_FAILED: ("read_failed", "keep the card still on the reader and try again"),
    Sw3.UNKNOWN_CARD_TYPE: ("unknown_card", "this card cannot be read here; is it an ID card?"),
    Sw3.CARD_AUTH_SAM_FAILED: ("card_auth_failed", "try again; if it repeats, check the card"),
    Sw3.SAM_AUTH_CARD_FAILED: ("card_auth_failed", "try again; if it repeats, check the card"),
    Sw3.VERIFY_FAILED: ("card_auth_failed", "try again; if it repeats, check the card"),
}


def format_sam_id(raw: bytes) -> str:
    """16 bytes → ``05.01-20101028-0012345678-1234567890`` (u16, u16, u32, u32, u32 LE)."""
    if len(raw) != 16:
        raise FrameLengthError(f"SAM id is {len(raw)} bytes, expected 16")
    a, b, c, d, e = struct.unpack("<HHIII", raw)
    return f"{a:02d}.{b:02d}-{c:08d}-{d:010d}-{e:010d}"


@register_driver("sam_id_reader")
class SamIdReader(Driver):
    """One SAM_A reader on ``identity.address``.

    A serial device path (USB-serial bridge, pseudo-terminal) uses ``SamTransport``;
    ``/dev/bus/usb/BBB/DDD`` (the 0400:C35A module from udev) or ``sim-usb:NAME`` uses
    ``UsbSamTransport`` over bulk endpoints 02/06 → 81/85. Same frames, same driver.
    """

    kind: ClassVar[str] = "id_card_reader"
    settings_model: ClassVar[type[DriverSettings]] = SamReaderSettings
    config: SamReaderSettings

    def __init__(
        self,
        identity: DeviceIdentity,
        *,
        settings: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(identity, settings=settings, on_event=on_event)
        self._link: SamTransport | UsbSamTransport
        if is_usb_address(identity.address):  # the 0400:C35A module: bulk endpoints
            self._link = UsbSamTransport(
                identity.address, usb=identity.usb, device_id=identity.device_id
            )
        else:
            self._link = SamTransport(
                identity.address, baudrate=self.config.baudrate, device_id=identity.device_id
            )
        self._lock = asyncio.Lock()
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "reads_ok",
                "reads_failed",
                "no_card",
                "timeouts",
                "protocol_errors",
                "unavailable",
                "resends",
                "reopens",
                "baud_changes",
            ),
            0,
        )
        self._last_sam_status = "unknown"
        self._sam_id: str | None = None
        self._unplug_reported = False
        self._wanted_open = False  # open() was called and close() not since
        self._heard = False  # a frame arrived since the port was (re)opened
        self._baud_probed = False  # the rates were tried since the port was (re)opened

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open the serial port; ``DeviceUnavailable`` if it cannot be opened."""
        await self._link.open(within=self.config.open_timeout)
        self._wanted_open = True
        self._unplug_reported = False
        self._heard = self._baud_probed = False

    async def close(self) -> None:
        """Close the port; safe twice and after the device vanished."""
        self._wanted_open = False
        await self._link.close()

    async def probe(self) -> ProbeResult:
        """Status must be OK and the SAM id readable."""
        status = await self.status()
        if status != "ok":
            raise SamStatusError(
                f"SAM module status is {status}; power-cycle the reader",
                sw3=Sw3.SELF_TEST_FAILED,
                device_id=self.device_id,
            )
        sam_id = await self.sam_id()
        return ProbeResult(model="SAM_A", serial=sam_id, details={"sam_status": status})

    async def health(self) -> Health:
        """Counters, the last SAM status and whether the port is open."""
        health: Health = dict(self._counters)
        health["sam_status"] = self._last_sam_status
        health["connected"] = self._link.is_open
        health["noise_bytes"] = self._link.decoder.skipped
        if isinstance(self._link, SamTransport):
            health["baudrate"] = self._link.baudrate
        if self._sam_id:
            health["sam_id"] = self._sam_id
        return health

    # ------------------------------------------------------------ operations

    async def status(self) -> str:
        """``"ok"``, ``"self_test_failed"`` or ``"0xNN"`` (11 FF)."""
        async with self._exclusive():
            response = await self._send(Command.STATUS, within=self.config.command_timeout)
        if response.sw3 == Sw3.OK:
            status = "ok"
        elif response.sw3 == Sw3.SELF_TEST_FAILED:
            status = "self_test_failed"
        else:
            status = f"0x{response.sw3:02X}"
        self._last_sam_status = status
        return status

    async def sam_id(self) -> str:
        """The module's SAM id, e.g. ``05.01-20101028-0012345678-1234567890`` (12 FF)."""
        async with self._exclusive():
            response = await self._send(Command.SAM_ID, within=self.config.command_timeout)
        self._check(response, Sw3.OK)
        self._sam_id = format_sam_id(response.data)
        return self._sam_id

    async def reset(self) -> None:
        """Reset the SAM module (``reset_command``: 10 FF, or 01 FF on some families)."""
        command = bytes.fromhex(self.config.reset_command)
        async with self._exclusive():
            response = await self._send(command, within=self.config.command_timeout)
        self._check(response, Sw3.OK)

    async def read_card(
        self, *, fingerprint: bool | None = None, extra_address: bool | None = None
    ) -> IdCard:
        """Find, select and read the card on the reader (text + photo [+ fingerprint]).

        Emits ``card.read`` with masked data. Raises ``DeviceRefused(code="no_card")``
        when nothing is on the reader.
        """
        with_fp = self.config.fingerprint if fingerprint is None else fingerprint
        with_extra = self.config.extra_address if extra_address is None else extra_address
        try:
            async with self._exclusive():
                await self._find_and_select()
                card = await self._read(with_fingerprint=with_fp)
                if with_extra:
                    card = card.with_extra_addresses(await self._extra_addresses())
        except DeviceError as exc:
            self._counters["reads_failed"] += 1
            if isinstance(exc, DeviceRefused) and exc.code == "no_card":
                self._counters["no_card"] += 1
            raise
        self._counters["reads_ok"] += 1
        self.emit("card.read", **card.masked())
        return card

    async def read_extra_addresses(self) -> tuple[str, ...]:
        """The 追加住址 (30 03) of the card on the reader, one per slot; ``()`` if none."""
        async with self._exclusive():
            await self._find_and_select()
            return await self._extra_addresses()

    async def read_extra_address(self) -> str | None:
        """``read_extra_addresses`` joined by U+FF1B (older callers); ``None`` if none."""
        return EXTRA_ADDRESS_SEPARATOR.join(await self.read_extra_addresses()) or None

    async def read_management_info(self) -> bytes:
        """The 28-byte card management record (30 05), opaque."""
        async with self._exclusive():
            await self._find_and_select()
            response = await self._send(Command.READ_MANAGEMENT, within=self.config.read_timeout)
        self._check(response, Sw3.OK)
        if len(response.data) != 28:
            raise FrameLengthError(f"management info is {len(response.data)} bytes, expected 28")
        return response.data

    # ------------------------------------------------------------ internals

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold the reader for one operation; wait at most ``busy_timeout``, then DeviceBusy."""
        try:
            async with asyncio.timeout(self.config.busy_timeout):
                await self._lock.acquire()
        except TimeoutError as exc:
            raise DeviceBusy(
                "another operation is using the reader", device_id=self.device_id
            ) from exc
        try:
            await self._reopen_if_vanished()
            yield
        finally:
            self._lock.release()

    async def _reopen_if_vanished(self) -> None:
        """Open the port again if it vanished since the last operation (same path).

        A USB-serial reader unplugged and plugged back (or a udev ``by-id`` link now
        pointing at a new node) comes back under the same address; the next operation
        opens it again instead of failing until someone calls ``close()`` and ``open()``.
        If it is still missing, the operation fails with ``DeviceUnavailable``.
        """
        if not self._wanted_open or self._link.is_open:
            return
        await self._link.close()
        try:
            await self._link.open(within=self.config.open_timeout)
        except DeviceUnavailable:
            self._counters["unavailable"] += 1
            self._report_unplugged()  # it vanished while idle: say so, once
            raise
        self._counters["reopens"] += 1
        self._heard = self._baud_probed = False
        _log.info("%s: reader is back; reopened %s", self.device_id, self.identity.address)
        if self._unplug_reported:
            self._unplug_reported = False
            self.emit("device.ready", reopened=True)

    async def _find_and_select(self) -> None:
        for attempt in range(self.config.find_retries + 1):
            response = await self._send(Command.FIND, within=self.config.command_timeout)
            if response.sw3 != Sw3.FIND_FAILED or attempt == self.config.find_retries:
                break
        self._check(response, Sw3.FOUND)
        response = await self._send(Command.SELECT, within=self.config.command_timeout)
        self._check(response, Sw3.OK)

    async def _read(self, *, with_fingerprint: bool) -> IdCard:
        command = Command.READ_WITH_FINGERPRINT if with_fingerprint else Command.READ_TEXT_PHOTO
        response = await self._send(command, within=self.config.read_timeout)
        self._check(response, Sw3.OK)
        data = response.data
        header = 6 if with_fingerprint else 4
        if len(data) < header:
            raise FrameLengthError("read response too short for its length fields")
        text_len = int.from_bytes(data[0:2], "big")
        photo_len = int.from_bytes(data[2:4], "big")
        fp_len = int.from_bytes(data[4:6], "big") if with_fingerprint else 0
        if text_len != TEXT_BLOCK_SIZE or photo_len != PHOTO_SIZE or fp_len > 1024:
            raise FrameLengthError(
                f"read response declares text {text_len}, photo {photo_len}, fp {fp_len} bytes"
            )
        if len(data) != header + text_len + photo_len + fp_len:
            raise FrameLengthError(
                f"read response holds {len(data)} bytes, its fields declare "
                f"{header + text_len + photo_len + fp_len}"
            )
        text = data[header : header + text_len]
        photo = data[header + text_len : header + text_len + photo_len]
        prints = data[header + text_len + photo_len :] if with_fingerprint else b""
        try:
            return parse_text_block(text, photo=photo, fingerprint=prints or None)
        except ProtocolError:
            self._counters["protocol_errors"] += 1
            raise

    async def _extra_addresses(self) -> tuple[str, ...]:
        response = await self._send(Command.READ_EXTRA_ADDRESS, within=self.config.read_timeout)
        if response.sw3 == Sw3.NO_CONTENT:
            return ()
        self._check(response, Sw3.OK)
        try:
            return decode_extra_addresses(response.data)
        except ProtocolError:
            self._counters["protocol_errors"] += 1
            raise

    async def _send(self, command: Command | bytes, *, within: float) -> Response:
        """One command, sent once more if a frame either way was corrupted on the line.

        An answer failing its checksum, or the module answering SW3 10/11 (our frame
        arrived corrupted), gets one resend (counted in ``resends``); a second failure
        is the error. Commands are safe to repeat: none changes state beyond itself.
        """
        name = command.name if isinstance(command, Command) else command.hex(" ").upper()
        request = encode_request(command)
        for attempt in range(1 + _RESENDS):
            last = attempt == _RESENDS
            try:
                response = await self._transact(request, name=name, within=within)
            except FrameChecksumError as exc:
                if not last:
                    self._resend(name, "its answer failed the checksum")
                    continue
                self._counters["protocol_errors"] += 1
                _log.warning("%s: answer to %s failed its checksum again", self.device_id, name)
                raise FrameChecksumError(
                    f"the answer to command {name} failed its checksum twice (sent once more); "
                    "line noise, a loose cable or a faulty module",
                    device_id=self.device_id,
                ) from exc
            if not last and response.sw3 in (Sw3.BAD_CHECKSUM, Sw3.BAD_LENGTH):
                self._resend(name, f"the module answered {response.meaning}")
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _resend(self, name: str, why: str) -> None:
        self._counters["resends"] += 1
        _log.warning("%s: %s for command %s; sending it once more", self.device_id, why, name)

    async def _transact(self, request: bytes, *, name: str, within: float) -> Response:
        try:
            response = await self._link.transact(request, within=within)
        except FrameChecksumError:
            raise  # _send decides: resend once, then count it
        except DeviceTimeout as exc:
            if await self._found_baudrate():
                return await self._transact(request, name=name, within=within)
            self._counters["timeouts"] += 1
            _log.warning("%s: no answer to command %s", self.device_id, name)
            if self._heard:
                raise
            raise DeviceTimeout(self._silence(name, within), device_id=self.device_id) from exc
        except ProtocolError as exc:
            self._counters["protocol_errors"] += 1
            _log.warning("%s: bad frame for command %s: %s", self.device_id, name, exc)
            raise
        except DeviceUnavailable:
            self._counters["unavailable"] += 1
            self._report_unplugged()
            raise
        self._heard = True
        return response

    def _report_unplugged(self) -> None:
        """Log and emit ``device.unplugged`` once per loss of the port."""
        if not self._unplug_reported:
            self._unplug_reported = True
            _log.warning("%s: reader vanished (%s)", self.device_id, self.identity.address)
            self.emit("device.unplugged", severity="error", address=self.identity.address)

    async def _found_baudrate(self) -> bool:
        """After silence since opening: find the rate the module answers at (60 ii's list).

        A module set to another speed sees only garbage and answers nothing. Once per
        open, each other rate gets a status request (11 FF, no side effects); the first
        one answered is kept for this port (health ``baudrate``) and a warning says to
        put it into the profile. The module itself is not switched. False if none
        answered (the port goes back to the rate it had) or probing does not apply.
        """
        link = self._link
        if (
            self._heard
            or self._baud_probed
            or not self.config.baud_probe
            or not isinstance(link, SamTransport)
        ):
            return False
        self._baud_probed = True
        tried = link.baudrate
        for rate in BAUD_RATES:
            if rate == tried:
                continue
            try:
                await link.set_baudrate(rate)
                await link.transact(
                    encode_request(Command.STATUS), within=self.config.baud_probe_timeout
                )
            except (DeviceTimeout, ProtocolError):
                continue  # silence or garbage: not this rate
            except DeviceUnavailable:
                link.baudrate = tried  # gone mid-search: the next operation reopens
                return False
            self._heard = True
            self._counters["baud_changes"] += 1
            _log.warning(
                "%s: the module answers at %d baud, not at %d; using %d (the baudrate "
                "setting is %d: put %d into the reader's profile)",
                self.device_id,
                rate,
                tried,
                rate,
                self.config.baudrate,
                rate,
            )
            return True
        await link.set_baudrate(tried)
        return False

    def _silence(self, name: str, within: float) -> str:
        """Why a reader that never answered since opening may be silent."""
        where = self.identity.address
        if not isinstance(self._link, SamTransport):
            return f"no answer to {name} from {where} within {within}s: check the module"
        rates = ", ".join(str(r) for r in BAUD_RATES)
        if self._baud_probed:
            return (
                f"no answer to {name} from {where} at any speed ({rates} baud): "
                "check that the reader is powered and the cable is connected"
            )
        return (
            f"no answer to {name} from {where} at {self._link.baudrate} baud: a module set "
            f"to another speed answers nothing; check the baudrate setting ({rates}), "
            "the power and the cable"
        )

    def _check(self, response: Response, expected: int) -> None:
        sw3 = response.sw3
        if sw3 == expected:
            return
        if sw3 in _REFUSALS:
            code, hint = _REFUSALS[sw3]
            raise DeviceRefused(
                f"reader: {response.meaning}", hint=hint, code=code, device_id=self.device_id
            )
        if sw3 in (Sw3.BAD_CHECKSUM, Sw3.BAD_LENGTH):
            self._counters["protocol_errors"] += 1
            raise ProtocolError(
                f"reader rejected our frame: {response.meaning}", device_id=self.device_id
            )
        if sw3 == Sw3.SELF_TEST_FAILED:
            self._last_sam_status = "self_test_failed"
        _log.warning("%s: SAM answered 0x%02X (%s)", self.device_id, sw3, response.meaning)
        raise SamStatusError(
            f"SAM module answered 0x{sw3:02X} ({response.meaning}); reset or power-cycle it",
            sw3=sw3,
            device_id=self.device_id,
        )
