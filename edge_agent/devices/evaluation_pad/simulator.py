"""A simulated 好差评 evaluation pad speaking ``evaluation_pad.protocol`` over a pty or TCP.

The test plays the citizen: ``await sim.wait_for_request()`` sees what the pad shows,
``sim.press(5, tags=[...])`` rates, ``sim.walk_away()`` leaves without rating (or the
pad's own timer does it after the request's ``timeout_s``). Faults: ``silent`` (answers
nothing), ``corrupt_next_report`` (the next report goes out with a broken CRC once),
``inject(raw)`` (arbitrary bytes on the line).

Start::

    async with EvaluationPadSimulator(transport="tcp") as sim:
        driver = EvaluationPad(DeviceIdentity(..., address=sim.address))
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from edge_agent.devices.evaluation_pad.protocol import (
    MsgType,
    NakCode,
    PadFrame,
    encode_frame,
    parse_frame,
)
from edge_agent.devices.stream import FrameScanner, StreamEndpoint


class EvaluationPadSimulator:
    """One pad; ``address`` is the pty path or ``127.0.0.1:port`` once started."""

    def __init__(
        self,
        *,
        transport: str = "pty",
        model: str = "SIM-PAD-1",
        firmware: str = "1.0.0",
        serial: str = "PAD0001",
        report_ack_timeout: float = 0.5,
        report_retries: int = 3,
    ) -> None:
        self._endpoint = StreamEndpoint(self._on_bytes, transport=transport)
        self._scanner: FrameScanner[PadFrame] = FrameScanner(parse_frame, starts=b"\x02")
        self.model, self.firmware, self.serial = model, firmware, serial
        self.report_ack_timeout = report_ack_timeout
        self.report_retries = report_retries
        self.window: str | None = None
        self.showing: dict[str, Any] | None = None
        self.shown_at = 0.0
        self.requests: list[dict[str, Any]] = []
        self.received: list[PadFrame] = []
        self.naks_sent: list[str] = []
        self.silent = False
        self.corrupt_next_report = False
        self._seq = 0
        self._shown = asyncio.Event()
        self._walkaway_timer: asyncio.TimerHandle | None = None
        self._acks: dict[int, asyncio.Future[bool]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """Where the driver connects: a pty path or ``127.0.0.1:port``."""
        return self._endpoint.address

    async def __aenter__(self) -> Self:
        await self._endpoint.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._walkaway_timer is not None:
            self._walkaway_timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self._endpoint.stop()

    # --- the citizen ---------------------------------------------------------------

    async def wait_for_request(self, *, within: float = 5.0) -> dict[str, Any]:
        """The request now on screen; ``TimeoutError`` if none shows ``within`` seconds."""
        async with asyncio.timeout(within):
            await self._shown.wait()
        assert self.showing is not None
        return self.showing

    def press(self, stars: int, *, tags: list[str] | None = None, text: str = "") -> None:
        """The citizen rates the request on screen."""
        request = self._take_showing()
        body = {
            "request_id": request["request_id"],
            "stars": stars,
            "tags": tags or [],
            "text": text,
            "time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),  # the pad clock: local, naive
        }
        self._spawn(self._report(MsgType.RESULT, body))

    def walk_away(self) -> None:
        """The citizen leaves without rating: report a walk-away now."""
        request = self._take_showing()
        waited = round(time.monotonic() - self.shown_at, 3)
        self._spawn(
            self._report(
                MsgType.WALKAWAY, {"request_id": request["request_id"], "waited_s": waited}
            )
        )

    def inject(self, raw: bytes) -> None:
        """Put arbitrary bytes on the line (noise, broken frames)."""
        self._endpoint.send(raw)

    def _take_showing(self) -> dict[str, Any]:
        if self.showing is None:
            raise RuntimeError("no evaluation request is on the pad")
        request, self.showing = self.showing, None
        self._shown.clear()
        if self._walkaway_timer is not None:
            self._walkaway_timer.cancel()
            self._walkaway_timer = None
        return request

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, name="pad-sim-report"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, msg_type: MsgType, body: dict[str, Any]) -> None:
        """Send a report and retransmit until the host ACKs it (or give up)."""
        self._seq = self._seq % 255 + 1
        seq = self._seq
        frame = encode_frame(msg_type, seq, body)
        for _ in range(self.report_retries + 1):
            wire = frame
            if self.corrupt_next_report:
                self.corrupt_next_report = False
                wire = frame[:-3] + bytes([frame[-3] ^ 0xFF]) + frame[-2:]
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._acks[seq] = future
            if not self.silent:
                self._endpoint.send(wire)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.report_ack_timeout):
                    if await future:
                        return
            self._acks.pop(seq, None)

    # --- the wire ------------------------------------------------------------------

    def _on_bytes(self, data: bytes) -> None:
        frames = self._scanner.feed(data)
        for error in self._scanner.take_errors():
            self._nak(0, error)
        for frame in frames:
            self.received.append(frame)
            if not self.silent:
                self._handle(frame)

    def _send(self, msg_type: MsgType, seq: int, body: dict[str, Any] | None = None) -> None:
        self._endpoint.send(encode_frame(msg_type, seq, body))

    def _nak(self, seq: int, error: str) -> None:
        self.naks_sent.append(error)
        if not self.silent:
            self._send(MsgType.NAK, seq, {"error": error})

    def _handle(self, frame: PadFrame) -> None:
        if frame.type in (MsgType.ACK, MsgType.NAK):
            self._on_ack(frame)
            return
        try:
            body = frame.json()
        except ValueError:
            self._nak(frame.seq, NakCode.BODY)
            return
        if frame.type == MsgType.HELLO:
            info = {"model": self.model, "firmware": self.firmware, "serial": self.serial}
            self._send(MsgType.HELLO_REPLY, frame.seq, {**info, "protocol": 1})
        elif frame.type == MsgType.STATUS:
            state = "showing" if self.showing else ("idle" if self.window else "unbound")
            self._send(
                MsgType.STATUS_REPLY, frame.seq, {"state": state, "window": self.window or ""}
            )
        elif frame.type == MsgType.BIND:
            self.window = str(body.get("window", "")) or None
            self._send(MsgType.ACK, frame.seq)
        elif frame.type == MsgType.EVALUATE:
            self._on_evaluate(frame.seq, body)
        elif frame.type == MsgType.CANCEL:
            if self.showing and self.showing.get("request_id") == body.get("request_id"):
                self._take_showing()
                self._send(MsgType.ACK, frame.seq)
            else:
                self._nak(frame.seq, NakCode.UNKNOWN_REQUEST)
        else:
            self._nak(frame.seq, NakCode.TYPE)

    def _on_ack(self, frame: PadFrame) -> None:
        if frame.type == MsgType.ACK:
            future = self._acks.pop(frame.seq, None)
            if future is not None and not future.done():
                future.set_result(True)
            return
        for future in self._acks.values():  # NAK: resend the outstanding report now
            if not future.done():
                future.set_result(False)

    def _on_evaluate(self, seq: int, body: dict[str, Any]) -> None:
        if self.window is None:
            self._nak(seq, NakCode.NOT_BOUND)
            return
        if str(body.get("window")) != self.window:
            self._nak(seq, NakCode.WINDOW)
            return
        if self.showing is not None:
            if self.showing.get("request_id") == body.get("request_id"):
                self._send(MsgType.ACK, seq)  # a retransmission: already showing it
            else:
                self._nak(seq, NakCode.BUSY)
            return
        self.showing = body
        self.shown_at = time.monotonic()
        self.requests.append(body)
        self._send(MsgType.ACK, seq)
        self._shown.set()
        timeout = float(body.get("timeout_s", 60.0))
        self._walkaway_timer = asyncio.get_running_loop().call_later(timeout, self._timer_expired)

    def _timer_expired(self) -> None:
        self._walkaway_timer = None
        if self.showing is not None:
            self.walk_away()
