"""Value objects of the outbox: priority classes, entries, dead letters, stats.

Everything here is frozen. Decrypted bodies are kept out of ``repr`` so that logging an
entry by mistake cannot leak personal data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, Literal

from pydantic import JsonValue

from govedge_wire import Transaction

MATERIAL_CHUNK_KIND: Final = "material.chunk"


class PriorityClass(enum.IntEnum):
    """Send order between classes (lower first); FIFO by insertion within one class."""

    CONTROL = 0  # acks and presence: small, and everything else waits on them
    TRANSACTION = 1  # submissions, evaluations, queue events, material chunks
    HEALTH = 2  # device and host health events
    TELEMETRY = 3  # samples; the first thing a slow uplink can afford to delay


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTransaction:
    """Clear metadata of one accepted entry (never the body)."""

    tx_id: str
    tx_kind: str
    priority_class: PriorityClass
    seq: int
    created_ms: int
    attempts: int
    next_due_ms: int
    stored_bytes: int
    dead_reason: str | None = None  # set when ``put`` found the id in the dead letters


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """What a retry of the request that made an entry gets back (idempotency).

    Stored sealed, keyed by the entry's ``tx_id``, in the entry's own SQLite
    transaction, and kept after the entry was acked (``Outbox.receipt_retention_s``).
    ``request_sha256`` is the request the key is bound to; ``answer`` the JSON answer.
    """

    request_sha256: str
    answer: dict[str, JsonValue] = field(repr=False)  # may hold free text


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReceipt:
    """A receipt as read back: the entry's ``tx_id`` and kind, when it was made."""

    tx_id: str
    tx_kind: str
    request_sha256: str
    answer: dict[str, JsonValue] = field(repr=False)
    created_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingTx:
    """One send of an entry: the outbox's part of a ``govedge_wire.Transaction``.

    The MQTT session completes it with its outlet id, session and ``seq`` (see
    ``to_message``), because only the session knows those.
    """

    tx_id: str
    tx_kind: str
    priority_class: PriorityClass
    created_ts: int
    attempt: int
    body: dict[str, JsonValue] = field(repr=False)

    def to_message(self, *, outlet_id: str, session: int, seq: int) -> Transaction:
        """The wire message for this send (a fresh ``msg_id`` each time)."""
        return Transaction(
            outlet_id=outlet_id,
            session=session,
            seq=seq,
            tx_id=self.tx_id,
            tx_kind=self.tx_kind,
            created_ts=self.created_ts,
            attempt=self.attempt,
            body=self.body,
            batch_ack=True,  # this agent takes its acks many to a message
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DueEntry:
    """An entry due for (re)sending, decrypted: metadata plus the body to send."""

    meta: StoredTransaction
    body: dict[str, JsonValue] = field(repr=False)

    @property
    def tx_id(self) -> str:
        """The entry's transaction id."""
        return self.meta.tx_id

    def outgoing(self) -> OutgoingTx:
        """The next send of this entry; it carries ``attempts + 1``."""
        return OutgoingTx(
            tx_id=self.meta.tx_id,
            tx_kind=self.meta.tx_kind,
            priority_class=self.meta.priority_class,
            created_ts=self.meta.created_ms,
            attempt=self.meta.attempts + 1,
            body=self.body,
        )


DeadCause = Literal["rejected", "corrupt", "material_rejected"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """An entry that is kept but never sent again, and why."""

    tx_id: str
    tx_kind: str
    priority_class: PriorityClass
    created_ms: int
    attempts: int
    dead_ms: int
    cause: DeadCause
    reason: str | None


AckOutcome = Literal["removed", "dead_lettered", "unknown"]
MaterialState = Literal["pending", "delivered", "rejected"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MaterialProgress:
    """Clear bookkeeping of one material's chunked transfer."""

    material_id: str
    sha256: str
    size: int
    chunk_count: int
    chunks_acked: int
    state: MaterialState


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxStats:
    """A snapshot for telemetry; ``as_metrics`` flattens it for a ``Telemetry`` message."""

    depth: dict[PriorityClass, int]
    oldest_age_s: float | None
    delivery_rate_per_min: float
    dead_letters: int
    quarantined: int
    unknown_acks: int
    used_bytes: int
    quota_bytes: int
    materials_pending: int

    def as_metrics(self) -> dict[str, float | int]:
        """Flat metric names (``outbox_depth_transaction`` ...) for telemetry."""
        metrics: dict[str, float | int] = {
            f"outbox_depth_{cls.name.lower()}": self.depth.get(cls, 0) for cls in PriorityClass
        }
        metrics |= {
            "outbox_oldest_age_s": self.oldest_age_s or 0.0,
            "outbox_acks_per_min": self.delivery_rate_per_min,
            "outbox_dead_letters": self.dead_letters,
            "outbox_quarantined": self.quarantined,
            "outbox_unknown_acks": self.unknown_acks,
            "outbox_bytes": self.used_bytes,
            "outbox_quota_bytes": self.quota_bytes,
            "outbox_quota_used_ratio": self.used_bytes / self.quota_bytes,
            "outbox_materials_pending": self.materials_pending,
        }
        return metrics
