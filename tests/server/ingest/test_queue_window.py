"""The ingest queue's batch window: telemetry waits for more to batch; a transaction,
whose agent and clerk wait for the ack, ends the window at once. The window here is
4 s, so "at once" and "waited" cannot be confused on a loaded machine."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from fleet_server.ingest.queue import IngestQueue, Received

WINDOW_S = 4.0
TELEMETRY = "govedge/v1/township-01/up/telemetry"
TX = "govedge/v1/township-01/up/tx"


def _item(topic: str) -> Received:
    return Received(topic, b"{}", datetime.now(UTC))


def _take(queue: IngestQueue, abort: threading.Event | None = None) -> tuple[list[str], float]:
    started = time.monotonic()
    batch, _ = queue.take(
        wait_s=1.0, window_s=WINDOW_S, limit=500, abort=abort or threading.Event()
    )
    return [item.topic for item in batch if isinstance(item, Received)], time.monotonic() - started


def test_a_transaction_ends_the_window_and_takes_the_telemetry_with_it() -> None:
    queue = IngestQueue()
    queue.put(_item(TELEMETRY))
    threading.Timer(0.2, lambda: queue.put(_item(TX), urgent=True)).start()
    topics, took = _take(queue)
    assert topics == [TELEMETRY, TX]
    assert took < WINDOW_S / 2
    # The next window is a full one again: the urgent mark was used up.
    queue.put(_item(TELEMETRY))
    threading.Timer(0.5, lambda: queue.put(_item(TELEMETRY))).start()
    topics, took = _take(queue)
    assert topics == [TELEMETRY, TELEMETRY]
    assert took >= WINDOW_S * 0.9


def test_a_stop_ends_the_window_too() -> None:
    queue = IngestQueue()
    queue.put(_item(TELEMETRY))
    abort = threading.Event()
    threading.Timer(0.2, abort.set).start()
    topics, took = _take(queue, abort)
    assert topics == [TELEMETRY]
    assert took < WINDOW_S / 2
