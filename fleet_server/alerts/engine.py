"""The alert engine: every ``interval_s`` read the fleet, compute conditions, reconcile.

Reconciling keeps one alert per (rule, outlet, device) episode: it opens, updates and
resolves alerts and notifies on each change (docs/fleet-health.md, "Alerts"). It runs
in one thread, and only in the process holding the leadership (``alerts.leader``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, Table, and_, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.alerts.conditions import Condition, OutletFacts, conditions_for
from fleet_server.alerts.config_parts import ConfigParts
from fleet_server.alerts.leader import AlwaysLeader, Leadership
from fleet_server.alerts.notify import WebhookNotifier
from fleet_server.alerts.record_rules import BreakerStates, RecordRules
from fleet_server.alerts.rules import Override, RuleBook
from fleet_server.bulkwrite import update_rows, update_statement
from fleet_server.campaigns.alerting import (
    CAMPAIGN_OUTLET,
    PausedCampaign,
    failed_installs,
    paused_campaigns,
)
from fleet_server.config.drift import config_drift_facts
from fleet_server.health.hours import zone_of
from fleet_server.health.live import LiveHub
from fleet_server.health.queries import alert_payload
from fleet_server.health.tables import (
    Alert,
    AlertRuleOverride,
    DeviceState,
    OutletHealth,
    OutletProfile,
)
from fleet_server.models import Agent, RevokedTraffic
from fleet_server.pacing import Pacer, no_pacing
from fleet_server.transactions.usage import refusals_on

logger = logging.getLogger(__name__)


def load_rulebook(session: Session) -> RuleBook:
    """The rule book with every stored override."""
    return RuleBook(
        Override(scope=row.scope, scope_value=row.scope_value, rule=row.rule, params=row.params)
        for row in session.scalars(select(AlertRuleOverride))
    )


def _device_may_alert(book: RuleBook, paper: ColumnElement[str]) -> ColumnElement[bool]:
    """A SQL filter that keeps every device some device rule could fire for.

    Device rules need the device offline/in error, a paper state, or enough failed reads;
    the read thresholds used are the loosest of the defaults and every stored override,
    so the filter only drops devices no rule can hold for under any scope. Without it a
    fleet of healthy devices (the usual case) was read and decoded in full every period.
    """
    min_reads, max_ratio = book.loosest_read_thresholds()
    total = DeviceState.reads_ok + DeviceState.reads_failed
    return or_(
        DeviceState.state.in_(("offline", "error")),
        paper.in_(("end", "out", "near_end")),
        and_(
            total >= min_reads,
            total > 0,
            # ratio > max_ratio, loosened by a hair so float rounding never drops one
            DeviceState.reads_failed * 1.0 >= total * (max_ratio - 1e-9),
        ),
    )


# Rows per fetch of the large reads: a fetch runs in C and holds the interpreter throughout.
_FETCH_CHUNK = 500

# What reconciling needs of each open alert, read as plain rows.
_OPEN_COLUMNS = (
    Alert.id, Alert.rule, Alert.outlet_id, Alert.device_id, Alert.severity, Alert.summary,
    Alert.value, Alert.detail, Alert.silenced_until,
)  # fmt: skip
_ALERTS: Table = Alert.__table__  # type: ignore[assignment]
_REFRESH_COLUMNS = ("severity", "summary", "value", "detail", "updated_at")
_REFRESH = update_statement(_ALERTS, keys=("id",), columns=_REFRESH_COLUMNS)
_RESOLVE_COLUMNS = ("state", "resolved_at", "updated_at")
_RESOLVE = update_statement(_ALERTS, keys=("id",), columns=_RESOLVE_COLUMNS)


def gather_facts(
    session: Session,
    book: RuleBook | None = None,
    *,
    day: date | None = None,
    config_parts: ConfigParts | None = None,
    pace: Callable[[], None] = no_pacing,
) -> list[OutletFacts]:
    """One ``OutletFacts`` per outlet with an agent; devices only where a rule may fire.

    Reads plain column tuples, not ORM objects: at 10,000 outlets x 5 devices building
    and tracking identity-mapped objects every evaluation cost seconds of CPU. Of device
    health only ``paper`` is read (the only key a rule looks at), extracted in SQL.
    ``pace`` is called per row of the large reads (``fleet_server.pacing``); they are
    fetched in chunks so that no single fetch holds the interpreter long.
    """
    book = book if book is not None else load_rulebook(session)
    profiles = {
        row.outlet_id: row
        for row in session.execute(
            select(
                OutletProfile.outlet_id,
                OutletProfile.kind,
                OutletProfile.region_code,
                OutletProfile.opening_hours,
            )
        )
    }
    # .all(): a list of rows (2-tuples); dict() of a Result itself would treat it as a mapping
    skew: dict[str, float | None] = dict(
        session.execute(select(OutletHealth.outlet_id, OutletHealth.clock_skew_s)).all()
    )
    devices: dict[str, list[dict[str, Any]]] = {}
    paper = DeviceState.health["paper"].as_string()
    for row in session.execute(
        select(
            DeviceState.outlet_id,
            DeviceState.device_id,
            DeviceState.kind,
            DeviceState.state,
            DeviceState.state_since,
            paper.label("paper"),
            DeviceState.reads_ok,
            DeviceState.reads_failed,
        )
        .where(_device_may_alert(book, paper))
        .execution_options(yield_per=_FETCH_CHUNK)
    ):
        pace()
        devices.setdefault(row.outlet_id, []).append(
            {
                "device_id": row.device_id,
                "kind": row.kind,
                "state": row.state,
                "state_since": row.state_since,
                "health": {} if row.paper is None else {"paper": row.paper},
                "reads_ok": row.reads_ok,
                "reads_failed": row.reads_failed,
            }
        )
    revoked = {hit.outlet_id: hit for hit in session.scalars(select(RevokedTraffic))}
    drift = config_drift_facts(session)
    configured = (config_parts or ConfigParts()).read(session)
    refusals = refusals_on(session, day) if day is not None else {}
    facts = []
    for agent in session.execute(
        select(
            Agent.outlet_id, Agent.state, Agent.state_since, Agent.last_metrics
        ).execution_options(yield_per=_FETCH_CHUNK)
    ):
        pace()
        profile = profiles.get(agent.outlet_id)
        hours, alerts = configured.get(agent.outlet_id, (None, None))
        if hours is None and profile is not None:
            hours = profile.opening_hours
        facts.append(
            OutletFacts(
                outlet_id=agent.outlet_id,
                state=agent.state,
                state_since=agent.state_since,
                kind=profile.kind if profile else None,
                region_code=profile.region_code if profile else None,
                opening_hours=hours,
                config_alerts=alerts if isinstance(alerts, dict) else {},
                metrics=agent.last_metrics or {},
                clock_skew_s=skew.get(agent.outlet_id),
                devices=devices.get(agent.outlet_id, []),
                refused_today=refusals.get(agent.outlet_id, (0, 0))[0],
                stored_today=refusals.get(agent.outlet_id, (0, 0))[1],
                **_revoked_facts(revoked.pop(agent.outlet_id, None)),
                **drift.get(agent.outlet_id, {}),
            )
        )
    # A revoked outlet whose agent was never heard (no presence row) still alerts.
    for hit in revoked.values():
        profile = profiles.get(hit.outlet_id)
        facts.append(
            OutletFacts(
                outlet_id=hit.outlet_id,
                state="unknown",
                state_since=hit.first_at,
                kind=profile.kind if profile else None,
                region_code=profile.region_code if profile else None,
                **_revoked_facts(hit),
            )
        )
    return facts


def with_config_alerts(
    rules: dict[str, dict[str, Any]], config_alerts: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``rules`` with the config's parameters laid over (a new dict: the book caches)."""
    if not config_alerts:
        return rules
    merged = dict(rules)
    for rule, params in config_alerts.items():
        if rule in merged and isinstance(params, dict):
            merged[rule] = {**merged[rule], **params}
    return merged


