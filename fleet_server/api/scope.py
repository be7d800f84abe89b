"""The one enforcement point for user scopes (docs/security.md, "Scoped operators").

- ``ScopeDep``: the caller's scope, for routes that filter lists and counts.
- ``path_guard`` (app-wide, like ``api_guard``): any route with an ``{outlet_id}``
  path parameter, or one naming a row that belongs to outlets (an alert, a dead letter,
  a campaign, a playbook run: ``OWNERS``), answers 404 when the outlet or any of the
  row's outlets is outside the caller's scope, exactly as for one that does not exist,
  so a scope never confirms that a thing exists.
- ``refuse_outside``: 403 with a reason when a write *names* outlets outside the scope
  (the caller chose them, so saying which is no leak).
- ``WHOLE_FLEET_ONLY``: fleet-wide writes (releases, global config, enrollment tokens,
  regions) refuse scoped callers with 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Final

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from fleet_server.api.auth import SESSION_COOKIE, Authenticated, SecurityDep, authenticate
from fleet_server.api.deps import AppStateDep
from fleet_server.security.scope import WHOLE_FLEET, Scope


def caller_scope(principal: Authenticated) -> Scope:
    """The caller's scope, read with their user row on this very request."""
    return principal.scope


ScopeDep = Annotated[Scope, Depends(caller_scope)]


def not_found(what: str) -> HTTPException:
    """The answer for a thing outside the scope: the one it would get if it did not exist."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} not found")


def in_scope_or_404(session: Session, scope: Scope, outlet_id: str, what: str) -> None:
    """404 unless the outlet ``what`` belongs to is inside ``scope``."""
    if not scope.admits_outlet(session, outlet_id):
        raise not_found(what)


def all_in_scope_or_404(
    session: Session, scope: Scope, outlet_ids: Iterable[str], what: str
) -> None:
    """404 unless every outlet of a campaign or a run is inside ``scope``: a scoped user
    neither sees nor steers work that reaches outlets they may not see."""
    if not scope.admits_all(session, outlet_ids):
        raise not_found(what)


def refuse_outside(session: Session, scope: Scope, outlet_ids: Iterable[str]) -> None:
    """403 naming (the first few of) the chosen outlets outside ``scope``."""
    chosen = list(outlet_ids)
    inside = set(scope.keep(session, chosen))
    outside = [o for o in chosen if o not in inside]
    if outside:
        shown = ", ".join(outside[:10]) + (" …" if len(outside) > 10 else "")
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"outside your region scope ({' '.join(scope.prefixes)}): {shown}",
        )


# Path parameter → the outlets the named row belongs to (None: no such row, the route
# answers its own 404). Filled by fleet_server.scope_owners, which may import every
# table; this layer may not.
OwnerLookup = Callable[[Session, str], Sequence[str] | None]
OWNERS: Final[dict[str, OwnerLookup]] = {}


def path_guard(request: Request, security: SecurityDep, state: AppStateDep) -> None:
    """App-wide: a path naming an outlet, or a row of outlets, outside the caller's scope
    answers 404, as if it did not exist.

    ``{outlet_id}`` is checked directly, other parameters through ``OWNERS`` (an alert,
    a dead letter, a campaign, a playbook run). Runs before every route, so no route can
    forget it; routes without such a parameter, and open routes, pass untouched.
    """
    params = {k: v for k, v in request.path_params.items() if k == "outlet_id" or k in OWNERS}
    if not params or not security.auth_enabled:
        return
    try:
        principal = authenticate(request, security, state)
    except HTTPException:
        return  # no valid caller: the route's own role check answers 401/403
    if principal.scope.whole_fleet:
        return
    with state.sessions() as session:
        for name, value in params.items():
            what = f"{name.removesuffix('_id').replace('_', ' ')} {value!r}"
            if name == "outlet_id":
                in_scope_or_404(session, principal.scope, str(value), what)
                continue
            owners = OWNERS[name](session, str(value))
            if owners is not None:
                all_in_scope_or_404(session, principal.scope, owners, what)


def metrics_access(request: Request, security: SecurityDep, state: AppStateDep) -> Scope:
    """``/metrics``' scope. A caller who brings a token or a session gets their own
    scope's series (a scoped user: only their outlets'); a bad credential is a 401, never
    a quiet fall-back. Without any credential it is a probe: whole-fleet totals when the
    operator leaves probes open, 401 with ``probes_require_auth``."""
    brought = request.headers.get("authorization") or request.cookies.get(SESSION_COOKIE)
    if not brought and not security.settings.probes_require_auth:
        return WHOLE_FLEET
    return authenticate(request, security, state).scope


metrics_access.probe = True  # type: ignore[attr-defined]


def whole_fleet_only(principal: Authenticated) -> None:
    """403 for a scoped caller: this changes the whole fleet."""
    if not principal.scope.whole_fleet:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail="this changes the whole fleet: a region-scoped user may not",
        )


whole_fleet_only.whole_fleet = True  # type: ignore[attr-defined]
WHOLE_FLEET_ONLY = Depends(whole_fleet_only)
