"""Registry reads and writes: keyword-only functions over a SQLAlchemy ``Session``.

The ingest loads presence at start and writes dirty presence records per batch; the
API lists and shows outlets. Callers own the transaction (commit or roll back).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, contains_eager, joinedload

from fleet_server.bulkwrite import update_rows, update_statement
from fleet_server.ingest.presence import OutletRecord, State
from fleet_server.models import Agent, Outlet
from fleet_server.security.scope import WHOLE_FLEET, Scope


def load_presence(
    session: Session, outlet_ids: Sequence[str] | None = None, *, lock: bool = False
) -> list[OutletRecord]:
    """Agents' presence records as the database has them: all, or those of ``outlet_ids``.

    ``lock`` takes row locks (``SELECT ... FOR UPDATE``, in id order) until the end of
    the transaction, so several ingest workers write one outlet's row one at a time;
    SQLite ignores it (its writers are serialized anyway).
    """
    query = select(Agent)
    if outlet_ids is not None:
        query = query.where(Agent.outlet_id.in_(list(outlet_ids))).order_by(Agent.outlet_id)
    if lock:
        query = query.with_for_update()
    rows = session.scalars(query).all()
    return [
        OutletRecord(
            outlet_id=row.outlet_id,
            state=_state(row.state),
            state_since=row.state_since,
            session=row.session,
            last_seq=row.last_seq,
            last_seen=row.last_seen,
            birth_at=row.birth_at,
            agent_version=row.agent_version,
            hostname=row.hostname,
            os=row.os,
            config_version=row.config_version,
            devices=list(row.devices or []),
            keepalive_s=row.keepalive_s,
            telemetry_interval_s=row.telemetry_interval_s,
            last_metrics=row.last_metrics,
            stored=True,
        )
        for row in rows
    ]


def _state(value: str) -> State:
    if value == "online":
        return "online"
    if value == "offline":
        return "offline"
    if value == "stale":
        return "stale"
    return "unknown"


def _agent_values(record: OutletRecord) -> dict[str, object]:
    return {
        "outlet_id": record.outlet_id,
        "agent_version": record.agent_version,
        "hostname": record.hostname,
        "os": record.os,
        "session": record.session,
        "last_seq": record.last_seq,
        "state": record.state,
        "state_since": record.state_since,
        "last_seen": record.last_seen,
        "birth_at": record.birth_at,
        "config_version": record.config_version,
        "devices": record.devices,
        "keepalive_s": record.keepalive_s,
        "telemetry_interval_s": record.telemetry_interval_s,
        "last_metrics": record.last_metrics,
    }


_AGENT_TABLE = Agent.__table__
_KEYS = ("outlet_id",)
# A record with ``full_dirty`` False changed only these (telemetry, events, deaths).
_PRESENCE_COLUMNS = ("session", "last_seq", "state", "state_since", "last_seen", "last_metrics")
_ALL_COLUMNS = tuple(c for c in (
    "agent_version", "hostname", "os", "session", "last_seq", "state", "state_since",
    "last_seen", "birth_at", "config_version", "devices", "keepalive_s",
    "telemetry_interval_s", "last_metrics",
))  # fmt: skip
# A record whose state, session and metrics are as stored moved only these (telemetry
# repeating its metrics); with the metrics when only they changed too.
_SEEN_COLUMNS = ("last_seq", "last_seen")
_SEEN_METRICS_COLUMNS = ("last_seq", "last_seen", "last_metrics")
_UPDATE_PRESENCE = update_statement(_AGENT_TABLE, keys=_KEYS, columns=_PRESENCE_COLUMNS)  # type: ignore[arg-type]
_UPDATE_SEEN = update_statement(_AGENT_TABLE, keys=_KEYS, columns=_SEEN_COLUMNS)  # type: ignore[arg-type]
_UPDATE_SEEN_METRICS = update_statement(_AGENT_TABLE, keys=_KEYS, columns=_SEEN_METRICS_COLUMNS)  # type: ignore[arg-type]
_UPDATE_ALL = update_statement(_AGENT_TABLE, keys=_KEYS, columns=_ALL_COLUMNS)  # type: ignore[arg-type]


def save_presence(
    session: Session, records: Sequence[OutletRecord], *, now: datetime, shared: bool = False
) -> None:
    """Insert or update the outlet and agent rows of ``records`` (one statement each way).

    Records not yet ``stored`` are checked against the database first, so a row another
    process created meanwhile is updated instead of failing the whole batch. An update
    writes the columns the record changed (see ``OutletRecord``); in a share group every
    presence column, since the rows were merged with other workers' (``reconcile``).
    """
    if not records:
        return
    new_ids = [record.outlet_id for record in records if not record.stored]
    existing_outlets: set[str] = set()
    existing_agents: set[str] = set()
    if new_ids:
        existing_outlets = set(session.scalars(select(Outlet.id).where(Outlet.id.in_(new_ids))))
        existing_agents = set(
            session.scalars(select(Agent.outlet_id).where(Agent.outlet_id.in_(new_ids)))
        )
    outlets = [
        {"id": outlet_id, "display_name": None, "created_at": now}
        for outlet_id in new_ids
        if outlet_id not in existing_outlets
    ]
    inserts = [
        _agent_values(record)
        for record in records
        if not record.stored and record.outlet_id not in existing_agents
    ]
    updates = [record for record in records if record.stored or record.outlet_id in existing_agents]
    if outlets:
        session.execute(insert(Outlet), outlets)
    if inserts:
        session.execute(insert(Agent), inserts)
    full, presence, seen_metrics, seen = [], [], [], []
    for record in updates:
        if record.full_dirty or not record.stored:
            full.append(_agent_values(record))
        elif shared or record.state_dirty:
            presence.append(_agent_values(record))
        elif record.metrics_dirty:
            seen_metrics.append(
                {
                    "outlet_id": record.outlet_id,
                    "last_seq": record.last_seq,
                    "last_seen": record.last_seen,
                    "last_metrics": record.last_metrics,
                }
            )
        else:  # the common telemetry case: only what these two columns need
            seen.append(
                {
                    "outlet_id": record.outlet_id,
                    "last_seq": record.last_seq,
                    "last_seen": record.last_seen,
                }
            )
    update_rows(session, _UPDATE_ALL, full, keys=_KEYS, columns=_ALL_COLUMNS)
    update_rows(session, _UPDATE_PRESENCE, presence, keys=_KEYS, columns=_PRESENCE_COLUMNS)
    update_rows(
        session, _UPDATE_SEEN_METRICS, seen_metrics, keys=_KEYS, columns=_SEEN_METRICS_COLUMNS
    )
    update_rows(session, _UPDATE_SEEN, seen, keys=_KEYS, columns=_SEEN_COLUMNS)


# A share group's common write, in one statement and without reading the rows first: the
# later last_seq/last_seen of ours and the stored row's, our metrics only if ours are the
# later and this worker received new ones, and only while the stored session is ours (a
# death another worker stored stays: the state is not written). The rows are locked in
# id order first, so two workers' overlapping batches queue instead of deadlocking; the
# locks last one statement and its commit.
_SEEN_SHARED = text("""
WITH v AS (
    SELECT * FROM unnest(
        CAST(:ids AS text[]), CAST(:sessions AS bigint[]), CAST(:seqs AS bigint[]),
        CAST(:seens AS timestamptz[]), CAST(:metrics AS text[])
    ) AS t(outlet_id, session, seq, seen, metrics)
), locked AS (
    SELECT a.outlet_id FROM agents AS a
    WHERE a.outlet_id = ANY(CAST(:ids AS text[]))
    ORDER BY a.outlet_id FOR UPDATE
)
UPDATE agents AS a SET
    last_seq = GREATEST(a.last_seq, v.seq),
    last_seen = GREATEST(a.last_seen, v.seen),
    last_metrics = CASE
        WHEN v.metrics IS NOT NULL AND (a.last_seen IS NULL OR v.seen >= a.last_seen)
        THEN CAST(v.metrics AS json)
        ELSE a.last_metrics END
