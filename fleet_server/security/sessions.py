"""Web UI sessions: a browser cannot send a bearer token, so it logs in once.

The operator gives their name and password on ``/ui/login``
(``fleet_server.security.passwords``); the server answers with a session cookie holding
a fresh random ``gvs_…`` secret. Like API tokens the secret is stored only as its
SHA-256 (in ``api_tokens``, so disabling the user ends its sessions too). A session row
has ``last_used_at`` (API tokens do not): it ends ``idle`` after its last request and at
``expires_at`` (absolute). A session secret is never accepted as a bearer token, and an
API token is never accepted as a cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleet_server.models import ApiToken, User
from fleet_server.security.tokens import MAX_TOKEN_LENGTH, new_token, token_hash
from fleet_server.security.users import Principal, principal_of

SESSION_PREFIX = "gvs_"
# last_used_at is written at most this often, not on every request.
_TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionInfo:
    """One open web session of a user (for ``fleet-server users sessions``)."""

    created_at: datetime
    last_used_at: datetime
    expires_at: datetime


def open_session(session: Session, *, user_id: int, ttl: timedelta, now: datetime) -> str:
    """A new session secret for ``user_id`` (whose password was just checked)."""
    secret = new_token(SESSION_PREFIX)
    session.add(
        ApiToken(
            token_hash=token_hash(secret),
            user_id=user_id,
            created_at=now,
            expires_at=now + ttl,
            last_used_at=now,
        )
    )
    return secret


def session_principal(
    session: Session, secret: str, *, idle: timedelta, now: datetime
) -> Principal | None:
    """Who a session cookie belongs to, or None (unknown, idle, expired, user disabled).

    Marks the session used; the caller commits.
    """
    if not secret.startswith(SESSION_PREFIX) or len(secret) > MAX_TOKEN_LENGTH:
        return None
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash(secret))
    ).one_or_none()
    if row is None:
        return None
    token, user = row
    last = token.last_used_at
    if user.disabled or last is None or token.expires_at <= now or last + idle <= now:
        return None
    if now - last >= _TOUCH_EVERY:
        token.last_used_at = now
    return principal_of(user)


def close_session(session: Session, secret: str) -> None:
    """Forget a session (logout); unknown secrets are ignored."""
    if secret.startswith(SESSION_PREFIX):
        session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash(secret)))


def list_sessions(session: Session, *, user_id: int, now: datetime) -> list[SessionInfo]:
    """A user's sessions not yet past their absolute expiry, oldest first."""
    rows = session.scalars(
        select(ApiToken)
        .where(
            ApiToken.user_id == user_id,
            ApiToken.last_used_at.is_not(None),
            ApiToken.expires_at > now,
        )
        .order_by(ApiToken.created_at)
    ).all()
    return [
        SessionInfo(created_at=r.created_at, last_used_at=r.last_used_at, expires_at=r.expires_at)
        for r in rows
        if r.last_used_at is not None
    ]
