"""Empty the bodies the server no longer needs: delivered (upstream confirmed receipt)
or local-only (queue events) and older than the retention. Ids, states, case numbers
and timestamps stay, so statistics and the audit trail are unchanged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.models import InboxEntry

logger = logging.getLogger(__name__)


def purge_bodies(session: Session, *, now: datetime, retention: timedelta) -> int:
    """Empty expired bodies in ``session`` (the caller commits); returns how many."""
    cutoff = now - retention
    result = session.execute(
        update(InboxEntry)
        .where(
            InboxEntry.purged_at.is_(None),
            or_(
                and_(InboxEntry.state == "delivered", InboxEntry.delivered_at < cutoff),
                and_(InboxEntry.state == "local", InboxEntry.received_at < cutoff),
            ),
        )
        .values(sealed_body={}, purged_at=now)  # reads as {} once purged_at is set
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


Purge = Callable[[Session, datetime], int]


def purge_once(
    sessions: sessionmaker[Session],
    *,
    retention: timedelta,
    clock: Callable[[], datetime],
    also: Sequence[Purge] = (),
) -> int:
    """One purge in its own transaction; database errors are logged and retried later.

    ``also``: further purges (e.g. material chunks) run in the same transaction.
    """
    try:
        with sessions.begin() as session:
            now = clock()
            count = purge_bodies(session, now=now, retention=retention)
            for extra in also:
                count += extra(session, now)
    except SQLAlchemyError as exc:
        logger.warning("PII purge failed (%s); retrying at the next interval", type(exc).__name__)
        return 0
    if count:
        logger.info("emptied %d transaction bodies and materials past their retention", count)
    return count


async def purge_loop(
    sessions: sessionmaker[Session],
    *,
    retention: timedelta,
    interval_s: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    also: Sequence[Purge] = (),
) -> None:
    """``purge_once`` now and every ``interval_s`` until cancelled."""
    while True:
        await asyncio.to_thread(purge_once, sessions, retention=retention, clock=clock, also=also)
        await asyncio.sleep(interval_s)
