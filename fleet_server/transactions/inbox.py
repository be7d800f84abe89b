"""Durable, idempotent storage of received transactions (the server's inbox).

The ingest worker calls ``store_transactions`` once per batch inside one database
transaction; only after that commits does it acknowledge each transaction. A
transaction is ``(outlet_id, tx_id)``: the same ``tx_id`` from another outlet is
another case. One already in the inbox (a resend, or a replay from another
connection) is reported as a duplicate and stored nowhere a second time. Evaluations also get their
``evaluations`` row (and a rectification ticket for a 差评) in the same transaction,
so statistics never disagree with the inbox. Material chunks are stored apart
(``materials``/``material_chunks``, see ``fleet_server.transactions.materials``), and a
submission is stored only when the materials it references are complete and verified;
a refused item is ``rejected`` with a reason and changes nothing. Each outlet's stored
bytes per day are bounded (``StoreLimits``, ``fleet_server.transactions.usage``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from fleet_server.evaluations.rules import EvaluationRules
from fleet_server.models import Evaluation, InboxEntry, Rectification
from fleet_server.piivault import current_vault, row_context
from fleet_server.transactions.bodies import ParsedBody
from fleet_server.transactions.identity import upstream_idempotency_key
from fleet_server.transactions.materials import (
    DEFAULT_SUBMISSION_MAX_BYTES,
    ChunkBatch,
    MaterialRejected,
    check_submission_materials,
    store_chunk,
)
from fleet_server.transactions.usage import (
    DEFAULT_OUTLET_DAILY_BYTES,
    QUOTA_CODE,
    DailyUsage,
    stored_size,
)
from govedge_wire import Transaction
from govedge_wire.transactions import (
    EvaluationBody,
    MaterialChunkBody,
    QueueEventBody,
    SubmissionBody,
)

__all__ = ["PendingTx", "StoreLimits", "StoreOutcome", "Stored", "store_transactions"]

_DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")  # the settings' outlet_timezone default
StoreOutcome = Literal["accepted", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one item: ``reason`` (and a counted ``code``) when rejected."""

    outcome: StoreOutcome
    reason: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingTx:
    """A decoded, validated transaction waiting for the batch commit."""

    message: Transaction
    body: ParsedBody
    received_at: datetime
    # The outlet's 好差评 rules the evaluation was checked under, and is stored under
    # (stars, default flag, rectification deadline); required for an evaluation.
    rules: EvaluationRules | None = None


@dataclass(slots=True)
class _NewRows:
    """The rows one batch adds, written with one INSERT per table at its end.

    ORM objects cost the ingest more than storing itself: building each instance, then
    the unit of work sorting and flushing them (docs/performance.md, "Outbox drain").
    Nothing in the batch reads these rows back before the commit; duplicates within
    the batch are caught by ``store_transactions``' own set of known ids.
    """

    inbox: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[PendingTx, EvaluationRules]] = field(default_factory=list)

    def write(self, session: Session) -> None:
        if self.inbox:
            session.execute(insert(InboxEntry), self.inbox)
        if self.evaluations:
            session.execute(insert(Evaluation), self.evaluations)
        _open_rectifications(session, self.bad)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreLimits:
    """Bounds on what one outlet may store (settings ``GOVEDGE_OUTLET_DAILY_BYTES``,
    ``GOVEDGE_SUBMISSION_MATERIAL_MAX_BYTES``; the day in ``GOVEDGE_OUTLET_TIMEZONE``)."""

    outlet_daily_bytes: int = DEFAULT_OUTLET_DAILY_BYTES
    submission_material_bytes: int = DEFAULT_SUBMISSION_MAX_BYTES
    zone: ZoneInfo = _DEFAULT_ZONE


def store_transactions(
    session: Session,
    items: Sequence[PendingTx],
    *,
    limits: StoreLimits | None = None,
) -> list[Stored]:
    """Insert new transactions; return, per item, ``accepted``, ``duplicate`` or
    ``rejected`` (a bad chunk, an incomplete or corrupt material, materials over the
    per-submission bound, or the outlet over its bytes for the day: ``QUOTA_CODE``).

    The caller commits. A concurrent insert of the same ``(outlet_id, tx_id)`` (or
    chunk) by another worker makes the commit fail with an integrity error; the caller
    then retries per item.
    """
    known = _known(session, items)
    limits = limits or StoreLimits()
    usage = DailyUsage.load(
        session, {item.message.outlet_id for item in items},
        limit=limits.outlet_daily_bytes, now=datetime.now(UTC), zone=limits.zone,
    )  # fmt: skip
    chunks = ChunkBatch.new()
    outcomes: list[Stored] = []
    rows = _NewRows()
    for item in items:
        message, body = item.message, item.body
        try:
            if isinstance(body, MaterialChunkBody):
                size = stored_size(message, body)
                if not usage.fits(message.outlet_id, size):
                    outcomes.append(Stored("rejected", reason=usage.reason(), code=QUOTA_CODE))
                    continue
                new = store_chunk(
                    session, chunks, outlet_id=message.outlet_id, body=body,
                    received_at=item.received_at,
                )  # fmt: skip
                if new:
                    usage.admit(message.outlet_id, size)
                outcomes.append(Stored("accepted" if new else "duplicate"))
                continue
            if (message.outlet_id, message.tx_id) in known:
                outcomes.append(Stored("duplicate"))
                continue
            if isinstance(body, SubmissionBody) and body.materials:
                check_submission_materials(
                    session, chunks, outlet_id=message.outlet_id, tx_id=message.tx_id,
                    body=body, max_total_bytes=limits.submission_material_bytes,
                )  # fmt: skip
        except MaterialRejected as exc:
            outcomes.append(Stored("rejected", reason=exc.reason, code=exc.code))
            continue
        if not usage.admit(message.outlet_id, stored_size(message, body)):
            outcomes.append(Stored("rejected", reason=usage.reason(), code=QUOTA_CODE))
            continue
        known.add((message.outlet_id, message.tx_id))
        _insert(rows, item)
        outcomes.append(Stored("accepted"))
    rows.write(session)
    usage.save(session)
    return outcomes


