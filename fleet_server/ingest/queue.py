"""The ingest's queue between paho's network thread and the worker thread.

paho appends, the worker pops (deque operations are atomic); bytes in and out are each
counted by one thread, so neither needs a lock. The worker is woken by the first item.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

# What a queued message costs besides its payload and topic (the item, its datetime).
_ITEM_OVERHEAD_BYTES = 200
# How often a batch window looks at the abort event (a window may be set up to 10 s).
_ABORT_CHECK_S = 0.1


@dataclass(frozen=True, slots=True)
class Received:
    """One uplink message as paho handed it over, with the server's receive time."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class BrokerLost:
    """The broker connection dropped at ``at``."""

    at: datetime


@dataclass(frozen=True, slots=True)
class BrokerUp:
    """The uplink subscription is confirmed (messages after it are this connection's)."""


class Stop:
    """Queue sentinel: everything before it is drained, then the worker ends."""


Item = Received | BrokerLost | BrokerUp | Stop
Batch = list[Received | BrokerLost | BrokerUp]


def cost(item: Received) -> int:
    """Bytes an item holds in the queue, for ``ingest_queue_max_bytes``."""
    return len(item.payload) + len(item.topic) + _ITEM_OVERHEAD_BYTES


def outlet_of(topic: str) -> str:
    """The outlet id level of a topic, for logs; never the payload."""
    parts = topic.split("/")
    return parts[2][:64] if len(parts) > 2 else "?"


class IngestQueue:
    """Items in arrival order, bounded by the caller on count and bytes."""

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._bytes_in = 0
        self._bytes_out = 0
        self._wake = threading.Event()
        # Set by an item somebody waits for (a clerk's transaction): ends the window.
        self._urgent = threading.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes the queued messages hold (see ``cost``)."""
        return self._bytes_in - self._bytes_out

    def put(self, item: Item, *, urgent: bool = False) -> None:
        """Append ``item`` (a message's bytes are counted) and wake the worker.

        ``urgent``: somebody waits for this item's outcome (a transaction the agent
        holds until its ack): the batch window ends now instead of at its full length.
        """
        if isinstance(item, Received):
            self._bytes_in += cost(item)
        self._items.append(item)
        if not self._wake.is_set():
            self._wake.set()
        if urgent and not self._urgent.is_set():
            self._urgent.set()

    def take(
        self, *, wait_s: float, window_s: float, limit: int, abort: threading.Event
    ) -> tuple[Batch, bool]:
        """Up to ``limit`` items; True when the stop sentinel was reached.

        Waits up to ``wait_s`` for a first item, then ``window_s`` for more, so the two
        threads do not trade the GIL per message; an urgent item ends that window (a
        clerk's transaction then waits for no telemetry batch: docs/performance.md).
        """
        batch: Batch = []
        if not self._items:
            self._wake.wait(wait_s)
            # Cleared before draining: whatever is appended after the drain sets it again.
            self._wake.clear()
            if not self._items:
                return batch, False
        deadline = time.monotonic() + window_s
        while len(self._items) < limit and not abort.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._urgent.wait(min(left, _ABORT_CHECK_S)):
                break
        self._urgent.clear()  # before draining: an urgent item put after it sets it again
        items = self._items
        while items and len(batch) < limit:
            item = items.popleft()
            if isinstance(item, Stop):
                return batch, True
            if isinstance(item, Received):
                self._bytes_out += cost(item)
            batch.append(item)
        return batch, False
