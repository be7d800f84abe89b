"""``/api/v1/playbooks`` and ``/api/v1/playbook-runs`` (docs/playbook-runs.md).

``read_router`` (viewer): the catalogue, runs, one run with its per-host results, its
events (``?after=N`` for polling, or a live Server-Sent Events stream of them when the
client accepts ``text/event-stream``), and an outlet's runs. ``write_router``
(technician): start a run, cancel it, and set how Ansible reaches an outlet PC. Every
change is audited (``playbook.run``, ``playbook.cancel``, ``playbook.access``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet_server.api.auth import Authenticated, SecurityContext, SecurityDep
from fleet_server.api.deps import SessionDep
from fleet_server.api.scope import ScopeDep, refuse_outside
from fleet_server.playbooks import access, catalogue, fleet_vars
from fleet_server.playbooks.inventory import Target, choose, unknown_outlets
from fleet_server.playbooks.tables import (
    RUN_DONE,
    OutletAccess,
    PlaybookEvent,
    PlaybookHost,
    PlaybookRun,
)
from fleet_server.playbooks.worker import RunManager
from fleet_server.security import audit

read_router = APIRouter(tags=["playbooks"])
write_router = APIRouter(tags=["playbooks"])

# A run id as the database holds it (32-bit), so a huge one is a 422, not a crash.
RunId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
_Ids = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=5000)]


class TargetIn(BaseModel):
    """Which outlets: ids, region-code prefixes, kinds, tags and alert rules (the union)."""

    model_config = ConfigDict(extra="forbid")

    outlets: _Ids = []
    regions: _Ids = []
    kinds: _Ids = []
    tags: _Ids = []
    # Outlets with an open (not resolved) alert of any of these rules.
    alert_rules: _Ids = []

    def as_target(self) -> Target:
        """The inventory's view of it."""
        return Target(
            outlets=tuple(self.outlets), regions=tuple(self.regions), kinds=tuple(self.kinds),
            tags=tuple(self.tags), alert_rules=tuple(self.alert_rules),
        )  # fmt: skip


class RunIn(BaseModel):
    """A run to start."""

    model_config = ConfigDict(extra="forbid")

    playbook: Annotated[str, Field(min_length=1, max_length=200)]
    target: TargetIn
    extra_vars: dict[str, Any] = {}
    check: bool = False
    during_opening_hours: bool = False
    forks: Annotated[int, Field(ge=1, le=100)] = 10


class AccessIn(BaseModel):
    """How Ansible reaches one outlet PC (no secrets: the SSH key is the server's); what
    it may hold beyond the types: access.py."""

    model_config = ConfigDict(extra="forbid")

    ansible_host: Annotated[str | None, Field(max_length=255)] = None
    ansible_user: Annotated[str | None, Field(max_length=64)] = None
    ansible_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    host_vars: dict[str, Any] = {}


def _access_rules(security: SecurityContext) -> access.Rules:
    settings = security.settings
    return access.rules_for(settings.playbooks_dir, allow_local=settings.playbook_allow_local)


def _manager(request: Request) -> RunManager:
    manager: RunManager = request.app.state.playbook_runs
    return manager


def _run_json(session: Session, run: PlaybookRun, *, hosts: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": run.id, "playbook": run.playbook, "status": run.status,
        "check": run.check_mode, "during_opening_hours": run.during_opening_hours,
        "forks": run.forks, "target": run.target, "extra_vars": run.extra_vars,
        "created_at": run.created_at.isoformat(), "created_by": run.created_by,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "canceled_by": run.canceled_by, "rc": run.rc, "stats": run.stats, "error": run.error,
    }  # fmt: skip
    if hosts:
        rows = session.scalars(
            select(PlaybookHost)
            .where(PlaybookHost.run_id == run.id)
            .order_by(PlaybookHost.outlet_id)
        )
        body["hosts"] = [_host_json(row) for row in rows]
    return body


