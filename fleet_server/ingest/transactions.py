"""Transactions in the ingest: validate each body, store the batch, then acknowledge.

Valid transactions are inserted into the inbox in one database transaction per batch;
only after that commit is each acknowledged (``accepted``, or ``duplicate`` for a
``tx_id`` already stored). An invalid body is acknowledged ``rejected`` with a reason
naming fields, never values. If the commit fails nothing is acknowledged, so the
outlet's outbox sends again (docs/transactions.md).

An evaluation is checked and stored under its outlet's 好差评 rules, asked of
``rules_for`` once per evaluation (a cached lookup: ``fleet_server.config.evaluation_rules``
in the server; the settings' profile for every outlet when none is given).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.evaluations.rules import EvaluationRules
from fleet_server.ingest.publisher import AckStatus, Publisher
from fleet_server.ingest.stats import IngestStats, RateLimitedLog
from fleet_server.settings import Settings
from fleet_server.transactions.bodies import BodyRejected, parse_body
from fleet_server.transactions.inbox import PendingTx, Stored, StoreLimits, store_transactions
from fleet_server.transactions.materials import MaterialRejected, check_chunk
from fleet_server.transactions.usage import QUOTA_CODE
from govedge_wire import Transaction
from govedge_wire.transactions import MATERIAL_CHUNK_KIND, EvaluationBody, MaterialChunkBody

logger = logging.getLogger(__name__)

# An outlet's 好差评 rules; called once per evaluation, so a cached lookup (never a
# database query per call).
RulesFor = Callable[[str], EvaluationRules]


class TransactionDesk:
    """The current batch's transactions, stored and acknowledged after it."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        stats: IngestStats,
        publisher: Publisher,
        on_stored: Callable[[], None] | None,
        rules_for: RulesFor | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._stats = stats
        self._publisher = publisher
        self._on_stored = on_stored
        self._log = RateLimitedLog(logger)
        if rules_for is None:
            server_rules = settings.evaluation_rules
            rules_for = lambda _outlet_id: server_rules  # noqa: E731
        self._rules_for = rules_for
        self._limits = StoreLimits(
            outlet_daily_bytes=settings.outlet_daily_bytes,
            submission_material_bytes=settings.submission_material_max_bytes,
            zone=ZoneInfo(settings.outlet_timezone),
        )
        self._pending: list[PendingTx] = []
        self._rejected: list[tuple[Transaction, str]] = []

    def check(self, message: Transaction, *, received_at: datetime) -> None:
        """Validate a transaction's body and queue it for the batch's store-then-ack."""
        stats = self._stats
        rules: EvaluationRules | None = None
        try:
            body = parse_body(message.tx_kind, dict(message.body))
            if isinstance(body, EvaluationBody):
                rules = self._rules_for(message.outlet_id)
                _check_evaluation(body, rules)
            elif isinstance(body, MaterialChunkBody):
                check_chunk(message.tx_id, body, max_bytes=self._settings.material_max_bytes)
        except (BodyRejected, MaterialRejected) as exc:
            stats.noted("tx_rejected")
            if isinstance(exc, MaterialRejected):
                stats.noted(f"material_rejected_{exc.code}")
            elif exc.code != "invalid":
                stats.noted(f"tx_rejected_{exc.code}")
            if isinstance(exc, BodyRejected) and message.tx_kind == MATERIAL_CHUNK_KIND:
                stats.noted("material_rejected_invalid")
            self._log.warning(
                "tx_rejected",
                "rejected transaction %s from outlet %s: %s",
                message.tx_id,
                message.outlet_id,
                exc.reason,
            )
            self._rejected.append((message, exc.reason))
            return
        self._pending.append(
            PendingTx(message=message, body=body, received_at=received_at, rules=rules)
        )

    def store_and_ack(self) -> None:
        """Commit the batch's transactions, then acknowledge each (never before)."""
        pending, rejected = self._pending, self._rejected
        self._pending, self._rejected = [], []
        acks: list[tuple[Transaction, AckStatus, str | None]] = [
            (message, "rejected", reason) for message, reason in rejected
        ]
        stored = False
        try:
            stored = self._store(pending, acks)
        finally:  # the refused ones are answered even when the store failed
            self._publisher.acks(acks)
        if stored and self._on_stored is not None:
            self._on_stored()

    def _store(
        self, pending: list[PendingTx], acks: list[tuple[Transaction, AckStatus, str | None]]
    ) -> bool:
        """Commit ``pending``, add each stored one's ack to ``acks`` (never before); True
        when one was newly accepted."""
        if not pending:
            return False
        try:
            with self._sessions.begin() as session:
                outcomes = store_transactions(session, pending, limits=self._limits)
        except IntegrityError:
            # Another worker stored one of these meanwhile: go one by one.
            outcomes_or_none = [self._store_one(item) for item in pending]
        except SQLAlchemyError as exc:
            self._stats.db_error()
            self._log.exception(
                "tx_db", "could not store %d transactions; not acknowledged", len(pending), exc=exc
            )
            return False
        else:
            outcomes_or_none = list(outcomes)
        stored = False
        for item, outcome in zip(pending, outcomes_or_none, strict=True):
            if outcome is None:
                continue
            self._count(item, outcome)
            stored = stored or outcome.outcome == "accepted"
            acks.append((item.message, outcome.outcome, outcome.reason))
        return stored

    def _count(self, item: PendingTx, outcome: Stored) -> None:
        self._stats.noted(f"tx_{outcome.outcome}")
        if outcome.code == QUOTA_CODE:
            self._stats.noted(f"tx_rejected_{QUOTA_CODE}")
            self._log.warning(
                f"quota:{item.message.outlet_id}",
                "outlet %s is over its stored bytes for today; refused transaction %s",
                item.message.outlet_id,
                item.message.tx_id,
            )
        elif outcome.code is not None:
            self._stats.noted(f"material_rejected_{outcome.code}")
            self._log.warning(
                "material_rejected",
                "rejected transaction %s from outlet %s: %s",
                item.message.tx_id,
                item.message.outlet_id,
                outcome.reason,
            )

    def _store_one(self, item: PendingTx) -> Stored | None:
        try:
            with self._sessions.begin() as session:
                return store_transactions(session, [item], limits=self._limits)[0]
        except IntegrityError:
            return Stored("duplicate")
        except SQLAlchemyError as exc:
            self._stats.db_error()
            self._log.exception("tx_db_one", "could not store a transaction", exc=exc)
            return None


def _check_evaluation(body: EvaluationBody, rules: EvaluationRules) -> None:
    """The outlet's rules must know the channel, and ``stars`` (when sent) must agree."""
    if not rules.known_channel(body.channel):
        raise BodyRejected(f"unknown evaluation channel for profile {rules.name}")
    if body.stars is not None and body.stars != rules.stars(body.level_code):
        raise BodyRejected(f"level_code disagrees with stars under {rules.level_coding} coding")
