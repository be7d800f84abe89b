"""What agents say of their config: births and ``reported`` messages, per ingest batch.

The ingest hands every accepted birth and report here (``ConfigReports``, declared by
the ingest); ``flush`` writes the batch's effect on ``outlet_configs`` in one commit:
what the agent runs (version, hash), a refusal and its reason, the key ids it holds,
and whether it is in sync (``reported_hash == desired_hash``) or drifting since when.
An agent that runs a version below the desired one and has not refused the desired
one missed it (a broker that lost its retained messages): its envelope is published
again, at most once per ``republish_interval_s`` per outlet.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Final

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, defer, sessionmaker

from fleet_server.config.reconcile import ConfigPublishing
from fleet_server.config.stats import ConfigStats
from fleet_server.config.tables import OutletConfig
from govedge_wire import Birth, ConfigReport
from govedge_wire.config import SignedConfig

logger = logging.getLogger(__name__)
_DETAIL_MAX: Final = 512
# Outlets remembered for throttling republishes; forgotten whole past this (rare).
_THROTTLE_MAX: Final = 100_000


class ReportDesk:
    """Implements the ingest's ``ConfigReports``; runs in the ingest worker thread."""

    def __init__(self, *, stats: ConfigStats, republish_interval_s: float = 60.0) -> None:
        self._publisher: ConfigPublishing | None = None
        self._stats = stats
        self._publish_lock = threading.Lock()
        self._interval_s = republish_interval_s
        self._pending: list[tuple[Birth | ConfigReport, datetime]] = []
        self._last_republish: dict[str, float] = {}

    def attach(self, *, publisher: ConfigPublishing, publish_lock: threading.Lock) -> None:
        """Republish through ``publisher`` (the ingest's, made after this desk), holding
        the reconciler's ``publish_lock``: an old envelope read here is then never
        published after a newer one the reconciler read later."""
        self._publisher = publisher
        self._publish_lock = publish_lock

    def take(self, message: Birth | ConfigReport, *, received_at: datetime) -> None:
        """Keep one accepted birth or report for this batch's ``flush``."""
        self._pending.append((message, received_at))

    def flush(self, sessions: sessionmaker[Session]) -> None:
        """Write the batch's births and reports; republish envelopes agents missed."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            missed = self._write(sessions, batch)
        except SQLAlchemyError:
            self._stats.dropped("db_error", len(batch))
            logger.exception("could not store %d config reports", len(batch))
            return
        except Exception:  # never stop the ingest worker
            self._stats.dropped("internal_error", len(batch))
            logger.exception("config reports failed")
            return
        if missed and self._publisher is not None:
            try:
                self._republish(sessions, missed)
            except Exception:
                logger.exception("could not republish configs")

    def _write(
        self, sessions: sessionmaker[Session], batch: list[tuple[Birth | ConfigReport, datetime]]
    ) -> list[str]:
        outlets = sorted({message.outlet_id for message, _ in batch})
        with sessions.begin() as session:
            rows = {
                row.outlet_id: row
                for row in session.scalars(
                    select(OutletConfig)
                    .where(OutletConfig.outlet_id.in_(outlets))
                    # The large JSON columns stay in the database (a birth storm after a
                    # broker restart reads thousands of rows); never touched here.
                    .options(
                        defer(OutletConfig.desired, raiseload=True),
                        defer(OutletConfig.envelope, raiseload=True),
                        defer(OutletConfig.held, raiseload=True),
                    )
                )
            }
            for message, at in batch:
                row = rows.get(message.outlet_id)
                if row is None:
                    row = rows[message.outlet_id] = OutletConfig(
                        outlet_id=message.outlet_id, desired_version=0
                    )
                    session.add(row)
                self._apply(row, message, at)
            return [outlet for outlet in outlets if _missed(rows[outlet])]

    def _apply(self, row: OutletConfig, message: Birth | ConfigReport, at: datetime) -> None:
        row.reported_version = message.config_version
        row.reported_hash = message.config_hash
        row.reported_at = at
        row.key_ids = list(message.config_key_ids)
        report = message if isinstance(message, ConfigReport) else None
        refused = report is not None and report.status == "refused"
        if report is not None and refused:
            reason = report.reason or "unknown"
            row.refused_version = report.offered_version
            row.refused_reason = reason
            # Stored for the outlet page, never logged (an agent's free text).
            row.refused_detail = report.detail[:_DETAIL_MAX] if report.detail else None
            row.refused_at = at
            self._stats.refused_by_agent(reason)
        elif report is not None or (
            row.desired_hash is not None and row.reported_hash == row.desired_hash
        ):
            row.refused_version = row.refused_reason = row.refused_detail = None
            row.refused_at = None
        if row.desired_hash is None and not refused:
            row.in_sync_since = row.drifting_since = None
        elif row.desired_hash is not None and row.reported_hash == row.desired_hash:
            row.in_sync_since = row.in_sync_since or at
            row.drifting_since = None
        else:
            row.drifting_since = row.drifting_since or at
            row.in_sync_since = None

    def _republish(self, sessions: sessionmaker[Session], outlets: list[str]) -> None:
        publisher = self._publisher
        assert publisher is not None, "flush republishes only once attached"
        now = time.monotonic()
        due = [
            outlet
            for outlet in outlets
            if now - self._last_republish.get(outlet, -1e18) >= self._interval_s
        ]
        if not due:
            return
        if len(self._last_republish) > _THROTTLE_MAX:
            self._last_republish.clear()
        with self._publish_lock:
            with sessions() as session:
                envelopes = session.execute(
                    select(OutletConfig.outlet_id, OutletConfig.envelope).where(
                        OutletConfig.outlet_id.in_(due), OutletConfig.published_at.is_not(None)
                    )
                ).all()
            for outlet, envelope in envelopes:
                try:
                    signed = SignedConfig.model_validate(envelope)
                except ValidationError:
                    self._stats.dropped("stored_envelope_invalid")
                    continue
                if publisher.publish_config(signed) is None:
                    return  # the broker is away; the next birth asks again
                self._last_republish[outlet] = now
                self._stats.count("republished")
                logger.info(
                    "outlet %s runs an older config than v%d: published it again",
                    outlet,
                    signed.version,
                )


def _missed(row: OutletConfig) -> bool:
    """The agent runs below the published desired version and did not refuse it."""
    if row.desired_hash is None or row.published_at is None:
        return False
    if row.reported_hash == row.desired_hash:
        return False
    behind = row.reported_version is None or row.reported_version < row.desired_version
    return behind and row.refused_version != row.desired_version