FROM v JOIN locked ON locked.outlet_id = v.outlet_id
WHERE a.outlet_id = v.outlet_id AND a.session = v.session
RETURNING a.outlet_id
""")


def save_seen_shared(session: Session, records: Sequence[OutletRecord]) -> set[str]:
    """PostgreSQL share group: write the last_seq/last_seen/metrics of ``records``.

    For records whose state, session and birth facts are as stored (the telemetry
    case). Returns the ids written; the others' stored session is not theirs any more
    and they need the locked read and merge of ``load_presence(..., lock=True)``.
    """
    if not records:
        return set()
    rows = session.execute(
        _SEEN_SHARED,
        {
            "ids": [r.outlet_id for r in records],
            "sessions": [r.session for r in records],
            "seqs": [r.last_seq for r in records],
            "seens": [r.last_seen for r in records],
            # Only metrics this worker received anew (NULL: the stored ones stay).
            "metrics": [
                json.dumps(r.last_metrics)
                if r.metrics_dirty and r.last_metrics is not None
                else None
                for r in records
            ],
        },
    )
    return {outlet_id for (outlet_id,) in rows}


@dataclass(frozen=True)
class OutletPage:
    """One page of outlets and how many match in all."""

    rows: list[Outlet]
    total: int


def page_outlets(
    session: Session,
    *,
    state: State | None = None,
    search: str | None = None,
    sort: str = "id",
    descending: bool = False,
    limit: int | None = 100,
    offset: int = 0,
    scope: Scope = WHOLE_FLEET,
) -> OutletPage:
    """A page of outlets with their agents; ``search`` is an id or name prefix.

    Filtering, counting and ordering happen in SQL, so a page of a 10,000-outlet fleet
    costs one indexed query and one count, not the whole table. Ties order by id.
    """
    query = select(Outlet).where(scope.outlet_clause(Outlet.id))
    if state == "unknown":
        query = query.outerjoin(Agent).where((Agent.state == "unknown") | (Agent.state.is_(None)))
    elif state is not None:
        query = query.join(Agent).where(Agent.state == state)
    else:
        query = query.outerjoin(Agent)
    if search:
        # A prefix, with LIKE's wildcards taken literally.
        pattern = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            Outlet.id.like(pattern, escape="\\") | Outlet.display_name.like(pattern, escape="\\")
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    key = {
        "id": Outlet.id,
        "name": func.coalesce(Outlet.display_name, Outlet.id),
        "state": func.coalesce(Agent.state, "unknown"),
        "last_seen": Agent.last_seen,
    }[sort]
    # NULLS LAST on both databases (SQLite and PostgreSQL differ by default).
    order = (key.desc() if descending else key.asc()).nulls_last()
    query = query.options(contains_eager(Outlet.agent)).order_by(order, Outlet.id)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return OutletPage(rows=list(session.scalars(query).unique()), total=total)


def get_outlet(session: Session, outlet_id: str) -> Outlet | None:
    """One outlet with its agent, or None."""
    return session.scalars(
        select(Outlet).options(joinedload(Outlet.agent)).where(Outlet.id == outlet_id)
    ).first()
