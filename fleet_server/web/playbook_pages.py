"""``/ui/playbook-runs`` and ``/ui/playbook-runs/{id}``: the playbook runs pages
(docs/playbook-runs.md). Each is the usual HTML shell; ``static/playbooks.js`` reads the
runs API and follows a run live over its Server-Sent Events stream."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from fleet_server.alerts.rules import RULE_NAMES
from fleet_server.api.auth import Authenticated, SecurityDep
from fleet_server.api.deps import SessionDep
from fleet_server.playbooks import catalogue
from fleet_server.playbooks.tables import PlaybookRun
from fleet_server.security import Principal, Role
from fleet_server.web.ui import PAGE_DEPENDENCIES, page_lang, render_page

router = APIRouter(
    prefix="/ui", tags=["web ui"], include_in_schema=False, dependencies=PAGE_DEPENDENCIES
)
# Who may start and cancel runs: the API's write routes need a technician (admins too).
RUNNER = Role.TECHNICIAN
RunId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def _may_run(principal: Principal) -> bool:
    """Whether to offer the start form and the cancel button: a viewer or operator gets
    neither, rather than buttons that could only answer 403."""
    return principal.role.allows(RUNNER)


@router.get("/playbook-runs")
def runs_page(
    request: Request, principal: Authenticated, security: SecurityDep, lang: str | None = None
) -> HTMLResponse:
    """Runs with their state and per-host counts; the start form for technicians."""
    data: dict[str, Any] = {"run_id": None, "can_run": _may_run(principal)}
    if data["can_run"]:
        data["playbooks"] = [
            {"name": p.name, "description": p.description, "variables": p.variables}
            for p in catalogue.catalogue(security.settings.playbooks_dir)
        ]
        data["alert_rules"] = list(RULE_NAMES)
    return render_page(
        request, principal, page="playbook-runs", lang=page_lang(request, lang), data=data
    )


@router.get("/playbook-runs/{run_id}")
def run_page(
    request: Request,
    session: SessionDep,
    principal: Authenticated,
    run_id: RunId,
    lang: str | None = None,
) -> HTMLResponse:
    """One run, live: a row per outlet, the held-back ones with why, cancel if allowed."""
    if session.get(PlaybookRun, run_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no playbook run {run_id}")
    data = {"run_id": run_id, "can_run": _may_run(principal)}
    return render_page(
        request, principal, page="playbook-run", lang=page_lang(request, lang), data=data
    )
