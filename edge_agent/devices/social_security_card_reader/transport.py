"""A small typed, blocking wrapper over pyscard's PC/SC calls (pcsc-lite / WinSCard).

Each call opens its own PC/SC context, so a restarted pcscd is picked up by the next
call. Every wait takes a timeout. Failures come out as ``PcscError`` (with the PC/SC
return code), never as pyscard exceptions; drivers call these functions from
``asyncio.to_thread`` and translate ``PcscError`` into the device error tree.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from types import ModuleType
from typing import Any

__all__ = ["PcscCard", "PcscError", "connect", "list_readers", "wait_for_card"]


@functools.cache
def _scard() -> ModuleType:
    """pyscard, loaded on the first PC/SC call: an agent without this reader never pays."""
    from smartcard import scard  # type: ignore[import-untyped]

    module: ModuleType = scard
    return module


class PcscError(Exception):
    """A PC/SC call failed; ``code`` is the PC/SC return value (e.g. ``SCARD_E_NO_SERVICE``)."""

    def __init__(self, what: str, code: int) -> None:
        message = _scard().SCardGetErrorMessage(code)
        super().__init__(f"{what}: {message} (0x{code & 0xFFFFFFFF:08X})")
        self.code = code

    @property
    def no_service(self) -> bool:
        """pcscd is not running."""
        return self.code in (_scard().SCARD_E_NO_SERVICE, _scard().SCARD_E_SERVICE_STOPPED)

    @property
    def card_gone(self) -> bool:
        """The card was removed or reset under us."""
        scard = _scard()
        return self.code in (
            scard.SCARD_W_REMOVED_CARD,
            scard.SCARD_E_NO_SMARTCARD,
            scard.SCARD_W_RESET_CARD,
        )


def _check(what: str, result: int) -> None:
    if result != _scard().SCARD_S_SUCCESS:
        raise PcscError(what, result)


@contextlib.contextmanager
def _context() -> Iterator[Any]:
    result, context = _scard().SCardEstablishContext(_scard().SCARD_SCOPE_USER)
    _check("establish PC/SC context", result)
    try:
        yield context
    finally:
        _scard().SCardReleaseContext(context)


def list_readers() -> list[str]:
    """Names of the readers pcscd knows; empty if none; ``PcscError`` if no pcscd."""
    with _context() as context:
        result, readers = _scard().SCardListReaders(context, [])
        if result == _scard().SCARD_E_NO_READERS_AVAILABLE:
            return []
        _check("list readers", result)
        return list(readers)


def wait_for_card(reader: str, *, within: float) -> bool:
    """True once a card is present in ``reader``; False after ``within`` seconds."""
    with _context() as context:
        states = [(reader, _scard().SCARD_STATE_UNAWARE)]
        result, states = _scard().SCardGetStatusChange(context, 0, states)
        _check(f"status of {reader!r}", result)
        if states[0][1] & _scard().SCARD_STATE_PRESENT:
            return True
        current = states[0][1]
        result, states = _scard().SCardGetStatusChange(
            context, max(1, int(within * 1000)), [(reader, current)]
        )
        if result == _scard().SCARD_E_TIMEOUT:
            return False
        _check(f"wait for a card in {reader!r}", result)
        return bool(states[0][1] & _scard().SCARD_STATE_PRESENT)


class PcscCard:
    """A connected card; ``transmit`` APDUs, then ``close``."""

    def __init__(self, context: Any, handle: Any, protocol: int) -> None:
        self._context = context
        self._handle = handle
        self._protocol = protocol

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send a C-APDU; return (data, SW1SW2). Follows ``61xx`` with GET RESPONSE."""
        result, response = _scard().SCardTransmit(self._handle, self._protocol, list(apdu))
        _check("transmit APDU", result)
        data, sw = bytes(response[:-2]), (response[-2] << 8) | response[-1]
        while sw >> 8 == 0x61:
            get_response = [0x00, 0xC0, 0x00, 0x00, sw & 0xFF]
            result, response = _scard().SCardTransmit(self._handle, self._protocol, get_response)
            _check("GET RESPONSE", result)
            data += bytes(response[:-2])
            sw = (response[-2] << 8) | response[-1]
        return data, sw

    def close(self) -> None:
        """Disconnect (leave the card powered) and release the context; safe twice."""
        if self._handle is not None:
            _scard().SCardDisconnect(self._handle, _scard().SCARD_LEAVE_CARD)
            self._handle = None
        if self._context is not None:
            _scard().SCardReleaseContext(self._context)
            self._context = None


def connect(reader: str) -> PcscCard:
    """Connect to the card in ``reader`` (shared, T=0 or T=1)."""
    result, context = _scard().SCardEstablishContext(_scard().SCARD_SCOPE_USER)
    _check("establish PC/SC context", result)
    try:
        result, handle, protocol = _scard().SCardConnect(
            context,
            reader,
            _scard().SCARD_SHARE_SHARED,
            _scard().SCARD_PROTOCOL_T0 | _scard().SCARD_PROTOCOL_T1,
        )
        _check(f"connect to the card in {reader!r}", result)
    except BaseException:
        _scard().SCardReleaseContext(context)
        raise
    return PcscCard(context, handle, protocol)
