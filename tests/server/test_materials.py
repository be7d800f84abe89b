"""Material chunks on the server: stored once, sealed, resumed, verified, refused, purged.

The storage tests call ``store_transactions`` (what the ingest worker calls per batch)
on real SQLite and PostgreSQL databases migrated to head; the chunks are made by the
outlet's own codec. The last test goes through a real broker and a real server process
to a real HTTP upstream.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.catalogue.importer import import_rows, parse_catalogue
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.models import DeadLetter, InboxEntry, Material, MaterialChunk
from fleet_server.piivault import Vault, current_vault, use_vault
from fleet_server.routing.targets import load_targets
from fleet_server.routing.worker import DeliveryWorker
from fleet_server.transactions.bodies import BodyRejected, parse_body
from fleet_server.transactions.inbox import PendingTx, Stored, store_transactions
from fleet_server.transactions.materials import MaterialRejected, check_chunk, material_purge
from fleet_server.transactions.purge import purge_once
from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream, catalogue_rows, write_targets
from govedge_wire import Transaction, now_ms
from tests.server.helpers import FleetServer, poll
from tests.server.txkit import (
    TxAgent,
    material_chunks,
    serving_upstream,
    submission,
    transaction_server,
)

OUTLET = "o-materials"
MARKER = b"GOVEDGE-SCAN-PLAINTEXT-MARKER"


def _scan(size: int = 3500) -> bytes:
    """A fake scan: random bytes with a recognisable marker in every chunk."""
    out = bytearray()
    while len(out) < size:
        out += MARKER + os.urandom(200)
    return bytes(out[:size])


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    before = current_vault()
    fresh = Vault(tmp_path / "keys")
    use_vault(fresh)
    yield fresh
    use_vault(before)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, vault: Vault
) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def _pending(tx_id: str, tx_kind: str, body: dict[str, Any], *, outlet: str = OUTLET) -> PendingTx:
    message = Transaction(
        outlet_id=outlet, session=1, seq=1, tx_id=tx_id, tx_kind=tx_kind,
        created_ts=now_ms(), body=body,
    )  # fmt: skip
    return PendingTx(message=message, body=parse_body(tx_kind, body), received_at=datetime.now(UTC))


def _store(sessions: sessionmaker[Session], *items: PendingTx) -> list[Stored]:
    with sessions.begin() as session:
        return store_transactions(session, list(items))


def _chunk(tx_id: str, body: dict[str, Any], *, outlet: str = OUTLET) -> PendingTx:
    return _pending(tx_id, "material.chunk", body, outlet=outlet)


def _with_material(ref: str, **extra: Any) -> dict[str, Any]:
    return submission(materials=[{"name": "户口簿", "ref": ref, "pages": 2}], **extra)


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int, int]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Material)) or 0,
            session.scalar(select(func.count()).select_from(MaterialChunk)) or 0,
            session.scalar(select(func.count()).select_from(InboxEntry)) or 0,
        )


def test_chunks_stored_once_sealed_resumed_then_submission_accepted(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    data = _scan()
    chunks = material_chunks(data, "mat-resume-01")
    assert len(chunks) == 4
    # First connection: chunks 0 and 2 arrive (2 twice: a resend within the batch).
    first = _store(sessions, _chunk(*chunks[0]), _chunk(*chunks[2]), _chunk(*chunks[2]))
    assert [s.outcome for s in first] == ["accepted", "accepted", "duplicate"]
    # The submission cannot be accepted yet: half the material is missing.
    early = _store(
        sessions, _pending("sub-early-0001", "submission", _with_material("mat-resume-01"))
    )
    assert early[0].outcome == "rejected"
    assert early[0].code == "material_incomplete"
    # Resume: the outlet resends what it had no ack for (2) and sends the rest.
    second = _store(sessions, _chunk(*chunks[2]), _chunk(*chunks[1]), _chunk(*chunks[3]))
    assert [s.outcome for s in second] == ["duplicate", "accepted", "accepted"]
    assert _counts(sessions) == (1, 4, 0)
    done = _store(
        sessions, _pending("sub-resumed-01", "submission", _with_material("mat-resume-01"))
    )
    assert done == [Stored("accepted")]
    again = _store(
        sessions, _pending("sub-resumed-01", "submission", _with_material("mat-resume-01"))
    )
    assert again == [Stored("duplicate")]
    with sessions() as session:
        material = session.scalars(select(Material)).one()
        assert material.tx_id == "sub-resumed-01"
        assert (material.size, material.chunk_count) == (len(data), 4)
        stored = session.scalars(select(MaterialChunk.data)).all()
    assert all(MARKER not in blob for blob in stored)  # sealed, not plain
    db_file = tmp_path / "fleet.db"
    if db_file.exists():
        raw = db_file.read_bytes() + (tmp_path / "fleet.db-wal").read_bytes()
        assert MARKER not in raw


@pytest.mark.postgres
def test_two_workers_racing_on_one_material_store_each_chunk_once(
    postgres_url: str, vault: Vault
) -> None:
    """Shared subscriptions give two chunks of a new material to two workers at once:
    the second commit meets the unique header row, and its per-item retry (what the
    ingest does on an integrity error) stores its chunk against the first one's row."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    chunks = material_chunks(_scan(), "mat-race-0001")
    first = sessions()
    first.begin()
    assert store_transactions(first, [_chunk(*chunks[0])]) == [Stored("accepted")]
    outcome: list[BaseException | list[Stored]] = []

    def second_worker() -> None:
        try:
            outcome.append(_store(sessions, _chunk(*chunks[1]), _chunk(*chunks[0])))
        except BaseException as exc:  # the integrity error this test expects
            outcome.append(exc)

    racing = threading.Thread(target=second_worker)
    racing.start()
    poll(lambda: _waiting_on_a_lock(engine), what="the second worker blocked")
    first.commit()
    first.close()
    racing.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], IntegrityError)
    retried = [_store(sessions, _chunk(*chunks[1])), _store(sessions, _chunk(*chunks[0]))]
    assert retried == [[Stored("accepted")], [Stored("duplicate")]]
    assert _counts(sessions) == (1, 2, 0)
    engine.dispose()


