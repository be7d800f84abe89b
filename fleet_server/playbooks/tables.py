"""Tables of migration ``0017_playbook_runs``: how to reach an outlet PC, runs, per-host
results and the job events of each run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.models import Base, UTCDateTime

# A run's life: pending → running → successful | failed | canceled | error; a server
# restart turns pending and running ones into interrupted (runs survive nothing).
RUN_DONE = frozenset({"successful", "failed", "canceled", "error", "interrupted"})


class OutletAccess(Base):
    """How Ansible reaches one outlet PC: the inventory's host vars for it."""

    __tablename__ = "outlet_access"

    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ansible_host: Mapped[str | None] = mapped_column(String(255))
    ansible_user: Mapped[str | None] = mapped_column(String(64))
    ansible_port: Mapped[int | None] = mapped_column(Integer)
    # Further host vars (never secrets: keys go through GOVEDGE_PLAYBOOK_SSH_KEY).
    host_vars: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str] = mapped_column(String(128))
    # The PC's SSH host key (``ssh-ed25519 AAAA…``), pinned at the first run that reached
    # it (migration 0021); every later run checks it strictly.
    host_key: Mapped[str | None] = mapped_column(String(2000), default=None)
    host_key_pinned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class OutletArchive(Base):
    """An archive a run fetched from an outlet PC (diagnose, decommission), kept in the
    run's folder and listed on the outlet's record (migration 0021)."""

    __tablename__ = "outlet_archives"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outlet_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("playbook_runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PlaybookRun(Base):
    """One run of one playbook against the outlets a target chose."""

    __tablename__ = "playbook_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    playbook: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    check_mode: Mapped[bool] = mapped_column(Boolean)
    during_opening_hours: Mapped[bool] = mapped_column(Boolean)
    forks: Mapped[int] = mapped_column(Integer)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    extra_vars: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    canceled_by: Mapped[str | None] = mapped_column(String(128))
    rc: Mapped[int | None] = mapped_column(Integer)
    # ansible's closing stats: {"ok": {host: n}, "changed": …, "failures": …, "dark": …}
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(2000))


class PlaybookHost(Base):
    """One outlet in one run: held back, or what Ansible did there."""

    __tablename__ = "playbook_hosts"

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("playbook_runs.id", ondelete="CASCADE"), primary_key=True
    )
    outlet_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    # pending, held, ok, changed, failed, unreachable, skipped, canceled
    status: Mapped[str] = mapped_column(String(16))
    held_reason: Mapped[str | None] = mapped_column(String(500))
    ok: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    unreachable: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    last_task: Mapped[str | None] = mapped_column(String(500))


class PlaybookEvent(Base):
    """One ansible-runner job event, its stdout masked."""

    __tablename__ = "playbook_events"

    run_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("playbook_runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(64))
    outlet_id: Mapped[str | None] = mapped_column(String(64))
    task: Mapped[str | None] = mapped_column(String(500))
    stdout: Mapped[str] = mapped_column(Text)
