"""Which outlets the ingest treats as revoked (``fleet_server.security.revocation``).

Real SQLite with the migrated schema; the rule is per outlet: a revoked certificate and
no valid one. The end-to-end behaviour is in ``test_revocation_thief.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.models import Certificate
from fleet_server.security.revocation import RevokedOutlets, revoked_outlet_ids

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(engine)
    return make_sessionmaker(engine)


def _cert(outlet_id: str, serial: str, *, revoked: bool, days_left: float) -> Certificate:
    return Certificate(
        serial=serial,
        outlet_id=outlet_id,
        fingerprint_sha256="0" * 64,
        issued_at=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=days_left),
        revoked_at=NOW - timedelta(hours=1) if revoked else None,
    )


def test_an_outlet_is_revoked_while_it_has_no_valid_certificate(tmp_path: Path) -> None:
    sessions = _sessions(tmp_path)
    with sessions.begin() as session:
        session.add_all(
            [
                _cert("never-revoked", "a1", revoked=False, days_left=60),
                _cert("revoked", "b1", revoked=True, days_left=60),
                _cert("re-enrolled", "c1", revoked=True, days_left=60),
                _cert("re-enrolled", "c2", revoked=False, days_left=90),
                # Revoked, and the only other certificate has expired: still revoked.
                _cert("revoked-expired", "d1", revoked=True, days_left=60),
                _cert("revoked-expired", "d2", revoked=False, days_left=-1),
                # Only an expired certificate, never revoked: not a revocation.
                _cert("expired", "e1", revoked=False, days_left=-1),
            ]
        )
    with sessions() as session:
        assert revoked_outlet_ids(session, now=NOW) == {"revoked", "revoked-expired"}


def test_changes_of_this_process_survive_a_refresh_that_read_before_them() -> None:
    clock = [100.0]
    revoked = RevokedOutlets(refresh_s=5.0, clock=lambda: clock[0])
    assert revoked.due()
    revoked.replace({"old"})
    assert revoked.contains("old")

    # A refresh starts at t=100, the API revokes "new" and re-enrolls "old" at t=101,
    # then the refresh's (older) answer arrives: the API's changes win.
    revoked.add("new")
    clock[0] = 101.0
    revoked.discard("old")
    revoked.replace({"old"}, read_since=100.0)
    assert revoked.contains("new")
    assert not revoked.contains("old")

    # A later read is the truth again.
    revoked.replace({"old"}, read_since=102.0)
    assert revoked.contains("old")
    assert not revoked.contains("new")