def _known(session: Session, items: Sequence[PendingTx]) -> set[tuple[str, str]]:
    """The ``(outlet_id, tx_id)`` of ``items`` already in the inbox."""
    wanted = {
        (item.message.outlet_id, item.message.tx_id)
        for item in items
        if not isinstance(item.body, MaterialChunkBody)
    }
    if not wanted:
        return set()
    rows = session.execute(
        select(InboxEntry.outlet_id, InboxEntry.tx_id).where(
            InboxEntry.outlet_id.in_({outlet for outlet, _ in wanted}),
            InboxEntry.tx_id.in_({tx_id for _, tx_id in wanted}),
        )
    )
    return {(row.outlet_id, row.tx_id) for row in rows} & wanted


def _insert(rows: _NewRows, item: PendingTx) -> None:
    """Add ``item``'s inbox row (and evaluation row) to ``rows``."""
    message, body = item.message, item.body
    queued = isinstance(body, QueueEventBody)
    entry: dict[str, Any] = {
        "tx_id": message.tx_id,
        "outlet_id": message.outlet_id,
        "idempotency_key": upstream_idempotency_key(message.outlet_id, message.tx_id),
        "tx_kind": message.tx_kind,
        # As InboxEntry.body seals it: bound to the row's (outlet_id, tx_id).
        "sealed_body": current_vault().seal(
            dict(message.body), context=row_context("inbox", message.outlet_id, message.tx_id)
        ),
        "created_ts": message.created_ts,
        "received_at": item.received_at,
        "state": "local" if queued else "pending",
        "attempts": 0,
        "next_due_at": None if queued else item.received_at,
        "result_pending": False,
        "item_code": None,
        "region_code": None,
        "window": None,
        "case_number": None,
    }
    if isinstance(body, SubmissionBody | EvaluationBody):
        entry["item_code"] = body.item_code
        entry["region_code"] = body.region_code
        entry["window"] = body.window
        entry["case_number"] = body.case_number
    if isinstance(body, EvaluationBody):
        if item.rules is None:
            raise ValueError("an evaluation is stored under the rules it was checked under")
        evaluation = _evaluation_row(item, body, rules=item.rules)
        rows.evaluations.append(evaluation)
        if evaluation["is_bad"]:
            rows.bad.append((item, item.rules))
    rows.inbox.append(entry)


def _evaluation_row(
    item: PendingTx, body: EvaluationBody, *, rules: EvaluationRules
) -> dict[str, Any]:
    stars = rules.stars(body.level_code)
    return {
        "tx_id": item.message.tx_id,
        "outlet_id": item.message.outlet_id,
        "window": body.window,
        "case_number": body.case_number,
        "level_code": body.level_code,
        "stars": stars,
        "channel": body.channel,
        "is_bad": rules.is_bad(stars),
        "is_default": body.system_default or rules.is_default(body.channel),
        "real_name": not body.anonymous,
        "evaluated_at": datetime.fromtimestamp(body.evaluated_ts / 1000, tz=UTC),
    }


def _open_rectifications(session: Session, bad: list[tuple[PendingTx, EvaluationRules]]) -> None:
    """A rectification ticket (整改) for each bad evaluation of the batch, tied to its
    evaluation's id (one read of the batch's new bad evaluations)."""
    if not bad:
        return
    ids = {
        (row.outlet_id, row.tx_id): row.id
        for row in session.execute(
            select(Evaluation.id, Evaluation.outlet_id, Evaluation.tx_id).where(
                Evaluation.outlet_id.in_({item.message.outlet_id for item, _ in bad}),
                Evaluation.tx_id.in_({item.message.tx_id for item, _ in bad}),
            )
        )
    }
    session.execute(
        insert(Rectification),
        [
            {
                "evaluation_id": ids[(item.message.outlet_id, item.message.tx_id)],
                "outlet_id": item.message.outlet_id,
                "window": item.body.window if isinstance(item.body, EvaluationBody) else None,
                "opened_at": item.received_at,
                "deadline_at": rules.deadline(item.received_at),
                "status": "open",
            }
            for item, rules in bad
        ],
    )
