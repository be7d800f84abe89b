"""Operator passwords for the web login: argon2id hashes, lockout, constant-time misses.

A password is guessable, so unlike tokens (``tokens.py``) it is stored as an argon2id
hash (argon2-cffi's defaults: RFC 9106 low-memory profile). Failed logins are rows in
``login_failures``; too many for one user name or one client address in the window
refuse further tries until the window passes or an admin unlocks the user.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from fleet_server.models import ApiToken, LoginFailure, User
from fleet_server.security import audit
from fleet_server.security.errors import NotFound, SecurityError
from fleet_server.security.roles import Role

MIN_LENGTH = 10
MAX_LENGTH = 1024  # argon2 takes any length; this bounds the work one request can cause
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a miss takes as long as a hit.
    Made on first use: hashing costs ~0.3 CPU s, which every process that imports this
    module (each CLI command, each server start) paid before."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def warm_up() -> None:
    """Make the dummy hash now (a server does it in the background as it starts, so
    that not even the first miss takes longer than a hit)."""
    _dummy_hash()


class LoginResult(StrEnum):
    """What a login attempt came to."""

    OK = "ok"
    WRONG = "wrong"
    USER_LOCKED = "user_locked"
    ADDRESS_LOCKED = "address_locked"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lockout:
    """The lockout policy (from settings)."""

    max_failures: int
    window: timedelta
    address_max_failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """A login attempt's outcome; ``user_id``/``role`` only when it succeeded."""

    result: LoginResult
    user_id: int | None = None
    role: Role | None = None


def check_strength(password: str) -> None:
    """Raise ``SecurityError`` for a password too short or too long."""
    if len(password) < MIN_LENGTH:
        raise SecurityError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise SecurityError(f"a password may have at most {MAX_LENGTH} characters")


def generate_password() -> str:
    """A random password to print once (about 120 bits)."""
    return secrets.token_urlsafe(15)


def hash_password(password: str) -> str:
    """The argon2id PHC string for ``password``."""
    return _HASHER.hash(password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def _failures(
    session: Session, column: InstrumentedAttribute[str], value: str, since: datetime
) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(column == value, LoginFailure.at > since)
    )
    return int(count or 0)


def check_login(
    session: Session, *, name: str, password: str, address: str, policy: Lockout, now: datetime
) -> Checked:
    """Check a name and password, counting failures; the caller commits.

    Locked names and addresses are refused before the hash is checked, so a locked
    account cannot be probed; an unknown name costs one dummy verification.
    """
    since = now - policy.window
    if _failures(session, LoginFailure.address, address, since) >= policy.address_max_failures:
        return Checked(result=LoginResult.ADDRESS_LOCKED)
    if _failures(session, LoginFailure.user_name, name, since) >= policy.max_failures:
        return Checked(result=LoginResult.USER_LOCKED)
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    stored = user.password_hash if user is not None else None
    good = _verify(stored, password[:MAX_LENGTH])
    if good and user is not None and not user.disabled:
        session.execute(delete(LoginFailure).where(LoginFailure.user_name == name))
        return Checked(result=LoginResult.OK, user_id=user.id, role=Role(user.role))
    session.add(LoginFailure(user_name=name[:64], address=address[:64], at=now))
    session.flush()
    if _failures(session, LoginFailure.user_name, name, since) >= policy.max_failures:
        return Checked(result=LoginResult.USER_LOCKED)
    return Checked(result=LoginResult.WRONG)


def set_password(session: Session, *, name: str, password: str, actor: str) -> None:
    """Set a user's password and end their web sessions (API tokens stay); commits."""
    check_strength(password)
    user = session.scalars(select(User).where(User.name == name)).one_or_none()
    if user is None:
        raise NotFound(f"user {name!r} not found")
    user.password_hash = hash_password(password)
    revoke_sessions(session, user_id=user.id)
    audit.record(session, actor=actor, action="user.password", target=f"user:{name}")
    session.commit()


def unlock(session: Session, *, name: str, actor: str) -> int:
    """Forget a user's failed logins (ends a lockout); commits. The number forgotten."""
    result = session.execute(delete(LoginFailure).where(LoginFailure.user_name == name))
    count = int(getattr(result, "rowcount", 0) or 0)
    audit.record(
        session,
        actor=actor,
        action="user.unlock",
        target=f"user:{name}",
        before={"failures": count},
    )
    session.commit()
    return count


def end_sessions(session: Session, *, name: str, user_id: int, actor: str) -> int:
    """End all of a user's web sessions, audited; commits. How many there were."""
    count = revoke_sessions(session, user_id=user_id)
    audit.record(
        session, actor=actor, action="user.sessions_revoke", target=f"user:{name}",
        before={"sessions": count},
    )  # fmt: skip
    session.commit()
    return count


def revoke_sessions(session: Session, *, user_id: int) -> int:
    """Delete a user's web sessions (not API tokens); the caller commits."""
    result = session.execute(
        delete(ApiToken).where(ApiToken.user_id == user_id, ApiToken.last_used_at.is_not(None))
    )
    return int(getattr(result, "rowcount", 0) or 0)