def _host_json(row: PlaybookHost) -> dict[str, Any]:
    return {
        "outlet_id": row.outlet_id, "outlet": f"/api/v1/outlets/{row.outlet_id}",
        "status": row.status, "held_reason": row.held_reason, "ok": row.ok,
        "changed": row.changed, "failed": row.failed, "unreachable": row.unreachable,
        "skipped": row.skipped, "last_task": row.last_task,
    }  # fmt: skip


def _event_json(row: PlaybookEvent) -> dict[str, Any]:
    return {
        "seq": row.seq, "at": row.at.isoformat(), "event": row.event,
        "outlet_id": row.outlet_id, "task": row.task, "stdout": row.stdout,
    }  # fmt: skip


def _get_run(session: Session, run_id: int) -> PlaybookRun:
    run = session.get(PlaybookRun, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no playbook run {run_id}")
    return run


@read_router.get("/playbooks")
def list_playbooks(security: SecurityDep) -> list[dict[str, Any]]:
    """The playbooks offered and their documented variables."""
    return [
        {"name": p.name, "description": p.description, "variables": p.variables}
        for p in catalogue.catalogue(security.settings.playbooks_dir)
    ]


@write_router.post("/playbook-runs", status_code=status.HTTP_202_ACCEPTED)
def start_run(
    request: Request,
    body: RunIn,
    session: SessionDep,
    security: SecurityDep,
    principal: Authenticated,
    scope: ScopeDep,
) -> dict[str, Any]:
    """Start a run (202): open outlets are held back unless ``during_opening_hours``."""
    settings = security.settings
    counts = request.app.state.metrics.playbook_refused
    try:
        playbook = catalogue.load(settings.playbooks_dir, body.playbook)
        catalogue.check_extra_vars(playbook, body.extra_vars)
        supply = fleet_vars.plan(
            session, playbook, body.extra_vars, releases_dir=settings.releases_dir,
            config_keys=request.app.state.fleet.config_keys,
        )  # fmt: skip
    except catalogue.PlaybookError as exc:
        counts["playbook"] += 1
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    target = body.target.as_target()
    unknown = unknown_outlets(session, target)
    if unknown:
        counts["target"] += 1
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"unknown outlets: {', '.join(unknown)}"
        )
    chosen = choose(
        session, target, now=datetime.now(UTC),
        during_opening_hours=body.during_opening_hours, zone=settings.outlet_timezone,
        rules=_access_rules(security),
    )  # fmt: skip
    # A region-scoped technician runs only on their outlets: 403 naming the others.
    refuse_outside(session, scope, [*chosen.hosts, *chosen.held])
    if not chosen.hosts and not chosen.held:
        counts["target"] += 1
        detail = "the target is empty"
        if target.alert_rules:  # the likeliest reason: say it, or the operator hunts for it
            detail += f" (no outlet has an open alert of {', '.join(target.alert_rules)})"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
    # Only the masked copy is stored: the run gets the real values in memory (a run does
    # not outlive the server anyway).
    shown_vars = catalogue.masked_vars(playbook, body.extra_vars)
    run = PlaybookRun(
        playbook=playbook.name, status="pending" if chosen.hosts else "successful",
        check_mode=body.check, during_opening_hours=body.during_opening_hours,
        forks=body.forks, target=body.target.model_dump(), extra_vars=shown_vars,
        created_at=datetime.now(UTC), created_by=principal.name,
        finished_at=None if chosen.hosts else datetime.now(UTC),
    )  # fmt: skip
    session.add(run)
    session.flush()
    for outlet in chosen.hosts:
        session.add(PlaybookHost(run_id=run.id, outlet_id=outlet, status="pending", ok=0,
                                 changed=0, failed=0, unreachable=0, skipped=0))  # fmt: skip
    for outlet, why in chosen.held.items():
        session.add(PlaybookHost(run_id=run.id, outlet_id=outlet, status="held", held_reason=why,
                                 ok=0, changed=0, failed=0, unreachable=0, skipped=0))  # fmt: skip
    audit.record(
        session, actor=principal.name, action="playbook.run", target=f"playbook_run:{run.id}",
        after={"playbook": playbook.name, "target": body.target.model_dump(),
               "extra_vars": shown_vars,
               "check": body.check, "during_opening_hours": body.during_opening_hours,
               "hosts": sorted(chosen.hosts), "held": sorted(chosen.held)},
    )  # fmt: skip
    session.commit()
    if chosen.hosts:
        _manager(request).start(
            run.id, playbook.path, chosen.hosts, supply, extra_vars=body.extra_vars
        )
    return _run_json(session, run)


