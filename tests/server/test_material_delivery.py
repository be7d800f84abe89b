"""Materials go upstream streamed, bounded per submission, never whole in memory.

The request format is checked against the standard library's own MIME parser; the
memory test stores a 64 MiB material in a real SQLite database (sealed chunks, as the
ingest stores them), then lets the real delivery worker send it to a real HTTP
upstream while ``tracemalloc`` records the process's peak allocation.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import os
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.catalogue.importer import import_rows, parse_catalogue
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.models import InboxEntry, MaterialChunk
from fleet_server.piivault import Vault, current_vault, use_vault
from fleet_server.routing.http_adapter import Attachment, multipart_body
from fleet_server.routing.targets import load_targets
from fleet_server.routing.worker import DeliveryWorker
from fleet_server.transactions.bodies import parse_body
from fleet_server.transactions.identity import upstream_idempotency_key
from fleet_server.transactions.inbox import PendingTx, Stored, StoreLimits, store_transactions
from govedge_testbed.upstream import catalogue_rows, write_targets
from govedge_wire import Transaction, now_ms
from tests.server.helpers import poll
from tests.server.txkit import material_chunks, serving_upstream, submission

OUTLET = "o-streaming"
KEY = upstream_idempotency_key(OUTLET, "sub-huge-0001")  # what upstream sees
MIB = 1024 * 1024


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    before = current_vault()
    use_vault(Vault(tmp_path / "keys"))
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()
    use_vault(before)


def _pending(tx_id: str, tx_kind: str, body: dict[str, Any]) -> PendingTx:
    message = Transaction(
        outlet_id=OUTLET, session=1, seq=1, tx_id=tx_id, tx_kind=tx_kind,
        created_ts=now_ms(), body=body,
    )  # fmt: skip
    return PendingTx(message=message, body=parse_body(tx_kind, body), received_at=datetime.now(UTC))


def _store(
    sessions: sessionmaker[Session], *items: PendingTx, limits: StoreLimits | None = None
) -> list[Stored]:
    with sessions.begin() as session:
        return store_transactions(session, list(items), limits=limits)


def _send_material(sessions: sessionmaker[Session], data: bytes, material_id: str) -> None:
    chunks = material_chunks(data, material_id, chunk_bytes=MIB)
    for start in range(0, len(chunks), 8):
        batch = [_pending(tx, "material.chunk", body) for tx, body in chunks[start : start + 8]]
        assert {s.outcome for s in _store(sessions, *batch)} == {"accepted"}


def test_the_multipart_request_is_standard_mime_and_its_length_is_exact() -> None:
    document = json.dumps({"tx_id": "t-1", "materials": [{"ref": "mat-a-0001"}]}).encode()
    scans = {"mat-a-0001": os.urandom(3000) + b"\r\n--govedge-x\r\n", "mat-b-0002": b"\x00" * 10}

    def halves(data: bytes) -> Callable[[], Iterator[bytes]]:
        return lambda: iter([data[:7], data[7:]])

    attachments = [
        Attachment(ref=ref, size=len(data), chunks=halves(data)) for ref, data in scans.items()
    ]
    length, parts = multipart_body(document, attachments, boundary="govedge-0123abcd")
    body = b"".join(parts)
    assert len(body) == length
    head = b"Content-Type: multipart/form-data; boundary=govedge-0123abcd\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    got = list(message.iter_parts())
    assert [part.get_param("name", header="content-disposition") for part in got] == [
        "document", "material", "material",
    ]  # fmt: skip
    assert got[0].get_content_type() == "application/json"
    assert got[0].get_payload(decode=True) == document
    assert [(p.get_filename(), p.get_payload(decode=True)) for p in got[1:]] == list(scans.items())


def test_materials_over_the_submission_bound_are_refused_and_change_nothing(
    sessions: sessionmaker[Session],
) -> None:
    for ref in ("mat-big-0001", "mat-big-0002"):
        _send_material(sessions, os.urandom(3000), ref)
    two = submission(materials=[{"name": "a", "ref": "mat-big-0001"},
                                {"name": "b", "ref": "mat-big-0002"}])  # fmt: skip
    limits = StoreLimits(submission_material_bytes=5000)
    [refused] = _store(sessions, _pending("sub-too-big-1", "submission", two), limits=limits)
    assert (refused.outcome, refused.code) == ("rejected", "materials_oversize")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboxEntry)) == 0
    one = submission(materials=[{"name": "a", "ref": "mat-big-0001"}])
    assert _store(sessions, _pending("sub-fits-0001", "submission", one), limits=limits) == [
        Stored("accepted")
    ]


def test_a_64_mib_material_is_verified_and_delivered_without_holding_it_in_memory(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    size = 64 * MIB
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    _send_material(sessions, data, "mat-huge-0001")
    del data
    with sessions.begin() as session:
        rows = parse_catalogue(json.dumps(catalogue_rows()).encode(), fmt="json")
        import_rows(session, rows, now=datetime.now(UTC))
        stored = session.scalar(select(func.sum(MaterialChunk.size)))
    assert stored == size
    body = submission(materials=[{"name": "档案", "ref": "mat-huge-0001", "pages": 300}])
    tracemalloc.start()
    try:
        # The ingest verifies the material (every chunk opened, the whole hashed) ...
        assert _store(sessions, _pending("sub-huge-0001", "submission", body)) == [
            Stored("accepted")
        ]
        verify_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        # ... and the delivery worker sends it, to an upstream in this same process.
        with serving_upstream() as upstream:
            targets_file = write_targets(
                tmp_path / "t.json", upstream, ["zhoushan", "hcp"], zhoushan={"timeout_s": 30}
            )
            targets = load_targets(targets_file)
            worker = DeliveryWorker(
                sessions=sessions, targets=targets, publish_results=lambda rs: [True] * len(rs),
                poll_interval_s=0.05, concurrency=2, lease_s=120,
            )  # fmt: skip
            worker.start()
            try:
                poll(lambda: KEY in upstream.accepted, timeout=90, what="delivery")
            finally:
                worker.stop()
        deliver_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [part] = upstream.accepted[KEY]["files"]
    assert (part["ref"], part["size"], part["sha256"]) == ("mat-huge-0001", size, digest)
    assert (upstream.bad_signatures, upstream.bad_materials) == (0, 0)
    sent = upstream.accepted[KEY]["body"]
    assert sent["materials"] == [
        {"ref": "mat-huge-0001", "name": "档案", "size": size, "sha256": digest}
    ]
    # A material held whole would cost 64 MiB (88 MiB more as base64): both stay at a
    # few chunks' worth.
    assert verify_peak < 8 * MIB, verify_peak
    assert deliver_peak < 16 * MIB, deliver_peak


def test_a_chunk_found_corrupt_while_sending_aborts_the_request_and_dead_letters_it(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Past the checks at ingest a stored chunk is damaged (a bad disk, a restore): the
    worker finds out only while streaming it; the upstream must never get a complete
    request, and the row goes to the dead-letter queue instead of being retried."""
    _send_material(sessions, os.urandom(3 * MIB), "mat-rot-00001")
    body = submission(materials=[{"name": "档案", "ref": "mat-rot-00001"}])
    assert _store(sessions, _pending("sub-rot-00001", "submission", body)) == [Stored("accepted")]
    with sessions.begin() as session:
        rows = parse_catalogue(json.dumps(catalogue_rows()).encode(), fmt="json")
        import_rows(session, rows, now=datetime.now(UTC))
        chunk = session.scalars(select(MaterialChunk).where(MaterialChunk.chunk_index == 2)).one()
        chunk.data = chunk.data[:-1] + bytes([chunk.data[-1] ^ 1])
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
        assert "sub-rot-00001" not in upstream.accepted
        assert upstream.bad_signatures == 0
    with sessions() as session:
        entry = session.scalars(select(InboxEntry)).one()
    assert (entry.state, entry.result_pending) == ("dead", True)
    assert (entry.last_error or "").startswith("material_checksum")
