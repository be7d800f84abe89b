"""Driver of the 好差评 evaluation pad at a window, over serial or TCP.

The pad speaks our framed protocol (``protocol``). A background reader task owns all
incoming bytes: replies resolve the one outstanding request, and the pad's own reports
(rating given, citizen walked away) are acknowledged and handed to whoever awaits
``request_evaluation``. Events carry no personal data: the free text and the case
number stay inside the returned outcome (the transaction), never in logs or events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo

from edge_agent.devices.base import (
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
from edge_agent.devices.evaluation_pad.levels import (
    check_stars,
    is_bad_review,
    level_code,
    satisfaction,
    score,
)
from edge_agent.devices.evaluation_pad.models import (
    EvaluationOutcome,
    EvaluationRequest,
    EvaluationResult,
    OutcomeStatus,
)
from edge_agent.devices.evaluation_pad.protocol import (
    REPLY_TYPES,
    MsgType,
    NakCode,
    PadFrame,
    encode_frame,
    parse_frame,
)
from edge_agent.devices.evaluation_pad.settings import (
    EvaluationPadSettings,
)
from edge_agent.devices.registry import register_driver
from edge_agent.devices.settings import DriverSettings
from edge_agent.devices.stream import FrameScanner, StreamLink, read_frames_of

logger = logging.getLogger(__name__)

_HINTS: Final = {
    NakCode.NOT_BOUND: "bind the pad to this window first (bind_window)",
    NakCode.WINDOW: "the pad is bound to another window; check the window's pad in config",
    NakCode.BUSY: "the pad is showing another request; wait for it or cancel it",
    NakCode.UNKNOWN_REQUEST: "the request already ended on the pad",
}


@register_driver("haochaping_pad")
class EvaluationPad(Driver):
    """One evaluator pad; ``identity.address`` is a serial path or ``host:port``.

    Settings: ``baudrate`` (9600), ``ack_timeout`` (1.0 s), ``retries`` (2),
    ``walkaway_timeout`` (60 s, told to the pad), ``walkaway_grace`` (5 s extra before
    the driver gives up on a silent pad), ``frame_gap`` (2 s of silence drops a partial
    frame), ``walkaway_raises`` (False: a walk-away is a ``TIMED_OUT`` outcome; True:
    ``DeviceTimeout``), ``level_coding`` ("gbt39046" or
    "zhejiang"), ``timezone`` ("Asia/Shanghai"), ``indicator_tags`` (list of
    ``{"code", "label"}`` shown as options).
    """

    kind = "evaluation_pad"
    settings_model: ClassVar[type[DriverSettings]] = EvaluationPadSettings
    config: EvaluationPadSettings

    def __init__(
        self,
        identity: DeviceIdentity,
        *,
        settings: Mapping[str, Any] | None = None,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(identity, settings=settings, on_event=on_event)
        c = self.config
        self.ack_timeout = c.ack_timeout
        self.retries = c.retries
        self.walkaway_timeout = c.walkaway_timeout
        self.walkaway_grace = c.walkaway_grace
        self.frame_gap = c.frame_gap
        self.walkaway_raises = c.walkaway_raises
        self.level_coding = c.level_coding
        self.tz = ZoneInfo(c.timezone)
        self.indicator_tags = [tag.model_dump() for tag in c.indicator_tags]
        self._link = StreamLink(identity.address, device_id=identity.device_id, baudrate=c.baudrate)
        self._scanner: FrameScanner[PadFrame] = FrameScanner(parse_frame, starts=b"\x02")
        self._seq = 0
        self._lock = asyncio.Lock()
        self._reply: tuple[int, asyncio.Future[PadFrame]] | None = None
        self._reports: dict[str, asyncio.Future[PadFrame]] = {}
        self._done_requests: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._dead: DeviceError | None = None
        self.bound_window: str | None = None
        self.counters = {"rated": 0, "timed_out": 0, "protocol_errors": 0, "retransmits": 0}

    # --- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        """Open the link and start the reader task."""
        await self._link.open()
        self._dead = None
        self._reader = asyncio.create_task(self._read_loop(), name=f"pad-reader:{self.device_id}")

    async def close(self) -> None:
        """Stop the reader and close the link; safe to call twice."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await self._link.close()
        self._fail_all(DeviceUnavailable("pad closed", device_id=self.device_id))

    async def probe(self) -> ProbeResult:
        """HELLO: the pad answers with model, firmware and serial number."""
        reply = await self._transact(MsgType.HELLO, {}, expect=MsgType.HELLO_REPLY)
        body = _body(reply)
        return ProbeResult(
            model=str(body.get("model", "")) or None,
            firmware=str(body.get("firmware", "")) or None,
            serial=str(body.get("serial", "")) or None,
            details={"protocol": int(body.get("protocol", 1))},
        )

    async def status(self) -> dict[str, Any]:
        """The pad's state (idle / showing), bound window and screen state."""
        return _body(await self._transact(MsgType.STATUS, {}, expect=MsgType.STATUS_REPLY))

    async def health(self) -> Health:
        """Counters and link state; no I/O."""
        stats = self._scanner.stats
        return {
            "connected": self._link.is_open and self._dead is None,
            "bound_window": self.bound_window or "",
            "garbage_bytes": stats.garbage_bytes,
            "bad_frames": stats.bad_frames,
            **self.counters,
        }

    # --- operations --------------------------------------------------------------

    async def bind_window(self, window: str, *, staff_id: str = "") -> None:
        """Tell the pad which window it serves (and who works there now)."""
        await self._transact(MsgType.BIND, {"window": window, "staff_id": staff_id})
        self.bound_window = window

    async def cancel(self, request_id: str) -> None:
        """Take a request off the pad's screen; its waiter gets a ``CANCELLED`` outcome."""
        await self._transact(MsgType.CANCEL, {"request_id": request_id})
        future = self._reports.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(PadFrame(type=MsgType.CANCEL, seq=0))

    async def request_evaluation(
        self,
        case_no: str,
        *,
        window: str | None = None,
        staff_id: str,
        item_code: str = "",
        item_name: str = "",
        assess_number: int = 1,
        walkaway_after: float | None = None,
    ) -> EvaluationOutcome:
        """Show a request on the pad and wait for the rating or the citizen walking away.

        ``walkaway_after`` (default: setting ``walkaway_timeout``) is told to the pad,
        which reports a walk-away when it expires; if the pad says nothing for
        ``walkaway_grace`` longer, the driver raises ``DeviceTimeout``.
        """
        request = EvaluationRequest(
            request_id=uuid.uuid4().hex,
            window=window or self.bound_window or "",
            case_no=case_no,
            staff_id=staff_id,
            item_code=item_code,
            item_name=item_name,
            assess_number=assess_number,
            timeout_s=self.walkaway_timeout if walkaway_after is None else walkaway_after,
        )
        future: asyncio.Future[PadFrame] = asyncio.get_running_loop().create_future()
        self._reports[request.request_id] = future
        try:
            await self._transact(MsgType.EVALUATE, self._evaluate_body(request))
            try:
                async with asyncio.timeout(request.timeout_s + self.walkaway_grace):
                    report = await future
            except TimeoutError as exc:
                raise DeviceTimeout(
                    f"pad sent neither a rating nor a walk-away within "
                    f"{request.timeout_s + self.walkaway_grace:g} s",
                    device_id=self.device_id,
                ) from exc
        finally:
            self._reports.pop(request.request_id, None)
        return self._outcome(request, report)

    def _evaluate_body(self, request: EvaluationRequest) -> dict[str, Any]:
        return {
            "request_id": request.request_id,
            "window": request.window,
            "case_no": request.case_no,
            "staff_id": request.staff_id,
            "item_code": request.item_code,
            "item_name": request.item_name,
            "assess_number": request.assess_number,
            "timeout_s": request.timeout_s,
            "tags": self.indicator_tags,
        }

    def _outcome(self, request: EvaluationRequest, report: PadFrame) -> EvaluationOutcome:
        body = _body(report)
        if report.type == MsgType.CANCEL:
            return EvaluationOutcome(request=request, status=OutcomeStatus.CANCELLED)
        if report.type == MsgType.WALKAWAY:
            self.counters["timed_out"] += 1
            waited = float(body.get("waited_s", request.timeout_s))
            self.emit("rating.timed_out", window=request.window, waited_s=waited)
            if self.walkaway_raises:
                raise DeviceTimeout(
                    f"no rating: the citizen left after {waited:g} s", device_id=self.device_id
                )
            return EvaluationOutcome(
                request=request, status=OutcomeStatus.TIMED_OUT, waited_s=waited
            )
        try:
            stars = check_stars(body.get("stars"))  # type: ignore[arg-type]
            tags = tuple(str(t) for t in body.get("tags", ()))
            text = str(body.get("text", ""))
        except (ValueError, TypeError) as exc:
            self.counters["protocol_errors"] += 1
            raise ProtocolError(f"bad rating from pad: {exc}", device_id=self.device_id) from exc
        result = EvaluationResult(
            stars=stars,
            level_code=level_code(stars, self.level_coding),
            level_coding=self.level_coding.value,
            satisfaction=satisfaction(stars).value,
            score=score(stars),
            is_bad=is_bad_review(stars),
            tags=tags,
            text=text,
            assess_time=datetime.now(self.tz).strftime("%Y-%m-%d %H:%M:%S"),
            pad_time=str(body.get("time", "")),
        )
        self.counters["rated"] += 1
        self.emit(
            "rating.given",
            severity="warning" if result.is_bad else "info",
            window=request.window,
            stars=result.stars,
            level_code=result.level_code,
            is_bad=result.is_bad,
            tags=list(result.tags),
        )
        return EvaluationOutcome(request=request, status=OutcomeStatus.RATED, result=result)

    # --- request/reply -----------------------------------------------------------

    async def _transact(
        self, msg_type: MsgType, body: dict[str, Any], *, expect: MsgType = MsgType.ACK
    ) -> PadFrame:
        """Send one request and await its reply, retransmitting on NAK crc or silence."""
        async with self._lock:
            if self._dead is not None:
                raise DeviceUnavailable(str(self._dead), device_id=self.device_id)
            self._seq = self._seq % 255 + 1
            seq = self._seq
            frame = encode_frame(msg_type, seq, body)
            for attempt in range(self.retries + 1):
                if attempt:
                    self.counters["retransmits"] += 1
                future: asyncio.Future[PadFrame] = asyncio.get_running_loop().create_future()
                self._reply = (seq, future)
                await self._link.write(frame)
                try:
                    async with asyncio.timeout(self.ack_timeout):
                        reply = await future
                except TimeoutError:
                    continue
                finally:
                    self._reply = None
                if reply.type == MsgType.NAK:
                    error = str(_body(reply).get("error", ""))
                    if error in (NakCode.CRC, NakCode.LENGTH):
                        continue  # damaged in transit: send it again
                    raise DeviceRefused(
                        f"pad refused {msg_type.name}: {error}",
                        code=error or "refused",
                        hint=_HINTS.get(error, "check the pad's firmware and configuration"),
                        device_id=self.device_id,
                    )
                if reply.type != expect:
                    raise ProtocolError(
                        f"pad answered {msg_type.name} with type 0x{reply.type:02x}",
                        device_id=self.device_id,
                    )
                return reply
            raise DeviceTimeout(
                f"pad did not answer {msg_type.name} after {self.retries + 1} tries",
                device_id=self.device_id,
            )

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await read_frames_of(self._link, self._scanner, frame_gap=self.frame_gap)
                frames = self._scanner.feed(data)
                for error in self._scanner.take_errors():
                    self.counters["protocol_errors"] += 1
                    await self._link.write(encode_frame(MsgType.NAK, 0, {"error": error}))
                for frame in frames:
                    await self._dispatch(frame)
        except DeviceError as exc:
            logger.warning("pad %s link lost: %s", self.device_id, exc)
            self._fail_all(exc)

    async def _dispatch(self, frame: PadFrame) -> None:
        if frame.type in REPLY_TYPES:
            pending = self._reply
            # A NAK for a frame the pad could not read carries SEQ 0.
            if pending is not None and (frame.seq == pending[0] or frame.type == MsgType.NAK):
                if not pending[1].done():
                    pending[1].set_result(frame)
            else:
                logger.debug("pad %s: stale reply seq %d", self.device_id, frame.seq)
            return
        if frame.type not in (MsgType.RESULT, MsgType.WALKAWAY, MsgType.STATUS_EVENT):
            await self._link.write(encode_frame(MsgType.NAK, frame.seq, {"error": NakCode.TYPE}))
            return
        try:
            body = frame.json()
        except ValueError:
            self.counters["protocol_errors"] += 1
            await self._link.write(encode_frame(MsgType.NAK, frame.seq, {"error": NakCode.BODY}))
            return
        await self._link.write(encode_frame(MsgType.ACK, frame.seq))
        if frame.type == MsgType.STATUS_EVENT:
            self.emit("pad.status", state=str(body.get("state", "")))
            return
        request_id = str(body.get("request_id", ""))
        if request_id in self._done_requests:
            return  # a retransmission of a report we already took (our ACK was lost)
        self._done_requests = [*self._done_requests[-63:], request_id]
        future = self._reports.get(request_id)
        if future is not None and not future.done():
            future.set_result(frame)

    def _fail_all(self, exc: DeviceError) -> None:
        self._dead = exc
        futures = list(self._reports.values())
        if self._reply is not None:
            futures.append(self._reply[1])
        for future in futures:
            if not future.done():
                future.set_exception(exc)


def _body(frame: PadFrame) -> dict[str, Any]:
    try:
        return frame.json()
    except ValueError as exc:
        raise ProtocolError(f"pad sent a body that is not a JSON object: {exc}") from exc