def _waiting_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        waiting = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).scalar()
    return bool(waiting)


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda tx, b: (tx, b | {"index": 9}), "chunk_index"),
        (lambda tx, b: ("mat-bad-0001.c7", b), "chunk_id"),
        (
            lambda tx, b: (tx, b | {"data": base64.b64encode(b"other bytes").decode()}),
            "chunk_checksum",
        ),
        (lambda tx, b: (tx, b | {"size": 10**9}), "material_oversize"),
        (
            lambda tx, b: ("mat-bad-0001.c0", b | {"size": 10, "count": 1, "index": 0}),
            "material_oversize",
        ),
    ],
)
def test_chunks_that_can_never_succeed_are_refused_before_storage(tamper: Any, code: str) -> None:
    tx_id, body = tamper(*material_chunks(_scan(), "mat-bad-0001")[1])
    parsed = parse_body("material.chunk", body)
    with pytest.raises(MaterialRejected) as caught:
        check_chunk(tx_id, parsed, max_bytes=1024 * 1024)  # type: ignore[arg-type]
    assert caught.value.code == code
    assert MARKER.decode() not in caught.value.reason


def test_malformed_chunk_body_is_refused_naming_fields() -> None:
    _tx, body = material_chunks(_scan(), "mat-bad-0002")[0]
    with pytest.raises(BodyRejected) as caught:
        parse_body("material.chunk", body | {"sha256": "not-a-hash", "data": 5})
    assert "sha256" in caught.value.reason
    assert "data" in caught.value.reason