@read_router.get("/playbook-runs")
def list_runs(
    session: SessionDep, scope: ScopeDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    """Runs, newest first, each with how many of its outlets are in each host status
    (a region-scoped user: those on their outlets only)."""
    query = select(PlaybookRun).order_by(PlaybookRun.id.desc()).limit(limit)
    if not scope.whole_fleet:
        reaching_outside = select(PlaybookHost.run_id).where(
            ~scope.outlet_clause(PlaybookHost.outlet_id)
        )
        query = query.where(PlaybookRun.id.not_in(reaching_outside))
    runs = list(session.scalars(query))
    counts = host_counts(session, [run.id for run in runs])
    return [
        {**_run_json(session, run, hosts=False), "host_counts": counts.get(run.id, {})}
        for run in runs
    ]


def host_counts(session: Session, run_ids: list[int]) -> dict[int, dict[str, int]]:
    """Run id → host status → outlets (one query for a whole page of runs)."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(PlaybookHost.run_id, PlaybookHost.status, func.count())
        .where(PlaybookHost.run_id.in_(run_ids))
        .group_by(PlaybookHost.run_id, PlaybookHost.status)
    )
    found: dict[int, dict[str, int]] = {}
    for run_id, host_status, n in rows:
        found.setdefault(run_id, {})[host_status] = int(n)
    return found


@read_router.get("/playbook-runs/{run_id}")
def read_run(run_id: RunId, session: SessionDep) -> dict[str, Any]:
    """One run: status, stats and per-host results linked to the outlets."""
    return _run_json(session, _get_run(session, run_id))


def events_page(session: Session, run_id: int, *, after: int, limit: int) -> dict[str, Any]:
    """The run's status and its job events with ``seq`` above ``after``."""
    run = _get_run(session, run_id)
    rows = session.scalars(
        select(PlaybookEvent)
        .where(PlaybookEvent.run_id == run_id, PlaybookEvent.seq > after)
        .order_by(PlaybookEvent.seq)
        .limit(limit)
    )
    return {"status": run.status, "events": [_event_json(row) for row in rows]}


_SSE = "text/event-stream"
_EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, _SSE: {}}}
}


def _wants_stream(request: Request) -> bool:
    return _SSE in request.headers.get("accept", "").lower()


def _resume_from(request: Request, after: int) -> int:
    """Where a stream starts: after ``after``, or after the ``Last-Event-ID`` an
    ``EventSource`` sends when it reconnects."""
    last = request.headers.get("last-event-id", "")
    return max(after, int(last)) if last.isdigit() and int(last) < 2**31 else after


def _event_stream(request: Request, run_id: int, after: int) -> StreamingResponse:
    """Each job event as ``job_event`` (``id:`` its seq), then ``end`` with the status."""
    sessions = request.app.state.fleet.sessions

    def fetch(after: int) -> tuple[str, list[dict[str, Any]]]:
        with sessions() as s:
            page = events_page(s, run_id, after=after, limit=500)
            return str(page["status"]), list(page["events"])

    async def events() -> AsyncIterator[str]:
        seen = after
        while not await request.is_disconnected():
            run_status, page = await asyncio.to_thread(fetch, seen)
            for event in page:
                seen = int(event["seq"])
                data = json.dumps(event, ensure_ascii=False)
                yield f"id: {seen}\nevent: job_event\ndata: {data}\n\n"
            if run_status in RUN_DONE and not page:
                yield f"event: end\ndata: {json.dumps({'status': run_status})}\n\n"
                return
            if not page:
                await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type=_SSE, headers={"Cache-Control": "no-store"})


@read_router.get("/playbook-runs/{run_id}/events", response_model=None,
                 responses=_EVENT_RESPONSES)  # fmt: skip
