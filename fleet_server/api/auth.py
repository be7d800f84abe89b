"""Who is calling and may they: bearer tokens, roles, and the markers the tests read.

``Authenticated`` (401), ``require_role`` (403), ``open_endpoint`` and ``probe_access``
mark each route; ``api_guard`` makes any unmarked ``/api/v1`` route need a viewer.
Roles and routes: docs/security.md, "Operators: roles and tokens".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, status

from fleet_server.api.deps import AppStateDep
from fleet_server.pki import FleetCA
from fleet_server.security import Principal, Role
from fleet_server.security.sessions import session_principal
from fleet_server.security.users import authenticate as lookup_token
from fleet_server.settings import Settings

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
DEV_PRINCIPAL = Principal(name="dev", role=Role.ADMIN)
_OPEN_PATHS: set[str] = set()


class SecurityContext:
    """Settings the checks need and the fleet CA, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ca: FleetCA | None = None
        self._lock = threading.Lock()

    @property
    def auth_enabled(self) -> bool:
        """False only under the development switch ``api_auth=off``."""
        return self.settings.api_auth == "on"

    def ca(self) -> FleetCA:
        """The fleet CA (created in ``pki_dir`` the first time it is needed)."""
        with self._lock:
            if self._ca is None:
                self._ca = FleetCA(self.settings.pki_dir)
            return self._ca


def get_security(request: Request) -> SecurityContext:
    """The app's ``SecurityContext`` (set by ``create_app``)."""
    context: SecurityContext = request.app.state.security
    return context


SecurityDep = Annotated[SecurityContext, Depends(get_security)]


SESSION_COOKIE = "govedge_session"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def authenticate(request: Request, security: SecurityDep, state: AppStateDep) -> Principal:
    """The caller, from the bearer token; 401 otherwise."""
    if not security.auth_enabled:
        return DEV_PRINCIPAL
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    cookie = request.cookies.get(SESSION_COOKIE)
    if not header and cookie:  # a browser on the web UI (fleet_server.web.login)
        return _cookie_principal(request, state, cookie)
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("an API token is required (Authorization: Bearer ...)")
    with state.sessions() as session:
        principal = lookup_token(session, token.strip(), now=datetime.now(UTC))
    if principal is None:
        raise _unauthorized("the API token is invalid, expired or its user disabled")
    return principal


def _cookie_principal(request: Request, state: AppStateDep, cookie: str) -> Principal:
    """The session cookie's user. CSRF: SameSite=Strict, and a change must come with an
    ``Origin`` equal to this server's own (a browser always sends it on POST)."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-origin request refused")
    idle = timedelta(seconds=get_security(request).settings.session_idle_s)
    with state.sessions.begin() as session:  # commits the session's last-used time
        principal = session_principal(session, cookie, idle=idle, now=datetime.now(UTC))
    if principal is None:
        raise _unauthorized("the session expired; log in again at /ui/login")
    return principal


def same_origin(request: Request) -> bool:
    """The request's ``Origin`` names this server (scheme, host and port)."""
    origin = request.headers.get("origin")
    return origin is not None and origin == f"{request.url.scheme}://{request.url.netloc}"


Authenticated = Annotated[Principal, Depends(authenticate)]


def require_role(role: Role) -> Callable[..., Principal]:
    """A dependency that admits callers whose role is at least ``role``."""

    def check(principal: Authenticated) -> Principal:
        if not principal.role.allows(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"this needs the {role.value} role or higher"
            )
        return principal

    check.required_role = role  # type: ignore[attr-defined]
    check.__name__ = f"require_{role.value}"
    return check


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def require_roles(*, read: Role, write: Role) -> Callable[..., Principal]:
    """One router-level check: ``read`` for GET/HEAD, ``write`` for every other method.

    Lets ``create_app`` guard a router's write endpoints without touching its module.
    """

    def check(request: Request, principal: Authenticated) -> Principal:
        needed = read if request.method in _READ_METHODS else write
        if not principal.role.allows(needed):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, detail=f"this needs the {needed.value} role or higher"
            )
        return principal

    check.required_role = read  # type: ignore[attr-defined]
    check.write_role = write  # type: ignore[attr-defined]
    check.__name__ = f"require_{read.value}_write_{write.value}"
    return check


def require_writers(*, read: Role, writers: frozenset[Role]) -> Callable[..., Principal]:
    """Like ``require_roles``, but writes need one of ``writers`` (a set, not the ladder).

    Config is the one such case: operators and admins change it, technicians (above
    operators on the ladder, for enrollment and playbooks) only read it.
    """
    names = "/".join(sorted(role.value for role in writers))

    def check(request: Request, principal: Authenticated) -> Principal:
        if request.method in _READ_METHODS:
            if not principal.role.allows(read):
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN, detail=f"this needs the {read.value} role or higher"
                )
        elif principal.role not in writers:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this needs the {names} role")
        return principal

    check.required_role = read  # type: ignore[attr-defined]
    check.write_roles = writers  # type: ignore[attr-defined]
    check.__name__ = f"require_{read.value}_write_{names.replace('/', '_')}"
    return check


def open_endpoint() -> None:
    """Marks a route reachable without an operator token (it has its own gate)."""


open_endpoint.open_endpoint = True  # type: ignore[attr-defined]


def mark_open(path: str) -> None:
    """Let ``api_guard`` pass ``path`` (routes that use ``open_endpoint``)."""
    _OPEN_PATHS.add(path)


def probe_access(request: Request, security: SecurityDep, state: AppStateDep) -> None:
    """Health probes and metrics: open, or viewer and up with ``probes_require_auth``."""
    if security.settings.probes_require_auth:
        principal = authenticate(request, security, state)
        if not principal.role.allows(Role.VIEWER):  # every role does; kept for clarity
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="forbidden")


probe_access.probe = True  # type: ignore[attr-defined]


def api_guard(request: Request, security: SecurityDep, state: AppStateDep) -> None:
    """App-wide backstop: every ``/api/v1`` route not marked open needs a valid token."""
    route: Any = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if not path.startswith(API_PREFIX) or path in _OPEN_PATHS:
        return
    authenticate(request, security, state)


VIEWER = Depends(require_role(Role.VIEWER))
OPERATOR = Depends(require_role(Role.OPERATOR))
TECHNICIAN = Depends(require_role(Role.TECHNICIAN))
ADMIN = Depends(require_role(Role.ADMIN))
READ_VIEWER_WRITE_OPERATOR = Depends(require_roles(read=Role.VIEWER, write=Role.OPERATOR))
# Who may change desired config (docs/security.md): operators and admins, not technicians.
CONFIG_WRITERS: Final = frozenset({Role.OPERATOR, Role.ADMIN})
READ_VIEWER_WRITE_CONFIG = Depends(require_writers(read=Role.VIEWER, writers=CONFIG_WRITERS))
OPEN = Depends(open_endpoint)
PROBE = Depends(probe_access)
