"""Outlet presence: Sparkplug B's session rules, adapted, applied in memory.

The ingest worker feeds every decoded uplink to one ``PresenceTracker``, which keeps
each outlet's state and marks it dirty; ``presence_store`` writes the dirty records per
batch. No I/O here. The rules, the reasons counted and session resync:
docs/protocol.md, "Presence"; with several workers: docs/operations.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from govedge_wire import (
    Birth,
    CommandResult,
    ConfigReport,
    Death,
    Event,
    Telemetry,
    Transaction,
    UpdateStatus,
)

State = Literal["online", "offline", "stale", "unknown"]
UplinkMessage = (
    Birth | Death | Telemetry | Event | Transaction | CommandResult | ConfigReport | UpdateStatus
)


@dataclass(slots=True, kw_only=True)
class OutletRecord:
    """One outlet's presence and agent facts, as mirrored to the ``agents`` table."""

    outlet_id: str
    state: State = "unknown"
    state_since: datetime
    session: int | None = None
    last_seq: int | None = None
    last_seen: datetime | None = None
    birth_at: datetime | None = None
    agent_version: str | None = None
    hostname: str | None = None
    os: str | None = None
    config_version: int | None = None
    devices: list[dict[str, Any]] = field(default_factory=list)
    keepalive_s: int | None = None
    telemetry_interval_s: float | None = None
    last_metrics: dict[str, Any] | None = None
    # True once the outlet and agent rows exist in the database.
    stored: bool = False
    # True while facts only a birth changes (version, host, devices, ...) are unwritten;
    # otherwise a write needs only the presence columns (the common telemetry case).
    full_dirty: bool = True
    # True while the state or session changed since the last write, and while the
    # metrics did: a message that moved only last_seq/last_seen writes just those two.
    state_dirty: bool = True
    metrics_dirty: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one message did: ``ignored`` names the reason it changed nothing.

    ``rebirth`` says a rebirth command should go out now (after throttling);
    ``rebirth_reason`` says why one was wanted even if throttled; ``notes`` are
    counted without rejecting the message (``seq_gap``, ``transactions_received``).
    """

    ignored: str | None = None
    rebirth: bool = False
    rebirth_reason: str | None = None
    notes: tuple[str, ...] = ()
    # The session the server knows, when the message's session was older: sent with
    # the rebirth request so the agent can move past it (docs/protocol.md, rule 11).
    known_session: int | None = None


class PresenceTracker:
    """Apply the presence rules (docs/protocol.md) to a stream of uplink messages.

    Not thread-safe: one ingest worker owns it.
    """

    def __init__(self, *, rebirth_interval_s: float = 10.0, shared: bool = False) -> None:
        self._records: dict[str, OutletRecord] = {}
        self._dirty: set[str] = set()
        self._last_rebirth: dict[str, float] = {}
        self._rebirth_interval_s = rebirth_interval_s
        self._shared = shared

    @property
    def shared(self) -> bool:
        """True when other workers share this tracker's outlets (docs/operations.md)."""
        return self._shared

    # -- state -----------------------------------------------------------------

    def load(self, records: list[OutletRecord]) -> None:
        """Start from what the database remembers (records are taken as stored)."""
        for record in records:
            _written(record)
            self._records[record.outlet_id] = record

    def get(self, outlet_id: str) -> OutletRecord | None:
        """A copy of one outlet's record, or None if never heard of."""
        record = self._records.get(outlet_id)
        return copy.deepcopy(record) if record is not None else None

    def dirty(self) -> list[OutletRecord]:
        """The records changed since the last ``mark_stored``, in id order.

        The records themselves, not copies: the writer runs in the worker thread that
        owns this tracker, so nothing changes them while they are written (a copy per
        record per batch was a twentieth of the worker's time).
        """
        records = self._records
        return [records[outlet_id] for outlet_id in sorted(self._dirty)]

    def mark_stored(self, outlet_ids: list[str]) -> None:
        """The given records are now in the database; forget they were dirty."""
        for outlet_id in outlet_ids:
            self._dirty.discard(outlet_id)
            _written(self._records[outlet_id])

    def discard_dirty(self, outlet_id: str) -> None:
        """Give up writing one record (the database refuses it); memory keeps it."""
        self._dirty.discard(outlet_id)

    def dirty_ids(self) -> list[str]:
        """The ids of the records changed since the last ``mark_stored``, sorted."""
        return sorted(self._dirty)

    # -- shared mode: the database is the source of truth ------------------------

    def needs_refresh(self, message: UplinkMessage) -> bool:
        """Shared mode: ``message`` names a session this worker has not seen born.

        A birth never needs one (it carries everything); any other message whose
        outlet is unknown here, or whose session is newer than the one known here,
        may belong to a birth another worker received and stored.
        """
        if not self._shared or isinstance(message, Birth):
            return False
        record = self._records.get(message.outlet_id)
        return record is None or record.session is None or message.session > record.session

    def adopt(self, stored: OutletRecord) -> bool:
        """Take the database's record of one outlet if its session is newer than ours.

        Returns True when it was taken (what this worker had of the outlet, dirty or
        not, belonged to an older session and is dropped).
        """
        mine = self._records.get(stored.outlet_id)
        if stored.session is None:
            return False
        if mine is not None and mine.session is not None and stored.session <= mine.session:
            return False
        _written(stored)
        self._records[stored.outlet_id] = stored
        self._dirty.discard(stored.outlet_id)
        return True

    def reconcile(self, stored: list[OutletRecord]) -> None:
        """Merge the locked database rows of dirty outlets into memory before writing.

        A newer stored session replaces ours (nothing left to write). In the same
        session a stored ``offline`` wins over our ``online``/``stale`` (a death reached
        another worker; a worker's cache must not resurrect the outlet), and
        ``last_seq``/``last_seen``/``last_metrics`` keep the later of the two.
        """
        for row in stored:
            if row.outlet_id not in self._dirty or row.session is None:
                continue
            if self.adopt(row):
                continue
            mine = self._records[row.outlet_id]
            mine.stored = True
            if row.session != mine.session:
                continue  # ours is newer: it wins as it stands
            if row.state == "offline":
                mine.state = "offline"
                mine.state_since = row.state_since
            if row.last_seq is not None:
                mine.last_seq = (
                    row.last_seq if mine.last_seq is None else max(mine.last_seq, row.last_seq)
                )
            if row.last_seen is not None and (
                mine.last_seen is None or row.last_seen > mine.last_seen
            ):
                mine.last_seen = row.last_seen
                mine.last_metrics = row.last_metrics

    def mark_all_stale(self, *, at: datetime, dirty: bool = True) -> int:
        """The server lost the broker: every online outlet is stale. Returns how many.

        ``dirty=False`` (shared mode) changes memory only: the database was marked by
        one statement already, and records that were dirty stay dirty.
        """
        count = 0
        for record in self._records.values():
            if record.state == "online":
                if dirty:
                    self._set_state(record, "stale", at=at)
                else:
                    record.state = "stale"
                    record.state_since = at
                count += 1
        return count

    def mark_offline(self, outlet_id: str, *, at: datetime) -> bool:
        """The outlet was revoked: offline now, as if its death had arrived (its real
        will is refused with every other message of a revoked outlet). True if changed."""
        record = self._records.get(outlet_id)
        if record is None or record.state == "offline":
            return False
        self._set_state(record, "offline", at=at)
        return True

    # -- messages --------------------------------------------------------------

    def apply(self, message: UplinkMessage, *, received_at: datetime, now: float) -> Outcome:
        """Apply one decoded uplink message received at ``received_at`` (wall clock).

        ``now`` is a monotonic clock reading, used only to throttle rebirth requests.
        """
        if isinstance(message, Birth):
            return self._birth(message, received_at=received_at, now=now)
        record = self._records.get(message.outlet_id)
        if isinstance(message, Death):
            return self._death(message, record, received_at=received_at)
        if record is None or record.session is None:
            return self._want_rebirth(message.outlet_id, "no_birth", now=now, ignored=True)
        if message.session != record.session:
            known = record.session if message.session < record.session else None
            return self._want_rebirth(
                message.outlet_id, "session_mismatch", now=now, ignored=True, known_session=known
            )
        if record.state == "offline":
            return Outcome(ignored="after_death")
        notes: list[str] = []
        # Shared mode: the other workers received the numbers missing here.
        gap = not self._shared and (record.last_seq is None or message.seq != record.last_seq + 1)
        record.last_seen = received_at
        record.last_seq = (
            message.seq if record.last_seq is None else max(record.last_seq, message.seq)
        )
        if record.state != "online":
            self._set_state(record, "online", at=received_at)
        if isinstance(message, Telemetry) and not _same(record.last_metrics, message.metrics):
            record.last_metrics = dict(message.metrics)
            record.metrics_dirty = True
        elif isinstance(message, Transaction):
            notes.append("transactions_received")
        self._dirty.add(record.outlet_id)
        if gap:
            notes.append("seq_gap")
            wanted = self._want_rebirth(message.outlet_id, "seq_gap", now=now, ignored=False)
            return Outcome(rebirth=wanted.rebirth, rebirth_reason="seq_gap", notes=tuple(notes))
        return Outcome(notes=tuple(notes))

    def _birth(self, birth: Birth, *, received_at: datetime, now: float) -> Outcome:
        record = self._records.get(birth.outlet_id)
        if record is None:
            record = OutletRecord(outlet_id=birth.outlet_id, state_since=received_at)
            self._records[birth.outlet_id] = record
        elif record.session is not None and birth.session < record.session:
            return self._want_rebirth(
                birth.outlet_id,
                "stale_session",
                now=now,
                ignored=True,
                known_session=record.session,
            )
        record.session = birth.session
        record.last_seq = birth.seq
        record.last_seen = received_at
        record.birth_at = received_at
        record.agent_version = birth.agent_version
        record.hostname = birth.hostname
        record.os = birth.os
        record.config_version = birth.config_version
        record.devices = [device.model_dump(mode="json") for device in birth.devices]
        record.keepalive_s = birth.keepalive_s
        record.telemetry_interval_s = birth.telemetry_interval_s
        record.full_dirty = True
        self._set_state(record, "online", at=received_at, force=True)
        return Outcome()

    def _death(
        self, death: Death, record: OutletRecord | None, *, received_at: datetime
    ) -> Outcome:
        if record is None or record.session is None:
            return Outcome(ignored="no_birth")
        if death.session != record.session:
            return Outcome(ignored="late_will")
        if record.state != "offline":
            self._set_state(record, "offline", at=received_at)
        return Outcome()

    def _want_rebirth(
        self,
        outlet_id: str,
        reason: str,
        *,
        now: float,
        ignored: bool,
        known_session: int | None = None,
    ) -> Outcome:
        last = self._last_rebirth.get(outlet_id)
        send = last is None or now - last >= self._rebirth_interval_s
        if send:
            self._last_rebirth[outlet_id] = now
        return Outcome(
            ignored=reason if ignored else None,
            rebirth=send,
            rebirth_reason=reason,
            known_session=known_session,
        )

    def _set_state(
        self, record: OutletRecord, state: State, *, at: datetime, force: bool = False
    ) -> None:
        if force or record.state != state:
            record.state = state
            record.state_since = at
            record.state_dirty = True
        self._dirty.add(record.outlet_id)


def _written(record: OutletRecord) -> None:
    """``record`` is as the database has it now."""
    record.stored = True
    record.full_dirty = record.state_dirty = record.metrics_dirty = False


def _same(stored: dict[str, Any] | None, metrics: dict[str, Any]) -> bool:
    """Equal metrics, types included (``1 == True == 1.0`` must still be written)."""
    if stored is None or stored != metrics:
        return False
    return all(type(stored[name]) is type(value) for name, value in metrics.items())
