"""Materials: chunked, resumable after a crash (SIGKILL), each chunk delivered exactly once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from edge_agent.outbox import MATERIAL_CHUNK_KIND, PriorityClass
from govedge_wire import MAX_PAYLOAD_BYTES, Kind, Transaction, decode, encode, topic_for

from .helpers import OUTLET, FakeClock, FakeServer, make_outbox, make_sender

TX = PriorityClass.TRANSACTION
MB = 1024 * 1024


def _first_life(tmp_path: Path, data: bytes, report: Connection) -> None:
    """In a child process: send half the chunks, report, then die by SIGKILL."""
    clock = FakeClock()
    server = FakeServer()

    async def life() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            material = await outbox.put_material(data)
            assert material.chunk_count == 6
            submission = await outbox.put(
                "submission",
                {"item": "social-security", "materials": [material.material_id]},
                priority_class=TX,
                materials=[material.material_id],
            )
            sender = make_sender(outbox, server, clock, window=3)
            assert await sender.pump() == 3  # chunks 0, 1, 2 (the submission must wait)
            assert all(m.tx_kind == MATERIAL_CHUNK_KIND for m in server.published)
            assert all(len(encode(m)) <= MAX_PAYLOAD_BYTES for m in server.published)
            acked = []
            for message in server.published[:2]:  # the ack of chunk 2 is lost: crash
                await sender.on_ack(server.ack_for(message))
                acked.append(message.tx_id)
            server.stored[server.published[2].tx_id] = server.published[2]  # stored, unacked
            progress = await outbox.material_progress(material.material_id)
            assert progress is not None
            assert (progress.chunks_acked, progress.state) == (2, "pending")
            report.send(
                (
                    material.material_id,
                    submission.tx_id,
                    acked,
                    [encode(m) for m in server.published],
                    clock.now,
                )
            )
            report.close()
            os.kill(os.getpid(), signal.SIGKILL)  # the outbox is never closed

    asyncio.run(life())


def test_material_resumes_after_crash_and_every_chunk_lands_once(tmp_path: Path) -> None:
    data = os.urandom(MB)
    spawn = multiprocessing.get_context("spawn")
    receiver, sender_end = spawn.Pipe(duplex=False)
    child = spawn.Process(target=_first_life, args=(tmp_path, data, sender_end))
    child.start()
    sender_end.close()
    material_id, submission_id, acked, sent, now = receiver.recv()
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL
    acked_before_crash = set(acked)
    clock = FakeClock(now)
    server = FakeServer()
    for payload in sent:
        message = decode(topic_for(OUTLET, Kind.TRANSACTION), payload)
        assert isinstance(message, Transaction)
        server.published.append(message)
    # The server kept all three before the crash (the third one's ack was lost).
    server.stored = {m.tx_id: m for m in server.published}
    before = len(server.published)

    async def second_life() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            sender = make_sender(outbox, server, clock, window=3)
            await outbox.make_all_due()  # what run() does on every new connection
            while True:
                sent = await sender.pump()
                for message in server.published[-sent:] if sent else []:
                    if message.tx_id == submission_id:
                        chunks = [t for t in server.stored if t.startswith(material_id)]
                        assert len(chunks) == 6, "submission sent before all chunks were acked"
                    await sender.on_ack(server.ack_for(message))
                if not sent:
                    break
            progress = await outbox.material_progress(material_id)
            assert progress is not None
            assert (progress.chunks_acked, progress.state) == (6, "delivered")
            assert await outbox.next_batch(10) == []

    asyncio.run(second_life())
    resent = server.published[before:]
    assert not {m.tx_id for m in resent} & acked_before_crash, "acked chunks were resent"
    chunk_sends = [m for m in server.published if m.tx_kind == MATERIAL_CHUNK_KIND]
    assert sorted(int(str(m.body["index"])) for m in chunk_sends) == [0, 1, 2, 2, 3, 4, 5]
    assert [m.attempt for m in chunk_sends if m.body["index"] == 2] == [1, 2]
    # The server kept each chunk once (dedup by tx_id) and can reassemble and verify.
    stored_chunks = sorted(
        (m for m in server.stored.values() if m.tx_kind == MATERIAL_CHUNK_KIND),
        key=lambda m: int(str(m.body["index"])),
    )
    assert [m.body["index"] for m in stored_chunks] == list(range(6))
    assembled = b"".join(base64.b64decode(str(m.body["data"])) for m in stored_chunks)
    assert assembled == data
    assert stored_chunks[0].body["sha256"] == hashlib.sha256(data).hexdigest()
    assert server.published[-1].tx_id == submission_id


def test_rejected_chunk_dead_letters_its_material_and_submission(tmp_path: Path) -> None:
    clock = FakeClock()
    server = FakeServer()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            material = await outbox.put_material(os.urandom(400_000))
            submission = await outbox.put(
                "submission", {"m": 1}, priority_class=TX, materials=[material.material_id]
            )
            other = await outbox.put("evaluation", {"level": 5}, priority_class=TX)
            sender = make_sender(outbox, server, clock, window=1)
            assert await sender.pump() == 1
            rejection = server.ack_for(server.published[0]).model_copy(
                update={"status": "rejected", "reason": "chunk checksum mismatch"}
            )
            assert await sender.on_ack(rejection) == "dead_lettered"
            assert [e.tx_id for e in await outbox.next_batch(10)] == [other.tx_id]
            dead = {d.tx_id: d.cause for d in await outbox.dead_letters()}
            assert dead[submission.tx_id] == "material_rejected"
            assert len(dead) == 1 + 1 + 2  # the chunk, the submission, 2 more chunks
            progress = await outbox.material_progress(material.material_id)
            assert progress is not None
            assert progress.state == "rejected"

    asyncio.run(scenario())


def test_chunk_acks_in_one_commit_deliver_the_material_and_free_its_submission(
    tmp_path: Path,
) -> None:
    """A window of chunk acks applied together (one commit) ends as if applied one by
    one: the material is delivered, its submission becomes due, a repeated ack in the
    same batch is ``unknown``."""
    clock = FakeClock()
    server = FakeServer()

    async def scenario() -> None:
        async with make_outbox(tmp_path, clock=clock) as outbox:
            material = await outbox.put_material(os.urandom(400_000))
            submission = await outbox.put(
                "submission", {"m": 1}, priority_class=TX, materials=[material.material_id]
            )
            sender = make_sender(outbox, server, clock, window=8)
            assert await sender.pump() == 3  # the three chunks; the submission waits
            acks = [server.ack_for(m) for m in server.published]
            outcomes = await outbox.apply_acks([*acks, acks[1]])
            assert outcomes == ["removed", "removed", "removed", "unknown"]
            progress = await outbox.material_progress(material.material_id)
            assert progress is not None
            assert (progress.chunks_acked, progress.state) == (3, "delivered")
            assert [e.tx_id for e in await outbox.next_batch(10)] == [submission.tx_id]

    asyncio.run(scenario())


def test_put_material_is_idempotent_and_survives_reopen(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_outbox(tmp_path) as outbox:
            first = await outbox.put_material(b"scan" * 100, material_id="scan-0001")
            again = await outbox.put_material(b"other", material_id="scan-0001")
            assert again == first
        async with make_outbox(tmp_path) as outbox:
            batch = await outbox.next_batch(10)
            assert [e.tx_id for e in batch] == ["scan-0001.c0"]
            assert base64.b64decode(str(batch[0].body["data"])) == b"scan" * 100

    asyncio.run(scenario())
