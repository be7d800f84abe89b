"""Simulated caller keypads on one FT1.2-style bus (``caller_keypad.protocol``) over a pty or TCP.

The test presses keys (``sim.press(3, Key.CALL)``) and reads what each keypad displays
(``sim.display(3)``). Keypads acknowledge display frames with ``E5`` and answer QUERY.
Faults: ``silent`` (no acks or replies), ``corrupt_next`` (next key frame gets a bad CS),
``inject(raw)``.

Start::

    async with CallerKeypadSimulator(addresses=[1, 2, 3]) as sim:
        CallerKeypad(DeviceIdentity(..., address=sim.address))
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Self

from edge_agent.devices.caller_keypad.protocol import (
    ACK,
    Func,
    Key,
    KeypadFrame,
    encode_frame,
    encode_key,
    parse_frame,
)
from edge_agent.devices.stream import FrameScanner, StreamEndpoint


class CallerKeypadSimulator:
    """Keypads at ``addresses``; ``address`` is the pty path or host:port once started."""

    def __init__(
        self,
        *,
        addresses: Iterable[int] = (1, 2, 3, 4),
        transport: str = "pty",
        model: str = "SIM-KEYPAD",
        firmware: str = "1.2",
    ) -> None:
        self._endpoint = StreamEndpoint(self._on_bytes, transport=transport)
        self._scanner: FrameScanner[KeypadFrame] = FrameScanner(parse_frame, starts=b"\xff\x68\xe5")
        self.displays = dict.fromkeys(addresses, "")
        self.model, self.firmware = model, firmware
        self.silent = False
        self.corrupt_next = False
        self.acks_received = 0

    @property
    def address(self) -> str:
        """Where the driver connects."""
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
        await self._endpoint.stop()

    def display(self, address: int) -> str:
        """The six characters keypad ``address`` shows, stripped."""
        return self.displays[address].strip()

    def press(self, address: int, key: Key, *, arg: str = "") -> None:
        """A clerk presses ``key`` on keypad ``address`` (after typing ``arg``)."""
        if address not in self.displays:
            raise ValueError(f"no keypad at address {address}")
        wire = encode_frame(address, Func.KEY, encode_key(key, arg=arg))
        if self.corrupt_next:
            self.corrupt_next = False
            wire = wire[:-2] + bytes([wire[-2] ^ 0x5A]) + wire[-1:]
        self._endpoint.send(wire)

    def inject(self, raw: bytes) -> None:
        """Put arbitrary bytes on the bus."""
        self._endpoint.send(raw)

    def _on_bytes(self, data: bytes) -> None:
        for frame in self._scanner.feed(data):
            if frame.is_ack:
                self.acks_received += 1
            elif frame.addr in self.displays and not self.silent:
                self._handle(frame)

    def _handle(self, frame: KeypadFrame) -> None:
        if frame.func == Func.DISPLAY:
            try:
                self.displays[frame.addr] = frame.data.decode("ascii")
            except UnicodeDecodeError:
                return  # a real keypad shows nothing and stays silent
            self._endpoint.send(bytes([ACK]))
        elif frame.func == Func.QUERY:
            info = f"{self.model};{self.firmware}".encode("ascii")
            self._endpoint.send(encode_frame(frame.addr, Func.QUERY_REPLY, info))
