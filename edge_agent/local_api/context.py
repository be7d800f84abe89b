"""The local API's own state beside the runtime: options, caches, counters.

One ``LocalApiContext`` per app, stored on ``app.state.local`` and handed to routes by
``deps.LocalDep``. It owns what only the API needs: the captured-document cache (scans
wait here, in memory only, until a submission references them), the rendered
announcement WAVs, the durable state (transaction status table and idempotency keys,
``state.py``), the ``Idempotency`` service over it and the refusal counters.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar, cast

from edge_agent.counters import AgentCounters
from edge_agent.devices import DeviceUnavailable, Driver
from edge_agent.devices.registry import kinds_with
from edge_agent.idempotency import Idempotency
from edge_agent.local_api.apps import AppRegistry
from edge_agent.local_api.errors import ApiError
from edge_agent.local_api.state import STATE_FILE, LocalStateStore
from edge_agent.local_api.tracker import TransactionTracker
from edge_agent.queueing.playback import AnnouncementPlayer, PlaybackSettings
from edge_agent.runtime import AgentRuntime
from govedge_wire.config.models import check_qr_template

__all__ = [
    "AnnouncementStore",
    "CapturedDocument",
    "DocumentCache",
    "LocalApiContext",
    "LocalApiOptions",
]

C = TypeVar("C")
T = TypeVar("T")
_WAV_ID: Final = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalApiOptions:
    """Tunables of the local API; every wait has a bound here."""

    outlet_name: str = ""  # printed on tickets; default the outlet id
    # The province's 好差评 page for a ticket, printed as a QR code ("" = no QR); its
    # {case_number} (T<yyyymmdd>-<ticket>) and {outlet} are filled in, URL-quoted.
    evaluation_qr_url: str = ""
    evaluation_timeout_s: float = 60.0  # default walk-away time told to the pad
    evaluation_max_timeout_s: float = 600.0
    default_ratings_check_s: float = 30.0  # how often waiting default ratings are checked
    social_security_wait_s: float = 10.0
    speak: bool = True  # render announcement WAVs with espeak-ng
    voice_timeout_s: float = 15.0
    playback: PlaybackSettings = field(default_factory=PlaybackSettings)  # on this PC too?
    announcements_kept: int = 50
    documents_kept: int = 20
    document_ttl_s: float = 1800.0
    max_body_bytes: int = 64 * 1024 * 1024
    ws_ping_s: float = 20.0
    ws_queue_size: int = 256
    idempotency_wait_s: float = 30.0  # a retry waits this long for the same key in flight

    def __post_init__(self) -> None:
        check_qr_template(self.evaluation_qr_url)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CapturedDocument:
    """One captured still waiting to be referenced by a submission."""

    document_id: str
    jpeg: bytes
    width: int
    height: int
    captured: float


class DocumentCache:
    """The last few captured documents, in memory only, forgotten after ``ttl_s``."""

    def __init__(self, *, kept: int, ttl_s: float) -> None:
        self.kept = kept
        self.ttl_s = ttl_s
        self._docs: OrderedDict[str, CapturedDocument] = OrderedDict()

    def add(self, jpeg: bytes, *, width: int, height: int) -> CapturedDocument:
        """Keep a capture; returns it with its new ``document_id``."""
        self._expire()
        doc = CapturedDocument(
            document_id="doc-" + secrets.token_hex(12),
            jpeg=jpeg,
            width=width,
            height=height,
            captured=time.monotonic(),
        )
        self._docs[doc.document_id] = doc
        while len(self._docs) > self.kept:
            self._docs.popitem(last=False)
        return doc

    def get(self, document_id: str) -> CapturedDocument | None:
        """The capture, or None if it is unknown or expired."""
        self._expire()
        return self._docs.get(document_id)

    def _expire(self) -> None:
        limit = time.monotonic() - self.ttl_s
        for key in [k for k, d in self._docs.items() if d.captured < limit]:
            del self._docs[key]


class AnnouncementStore:
    """Rendered announcement WAVs in one directory, newest ``kept`` of them."""

    def __init__(self, directory: Path | None, *, kept: int) -> None:
        self._owned = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="govedge-voice-")) if directory is None else directory
        )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.kept = kept
        self._ids: list[str] = []

    def path_for(self, announcement_id: str) -> Path:
        """Where ``announcement_id``'s WAV lives; ``ApiError`` 404 for a malformed id."""
        if not _WAV_ID.match(announcement_id):
            raise ApiError(404, "not_found", "no such announcement", hint="use the audio_url")
        return self.directory / f"{announcement_id}.wav"

    def added(self, announcement_id: str) -> None:
        """Note a new WAV and delete the oldest beyond ``kept``."""
        self._ids.append(announcement_id)
        while len(self._ids) > self.kept:
            old = self._ids.pop(0)
            (self.directory / f"{old}.wav").unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the directory if this store created it."""
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)


class LocalApiContext:
    """Everything a route needs: the runtime, the registry, options and the API's state."""

    def __init__(
        self,
        runtime: AgentRuntime,
        *,
        apps: AppRegistry,
        options: LocalApiOptions,
        announcements_dir: Path | None,
        state_dir: Path,
        counters: AgentCounters | None = None,
    ) -> None:
        self.runtime = runtime
        self.apps = apps
        self.options = options
        # The agent's counters (reported in telemetry); a context of its own in tests.
        self.refusals = counters if counters is not None else AgentCounters()
        self.documents = DocumentCache(kept=options.documents_kept, ttl_s=options.document_ttl_s)
        self.announcements = AnnouncementStore(announcements_dir, kept=options.announcements_kept)
        self.state = LocalStateStore(state_dir / STATE_FILE)
        self.tracker = TransactionTracker(runtime.outbox, state=self.state)
        self.idempotency = Idempotency(
            self.state, runtime.outbox, wait_s=options.idempotency_wait_s
        )
        self.evaluation_locks: dict[str, asyncio.Lock] = {}
        live = runtime.live
        self.player = AnnouncementPlayer(
            options.playback,
            counters=counters,
            volume=None if live is None else lambda: live.voice_volume,
        )

    def refused(self, reason: str) -> None:
        """Count one refused request as ``local_api_refused_REASON`` in the agent's
        counters (telemetry reports the reasons ``counters.LOCAL_API_REFUSALS`` names)."""
        self.refusals.incr(f"local_api_refused_{reason}")

    # ---- finding devices -----------------------------------------------------------

    def ready_drivers(self, capability: type[C]) -> list[C]:
        """Every ready device whose kind has ``capability`` (a kind's declared Protocol)."""
        wanted = kinds_with(capability)
        found: list[C] = []
        for info in self.runtime.devices.inventory():
            if info.state != "ready" or info.kind not in wanted:
                continue
            try:
                driver = self.runtime.devices.driver(info.device_id)
            except DeviceUnavailable:
                continue
            found.append(_as(capability, driver))
        return found

    def find_driver(self, capability: type[C], *, device_id: str | None, what: str, hint: str) -> C:
        """The device to use: ``device_id``'s, or the first ready one with ``capability``.

        ``what`` names the device for the clerk ("ID-card reader"); ``hint`` says how to
        get one ready.
        """
        if device_id is not None:
            if self.runtime.devices.state(device_id) is None:
                raise ApiError(404, "unknown_device", f"no device {device_id!r}", hint=hint)
            try:
                driver = self.runtime.devices.driver(device_id)
            except DeviceUnavailable as exc:
                raise ApiError(
                    503, "device_unavailable", f"{what} {device_id} is not ready: {exc}", hint=hint
                ) from exc
            if driver.identity.kind not in kinds_with(capability):
                raise ApiError(
                    409,
                    "wrong_device_kind",
                    f"device {device_id!r} is not a device of kind {what}",
                    hint=hint,
                )
            return _as(capability, driver)
        drivers = self.ready_drivers(capability)
        if not drivers:
            raise ApiError(503, "no_device", f"no {what} is connected and ready", hint=hint)
        return drivers[0]


def _as(capability: type[C], driver: Driver) -> C:
    # The kind declared the capability; its drivers implement it (tests/devices check it).
    return cast(C, driver)