def read_events(
    request: Request,
    run_id: RunId,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any] | StreamingResponse:
    """Job events with ``seq`` above ``after`` and the run's status (poll until done);
    with ``Accept: text/event-stream``, the same as a live Server-Sent Events stream."""
    if _wants_stream(request):
        _get_run(session, run_id)
        return _event_stream(request, run_id, _resume_from(request, after))
    return events_page(session, run_id, after=after, limit=limit)


@read_router.get(
    "/playbook-runs/{run_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {_SSE: {}}}},
)
def stream_events(request: Request, run_id: RunId, session: SessionDep) -> StreamingResponse:
    """Server-sent events, whatever the ``Accept`` (kept for the clients written for
    it; ``/events`` with ``Accept: text/event-stream`` is the same)."""
    _get_run(session, run_id)
    return _event_stream(request, run_id, _resume_from(request, 0))


@write_router.post("/playbook-runs/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
def cancel_run(
    request: Request, run_id: RunId, session: SessionDep, principal: Authenticated
) -> dict[str, Any]:
    """Ask a running run to stop (ansible-runner's cancel); 409 when it has finished."""
    run = _get_run(session, run_id)
    if run.status in RUN_DONE:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"the run is {run.status}")
    run.canceled_by = principal.name
    audit.record(session, actor=principal.name, action="playbook.cancel",
                 target=f"playbook_run:{run.id}", before={"status": run.status})  # fmt: skip
    session.commit()
    _manager(request).cancel(run_id)
    return _run_json(session, run)


@read_router.get("/outlets/{outlet_id}/playbook-runs")
def outlet_runs(
    outlet_id: str, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[dict[str, Any]]:
    """The outlet's last runs, each with its result on this outlet."""
    return outlet_runs_json(session, outlet_id, limit=limit)


def outlet_runs_json(session: Session, outlet_id: str, *, limit: int) -> list[dict[str, Any]]:
    """The outlet's last runs with its own result (also the outlet page's data)."""
    rows = session.execute(
        select(PlaybookRun, PlaybookHost)
        .join(PlaybookHost, PlaybookHost.run_id == PlaybookRun.id)
        .where(PlaybookHost.outlet_id == outlet_id)
        .order_by(PlaybookRun.id.desc())
        .limit(limit)
    )
    return [
        {**_run_json(session, run, hosts=False), "result": _host_json(host)} for run, host in rows
    ]


@write_router.put("/outlets/{outlet_id}/access")
def put_access(
    outlet_id: Annotated[str, PathParam(min_length=1, max_length=64)],
    body: AccessIn,
    session: SessionDep,
    security: SecurityDep,
    principal: Authenticated,
) -> dict[str, Any]:
    """Set how Ansible reaches the outlet PC (its inventory host vars): 422 naming the
    first field access.py does not allow, and nothing stored."""
    values = body.model_dump()
    try:
        access.check_record(**values, rules=_access_rules(security))
    except access.AccessError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    row = session.get(OutletAccess, outlet_id)
    before = None if row is None else {key: getattr(row, key) for key in values}
    if row is None:
        row = OutletAccess(outlet_id=outlet_id, updated_at=datetime.now(UTC),
                           updated_by=principal.name, **values)  # fmt: skip
        session.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at, row.updated_by = datetime.now(UTC), principal.name
    audit.record(session, actor=principal.name, action="playbook.access",
                 target=f"outlet:{outlet_id}", before=before, after=values)  # fmt: skip
    session.commit()
    return {"outlet_id": outlet_id, **values}


@read_router.get("/outlets/{outlet_id}/access")
def read_access(outlet_id: str, session: SessionDep) -> dict[str, Any]:
    """How Ansible reaches the outlet PC (404 when not set)."""
    row = session.get(OutletAccess, outlet_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no access set for {outlet_id}")
    return {"outlet_id": outlet_id, "ansible_host": row.ansible_host,
            "ansible_user": row.ansible_user, "ansible_port": row.ansible_port,
            "host_vars": row.host_vars, "host_key": row.host_key,
            "host_key_pinned_at": row.host_key_pinned_at.isoformat()
            if row.host_key_pinned_at else None}  # fmt: skip
