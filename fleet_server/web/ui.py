"""Pages of the operators' UI. Each is a small server-rendered HTML shell (title,
navigation, language, the page's initial data as JSON); ``static/app.js`` renders it
and refetches on every server-sent ``change`` event. Everything is served from here.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from fleet_server.api.auth import CONFIG_WRITERS, Authenticated
from fleet_server.api.deps import SessionDep
from fleet_server.api.scope import ScopeDep
from fleet_server.config import outlet_view, store
from fleet_server.config.api import reaches, scoped_drift
from fleet_server.health import queries
from fleet_server.health.api import runtime
from fleet_server.health.figures import TARGETS, FigureGroup, GroupBy, fleet_figures
from fleet_server.health.map_view import map_extras
from fleet_server.playbooks import api as playbooks_api
from fleet_server.security import Principal, Role
from fleet_server.security.scope import Scope
from fleet_server.web.i18n import LANGS, table


def note_live_version(request: Request) -> None:
    """The change number before the page reads its data: the page's stream then skips
    its first event when nothing changed since (one load fewer per page opened)."""
    live = runtime(request).live
    request.state.live_version = {"hub": live.hub_id, "version": live.version}


# Every page router runs it before the handler reads the page's data.
PAGE_DEPENDENCIES = [Depends(note_live_version)]
router = APIRouter(
    prefix="/ui", tags=["web ui"], include_in_schema=False, dependencies=PAGE_DEPENDENCIES
)
# Who may pause, resume and abort a campaign: the same roles as config writers.
CAMPAIGN_WRITERS = CONFIG_WRITERS
# The CSS and JS: open, since the login page needs them before there is a session.
static_router = APIRouter(prefix="/ui", tags=["web ui"], include_in_schema=False)

STATIC_DIR = Path(__file__).parent / "static"
_STATIC = {
    "app.js": "text/javascript",
    "config.js": "text/javascript",
    "campaigns.js": "text/javascript",
    "playbooks.js": "text/javascript",
    "ops.js": "text/javascript",
    "registry.js": "text/javascript",
    "app.css": "text/css",
}
LANG_COOKIE = "govedge_lang"
# Pages drawn by static/registry.js (fleet_server/web/admin_pages.py).
REGISTRY_PAGES = frozenset({"outlets", "audit", "users", "enrollment"})
# Each page module's script, on the pages that use it only (app.js checks for each):
# fewer bytes to fetch, parse and compile per page opened.
_PAGE_SCRIPTS = {
    "config.js": frozenset({"config", "outlet"}),
    "campaigns.js": frozenset({"campaigns", "campaign"}),
    "playbooks.js": frozenset({"playbook-runs", "playbook-run", "outlet"}),
    "ops.js": frozenset({"alerts", "dead-letters", "transactions", "rectifications"}),
    "registry.js": REGISTRY_PAGES,
}
# A year: a static file's URL carries its content's hash, so a new release asks anew.
_IMMUTABLE = "public, max-age=31536000, immutable"


@functools.cache
def _static_version(name: str) -> str:
    """The first 12 hex digits of the file's SHA-256 (read once per process)."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """The static file's URL with its version: the browser caches it for good and keeps
    its compiled code; the next release's file has another URL."""
    return f"/ui/static/{name}?v={_static_version(name)}"


# The boot JSON sits in a <script> element; outlet-controlled strings (device ids,
# models) must not be able to end it ("</script>") or switch the parser into a
# comment/script state ("<!--", "<script"). These escapes mean the same in JSON.
_SCRIPT_SAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def page_lang(request: Request, lang: str | None) -> str:
    """``lang`` when given, else the language cookie's, else zh."""
    if lang in LANGS:
        return str(lang)
    cookie = request.cookies.get(LANG_COOKIE)
    return cookie if cookie in LANGS else "zh"


