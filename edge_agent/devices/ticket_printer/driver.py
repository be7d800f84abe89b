"""Driver of the ESC/POS thermal ticket printer, over serial or raw TCP (port 9100).

Before a job the driver asks DLE EOT 1-4 and refuses to print into a known fault (paper
out, cover open, cutter error) with a hint for the clerk. After the job it sends GS r 1:
unlike DLE EOT it is answered in order, so its reply also proves the printer consumed
the job, and it reports paper running out during the print.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Final

from edge_agent.devices.base import (
    DeviceError,
    DeviceIdentity,
    DeviceRefused,
    DeviceTimeout,
    Driver,
    EventSink,
    Health,
    ProbeResult,
    ProtocolError,
)
from edge_agent.devices.registry import register_driver
from edge_agent.devices.settings import DriverSettings
from edge_agent.devices.stream import StreamLink
from edge_agent.devices.ticket_printer.commands import (
    GS_R1,
    PaperState,
    PrinterStatus,
    decode_status,
    dle_eot,
    paper_from_gs_r1,
)
from edge_agent.devices.ticket_printer.settings import EscPosPrinterSettings
from edge_agent.devices.ticket_printer.ticket import TicketPrint, render_self_test, render_ticket

logger = logging.getLogger(__name__)

_PAPER_OUT: Final = "load a new paper roll and close the cover"
_COVER: Final = "close the printer cover firmly"
_CUTTER: Final = "open the cover, clear the paper jam at the cutter, close the cover"
_OFFLINE: Final = "check the printer's power and error light, then try again"


@register_driver("escpos_printer")
class EscPosPrinter(Driver):
    """One ticket printer; ``identity.address`` is a serial path or ``host:9100``.

    Settings: ``baudrate`` (9600), ``status_timeout`` (1.0 s per status byte),
    ``job_timeout`` (10 s for the GS r 1 after a job), ``encoding`` ("gb18030"),
    ``feed_lines`` (4).
    """

    kind = "ticket_printer"
    settings_model: ClassVar[type[DriverSettings]] = EscPosPrinterSettings
    config: EscPosPrinterSettings

    def __init__(
        self,
        identity: DeviceIdentity,
        *,
        settings: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(identity, settings=settings, on_event=on_event)
        c = self.config
        self.status_timeout = c.status_timeout
        self.job_timeout = c.job_timeout
        self.encoding = c.encoding
        self.feed_lines = c.feed_lines
        self._link = StreamLink(identity.address, device_id=identity.device_id, baudrate=c.baudrate)
        self._lock = asyncio.Lock()
        self._rx = bytearray()
        self.last_status: PrinterStatus | None = None
        self.counters = {"prints_ok": 0, "prints_failed": 0}

    async def open(self) -> None:
        """Open the serial port or TCP connection."""
        await self._link.open()

    async def close(self) -> None:
        """Close the link; safe to call twice."""
        await self._link.close()

    async def probe(self) -> ProbeResult:
        """A printer is one that answers DLE EOT 1-4 with well-formed status bytes."""
        status = await self.status()
        return ProbeResult(details={"paper": status.paper.value, "cover_open": status.cover_open})

    async def health(self) -> Health:
        """Paper, cover and cutter from the last status read, and job counters; no I/O."""
        status = self.last_status
        return {
            "connected": self._link.is_open,
            "paper": status.paper.value if status else "unknown",
            "cover_open": status.cover_open if status else False,
            "cutter_error": status.cutter_error if status else False,
            "offline": status.offline if status else False,
            **self.counters,
        }

    async def status(self) -> PrinterStatus:
        """Ask DLE EOT 1, 2, 3 and 4 and decode the four replies."""
        async with self._lock:
            return await self._status()

    async def _status(self) -> PrinterStatus:
        await self._link.drain_input()
        self._rx.clear()
        replies = []
        for n in (1, 2, 3, 4):
            await self._link.write(dle_eot(n))
            replies.append(await self._read_byte(self.status_timeout, what=f"DLE EOT {n}"))
        try:
            status = decode_status(*replies)
        except ValueError as exc:
            raise ProtocolError(f"bad status reply: {exc}", device_id=self.device_id) from exc
        self.last_status = status
        return status

    async def _read_byte(self, within: float, *, what: str) -> int:
        if not self._rx:
            try:
                self._rx += await self._link.read(within=within)
            except DeviceTimeout as exc:
                raise DeviceTimeout(
                    f"printer did not answer {what} within {within:g} s", device_id=self.device_id
                ) from exc
        value = self._rx[0]
        del self._rx[0]
        return value

    def _refuse_if_faulty(self, status: PrinterStatus) -> None:
        if status.paper is PaperState.END or status.paper_stop:
            raise DeviceRefused(
                "printer is out of paper",
                code="paper_out",
                hint=_PAPER_OUT,
                device_id=self.device_id,
            )
        if status.cover_open:
            raise DeviceRefused(
                "printer cover is open", code="cover_open", hint=_COVER, device_id=self.device_id
            )
        if status.cutter_error:
            raise DeviceRefused(
                "printer cutter is jammed",
                code="cutter_error",
                hint=_CUTTER,
                device_id=self.device_id,
            )
        if status.offline or status.unrecoverable:
            raise DeviceRefused(
                "printer is offline", code="offline", hint=_OFFLINE, device_id=self.device_id
            )
        if status.paper is PaperState.NEAR_END:
            self.emit("paper.low", severity="warning")

    async def print_ticket(self, ticket: TicketPrint) -> PrinterStatus:
        """Print one queue ticket with status checks before and after; the final status."""
        job = render_ticket(ticket, encoding=self.encoding, feed_lines=self.feed_lines)
        return await self.print_job(job)

    async def self_test(self) -> Health:
        """A test print (what it is, the device id, the time); the status after it."""
        job = render_self_test(
            self.device_id, datetime.now().astimezone(), encoding=self.encoding,
            feed_lines=self.feed_lines,
        )  # fmt: skip
        status = await self.print_job(job)
        return {"printed": True, "paper": status.paper.name.lower()}

    async def print_job(self, job: bytes) -> PrinterStatus:
        """Send raw ESC/POS bytes between a DLE EOT check and a GS r 1 confirmation."""
        async with self._lock:
            try:
                status = await self._status()
                self._refuse_if_faulty(status)
                await self._link.write(job)
                await self._link.write(GS_R1)
                reply = await self._read_byte(self.job_timeout, what="GS r 1 after the job")
                try:
                    paper = paper_from_gs_r1(reply)
                except ValueError as exc:
                    raise ProtocolError(str(exc), device_id=self.device_id) from exc
                if paper is PaperState.END:
                    raise DeviceRefused(
                        "paper ran out during the print",
                        code="paper_out",
                        hint=_PAPER_OUT,
                        device_id=self.device_id,
                    )
                if paper is PaperState.NEAR_END:
                    self.emit("paper.low", severity="warning")
            except DeviceError as exc:
                self.counters["prints_failed"] += 1
                self.emit("print.failed", severity="warning", reason=exc.reason)
                logger.warning("printer %s: job failed: %s", self.device_id, exc)
                raise
            self.counters["prints_ok"] += 1
            return status
