"""Several ingest workers in one share group: heartbeats and who may mark the fleet stale.

With one worker, Sparkplug's host rule holds as it stands: a worker that starts or loses
the broker cannot vouch for anyone, so every online outlet becomes ``stale``. With
several workers (``GOVEDGE_MQTT_SHARE_GROUP``) that is only true when **no** worker holds
the broker: while another worker is connected it still receives every outlet's messages
(the broker now gives them all to it) and presence in the database stays right.

Each worker of a share group keeps one row in ``ingest_workers``: its id, whether it
holds its broker subscription, and when it last wrote the row (``beat_at``, every
``worker_heartbeat_s``). A worker is **live and connected** when its row says
``connected`` and ``beat_at`` is younger than ``worker_lease_s``; a SIGKILLed worker's
row simply ages out. The rules (each decision taken in one transaction holding one
fleet-wide lock, so two workers deciding at once are serialised and the second one sees
what the first wrote):

* **Start**: a worker registers itself not connected and marks the fleet stale only if no
  other worker is live and connected. A peer counts only once it has beaten **after**
  this worker registered (waiting at most the lease): the row of a worker SIGKILLed a
  moment ago is still inside its lease, and while no worker was subscribed the wills of
  outlets that died were dropped by the broker, so the fleet must be marked.
* **Broker lost** (or clean stop): the worker writes itself not connected, then marks the
  fleet stale only if no other worker is live and connected: the last one to go does it.
* **Sweep** (every heartbeat): if no worker at all is live and connected, the online
  outlets are marked stale. This covers a worker that lost the broker while a peer still
  held it, and the peer then vanished without marking (SIGKILL, a lost machine).
* **Server state at clean stop**: the worker publishes ``_fleet/state`` offline only when
  no other worker is live and connected (``Ingest.stop``).

Time is the workers' own clock (UTC): they must agree within a fraction of the lease
(NTP). The lock is a transaction-level PostgreSQL advisory lock; SQLite serialises
writers anyway (the first statement of each decision is a write).
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from fleet_server.models import Agent, IngestWorker

# One fixed key for the transaction-level advisory lock of presence decisions.
FLEET_LOCK_KEY = zlib.crc32(b"govedge:ingest-workers")
# Rows of workers gone this long are deleted by any worker's heartbeat.
FORGET_AFTER = timedelta(days=1)


def fleet_lock(session: Session) -> None:
    """Serialise presence decisions of all workers until the end of the transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FLEET_LOCK_KEY})


def beat(
    session: Session, *, worker_id: str, server_id: str, connected: bool, now: datetime
) -> None:
    """Write this worker's heartbeat row (insert it on the first beat)."""
    updated = session.execute(
        update(IngestWorker)
        .where(IngestWorker.worker_id == worker_id)
        .values(connected=connected, beat_at=now)
    )
    if getattr(updated, "rowcount", 0) == 0:
        session.add(
            IngestWorker(
                worker_id=worker_id,
                server_id=server_id,
                connected=connected,
                started_at=now,
                beat_at=now,
            )
        )
        session.flush()
    session.execute(delete(IngestWorker).where(IngestWorker.beat_at < now - FORGET_AFTER))


def live_connected(
    session: Session,
    *,
    now: datetime,
    lease_s: float,
    exclude: str | None = None,
    since: datetime | None = None,
) -> list[str]:
    """Ids of the workers whose row says connected and is younger than the lease.

    ``since``: only rows written after it (a starting worker trusts a peer only once
    the peer has beaten after the start: a row of a worker SIGKILLed a moment ago is
    still inside its lease).
    """
    query = select(IngestWorker.worker_id).where(
        IngestWorker.connected.is_(True),
        IngestWorker.beat_at >= now - timedelta(seconds=lease_s),
    )
    if since is not None:
        query = query.where(IngestWorker.beat_at > since)
    if exclude is not None:
        query = query.where(IngestWorker.worker_id != exclude)
    return list(session.scalars(query.order_by(IngestWorker.worker_id)))


def mark_fleet_stale(session: Session, *, at: datetime) -> int:
    """Every outlet stored ``online`` becomes ``stale`` at ``at``; returns how many."""
    result = session.execute(
        update(Agent).where(Agent.state == "online").values(state="stale", state_since=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def forget(session: Session, worker_id: str) -> None:
    """Delete this worker's row (clean stop)."""
    session.execute(delete(IngestWorker).where(IngestWorker.worker_id == worker_id))


def count_workers(session: Session) -> int:
    """How many worker rows exist (for tests and diagnostics)."""
    return int(session.scalar(select(func.count()).select_from(IngestWorker)) or 0)