def outlet_conditions(
    session: Session,
    book: RuleBook,
    *,
    now: datetime,
    timezone: ZoneInfo,
    already_open: set[tuple[str, str, str]],
    config_parts: ConfigParts | None = None,
    pace: Callable[[], None] = no_pacing,
) -> list[Condition]:
    """Every per-outlet rule applied to every outlet: the part of a pass that grows with
    the fleet (the engine's thread, or the child process of ``alerts.outlet_pass``)."""
    found: list[Condition] = []
    for facts in gather_facts(
        session,
        book,
        day=now.astimezone(timezone).date(),
        config_parts=config_parts,
        pace=pace,
    ):
        pace()
        rules = with_config_alerts(
            book.for_outlet(
                outlet_id=facts.outlet_id, region_code=facts.region_code, kind=facts.kind
            ),
            facts.config_alerts,
        )
        # Opening hours are read in the outlet's own time zone when its config names one.
        local = now.astimezone(zone_of(facts.opening_hours, timezone.key))
        found.extend(
            conditions_for(facts, rules, now=now, local_now=local, already_open=already_open)
        )
    return found


def _revoked_facts(row: RevokedTraffic | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {"revoked_refused": row.refused, "revoked_last_at": row.last_at}


class OutletPass(Protocol):
    """Where ``outlet_conditions`` runs when not in the engine's thread."""

    def conditions(
        self, *, now: datetime, already_open: set[tuple[str, str, str]]
    ) -> list[Condition]:
        """The per-outlet conditions holding at ``now``."""

    def close(self) -> None:
        """Stop whatever runs the pass."""


class AlertEngine:
    """Evaluate the rules periodically in a named thread; ``evaluate_once`` for tests.

    With ``outlet_pass`` the per-outlet rules run there (``alerts.outlet_pass``: a child
    process, so that a pass over a large fleet does not hold this process's interpreter
    while the ingest and the delivery worker need it); without it they run here, paced.
    """

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        interval_s: float,
        timezone: str = "Asia/Shanghai",
        notifier: WebhookNotifier | None = None,
        live: LiveHub | None = None,
        on_db_latency: Callable[[str, float], None] | None = None,
        leader: Leadership | None = None,
        outlet_pass: OutletPass | None = None,
    ) -> None:
        self._sessions = sessions
        self._outlet_pass = outlet_pass
        self.leader: Leadership = leader or AlwaysLeader(sessions)
        self._interval_s = interval_s
        self._tz = ZoneInfo(timezone)
        self._notifier = notifier
        self._live = live
        self._on_db_latency = on_db_latency
        self._stop = threading.Event()
        # The API's "evaluate now" and the engine thread share the leader's connection.
        self._eval_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="alert-engine", daemon=True)
        self.evaluations = 0
        self.errors = 0
        self.open_count = 0
        self._records = RecordRules()
        self._config_parts = ConfigParts()

    def watch_breakers(self, states: BreakerStates) -> None:
        """Read each upstream target's breaker from ``states`` (the delivery worker's)."""
        self._records.breakers = states

    def start(self) -> None:
        """Start evaluating every ``interval_s``."""
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop after the evaluation in progress and give the leadership up."""
        self._stop.set()
        if self._thread.ident is not None:  # started (tests may only evaluate_once)
            self._thread.join(timeout=timeout)
        if not self._thread.is_alive():
            self.leader.release()
        if self._outlet_pass is not None:
            self._outlet_pass.close()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.evaluate_once()
            except SQLAlchemyError:
                self.errors += 1
                logger.exception("alert evaluation failed; trying again next period")
            except Exception:  # the engine thread must outlive any bug
                self.errors += 1
                logger.exception("alert evaluation crashed; trying again next period")

    def evaluate_once(self, *, now: datetime | None = None) -> bool:
        """Read, evaluate and reconcile once, in one transaction, if this process leads.

        Returns False (and does nothing) on a standby process.
        """
        with self._eval_lock:
            if not self.leader.acquire():
                return False
            self._evaluate(now=now or datetime.now(UTC))
            return True

    def _evaluate(self, *, now: datetime) -> None:
        notes: list[dict[str, Any]] = []
        started = time.perf_counter()
        outlet_found: list[Condition] | None = None
        if self._outlet_pass is not None:
            # Only this thread of the leader opens or resolves alerts, so the keys read
            # here are still the open ones when the reconciliation below reads the rows.
            with self.leader.transaction() as session:
                already = {
                    (rule, outlet, device)
                    for rule, outlet, device in session.execute(
                        select(Alert.rule, Alert.outlet_id, Alert.device_id).where(
                            Alert.state == "open"
                        )
                    )
                }
            # Outside any transaction: the leader's connection does not idle in one
            # while the child process reads the fleet.
            outlet_found = self._outlet_pass.conditions(now=now, already_open=already)
        with self.leader.transaction() as session:
            book = load_rulebook(session)
            open_rows: dict[tuple[str, str, str], Row[Any]] = {
                (row.rule, row.outlet_id, row.device_id): row
                for row in session.execute(select(*_OPEN_COLUMNS).where(Alert.state == "open"))
            }
            if outlet_found is None:
                outlet_found = outlet_conditions(
                    session, book, now=now, timezone=self._tz, already_open=set(open_rows),
                    config_parts=self._config_parts, pace=Pacer(),
                )  # fmt: skip
            holding = {condition.key: condition for condition in outlet_found}
            for condition in campaign_conditions(session, book):
                holding[condition.key] = condition
            for condition in self._records.conditions(session, book, now=now):
                holding[condition.key] = condition
            changed = self._reconcile(session, open_rows, holding, now=now, notes=notes)
            session.flush()
            self.open_count = len(holding)
        if self._on_db_latency is not None:
            self._on_db_latency("alert_evaluation", time.perf_counter() - started)
        self.evaluations += 1
        for payload in notes:
            if self._notifier is not None:
                self._notifier.notify(payload)
        if changed and self._live is not None:
            self._live.bump()

    def _reconcile(
        self,
        session: Session,
        open_rows: dict[tuple[str, str, str], Row[Any]],
        holding: dict[tuple[str, str, str], Condition],
        *,
        now: datetime,
        notes: list[dict[str, Any]],
    ) -> bool:
        """Open, refresh and resolve alerts; the payloads to notify go to ``notes``.

        Open alerts are read and written as plain rows in two ``executemany`` (only the
        ones whose figures changed are written): when a region's network fails, tens of
        thousands of alerts are open, and loading and flushing them as ORM objects every
        pass held the server's interpreter for most of a second.
        """
        changed = False
        opened: list[Alert] = []
        refreshed: list[dict[str, Any]] = []
        escalated: list[int] = []
        for key, condition in holding.items():
            row = open_rows.get(key)
            summary = condition.summary[:256]
            if row is None:
                alert = Alert(
                    rule=condition.rule,
                    outlet_id=condition.outlet_id,
                    device_id=condition.device_id,
                    severity=condition.severity,
                    state="open",
                    summary=summary,
                    value=condition.value,
                    detail=condition.detail,
                    opened_at=now,
                    updated_at=now,
                )
                session.add(alert)
                opened.append(alert)
                changed = True
                continue
            figures = (condition.severity, summary, condition.value, condition.detail)
            if figures == (row.severity, row.summary, row.value, row.detail):
                continue
            refreshed.append(
                {"id": row.id, "severity": condition.severity, "summary": summary,
                 "value": condition.value, "detail": condition.detail, "updated_at": now}
            )  # fmt: skip
            if row.severity != condition.severity:
                changed = True
                if not _silenced(row.silenced_until, now):
                    escalated.append(row.id)
        resolved: list[dict[str, Any]] = []
        told: list[int] = []
        for key, row in open_rows.items():
            if key not in holding:
                resolved.append(
                    {"id": row.id, "state": "resolved", "resolved_at": now, "updated_at": now}
                )
                changed = True
                if not _silenced(row.silenced_until, now):
                    told.append(row.id)
        update_rows(session, _REFRESH, refreshed, keys=("id",), columns=_REFRESH_COLUMNS)
        update_rows(session, _RESOLVE, resolved, keys=("id",), columns=_RESOLVE_COLUMNS)
        if escalated or told:
            rows = _alerts_by_id(session, escalated + told)
            notes.extend(alert_payload(rows[i], "updated") for i in escalated)
            notes.extend(alert_payload(rows[i], "resolved") for i in told)
        if opened:
            session.flush()  # assigns ids for the payloads
            notes.extend(alert_payload(row, "opened") for row in opened)
        return changed


def _alerts_by_id(session: Session, ids: list[int]) -> dict[int, Alert]:
    """The alerts ``ids`` as stored now (after the batched writes), for their payloads."""
    found: dict[int, Alert] = {}
    for start in range(0, len(ids), _FETCH_CHUNK):
        chunk = ids[start : start + _FETCH_CHUNK]
        found.update(
            (alert.id, alert)
            for alert in session.scalars(
                select(Alert).where(Alert.id.in_(chunk)).execution_options(populate_existing=True)
            )
        )
    return found


def campaign_conditions(session: Session, book: RuleBook) -> list[Condition]:
    """``update_failed`` per outlet and ``campaign_paused`` per campaign (docs/updates.md)."""
    found: list[Condition] = []
    for failed in failed_installs(session):
        params = book.for_outlet(outlet_id=failed.outlet_id, region_code=None, kind=None)
        rule = params["update_failed"]
        if rule["enabled"]:
            found.append(Condition(
                rule="update_failed", outlet_id=failed.outlet_id, device_id="",
                severity=rule["severity"],
                summary=f"outlet {failed.outlet_id} {failed.state} installing {failed.release} "
                        f"(campaign {failed.campaign_id}): {failed.reason or '-'}",
                value=None,
                detail={"campaign_id": failed.campaign_id, "release": failed.release,
                        "state": failed.state, "reason": failed.reason},
            ))  # fmt: skip
    params = book.for_outlet(outlet_id=CAMPAIGN_OUTLET, region_code=None, kind=None)
    rule = params["campaign_paused"]
    if rule["enabled"]:
        found.extend(_paused(p, rule["severity"]) for p in paused_campaigns(session))
    return found


def _paused(paused: PausedCampaign, severity: str) -> Condition:
    return Condition(
        rule="campaign_paused",
        outlet_id=CAMPAIGN_OUTLET,
        device_id=f"campaign:{paused.campaign_id}",
        severity=severity,
        summary=f"campaign {paused.campaign_id} ({paused.release}) paused: {paused.reason or '-'}",
        value=None,
        detail={"campaign_id": paused.campaign_id, "name": paused.name,
                "release": paused.release, "reason": paused.reason},
    )  # fmt: skip


def _silenced(until: datetime | None, now: datetime) -> bool:
    return until is not None and until > now