def render_page(
    request: Request, principal: Principal, *, page: str, lang: str, data: dict[str, Any]
) -> HTMLResponse:
    t = table(lang)
    # What the signed-in user may do, so the page offers only those actions (a viewer
    # gets no ack/silence buttons that would only answer 403).
    user = {
        "name": principal.name,
        "role": principal.role.value,
        "can_act_on_alerts": principal.role.allows(Role.OPERATOR),
    }
    other = "en" if lang == "zh" else "zh"
    # One campaign is under the list, one playbook run under the runs.
    here = {"campaign": "campaigns", "playbook-run": "playbook-runs"}.get(page, page)
    entries = [
        ("overview", "nav_overview"),
        ("outlets", "nav_outlets"),
        ("map", "nav_map"),
        ("alerts", "nav_alerts"),
        ("evaluations", "nav_evaluations"),
        ("rectifications", "nav_rectifications"),
        ("transactions", "nav_transactions"),
        ("dead-letters", "nav_dead_letters"),
        ("config", "nav_config"),
        ("campaigns", "nav_campaigns"),
        ("playbook-runs", "nav_playbook_runs"),
    ]
    # The admins' pages: not even their entries for anyone else (their routes say 403).
    if principal.role is Role.ADMIN:
        entries += [
            ("audit", "nav_audit"),
            ("users", "nav_users"),
            ("enrollment", "nav_enrollment"),
        ]
    nav = "".join(
        f'<a href="/ui/{href}" class="{"on" if here == href else ""}">{escape(t[key])}</a>'
        for href, key in entries
    )
    # The registry and admin pages' script, on those pages only.
    scripts = "".join(
        f'<script src="{static_url(name)}"></script>\n'
        for name, pages in _PAGE_SCRIPTS.items()
        if page in pages
    )
    boot = {
        "page": page, "lang": lang, "t": t, "data": data, "user": user,
        "live_version": getattr(request.state, "live_version", None),
    }  # fmt: skip
    boot_json = json.dumps(boot, ensure_ascii=False)
    boot_json = boot_json.translate(_SCRIPT_SAFE)
    # An empty icon: no /favicon.ico request that could only answer 404.
    html = f"""<!doctype html>
<html lang="{"zh-CN" if lang == "zh" else "en"}">
<head><meta charset="utf-8"><title>{escape(t["title"])}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{static_url("app.css")}"></head>
<body>
<header><h1>{escape(t["title"])}</h1><nav>{nav}</nav>
<span id="live" class="live off">{escape(t["disconnected"])}</span>
<a id="lang-switch" href="?lang={other}">{escape(t["switch_lang"])}</a>
<form id="logout" method="post" action="/ui/logout"><span id="user">{escape(principal.name)}
</span><button type="submit">{escape(t["logout"])}</button></form></header>
<main id="main"></main>
<script id="boot" type="application/json">{boot_json}</script>
{scripts}<script src="{static_url("app.js")}"></script>
</body></html>"""
    response = HTMLResponse(html)
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


@router.get("")
def root() -> RedirectResponse:
    """The overview."""
    return RedirectResponse("/ui/overview")


@static_router.get("/static/{name}")
def static(name: str, v: str | None = None) -> Response:
    """The bundled JS and CSS (a fixed list; nothing else is served). Asked with its
    current version (``static_url``) it is cached for a year; otherwise (an old page, a
    hand-typed URL) the browser revalidates it every time."""
    if name not in _STATIC:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    cache = _IMMUTABLE if v == _static_version(name) else "no-cache"
    return FileResponse(
        STATIC_DIR / name, media_type=_STATIC[name], headers={"Cache-Control": cache}
    )