def test_conflicting_chunks_and_bad_materials_change_nothing(
    sessions: sessionmaker[Session],
) -> None:
    data = _scan()
    chunks = material_chunks(data, "mat-conflict-1")
    _store(sessions, _chunk(*chunks[0]))
    before = _counts(sessions)
    # A chunk whose header disagrees with what the first chunk declared.
    other = material_chunks(_scan(), "mat-conflict-1")[1]
    # Another content under an index already stored.
    swapped = (chunks[0][0], material_chunks(_scan(), "mat-conflict-1")[0][1])
    results = _store(sessions, _chunk(*other), _chunk(*swapped))
    assert [(r.outcome, r.code) for r in results] == [
        ("rejected", "material_mismatch"),
        ("rejected", "material_mismatch"),
    ]
    assert _counts(sessions) == before
    # A material whose chunks all agree but whose whole does not match its sha256.
    lying = [
        (tx, body | {"sha256": hashlib.sha256(b"something else").hexdigest()})
        for tx, body in material_chunks(data, "mat-lying-001")
    ]
    assert {r.outcome for r in _store(sessions, *(_chunk(*c) for c in lying))} == {"accepted"}
    rejected = _store(
        sessions,
        _pending("sub-lying-0001", "submission", _with_material("mat-lying-001")),
        _pending("sub-unknown-01", "submission", _with_material("mat-never-sent")),
    )
    assert [(r.outcome, r.code) for r in rejected] == [
        ("rejected", "material_checksum"),
        ("rejected", "material_incomplete"),
    ]
    assert _counts(sessions)[2] == 0  # no inbox row for either
    with sessions() as session:
        assert session.scalars(select(Material.tx_id)).all() == [None, None]


def test_chunks_deleted_after_delivery_plus_retention(sessions: sessionmaker[Session]) -> None:
    chunks = material_chunks(_scan(), "mat-purge-001")
    orphan = material_chunks(_scan(1200), "mat-orphan-01")
    _store(sessions, *(_chunk(*c) for c in chunks + orphan))
    _store(sessions, _pending("sub-purge-0001", "submission", _with_material("mat-purge-001")))
    delivered_at = datetime.now(UTC)
    with sessions.begin() as session:
        session.execute(
            update(InboxEntry)
            .where(InboxEntry.tx_id == "sub-purge-0001")
            .values(state="delivered", delivered_at=delivered_at)
        )
    purge = material_purge(retention=timedelta(days=7), orphan_retention=timedelta(days=30))

    def run(at: datetime) -> int:
        return purge_once(sessions, retention=timedelta(days=365), clock=lambda: at, also=[purge])

    assert run(delivered_at + timedelta(days=6)) == 0
    assert _counts(sessions)[1] == 6
    assert run(delivered_at + timedelta(days=8)) == 1  # the delivered one only
    with sessions() as session:
        purged = {m.material_id: m.purged_at for m in session.scalars(select(Material))}
        left = session.scalar(select(func.count()).select_from(MaterialChunk))
    assert purged["mat-purge-001"] is not None
    assert purged["mat-orphan-01"] is None
    assert left == 2
    # A late resend of a purged material's chunk is a duplicate, not a new material.
    assert _store(sessions, _chunk(*chunks[1])) == [Stored("duplicate")]
    assert _counts(sessions)[1] == 2
    assert run(delivered_at + timedelta(days=31)) == 1  # the orphan
    assert _counts(sessions)[1] == 0


def test_another_outlets_delivery_never_frees_these_chunks(
    sessions: sessionmaker[Session],
) -> None:
    """Materials and submissions are named per outlet: two outlets whose apps use the
    same material id and the same key both keep their case, and the other outlet's
    delivery plus retention frees only the other outlet's chunks."""
    other = f"{OUTLET}-b"
    mine, theirs = (
        material_chunks(_scan(), "mat-same-001"),
        material_chunks(_scan(), "mat-same-001"),
    )
    _store(sessions, *(_chunk(*c) for c in mine), *(_chunk(*c, outlet=other) for c in theirs))
    body = _with_material("mat-same-001")
    assert _store(
        sessions,
        _pending("sub-same-0001", "submission", body),
        _pending("sub-same-0001", "submission", body, outlet=other),
    ) == [Stored("accepted"), Stored("accepted")]
    delivered_at = datetime.now(UTC)
    with sessions.begin() as session:
        session.execute(
            update(InboxEntry)
            .where(InboxEntry.outlet_id == other)
            .values(state="delivered", delivered_at=delivered_at)
        )
    purge = material_purge(retention=timedelta(days=7), orphan_retention=timedelta(days=30))
    at = delivered_at + timedelta(days=8)
    assert purge_once(sessions, retention=timedelta(days=365), clock=lambda: at, also=[purge]) == 1
    with sessions() as session:
        purged = {m.outlet_id: m.purged_at for m in session.scalars(select(Material))}
    assert purged[other] is not None
    assert purged[OUTLET] is None  # still owed upstream: its chunks stay
    assert _counts(sessions)[1] == len(mine)


