"""Operator accounts and their API tokens: create, list, disable, authenticate.

Every change adds an audit entry in the same transaction. Functions take a session and
commit themselves, so one call is one transaction.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.models import ApiToken, User
from fleet_server.security import audit
from fleet_server.security.errors import Conflict, NotFound, SecurityError
from fleet_server.security.roles import Role
from fleet_server.security.scope import WHOLE_FLEET, Scope, ScopeError, normalise
from fleet_server.security.tokens import API_PREFIX, MAX_TOKEN_LENGTH, new_token, token_hash

logger = logging.getLogger(__name__)

FIRST_ADMIN = "admin"
_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: an operator (or the development switch's stand-in)."""

    name: str
    role: Role
    user_id: int | None = None
    # The outlets this caller sees and acts on (fleet_server.security.scope).
    scope: Scope = WHOLE_FLEET


def principal_of(user: User) -> Principal:
    """The caller a user row stands for; admins are whole-fleet whatever is stored."""
    role = Role(user.role)
    prefixes = () if role is Role.ADMIN else tuple(user.region_prefixes or ())
    return Principal(name=user.name, role=role, user_id=user.id, scope=Scope(prefixes))


def _check_scope(role: Role, regions: Sequence[str]) -> tuple[str, ...]:
    try:
        prefixes = normalise(regions)
    except ScopeError as exc:
        raise SecurityError(str(exc)) from None
    if prefixes and role is Role.ADMIN:
        # An admin manages users and fleet-wide settings: a region limit would not hold.
        raise SecurityError("admins are always whole-fleet: a region scope is refused")
    return prefixes


@dataclass(frozen=True, slots=True, kw_only=True)
class NewToken:
    """A token just created; ``token`` is shown once and never stored."""

    user: str
    role: Role
    token: str
    expires_at: datetime


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise SecurityError("user name must be 1-64 letters, digits, '_', '.', '@', '-'")


def _issue(session: Session, user: User, *, ttl: timedelta, now: datetime) -> NewToken:
    token = new_token(API_PREFIX)
    expires = now + ttl
    session.add(
        ApiToken(token_hash=token_hash(token), user_id=user.id, created_at=now, expires_at=expires)
    )
    return NewToken(user=user.name, role=Role(user.role), token=token, expires_at=expires)


def create_user(
    session: Session,
    *,
    name: str,
    role: Role,
    ttl: timedelta,
    actor: str,
    regions: Sequence[str] = (),
) -> NewToken:
    """Create an account with one API token; raise ``Conflict`` if the name is taken.

    ``regions``: the region-code prefixes it is limited to (none: the whole fleet).
    """
    _check_name(name)
    prefixes = _check_scope(role, regions)
    now = datetime.now(UTC)
    user = User(
        name=name, role=role.value, disabled=False, created_at=now, region_prefixes=list(prefixes)
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"user {name!r} already exists") from None
    issued = _issue(session, user, ttl=ttl, now=now)
    audit.record(
        session,
        actor=actor,
        action="user.create",
        target=f"user:{name}",
        after={
            "role": role.value,
            "regions": list(prefixes),
            "token_expires_at": issued.expires_at.isoformat(),
        },
        at=now,
    )
    session.commit()
    return issued


def issue_token(session: Session, *, name: str, ttl: timedelta, actor: str) -> NewToken:
    """A further API token for an enabled user (old tokens stay valid until they expire)."""
    user = _get(session, name)
    if user.disabled:
        raise SecurityError(f"user {name!r} is disabled")
    now = datetime.now(UTC)
    issued = _issue(session, user, ttl=ttl, now=now)
    audit.record(
        session,
        actor=actor,
        action="user.token",
        target=f"user:{name}",
        after={"token_expires_at": issued.expires_at.isoformat()},
        at=now,
    )
    session.commit()
    return issued


def _get(session: Session, name: str) -> User:
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return user


def get_user(session: Session, name: str) -> User:
    """The account named ``name``; ``NotFound`` if there is none."""
    return _get(session, name)


def list_users(session: Session) -> Sequence[User]:
    """Every account, by name."""
    return session.scalars(select(User).order_by(User.name)).all()


def set_scope(session: Session, *, name: str, regions: Sequence[str], actor: str) -> User:
    """Limit a user to ``regions`` (prefixes; empty: the whole fleet).

    Tokens and sessions read the user's row on every request, so the new scope applies
    to the next request of each of them: nothing to revoke.
    """
    user = _get(session, name)
    prefixes = _check_scope(Role(user.role), regions)
    before = {"regions": list(user.region_prefixes or [])}
    user.region_prefixes = list(prefixes)
    audit.record(
        session,
        actor=actor,
        action="user.scope",
        target=f"user:{name}",
        before=before,
        after={"regions": list(prefixes)},
    )
    session.commit()
    return user


def disable_user(session: Session, *, name: str, actor: str) -> User:
    """Disable an account and delete its tokens (they stop working at once)."""
    user = _get(session, name)
    before = {"disabled": user.disabled}
    user.disabled = True
    session.query(ApiToken).filter(ApiToken.user_id == user.id).delete()
    audit.record(
        session,
        actor=actor,
        action="user.disable",
        target=f"user:{name}",
        before=before,
        after={"disabled": True},
    )
    session.commit()
    return user


def enable_user(session: Session, *, name: str, actor: str) -> User:
    """Enable a disabled account again (its old tokens stay deleted: it logs in with its
    password or gets a new token)."""
    user = _get(session, name)
    if user.disabled:
        user.disabled = False
        audit.record(
            session, actor=actor, action="user.enable", target=f"user:{name}",
            before={"disabled": True}, after={"disabled": False},
        )  # fmt: skip
        session.commit()
    return user


def authenticate(session: Session, token: str, *, now: datetime) -> Principal | None:
    """The principal behind a bearer token, or ``None`` (unknown, expired, disabled)."""
    return principal_for_secret(session, token, prefix=API_PREFIX, now=now)


def principal_for_secret(
    session: Session, secret: str, *, prefix: str, now: datetime
) -> Principal | None:
    """The user a stored secret of kind ``prefix`` belongs to, or ``None``.

    API tokens and web-UI session secrets share ``api_tokens``; the prefix keeps a session
    secret from working as a bearer token and the other way round.
    """
    if not secret.startswith(prefix) or len(secret) > MAX_TOKEN_LENGTH:
        return None
    row = session.execute(
        select(ApiToken.expires_at, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash(secret))
    ).one_or_none()
    if row is None:
        return None
    expires_at, user = row
    if user.disabled or expires_at <= now:
        return None
    return principal_of(user)


def ensure_first_admin(session: Session, *, ttl: timedelta) -> NewToken | None:
    """Create the ``admin`` account when there is no account at all; else ``None``.

    The caller shows the returned token once; it is not kept anywhere in clear.
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    try:
        return create_user(session, name=FIRST_ADMIN, role=Role.ADMIN, ttl=ttl, actor="system")
    except Conflict:  # another worker created it at the same moment
        return None
