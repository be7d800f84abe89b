"""Rectification follow-up notes may name the citizen called back: sealed at rest, read
by operators, masked for viewers, and notes stored before 0012 sealed by the migration."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import downgrade, upgrade
from fleet_server.models import Evaluation, Rectification, RectificationFollowUp
from fleet_server.piivault import Vault, VaultError, current_vault, use_vault
from fleet_server.security import Role
from tests.security.api_harness import Api, running_api
from tests.server.txkit import ID_NUMBER

NAME = "张三丰"
NOTE = f"回访 {NAME} {ID_NUMBER} 已解释办理时限"


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    before = current_vault()
    fresh = Vault(tmp_path / "keys")
    use_vault(fresh)
    yield fresh
    use_vault(before)


def _ticket(engine: Engine) -> int:
    now = datetime.now(UTC)
    with make_sessionmaker(engine).begin() as session:
        evaluation = Evaluation(
            tx_id="tx-note-1", outlet_id="o-1", window="W1", case_number=None, level_code=5,
            stars=1, channel="4", is_bad=True, is_default=False, real_name=True,
            evaluated_at=now,
        )  # fmt: skip
        session.add(evaluation)
        session.flush()
        ticket = Rectification(
            evaluation_id=evaluation.id, outlet_id="o-1", window="W1", opened_at=now,
            deadline_at=now + timedelta(days=15), status="open",
        )  # fmt: skip
        session.add(ticket)
        session.flush()
        return ticket.id


def _files(tmp_path: Path, engine: Engine) -> bytes:
    with engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return b"".join(p.read_bytes() for p in tmp_path.glob("fleet.db*"))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path, mqtt_url="mqtt://127.0.0.1:1", pii_key_dir=tmp_path / "pii") as a:
        yield a


def test_notes_are_sealed_and_masked_for_viewers(api: Api, tmp_path: Path) -> None:
    ticket = _ticket(api.engine)
    posted = api.client.post(
        f"/api/v1/rectifications/{ticket}/follow-up",
        json={"action": "回访", "note": NOTE, "by": "clerk-1"},
        headers=api.as_role(Role.OPERATOR),
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["follow_ups"][0]["note"] == NOTE

    files = _files(tmp_path, api.engine)
    for secret in (NAME, ID_NUMBER):
        assert secret.encode() not in files
        assert secret.encode("unicode_escape") not in files

    seen = api.client.get("/api/v1/rectifications", headers=api.as_role(Role.VIEWER))
    assert seen.status_code == 200
    note = seen.json()["items"][0]["follow_ups"][0]
    assert (note["note"], note["note_masked"]) == ("***", True)
    assert NAME not in seen.text
    assert ID_NUMBER not in seen.text
    for role in (Role.OPERATOR, Role.ADMIN):
        full = api.client.get("/api/v1/rectifications", headers=api.as_role(role))
        assert full.json()["items"][0]["follow_ups"][0]["note"] == NOTE


def test_migration_seals_old_notes_and_refuses_plain_ones(vault: Vault, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        upgrade(engine, revision="0007_ingest_workers")
        ticket = _ticket(engine)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO rectification_follow_ups (rectification_id, at, action, note,"
                    " by, closes) VALUES (:t, :at, '回访', :note, 'clerk-1', 0)"
                ),
                {"t": ticket, "at": datetime.now(UTC).isoformat(), "note": NOTE},
            )
        upgrade(engine)
        assert NAME.encode() not in _files(tmp_path, engine)
        with make_sessionmaker(engine)() as session:
            assert session.query(RectificationFollowUp).one().note == NOTE
        downgrade(engine, revision="0007_ingest_workers")
        with engine.connect() as connection:
            plain = connection.execute(text("SELECT note FROM rectification_follow_ups"))
            assert plain.scalar_one() == NOTE
        upgrade(engine)
        # A plain note written behind the server's back is refused, not passed through.
        with engine.begin() as connection:
            connection.execute(text("UPDATE rectification_follow_ups SET note = 'plain'"))
        with make_sessionmaker(engine)() as session, pytest.raises(VaultError):
            session.query(RectificationFollowUp).one()
    finally:
        engine.dispose()
