"""Web UI sessions: a browser cannot send a bearer token, so it logs in once.

The operator gives their name and API token on ``/ui/login``; the server answers with a
session cookie holding a fresh random ``gvs_…`` secret. Like API tokens the secret is
stored only as its SHA-256 (in ``api_tokens``, so disabling the user ends its sessions
too) with a short expiry; a session secret is never accepted as a bearer token, and an
API token is never accepted as a cookie.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from fleet_server.models import ApiToken
from fleet_server.security.tokens import new_token, token_hash
from fleet_server.security.users import Principal, authenticate, principal_for_secret

SESSION_PREFIX = "gvs_"


def open_session(
    session: Session, *, name: str, api_token: str, ttl: timedelta, now: datetime
) -> str | None:
    """A new session secret for ``name`` if ``api_token`` is theirs and valid, else None."""
    principal = authenticate(session, api_token, now=now)
    if principal is None or principal.user_id is None or principal.name != name:
        return None
    secret = new_token(SESSION_PREFIX)
    session.add(
        ApiToken(
            token_hash=token_hash(secret),
            user_id=principal.user_id,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return secret


def session_principal(session: Session, secret: str, *, now: datetime) -> Principal | None:
    """Who a session cookie belongs to, or None (unknown, expired, user disabled)."""
    return principal_for_secret(session, secret, prefix=SESSION_PREFIX, now=now)


def close_session(session: Session, secret: str) -> None:
    """Forget a session (logout); unknown secrets are ignored."""
    if secret.startswith(SESSION_PREFIX):
        session.execute(delete(ApiToken).where(ApiToken.token_hash == token_hash(secret)))
