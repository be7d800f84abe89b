"""Transaction bodies are sealed at rest and emptied after delivery plus retention.

The database file must never hold a citizen's ID number or name in plain text (the
bodies are AES-GCM sealed with a 0600 key from the vault directory); delivered bodies
are emptied once ``GOVEDGE_PII_RETENTION_DAYS`` have passed (the clock is injected),
keeping ids, states and timestamps.
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.models import InboxEntry
from fleet_server.piivault import Vault, VaultError, current_vault, row_context, use_vault
from fleet_server.transactions.bodies import parse_body
from fleet_server.transactions.inbox import PendingTx, store_transactions
from fleet_server.transactions.purge import purge_once
from govedge_wire import Transaction, now_ms
from tests.server.txkit import ID_NUMBER, submission

NAME = "张三丰"


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    before = current_vault()
    fresh = Vault(tmp_path / "keys")
    use_vault(fresh)
    yield fresh  # type: ignore[misc]
    use_vault(before)


def _store(url: str, tx_id: str) -> None:
    engine = make_engine(url)
    body = submission()
    message = Transaction(
        outlet_id="o-1", session=1, seq=1, tx_id=tx_id, tx_kind="submission",
        created_ts=now_ms(), body=body,
    )  # fmt: skip
    pending = PendingTx(
        message=message, body=parse_body("submission", body), received_at=datetime.now(UTC)
    )
    with make_sessionmaker(engine).begin() as session:
        store_transactions(session, [pending])
    engine.dispose()


def test_key_files_are_private(vault: Vault) -> None:
    assert stat.S_IMODE(vault.directory.stat().st_mode) == 0o700
    for key in vault.directory.iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    (vault.directory / vault.current_key_id).with_suffix(".key").chmod(0o644)
    with pytest.raises(VaultError):
        Vault(vault.directory)


def test_the_database_file_holds_no_plaintext_pii(vault: Vault, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    upgrade(make_engine(url))
    _store(url, "tx-sealed-0001")
    engine = make_engine(url)
    with engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        raw = connection.execute(text("SELECT body FROM inbox")).scalar_one()
    engine.dispose()
    files = b"".join(p.read_bytes() for p in tmp_path.glob("fleet.db*"))
    for secret in (ID_NUMBER, NAME):
        assert secret.encode() not in files
        assert secret.encode("unicode_escape") not in files
        assert secret not in str(raw)
    assert f'"kid": "{vault.current_key_id}"' in str(raw) or vault.current_key_id in str(raw)
    # Reading through the model opens it again; a rotated key still opens old rows.
    vault.rotate()
    with make_sessionmaker(make_engine(url))() as session:
        entry = session.query(InboxEntry).one()
        assert entry.body["applicant"]["id_number"] == ID_NUMBER


def test_delivered_bodies_are_emptied_after_the_retention(vault: Vault, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    _store(url, "tx-purge-0001")
    _store(url, "tx-purge-0002")
    sessions = make_sessionmaker(engine)
    delivered_at = datetime(2026, 1, 1, tzinfo=UTC)
    with sessions.begin() as session:
        first = session.query(InboxEntry).filter_by(tx_id="tx-purge-0001").one()
        first.state, first.delivered_at, first.case_number = "delivered", delivered_at, "C-9"
    retention = timedelta(days=7)
    at = delivered_at + timedelta(days=6, hours=23)
    assert purge_once(sessions, retention=retention, clock=lambda: at) == 0
    at = delivered_at + timedelta(days=7, seconds=1)
    assert purge_once(sessions, retention=retention, clock=lambda: at) == 1
    assert purge_once(sessions, retention=retention, clock=lambda: at) == 0
    with sessions() as session:
        purged = session.query(InboxEntry).filter_by(tx_id="tx-purge-0001").one()
        kept = session.query(InboxEntry).filter_by(tx_id="tx-purge-0002").one()
    assert purged.body == {}
    assert purged.purged_at is not None
    assert (purged.state, purged.case_number) == ("delivered", "C-9")
    assert kept.body["applicant"]["name"] == NAME  # pending: never purged
    engine.dispose()


def test_a_sealed_body_moved_to_another_row_or_a_plain_one_does_not_open(
    vault: Vault, tmp_path: Path
) -> None:
    """Bodies are bound to (table, outlet_id, tx_id): someone with write access to the
    database cannot swap two cases' bodies, nor plant a body in plain text."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    _store(url, "tx-bound-0001")
    _store(url, "tx-bound-0002")
    with engine.begin() as connection:
        first = connection.execute(
            text("SELECT body FROM inbox WHERE tx_id = 'tx-bound-0001'")
        ).scalar_one()
        connection.execute(
            text("UPDATE inbox SET body = :body WHERE tx_id = 'tx-bound-0002'"), {"body": first}
        )
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        assert session.query(InboxEntry).filter_by(tx_id="tx-bound-0001").one().body
        swapped = session.query(InboxEntry).filter_by(tx_id="tx-bound-0002").one()
        with pytest.raises(VaultError):
            _ = swapped.body
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE inbox SET body = :body WHERE tx_id = 'tx-bound-0002'"),
            {"body": '{"applicant": {"name": "planted"}}'},
        )
    with sessions() as session:
        planted = session.query(InboxEntry).filter_by(tx_id="tx-bound-0002").one()
        with pytest.raises(VaultError):
            _ = planted.body
    engine.dispose()


def test_the_vault_opens_only_values_sealed_for_that_row(vault: Vault) -> None:
    context = row_context("inbox", "o-1", "tx-0001")
    sealed = vault.seal({"n": 1}, context=context)
    assert vault.open(sealed, context=context) == {"n": 1}
    for other in (row_context("inbox", "o-2", "tx-0001"), row_context("evaluations", "o-1")):
        with pytest.raises(VaultError):
            vault.open(sealed, context=other)
    for not_sealed in ({"n": 1}, {}, "text", None, vault.seal_unbound({"n": 1})):
        with pytest.raises(VaultError):
            vault.open(not_sealed, context=context)
    blob = vault.seal_bytes(b"scan", context=context)
    with pytest.raises(VaultError):
        vault.open_bytes(blob, context=row_context("inbox", "o-2", "tx-0001"))
    with pytest.raises(VaultError):
        vault.open_bytes(b"scan", context=context)
