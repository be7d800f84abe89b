"""``/api/v1/alerts`` and ``/api/v1/alert-rules``: list, acknowledge, silence, override.

``read_router`` needs a viewer; ``write_router`` (ack, silence, overrides, evaluate
now) an operator — attached in ``app.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.alerts.rules import (
    DEFAULT_RULES,
    RULE_NAMES,
    RuleBook,
    UnknownRule,
    check_override,
)
from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import SessionDep
from fleet_server.api.errors import RowId
from fleet_server.api.scope import WHOLE_FLEET_ONLY, ScopeDep
from fleet_server.health import queries
from fleet_server.health.tables import Alert, AlertRuleOverride, OutletProfile
from fleet_server.security import audit
from fleet_server.security.scope import Scope

read_router = APIRouter(tags=["alerts"])
write_router = APIRouter(tags=["alerts"])


class OverrideIn(BaseModel):
    """Parameters of one rule at one scope."""

    scope: Literal["global", "region", "kind", "outlet"]
    scope_value: Annotated[str, Field(max_length=64)] = ""
    rule: str
    params: dict[str, Any]


@read_router.get("/alerts")
def read_alerts(
    session: SessionDep,
    scope: ScopeDep,
    state: Literal["open", "resolved", "all"] = "open",
    outlet_id: Annotated[str | None, Query(max_length=64)] = None,
    rule: Annotated[str | None, Query(max_length=32)] = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    region: Annotated[str | None, Query(max_length=12, pattern=r"^[0-9]+$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> list[dict[str, Any]]:
    """Alerts, newest first; ``?state=all`` includes resolved ones. Narrowed by rule,
    severity, outlet, region-code prefix and when they opened (``since`` ≤ t < ``until``)."""
    if rule is not None and rule not in RULE_NAMES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"unknown rule {rule!r}; rules are {', '.join(RULE_NAMES)}",
        )
    where = queries.AlertFilter(
        state=None if state == "all" else state, outlet_id=outlet_id, rule=rule,
        severity=severity, region=region, since=since, until=until,
    )  # fmt: skip
    return queries.list_alerts(session, limit=limit, offset=offset, scope=scope, where=where)


@read_router.get("/alerts/{alert_id}")
def read_alert(session: SessionDep, alert_id: RowId) -> dict[str, Any]:
    """One alert; 404 if unknown."""
    row = session.get(Alert, alert_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"alert {alert_id} not found")
    return queries.alert_view(row)


@write_router.post("/alerts/{alert_id}/ack")
def ack_alert(
    request: Request,
    session: SessionDep,
    alert_id: RowId,
    principal: Authenticated,
) -> dict[str, Any]:
    """Acknowledge: someone is on it. Idempotent; the first acknowledgement is kept."""
    row = session.get(Alert, alert_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"alert {alert_id} not found")
    if row.acked_at is None:
        row.acked_at = datetime.now(UTC)
        row.acked_by = principal.name
        audit.record(session, actor=principal.name, action="alert.ack", target=f"alert:{alert_id}")
        session.commit()
    request.app.state.health.live.bump()
    return read_alert(session, alert_id)


@write_router.post("/alerts/{alert_id}/silence")
def silence_alert(
    request: Request,
    session: SessionDep,
    alert_id: RowId,
    principal: Authenticated,
    reason: Annotated[str, Query(min_length=1, max_length=500)],
    minutes: Annotated[int, Query(ge=1, le=30 * 24 * 60)] = 60,
) -> dict[str, Any]:
    """No notifications for this alert until now + ``minutes``; ``reason`` (required)
    says why, for the next operator who wonders why nobody was told."""
    if not reason.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail="reason is required")
    row = session.get(Alert, alert_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"alert {alert_id} not found")
    before = row.silenced_until.isoformat() if row.silenced_until else None
    row.silenced_until = datetime.now(UTC) + timedelta(minutes=minutes)
    row.silenced_by = principal.name
    row.silence_reason = reason.strip()
    audit.record(
        session,
        actor=principal.name,
        action="alert.silence",
        target=f"alert:{alert_id}",
        before={"silenced_until": before},
        after={"silenced_until": row.silenced_until.isoformat(), "minutes": minutes,
               "reason": row.silence_reason},
    )  # fmt: skip
    session.commit()
    request.app.state.health.live.bump()
    return read_alert(session, alert_id)


# Evaluates every outlet's rules: whole-fleet users only.
@write_router.post("/alerts/evaluate", dependencies=[WHOLE_FLEET_ONLY])
async def evaluate_now(request: Request, principal: Authenticated) -> dict[str, int]:
    """Run one rule evaluation now (it also runs every ``alert_eval_interval_s``)."""
    engine = request.app.state.health.engine
    await run_in_threadpool(engine.evaluate_once)
    with request.app.state.fleet.sessions.begin() as session:
        audit.record(
            session, actor=principal.name, action="alert.evaluate", target="alerts",
            after={"open": engine.open_count},
        )  # fmt: skip
    return {"open": engine.open_count}


@read_router.get("/alert-rules")
def read_rules(session: SessionDep, scope: ScopeDep) -> dict[str, Any]:
    """The defaults and every stored override (a scoped user: those that can apply to
    their outlets, ``_reaches``)."""
    overrides = [
        {
            "id": r.id,
            "scope": r.scope,
            "scope_value": r.scope_value,
            "rule": r.rule,
            "params": r.params,
        }
        for r in session.scalars(select(AlertRuleOverride).order_by(AlertRuleOverride.id))
        if _reaches(session, scope, r.scope, r.scope_value)
    ]
    return {"defaults": DEFAULT_RULES, "overrides": overrides}


@read_router.get("/alert-rules/effective/{outlet_id}")
def read_effective(session: SessionDep, outlet_id: str) -> dict[str, dict[str, Any]]:
    """The parameters in force for one outlet after every override."""
    from fleet_server.alerts.engine import load_rulebook

    book: RuleBook = load_rulebook(session)
    profile = session.get(OutletProfile, outlet_id)
    return book.for_outlet(
        outlet_id=outlet_id,
        region_code=profile.region_code if profile else None,
        kind=profile.kind if profile else None,
    )


@write_router.put("/alert-rules")
def put_override(
    request: Request,
    session: SessionDep,
    body: OverrideIn,
    principal: Authenticated,
    scope: ScopeDep,
) -> dict[str, Any]:
    """Create or replace the override of ``rule`` at ``scope``/``scope_value``."""
    try:
        check_override(body.rule, body.params)
    except UnknownRule as exc:
        # FastAPI's shape of field errors, so a form shows each next to its field.
        loc = ["body", "params", exc.field] if exc.field else ["body", "rule"]
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": loc, "msg": str(exc), "type": "value_error"}],
        ) from None
    scope_value = "" if body.scope == "global" else body.scope_value
    if body.scope != "global" and not scope_value:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["body", "scope_value"], "msg": "scope_value required",
                     "type": "missing"}],
        )  # fmt: skip
    _may_write(session, scope, body.scope, scope_value)
    row = session.scalars(
        select(AlertRuleOverride).where(
            AlertRuleOverride.scope == body.scope,
            AlertRuleOverride.scope_value == scope_value,
            AlertRuleOverride.rule == body.rule,
        )
    ).first()
    before = None if row is None else {"params": row.params}
    if row is None:
        row = AlertRuleOverride(
            scope=body.scope, scope_value=scope_value, rule=body.rule, params=body.params
        )
        session.add(row)
    else:
        row.params = body.params
    session.flush()
    audit.record(
        session,
        actor=principal.name,
        action="alert_rule.put",
        target=f"alert_rule:{row.id}",
        before=before,
        after={"scope": row.scope, "scope_value": row.scope_value, "rule": row.rule,
               "params": row.params},
    )  # fmt: skip
    session.commit()
    request.app.state.health.live.bump()
    return {"id": row.id, "scope": row.scope, "scope_value": row.scope_value,
            "rule": row.rule, "params": row.params}  # fmt: skip


@write_router.delete("/alert-rules/{override_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_override(
    request: Request,
    session: SessionDep,
    override_id: RowId,
    principal: Authenticated,
    scope: ScopeDep,
) -> None:
    """Remove one override (the next scope up applies again)."""
    row = session.get(AlertRuleOverride, override_id)
    if row is None or not _reaches(session, scope, row.scope, row.scope_value):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"override {override_id} not found")
    audit.record(
        session,
        actor=principal.name,
        action="alert_rule.delete",
        target=f"alert_rule:{override_id}",
        before={"scope": row.scope, "scope_value": row.scope_value, "rule": row.rule,
                "params": row.params},
    )  # fmt: skip
    _may_write(session, scope, row.scope, row.scope_value)
    session.delete(row)
    session.commit()
    request.app.state.health.live.bump()


def _reaches(session: Session, scope: Scope, level: str, value: str) -> bool:
    """An override at ``level``/``value`` can apply to an outlet in ``scope``: global and
    kind ones can, a region one when it is inside or above the scope, an outlet one when
    the outlet is inside."""
    if level == "outlet":
        return scope.admits_outlet(session, value)
    if level == "region":
        return scope.whole_fleet or any(
            value.startswith(p) or p.startswith(value) for p in scope.prefixes
        )
    return True


def _may_write(session: Session, scope: Scope, level: str, value: str) -> None:
    """403 unless a scoped user's override stays inside their scope (a region inside it
    or one of its outlets): global, kind and wider region overrides reach other outlets."""
    if scope.whole_fleet:
        return
    inside = (level == "region" and value.startswith(scope.prefixes)) or (
        level == "outlet" and scope.admits_outlet(session, value)
    )
    if not inside:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"a {level} override reaches outlets outside your region scope "
            f"({' '.join(scope.prefixes)})",
        )