def test_submission_whose_chunks_vanished_is_dead_lettered_not_sent(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Chunks lost after the submission was accepted (they are kept until delivery plus
    retention, so only a damaged database does this): the delivery worker sends nothing
    and puts the row in the dead-letter queue, owing the outlet a rejection."""
    chunks = material_chunks(_scan(), "mat-vanish-01")
    _store(sessions, *(_chunk(*c) for c in chunks))
    _store(sessions, _pending("sub-vanish-001", "submission", _with_material("mat-vanish-01")))
    with sessions.begin() as session:
        rows = parse_catalogue(json.dumps(catalogue_rows()).encode(), fmt="json")
        import_rows(session, rows, now=datetime.now(UTC))
        session.execute(delete(MaterialChunk).where(MaterialChunk.chunk_index == 1))
    with serving_upstream() as upstream:
        targets = load_targets(write_targets(tmp_path / "t.json", upstream, ["zhoushan", "hcp"]))
        worker = DeliveryWorker(
            sessions=sessions, targets=targets, publish_results=lambda rs: [False] * len(rs),
            poll_interval_s=0.05, concurrency=2, lease_s=30,
        )  # fmt: skip
        worker.start()
        try:
            poll(lambda: worker.counters["material"], what="the dead letter")
        finally:
            worker.stop()
        assert upstream.received[f"{OUTLET}:sub-vanish-001"] == 0
    with sessions() as session:
        entry = session.scalars(select(InboxEntry)).one()
        dead = session.scalars(select(DeadLetter)).one()
    assert (entry.state, entry.result_pending) == ("dead", True)
    assert (dead.reason, dead.tx_id) == ("material", "sub-vanish-001")
    assert (dead.detail or "").startswith("material_incomplete")


def test_a_body_moved_to_another_row_is_dead_lettered_and_the_rest_delivered(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Someone with write access to the database copies one case's sealed body over
    another's: that row does not open (bound to its outlet and tx_id), is put in the
    dead-letter queue as ``unreadable`` and never sent; the other cases still go."""
    _store(sessions, _pending("sub-moved-0001", "submission", submission(window="1")))
    _store(sessions, _pending("sub-moved-0002", "submission", submission(window="2")))
    with sessions.begin() as session:
        rows = parse_catalogue(json.dumps(catalogue_rows()).encode(), fmt="json")
        import_rows(session, rows, now=datetime.now(UTC))
        first = session.scalars(
            select(InboxEntry.sealed_body).where(InboxEntry.tx_id == "sub-moved-0001")
        ).one()
        session.execute(
            update(InboxEntry)
            .where(InboxEntry.tx_id == "sub-moved-0002")
            .values(sealed_body=first, next_due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with serving_upstream() as upstream:
        targets = load_targets(write_targets(tmp_path / "t.json", upstream, ["zhoushan", "hcp"]))
        worker = DeliveryWorker(
            sessions=sessions, targets=targets, publish_results=lambda rs: [False] * len(rs),
            poll_interval_s=0.05, concurrency=2, lease_s=30,
        )  # fmt: skip
        worker.start()
        try:
            poll(
                lambda: worker.counters["unreadable"] and worker.counters["delivered"], what="both"
            )
        finally:
            worker.stop()
        assert set(upstream.accepted) == {f"{OUTLET}:sub-moved-0001"}
        assert upstream.accepted[f"{OUTLET}:sub-moved-0001"]["body"]["body"]["window"] == "1"
    with sessions() as session:
        dead = session.scalars(select(DeadLetter)).one()
    assert (dead.reason, dead.tx_id, dead.outlet_id) == ("unreadable", "sub-moved-0002", OUTLET)


# -- through a real broker, a real server process and a real upstream --------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with serving_upstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    broker: Mosquitto, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FleetServer]:
    workdir = tmp_path_factory.mktemp("materials")
    with transaction_server(
        broker.url, upstream, workdir, ["zhoushan", "hcp"],
        GOVEDGE_MATERIAL_MAX_BYTES="100000",
        # Chunks go as soon as upstream has the case; orphans keep their 30 days.
        GOVEDGE_MATERIAL_RETENTION_DAYS="0", GOVEDGE_PII_PURGE_INTERVAL_S="0.5",
    ) as fleet:  # fmt: skip
        yield fleet


def test_server_acks_chunks_once_refuses_bad_ones_and_sends_materials_upstream(
    server: FleetServer, upstream: Upstream, broker: Mosquitto, outlet_id: str
) -> None:
    agent = TxAgent(broker.url, outlet_id, session=5)
    try:
        agent.birth()
        data = _scan(2500)
        chunks = material_chunks(data, "mat-wire-0001")
        for tx_id, body in chunks:
            agent.tx("material.chunk", body, tx_id=tx_id)
        assert [agent.ack(tx_id).status for tx_id, _ in chunks] == ["accepted"] * 3
        agent.tx("material.chunk", chunks[1][1], tx_id=chunks[1][0])  # a resend
        assert agent.ack(chunks[1][0]).status == "duplicate"

        bad_tx, bad = material_chunks(_scan(), "mat-wire-0002")[0]
        agent.tx("material.chunk", bad | {"chunk_sha256": "0" * 64}, tx_id=bad_tx)
        refused = agent.ack(bad_tx)
        assert refused.status == "rejected"
        assert (refused.reason or "").startswith("chunk_checksum")
        big_tx, big = material_chunks(_scan(), "mat-wire-0003")[0]
        agent.tx("material.chunk", big | {"size": 200_000}, tx_id=big_tx)
        assert (agent.ack(big_tx).reason or "").startswith("material_oversize")

        tx_id = agent.tx("submission", _with_material("mat-wire-0001"))
        assert agent.ack(tx_id).status == "accepted"
        result = agent.result(tx_id)
        assert result.outcome == "delivered"
    finally:
        agent.close()
    sent = upstream.accepted[agent.key(tx_id)]["body"]
    assert upstream.accepted_count[agent.key(tx_id)] == 1
    assert (upstream.bad_signatures, upstream.bad_materials) == (0, 0)
    [material] = sent["materials"]
    assert material == {
        "ref": "mat-wire-0001", "name": "户口簿", "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }  # fmt: skip
    assert material["sha256"] == chunks[0][1]["sha256"]
    [part] = upstream.accepted[agent.key(tx_id)]["files"]
    assert (part["ref"], part["data"]) == ("mat-wire-0001", data)
    assert sent["body"]["materials"] == [{"name": "户口簿", "ref": "mat-wire-0001", "pages": 2}]
    noted = poll(
        lambda: (n := server.stats()["noted"]).get("material_rejected_material_oversize") and n,
        what="rejections counted",
    )
    assert noted["material_rejected_chunk_checksum"] >= 1
    assert noted["material_rejected_material_oversize"] >= 1
    # Upstream confirmed receipt; retention 0: the server deletes the chunks by itself.
    engine = make_engine(server.database_url)
    try:

        def purged() -> bool:
            with engine.connect() as connection:
                done = connection.execute(
                    select(Material.purged_at).where(Material.material_id == "mat-wire-0001")
                ).scalar()
                left = connection.execute(
                    select(func.count())
                    .select_from(MaterialChunk)
                    .join(Material, Material.id == MaterialChunk.material_pk)
                    .where(Material.material_id == "mat-wire-0001")
                ).scalar()
            return done is not None and left == 0

        poll(purged, what="chunks deleted after delivery plus retention")
    finally:
        engine.dispose()
