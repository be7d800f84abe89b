"""The edge agent's outbox: every transaction durably stored before it is accepted,
delivered at least once, removed only by the server's TransactionAck (docs/outbox.md).

Exception tree (``sqlite3.Error`` never escapes; no error ever carries body content)::

    OutboxError
    ├── OutboxClosed        used before ``__aenter__`` or after ``__aexit__``
    ├── OutboxFull          quota (or disk) full; not accepted, nothing lost (waiting, ...)
    ├── InvalidEntry        bad id or kind, body not JSON, or too big for one payload
    ├── UnknownMaterial     a transaction references a material never stored (material_id)
    ├── CorruptEntry        authentication failed; the entry was quarantined (tx_id)
    ├── KeyFileError        key file unsafe, wrong size, missing, or not this outbox's (path)
    └── StorageError        SQLite failed: I/O, damaged, locked, timed out (sqlite_error)
"""

from edge_agent.outbox.errors import (
    CorruptEntry,
    InvalidEntry,
    KeyFileError,
    OutboxClosed,
    OutboxError,
    OutboxFull,
    StorageError,
    UnknownMaterial,
)
from edge_agent.outbox.models import (
    MATERIAL_CHUNK_KIND,
    AckOutcome,
    DeadLetter,
    DueEntry,
    MaterialProgress,
    OutboxStats,
    OutgoingTx,
    PriorityClass,
    Receipt,
    StoredReceipt,
    StoredTransaction,
)
from edge_agent.outbox.outbox import Outbox
from edge_agent.outbox.ratelimit import TokenBucket
from edge_agent.outbox.sender import OutboxSender

__all__ = [
    "MATERIAL_CHUNK_KIND",
    "AckOutcome",
    "CorruptEntry",
    "DeadLetter",
    "DueEntry",
    "InvalidEntry",
    "KeyFileError",
    "MaterialProgress",
    "Outbox",
    "OutboxClosed",
    "OutboxError",
    "OutboxFull",
    "OutboxSender",
    "OutboxStats",
    "OutgoingTx",
    "PriorityClass",
    "Receipt",
    "StorageError",
    "StoredReceipt",
    "StoredTransaction",
    "TokenBucket",
    "UnknownMaterial",
]