@router.get("/overview")
def overview(
    request: Request, session: SessionDep, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """Fleet overview (a region-scoped user: their outlets only, as everywhere)."""
    data = queries.fleet_overview(session, principal.scope)
    return render_page(
        request, principal, page="overview", lang=page_lang(request, lang), data=data
    )


@router.get("/map")
def outlet_map(
    request: Request, session: SessionDep, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """The outlet map (一张图)."""
    data = _map_data(session, principal.scope)
    return render_page(request, principal, page="map", lang=page_lang(request, lang), data=data)


@router.get("/outlets/{outlet_id}")
def outlet(
    request: Request,
    session: SessionDep,
    principal: Authenticated,
    outlet_id: str,
    lang: str | None = None,
) -> HTMLResponse:
    """One outlet: devices with health and history, events, alerts, versions (outside a
    scoped user's regions: 404, from ``fleet_server.api.scope.path_guard``)."""
    data = queries.outlet_page(session, outlet_id)
    if data is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"outlet {outlet_id!r} not found")
    # The same view as GET /api/v1/outlets/{id}/config; app.js refetches it from there.
    data["config"] = outlet_view.outlet_view(session, outlet_id)
    # Its playbook runs, each with its own result there; app.js refetches them from
    # GET /api/v1/outlets/{id}/playbook-runs.
    data["playbook_runs"] = playbooks_api.outlet_runs_json(session, outlet_id, limit=10)
    return render_page(request, principal, page="outlet", lang=page_lang(request, lang), data=data)


@router.get("/config")
def config_page(
    request: Request,
    session: SessionDep,
    principal: Authenticated,
    lang: str | None = None,
    scope: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """Config scopes, the outlets out of sync, and the scope editor (``?scope=`` opens one)."""
    data = _config_data(session, principal.scope) | {
        "scope": scope,
        "user": principal.name,
        # Saving, validating and rolling back need an operator (docs/security.md): a
        # viewer gets the page without those buttons rather than 403s after typing.
        "can_write": principal.role in CONFIG_WRITERS,
    }
    return render_page(request, principal, page="config", lang=page_lang(request, lang), data=data)


@router.get("/campaigns")
def campaigns_page(
    request: Request, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """Update campaigns with their state and progress (read live from the campaign API)."""
    data = {"campaign_id": None, "can_write": principal.role in CAMPAIGN_WRITERS}
    return render_page(
        request, principal, page="campaigns", lang=page_lang(request, lang), data=data
    )


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, principal: Authenticated, campaign_id: int, lang: str | None = None
) -> HTMLResponse:
    """One campaign: waves, counts, outlets by state; pause, resume, abort for operators."""
    # Steering needs an operator (docs/security.md): a viewer gets no buttons at all.
    data = {"campaign_id": campaign_id, "can_write": principal.role in CAMPAIGN_WRITERS}
    return render_page(
        request, principal, page="campaign", lang=page_lang(request, lang), data=data
    )


@router.get("/data/config")
def config_data(session: SessionDep, scope: ScopeDep) -> dict[str, Any]:
    """The config page's lists, refetched on changes and after a save."""
    return _config_data(session, scope)


def _config_data(session: Session, scope: Scope) -> dict[str, Any]:
    scopes = [row for row in store.list_scopes(session) if reaches(session, scope, row["scope"])]
    return {"scopes": scopes, "drift": scoped_drift(session, scope)}


@router.get("/data/map")
def map_data(session: SessionDep, scope: ScopeDep) -> dict[str, Any]:
    """The map's regions, unplaced outlets and labels, refetched on changes."""
    return _map_data(session, scope)


def _map_data(session: Session, scope: Scope) -> dict[str, Any]:
    # The points themselves come from GET /api/v1/fleet/map-points (about 60 bytes an
    # outlet; app.js fetches them): the page and this call stay small at 10,000 outlets.
    return map_extras(session, scope) | {"regions": queries.regions(session)}


@router.get("/data/evaluations")
def evaluation_data(
    request: Request,
    session: SessionDep,
    scope: ScopeDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    by: GroupBy = "kind",
) -> dict[str, Any]:
    """好差评 figures per outlet and the policy figures grouped ``by`` for the last
    ``days`` (empty when the module is absent)."""
    return _evaluations(request, session, days, scope, by)


@router.get("/evaluations")
def evaluations(
    request: Request,
    session: SessionDep,
    principal: Authenticated,
    lang: str | None = None,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    by: GroupBy = "kind",
) -> HTMLResponse:
    """好差评 by outlet and window, and the policy figures by kind, region or outlet."""
    return render_page(
        request,
        principal,
        page="evaluations",
        lang=page_lang(request, lang),
        data=_evaluations(request, session, days, principal.scope, by),
    )


def _evaluations(
    request: Request, session: SessionDep, days: int, scope: Scope, by: GroupBy
) -> dict[str, Any]:
    try:
        from fleet_server.evaluations.stats import evaluation_stats
    except ImportError:
        return {"available": False, "days": days, "by": by, "rows": [], "figures": None}
    from sqlalchemy import select

    from fleet_server.models import Evaluation

    until = datetime.now(UTC)
    since = until - timedelta(days=days)
    target = request.app.state.fleet.rules.active_rate_target
    outlet_ids = sorted(
        scope.keep(session, session.scalars(select(Evaluation.outlet_id).distinct()))
    )
    rows = []
    for outlet_id in [None, *outlet_ids]:
        stats = evaluation_stats(
            session, outlet_id=outlet_id, window=None, since=since, until=until,
            now=until, active_rate_target=target, scope=scope,
        )  # fmt: skip
        rows.append(
            {
                "outlet_id": outlet_id,
                "evaluations": stats.evaluations,
                "default_evaluations": stats.default_evaluations,
                "active_evaluation_rate": stats.active_evaluation_rate,
                "active_rate_target": stats.active_rate_target,
                "satisfaction_rate": stats.satisfaction_rate,
                "bad_reviews": stats.bad_reviews,
                "overdue_rectifications": stats.overdue_rectifications,
            }
        )
    total, groups = fleet_figures(session, by=by, since=since, until=until, now=until, scope=scope)
    figures = {
        "targets": dict(TARGETS, active_evaluation_rate=target),
        "total": FigureGroup("", total).as_dict(),
        "rows": [group.as_dict() for group in groups],
    }
    return {
        "available": True,
        "days": days,
        "by": by,
        "rows": rows if outlet_ids else [],
        "figures": figures,
    }
