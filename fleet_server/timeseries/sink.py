"""A bounded buffer in front of ``influxdb-client``, drained by one named thread.

``offer`` never waits for the store; beyond ``buffer_max`` lines the oldest are dropped
and counted. The writer removes lines only after the store accepted them, and backs off
while it is down (docs/fleet-health.md, "Time series").
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from fleet_server.timeseries.lines import telemetry_lines
from fleet_server.timeseries.regions import OutletRegions
from govedge_wire import Telemetry

logger = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.2
_BACKOFF_MAX_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkStats:
    """Counters of the sink at one moment."""

    buffered: int
    written: int
    dropped: int
    write_errors: int
    connected: bool


class TelemetrySink:
    """``start()``, ``offer()`` from the ingest, ``stop()``; one writer thread."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        org: str,
        bucket: str,
        buffer_max: int = 100_000,
        batch_max: int = 5_000,
        timeout_s: float = 5.0,
        regions: OutletRegions | None = None,
    ) -> None:
        self._bucket = bucket
        self._regions = regions
        self._org = org
        self._buffer_max = buffer_max
        self._batch_max = batch_max
        self._buffer: deque[str] = deque()
        self._lock = threading.Condition()
        # Imported here: influxdb-client pulls in NumPy and its whole API (~1.3 s of
        # every server start, the workers' and the alert pass's child's), and most
        # servers in tests, and some in production, have no time-series store.
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000))
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._precision = WritePrecision.MS
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timeseries-sink", daemon=True)
        self._written = 0
        self._dropped = 0
        self._errors = 0
        self._connected = False

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Try to drain within ``timeout``, then stop the writer and close the client."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join(timeout=timeout)
        self._client.close()  # type: ignore[no-untyped-call]  # influxdb-client is untyped here

    def offer(self, lines: list[str]) -> None:
        """Append lines; drop the oldest beyond ``buffer_max``. Never blocks on I/O."""
        with self._lock:
            self._buffer.extend(lines)
            excess = len(self._buffer) - self._buffer_max
            for _ in range(max(0, excess)):  # fresh telemetry is worth more than old
                self._buffer.popleft()
            if excess > 0:
                self._dropped += excess
            self._lock.notify()

    def offer_telemetry(self, message: Telemetry, *, received_at: datetime) -> None:
        """``offer`` the lines of one telemetry message."""
        region = self._regions.region_of(message.outlet_id) if self._regions else None
        self.offer(telemetry_lines(message, received_at=received_at, region=region))

    def stats(self) -> SinkStats:
        """A snapshot of the counters."""
        with self._lock:
            return SinkStats(
                buffered=len(self._buffer),
                written=self._written,
                dropped=self._dropped,
                write_errors=self._errors,
                connected=self._connected,
            )

    def _take(self) -> list[str]:
        with self._lock:
            while not self._buffer and not self._stop.is_set():
                self._lock.wait(timeout=1.0)
            return [self._buffer[i] for i in range(min(self._batch_max, len(self._buffer)))]

    def _commit(self, batch: list[str]) -> None:
        """Remove the written lines, unless overflow already dropped some of them."""
        with self._lock:
            # Overflow may have dropped lines from the left meanwhile; remove only
            # those still at the head that are the very objects we wrote.
            written = 0
            for line in batch:
                if self._buffer and self._buffer[0] is line:
                    self._buffer.popleft()
                written += 1
            self._written += written
            self._connected = True

    def _run(self) -> None:
        backoff = _BACKOFF_MIN_S
        while True:
            if self._regions is not None:
                self._regions.refresh_if_due()
            batch = self._take()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            try:
                self._write.write(
                    bucket=self._bucket,
                    org=self._org,
                    record="\n".join(batch),
                    write_precision=self._precision,  # type: ignore[arg-type]  # a str constant
                )
            except Exception as exc:  # urllib3/influx errors: the store is down or refuses
                with self._lock:
                    self._errors += 1
                    self._connected = False
                logger.warning(
                    "time-series store write failed (%s); %d lines buffered",
                    exc.__class__.__name__,
                    len(self._buffer),
                )
                if self._stop.wait(backoff * random.uniform(0.8, 1.2)):
                    return
                backoff = min(_BACKOFF_MAX_S, backoff * 2)
                continue
            backoff = _BACKOFF_MIN_S
            self._commit(batch)
