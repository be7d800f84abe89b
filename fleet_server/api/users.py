"""``/users`` (admin): operator accounts and their tokens; ``/me`` (any role)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from fleet_server.api.auth import ADMIN, Authenticated, SecurityDep
from fleet_server.api.deps import SessionDep
from fleet_server.api.security_schemas import ScopeIn, TokenPublic, UserCreate, UserPublic, WhoAmI
from fleet_server.models import User
from fleet_server.security import NewToken, Role, SecurityError
from fleet_server.security import users as ops

router = APIRouter(prefix="/users", tags=["users"], dependencies=[ADMIN])
me_router = APIRouter(tags=["users"])


def _public(user: User) -> UserPublic:
    return UserPublic(
        name=user.name, role=Role(user.role), disabled=user.disabled,
        created_at=user.created_at, regions=list(user.region_prefixes or []),
    )  # fmt: skip


def _token(new: NewToken) -> TokenPublic:
    return TokenPublic(user=new.user, role=new.role, token=new.token, expires_at=new.expires_at)


@router.get("")
def read_users(session: SessionDep) -> list[UserPublic]:
    """Every account by name."""
    return [_public(user) for user in ops.list_users(session)]


@router.post("", status_code=201)
def create_user(
    body: UserCreate, session: SessionDep, security: SecurityDep, principal: Authenticated
) -> TokenPublic:
    """Create an account; its first API token is in this answer only."""
    ttl = timedelta(seconds=security.settings.api_token_ttl_s)
    try:
        new = ops.create_user(
            session, name=body.name, role=body.role, ttl=ttl, actor=principal.name,
            regions=body.regions,
        )  # fmt: skip
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _token(new)


@router.post("/{name}/tokens", status_code=201)
def create_token(
    name: str, session: SessionDep, security: SecurityDep, principal: Authenticated
) -> TokenPublic:
    """A further API token for the account (shown once)."""
    ttl = timedelta(seconds=security.settings.api_token_ttl_s)
    try:
        new = ops.issue_token(session, name=name, ttl=ttl, actor=principal.name)
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _token(new)


@router.put("/{name}/scope")
def put_scope(
    name: Annotated[str, Path(max_length=64)],
    body: ScopeIn,
    session: SessionDep,
    principal: Authenticated,
) -> UserPublic:
    """Limit the account to region-code prefixes (``[]``: the whole fleet); its tokens
    and sessions carry the new scope from their next request."""
    try:
        user = ops.set_scope(session, name=name, regions=body.regions, actor=principal.name)
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _public(user)


@router.post("/{name}/disable")
def disable_user(name: str, session: SessionDep, principal: Authenticated) -> UserPublic:
    """Disable the account; its tokens stop working at once."""
    try:
        user = ops.disable_user(session, name=name, actor=principal.name)
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _public(user)


@me_router.get("/me")
def read_me(principal: Authenticated) -> WhoAmI:
    """Who the token belongs to."""
    return WhoAmI(name=principal.name, role=principal.role, regions=list(principal.scope.prefixes))
