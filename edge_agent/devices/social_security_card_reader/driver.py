"""Driver of social-security cards (社会保障卡) in any PC/SC reader, through pcscd.

Reads the SSSE application (docs/devices/social-security-card.md): SELECT SSSE, SELECT
EF05 (card id code, card number), SELECT EF06 (social-security number, name), READ
RECORD in SFI or current-EF style. PC/SC calls block, so each card session runs in one
worker thread; ``PcscError`` and status words become the device error tree at this
boundary. The card value masks its personal data in ``repr``; events carry masked data
only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
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
from edge_agent.devices.registry import register_driver
from edge_agent.devices.settings import DriverSettings
from edge_agent.devices.social_security_card_reader.apdu import (
    SW_OK,
    ReadStyle,
    Record,
    StatusWord,
    parse_record,
    read_record,
    select_aid,
    select_file,
    status_meaning,
)
from edge_agent.devices.social_security_card_reader.names import match_reader
from edge_agent.devices.social_security_card_reader.settings import SocialSecuritySettings
from edge_agent.devices.social_security_card_reader.transport import (
    PcscCard,
    PcscError,
    connect,
    list_readers,
    wait_for_card,
)
from govedge_wire.pii import (
    InvalidIdNumber,
    mask_id_number,
    mask_name,
    validate_id_number,
)

__all__ = ["PcscSocialSecurityReader", "SocialSecurityCard"]

_log = logging.getLogger(__name__)

_NO_CARD_HINT = "insert the social-security card into the reader, chip first"
_PARAMETER_ERRORS = {0x6B00, 0x6A86, 0x6D00, 0x6700, 0x6981}


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SocialSecurityCard:
    """What govedge reads from a social-security card; ``repr`` masks personal data."""

    card_number: str  # 卡号
    region: str  # issuing area (6-digit administrative code) from the card id code
    card_id_code: str  # 卡识别码, hex
    name: str
    id_number: str  # 社会保障号码 (= citizen ID number)

    def masked(self) -> dict[str, Any]:
        """A summary safe for events, logs and screens."""
        return {
            "holder": mask_name(self.name),
            "id_number": mask_id_number(self.id_number),
            "card_number": self.card_number[:1] + "*" * 6 + self.card_number[-2:],
            "region": self.region,
        }

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"SocialSecurityCard({items})"

    __str__ = __repr__


@register_driver("pcsc_social_security")
class PcscSocialSecurityReader(Driver):
    """A PC/SC reader used for social-security cards; ``identity.address`` names the reader."""

    kind: ClassVar[str] = "social_security_card_reader"
    settings_model: ClassVar[type[DriverSettings]] = SocialSecuritySettings
    config: SocialSecuritySettings

    def __init__(
        self,
        identity: DeviceIdentity,
        *,
        settings: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(identity, settings=settings, on_event=on_event)
        self._wanted = self.config.reader or identity.address
        self._reader: str | None = None
        self._style: ReadStyle | None = (
            None if self.config.read_style == "auto" else ReadStyle(self.config.read_style)
        )
        self._lock = asyncio.Lock()
        self._worker: asyncio.Future[Any] | None = None
        self._counters: dict[str, int] = dict.fromkeys(
            ("reads_ok", "reads_failed", "no_card", "timeouts", "protocol_errors", "unavailable"),
            0,
        )

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Find the reader in pcscd; ``DeviceUnavailable`` if pcscd or the reader is missing."""
        self._reader = await self._resolve_reader()

    async def close(self) -> None:
        """Nothing stays open between reads; safe to call twice."""
        self._reader = None

    async def probe(self) -> ProbeResult:
        """The reader is listed by pcscd; reports whether a card is in it."""
        reader = await self._resolve_reader()
        present = await self._call(wait_for_card, reader, within=0.0, limit=5.0)
        return ProbeResult(model=reader, details={"card_present": bool(present)})

    async def health(self) -> Health:
        """Counters and the reader in use (reader names hold no personal data)."""
        health: Health = dict(self._counters)
        health["reader"] = self._reader or ""
        health["read_style"] = self._style.value if self._style else "auto"
        return health

    # ------------------------------------------------------------ operations

    async def readers(self) -> list[str]:
        """Every reader pcscd knows."""
        result: list[str] = await self._call(list_readers, limit=5.0)
        return result

    async def read_card(self, *, wait: float | None = None) -> SocialSecurityCard:
        """Wait up to ``wait`` (default ``card_timeout``) for a card, then read it."""
        reader = self._reader or await self._resolve_reader()
        try:
            if self._lock.locked():
                raise DeviceBusy("another read is using the reader", device_id=self.device_id)
            async with self._lock:
                within = self.config.card_timeout if wait is None else wait
                present = await self._call(wait_for_card, reader, within=within, limit=within + 5)
                if not present:
                    raise DeviceRefused(
                        "no card in the reader",
                        hint=_NO_CARD_HINT,
                        code="no_card",
                        device_id=self.device_id,
                    )
                card: SocialSecurityCard = await self._call(
                    self._session, reader, limit=self.config.session_timeout
                )
        except DeviceError as exc:
            self._count_failure(exc)
            raise
        self._counters["reads_ok"] += 1
        self.emit("card.read", **card.masked())
        return card

    # ------------------------------------------------------------ internals

    def _count_failure(self, exc: DeviceError) -> None:
        self._counters["reads_failed"] += 1
        if isinstance(exc, DeviceRefused) and exc.code == "no_card":
            self._counters["no_card"] += 1
        key = {"timeout": "timeouts", "protocol": "protocol_errors"}.get(exc.reason)
        if isinstance(exc, DeviceUnavailable):
            key = "unavailable"
        if key:
            self._counters[key] += 1
        _log.warning("%s: social-security read failed: %s", self.device_id, exc)

    async def _call(self, func: Any, *args: Any, limit: float, **kwargs: Any) -> Any:
        """Run a blocking PC/SC call in a thread, with a deadline and error translation."""
        if self._worker is not None and not self._worker.done():
            raise DeviceBusy("an earlier PC/SC call is still stuck", device_id=self.device_id)
        worker = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
        self._worker = worker
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(worker)
        except TimeoutError as exc:
            raise DeviceTimeout(
                f"PC/SC call did not finish within {limit}s", device_id=self.device_id
            ) from exc
        except PcscError as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: PcscError) -> DeviceError:
        if exc.no_service:
            return DeviceUnavailable(
                f"pcscd is not running ({exc}); start the pcscd service",
                device_id=self.device_id,
            )
        if exc.card_gone:
            return DeviceRefused(
                f"card left the reader ({exc})",
                hint="leave the card in the reader until the read finishes",
                code="card_removed",
                device_id=self.device_id,
            )
        return DeviceUnavailable(f"PC/SC error: {exc}", device_id=self.device_id)

    async def _resolve_reader(self) -> str:
        """The PC/SC name of our reader.

        The ``reader`` setting, or the address, as an exact name or a unique part of one;
        else, for a USB reader from udev (address ``/dev/bus/usb/…``), the name pcscd
        built from its Info.plist name, interface string and serial
        (``names.match_reader``).
        """
        names = await self.readers()
        if self._wanted in names:
            return self._wanted
        matches = [n for n in names if self._wanted and self._wanted in n]
        if len(matches) == 1:
            return matches[0]
        usb = self.identity.usb
        if self.config.reader is None and usb is not None:
            try:
                name = match_reader(names, usb)
            except LookupError as exc:
                raise DeviceUnavailable(str(exc), device_id=self.device_id) from exc
            if name != self._reader:
                _log.info("%s: USB reader %s is PC/SC %r", self.device_id, self._wanted, name)
            return name
        raise DeviceUnavailable(
            f"reader {self._wanted!r} not found (pcscd lists {names})", device_id=self.device_id
        )

    # ---- the card session; runs in a worker thread

    def _session(self, reader: str) -> SocialSecurityCard:
        card = connect(reader)
        try:
            self._expect(card, select_aid(), "SELECT SSSE")
            self._expect(card, select_file(0x05), "SELECT EF05")
            id_code = self._read(card, Record.CARD_ID_CODE, sfi=0x05)
            number = self._read(card, Record.CARD_NUMBER, sfi=0x05)
            self._expect(card, select_file(0x06), "SELECT EF06")
            ssn = self._read(card, Record.SSN, sfi=0x06)
            name = self._read(card, Record.NAME, sfi=0x06)
        finally:
            card.close()
        try:
            return SocialSecurityCard(
                card_number=number.decode("ascii").strip(" \x00"),
                card_id_code=id_code.hex().upper(),
                region=id_code[:3].hex(),
                name=name.decode("gbk").strip(" \x00"),
                id_number=validate_id_number(ssn.decode("ascii").strip(" \x00")),
            )
        except (UnicodeDecodeError, InvalidIdNumber) as exc:
            raise ProtocolError(f"card data invalid: {exc}", device_id=self.device_id) from exc

    def _expect(self, card: PcscCard, apdu: bytes, what: str) -> bytes:
        data, sw = card.transmit(apdu)
        if sw == SW_OK:
            return data
        if sw == StatusWord.FILE_NOT_FOUND:
            hint = (
                "this card has no social-security application; insert the social-security card"
                if what == "SELECT SSSE"
                else "the card lacks a social-security file; it may be damaged or unsupported"
            )
            raise DeviceRefused(
                f"{what}: {status_meaning(sw)} (6A82)",
                hint=hint,
                code="not_social_security_card" if what == "SELECT SSSE" else "file_not_found",
                device_id=self.device_id,
            )
        raise ProtocolError(f"{what}: card answered {sw:04X} ({status_meaning(sw)})")

    def _read(self, card: PcscCard, record: Record, *, sfi: int) -> bytes:
        styles = [self._style] if self._style else [ReadStyle.SFI, ReadStyle.CURRENT]
        for style in styles:
            apdu = read_record(record, style=style, sfi=sfi)
            data, sw = card.transmit(apdu)
            if sw >> 8 == 0x6C:  # wrong Le: the card tells the right one
                data, sw = card.transmit(read_record(record, style=style, sfi=sfi, le=sw & 0xFF))
            if sw == SW_OK:
                self._style = style
                try:
                    return parse_record(data, expected_tag=record).value
                except ValueError as exc:
                    raise ProtocolError(str(exc), device_id=self.device_id) from exc
            if sw not in _PARAMETER_ERRORS:
                break
        raise self._read_failure(record, sw)

    def _read_failure(self, record: Record, sw: int) -> DeviceError:
        if sw in (StatusWord.FILE_NOT_FOUND, StatusWord.RECORD_NOT_FOUND):
            return DeviceRefused(
                f"READ RECORD {record.value:02X}: {status_meaning(sw)} ({sw:04X})",
                hint="the card lacks a social-security record; it may be damaged or unsupported",
                code="file_not_found",
                device_id=self.device_id,
            )
        return ProtocolError(
            f"READ RECORD {record.value:02X}: card answered {sw:04X} ({status_meaning(sw)})",
            device_id=self.device_id,
        )
