"""``/users`` (admin): operator accounts and their tokens; ``/me`` (any role)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from fleet_server.api.auth import ADMIN, Authenticated, SecurityDep
from fleet_server.api.deps import SessionDep
from fleet_server.api.security_schemas import (
    PasswordIn,
    PasswordSet,
    ScopeIn,
    TokenPublic,
    UserChange,
    UserCreate,
    UserPublic,
    WhoAmI,
)
from fleet_server.models import User
from fleet_server.security import NewToken, Role, SecurityError, passwords
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


def _chosen_password(password: str | None, generate: bool) -> tuple[str | None, bool]:
    """The password to set and whether the server made it; 400 for both or a weak one."""
    if password is not None and generate:
        raise HTTPException(400, detail="give a password or ask for one to be generated, not both")
    if generate:
        return passwords.generate_password(), True
    if password is not None:
        try:
            passwords.check_strength(password)
        except SecurityError as exc:
            raise HTTPException(exc.status, detail=str(exc)) from None
    return password, False


@router.post("", status_code=201)
def create_user(
    body: UserCreate, session: SessionDep, security: SecurityDep, principal: Authenticated
) -> TokenPublic:
    """Create an account with a web password (typed, or ``generate_password``: made here
    and shown in this answer only) or none; its first API token is in this answer only."""
    password, generated = _chosen_password(body.password, body.generate_password)
    ttl = timedelta(seconds=security.settings.api_token_ttl_s)
    try:
        new = ops.create_user(
            session, name=body.name, role=body.role, ttl=ttl, actor=principal.name,
            regions=body.regions,
        )  # fmt: skip
        if password is not None:
            passwords.set_password(session, name=body.name, password=password, actor=principal.name)
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _token(new).model_copy(update={"password": password if generated else None})


@router.post("/{name}/password")
def set_password(
    name: Annotated[str, Path(max_length=64)],
    body: PasswordIn,
    session: SessionDep,
    principal: Authenticated,
) -> PasswordSet:
    """Reset the account's web password (typed or ``generate``: shown in this answer
    only); its web sessions end, its API tokens stay."""
    password, generated = _chosen_password(body.password, body.generate)
    if password is None:
        raise HTTPException(400, detail="give a password or ask for one to be generated")
    try:
        passwords.set_password(session, name=name, password=password, actor=principal.name)
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    return PasswordSet(name=name, password=password if generated else None)


@router.post("/{name}/unlock")
def unlock_user(
    name: Annotated[str, Path(max_length=64)], session: SessionDep, principal: Authenticated
) -> UserChange:
    """Enable a disabled account and lift its login lockout (forget failed logins)."""
    try:
        user = ops.enable_user(session, name=name, actor=principal.name)
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    forgotten = passwords.unlock(session, name=name, actor=principal.name)
    return UserChange(name=name, disabled=user.disabled, failures_forgotten=forgotten)


@router.post("/{name}/sessions/revoke")
def revoke_sessions(
    name: Annotated[str, Path(max_length=64)], session: SessionDep, principal: Authenticated
) -> UserChange:
    """End every web session of the account at once (API tokens stay)."""
    try:
        user = ops.get_user(session, name)
    except SecurityError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    ended = passwords.end_sessions(session, name=name, user_id=user.id, actor=principal.name)
    return UserChange(name=name, disabled=user.disabled, sessions_ended=ended)


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
