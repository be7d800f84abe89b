"""``/ui/outlets`` (every role) and the admins' pages ``/ui/audit``, ``/ui/users``,
``/ui/enrollment`` (docs/outlet-registry.md, docs/fleet-health.md). Each is the usual
HTML shell; their script (``static/registry.js``) reads the API a page at a time, so the
outlet list stays as light at 10,000 outlets as at ten (its first page comes inside the
page). ``admin_router`` is mounted for admins only: anyone else gets 403 there, and the
navigation shows those entries to admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from fleet_server.api.auth import Authenticated
from fleet_server.api.deps import SessionDep
from fleet_server.api.outlets import read_outlets
from fleet_server.api.scope import ScopeDep
from fleet_server.security import Role
from fleet_server.web.ui import PAGE_DEPENDENCIES, page_lang, render_page

router = APIRouter(
    prefix="/ui", tags=["web ui"], include_in_schema=False, dependencies=PAGE_DEPENDENCIES
)
admin_router = APIRouter(
    prefix="/ui", tags=["web ui"], include_in_schema=False, dependencies=PAGE_DEPENDENCIES
)
# Who may import the registry: the API's import route needs an operator (admins too).
IMPORTER = Role.OPERATOR
ROLES = [role.value for role in Role]
# Rows per page of the outlet list: registry.js's PAGE.
LIST_PAGE = 50


def _page(
    request: Request, principal: Any, page: str, lang: str | None, **data: Any
) -> HTMLResponse:
    return render_page(request, principal, page=page, lang=page_lang(request, lang), data=data)


@router.get("/outlets")
def outlets_page(
    request: Request,
    session: SessionDep,
    scope: ScopeDep,
    principal: Authenticated,
    lang: str | None = None,
) -> HTMLResponse:
    """Searchable, sortable, paginated outlets (the caller's scope), with the registry's
    export for everyone and its import for operators and up.

    The first page (by id, as the script first asks) comes inside the page: the list is
    shown without waiting for a second request (docs/performance.md, "web_draw")."""
    first = read_outlets(
        session, scope, state=None, q=None, sort="id", order="asc",
        limit=LIST_PAGE, offset=0,
    )  # fmt: skip
    return _page(
        request, principal, "outlets", lang,
        can_import=principal.role.allows(IMPORTER), scope=list(principal.scope.prefixes),
        first_page=first.model_dump(mode="json"),
    )  # fmt: skip


@admin_router.get("/audit")
def audit_page(request: Request, principal: Authenticated, lang: str | None = None) -> HTMLResponse:
    """The audit log, filtered, a page at a time (admins)."""
    return _page(request, principal, "audit", lang)


@admin_router.get("/users")
def users_page(request: Request, principal: Authenticated, lang: str | None = None) -> HTMLResponse:
    """Accounts: add one, reset a password, unlock, disable, end sessions, scope (admins)."""
    return _page(request, principal, "users", lang, roles=ROLES)


@admin_router.get("/enrollment")
def enrollment_page(
    request: Request, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """Mint an enrollment token (shown once), the tokens and certificates (admins)."""
    return _page(request, principal, "enrollment", lang)
