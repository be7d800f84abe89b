"""``/ui/outlets`` (every role) and the admins' pages ``/ui/audit``, ``/ui/users``,
``/ui/enrollment`` (docs/operator-pages.md). Each is the usual HTML shell; their script
(``static/registry.js``) reads the API a page at a time, so the outlet list stays as
light at 10,000 outlets as at ten. ``admin_router`` is mounted for admins only: anyone
else gets 403 there, and the navigation shows those entries to admins only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from fleet_server.api.auth import Authenticated
from fleet_server.security import Role
from fleet_server.web.ui import page_lang, render_page

router = APIRouter(prefix="/ui", tags=["web ui"], include_in_schema=False)
admin_router = APIRouter(prefix="/ui", tags=["web ui"], include_in_schema=False)
# Who may import the registry: the API's import route needs an operator (admins too).
IMPORTER = Role.OPERATOR
ROLES = [role.value for role in Role]


def _page(
    request: Request, principal: Any, page: str, lang: str | None, **data: Any
) -> HTMLResponse:
    return render_page(request, principal, page=page, lang=page_lang(request, lang), data=data)


@router.get("/outlets")
def outlets_page(
    request: Request, principal: Authenticated, lang: str | None = None
) -> HTMLResponse:
    """Searchable, sortable, paginated outlets (the caller's scope), with the registry's
    export for everyone and its import for operators and up."""
    return _page(
        request, principal, "outlets", lang,
        can_import=principal.role.allows(IMPORTER), scope=list(principal.scope.prefixes),
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
