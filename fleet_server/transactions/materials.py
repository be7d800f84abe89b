"""Scanned materials on the server: chunks stored idempotently, verified, streamed upstream.

An outlet sends a material as ``material.chunk`` transactions (docs/outbox.md) and
files the submission that references it only after every chunk was acknowledged. Here:

- ``check_chunk`` (no database): a chunk that can never succeed is refused with a
  reason code — ``chunk_index`` (index not below count), ``chunk_id`` (the ``tx_id`` is
  not ``{material_id}.c{index}``), ``chunk_checksum`` (``chunk_sha256`` does not match
  the data), ``material_oversize`` (over ``GOVEDGE_MATERIAL_MAX_BYTES`` or larger than
  the declared size).
- ``store_chunk`` (in the ingest batch's transaction, committed before the ack): a
  chunk already stored, or of a material already purged, is a ``duplicate``; a chunk
  that contradicts the material's stored header, or a stored chunk of that index, is
  refused (``material_mismatch``); otherwise it is sealed with the PII vault, bound to
  (outlet, material, index), and stored.
- ``check_submission_materials``: a submission is accepted only when its materials
  add up to at most ``GOVEDGE_SUBMISSION_MATERIAL_MAX_BYTES`` (else
  ``materials_oversize``) and every one is complete and its bytes, read chunk by chunk,
  match the declared ``size`` and ``sha256``; otherwise it is refused
  (``material_incomplete`` or ``material_checksum``) and nothing is stored. (A
  material named twice never gets here: the body is refused, see ``bodies``.) The
  outlet's ack barrier makes this the normal case; an incomplete material means the
  server lost chunks it had acknowledged (a database restored from backup), which a
  resend cannot repair.
- ``materials_for_delivery`` / ``iter_material``: the delivery worker streams each
  material upstream chunk by chunk, as a part of a multipart request
  (docs/transactions.md, "Request"); no material is ever held whole in memory.
- ``purge_materials``: chunks are deleted once the referencing submission was
  delivered ``GOVEDGE_MATERIAL_RETENTION_DAYS`` ago, and chunks of materials no
  submission referenced after ``GOVEDGE_MATERIAL_ORPHAN_DAYS``.

Nothing here logs or returns material content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from fleet_server.models import InboxEntry, Material, MaterialChunk
from fleet_server.piivault import VaultError, current_vault
from govedge_wire.transactions import MaterialChunkBody, SubmissionBody

__all__ = [
    "DEFAULT_SUBMISSION_MAX_BYTES",
    "MaterialPart",
    "MaterialRejected",
    "check_chunk",
    "check_submission_materials",
    "iter_material",
    "material_purge",
    "materials_for_delivery",
    "purge_materials",
    "store_chunk",
]

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
# All the materials one submission references, together (GOVEDGE_SUBMISSION_MATERIAL_MAX_BYTES).
DEFAULT_SUBMISSION_MAX_BYTES: Final = 128 * 1024 * 1024


class MaterialRejected(ValueError):
    """A chunk or a submission's materials can never be accepted; ``code`` is counted."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.reason = f"{code}: {detail}"


def check_chunk(tx_id: str, body: MaterialChunkBody, *, max_bytes: int) -> None:
    """Refuse a chunk that is wrong whatever the database holds."""
    if body.index >= body.count:
        raise MaterialRejected("chunk_index", "index is not below count")
    if tx_id != f"{body.material_id}.c{body.index}":
        raise MaterialRejected("chunk_id", "tx_id is not {material_id}.c{index}")
    if hashlib.sha256(body.data).hexdigest() != body.chunk_sha256:
        raise MaterialRejected("chunk_checksum", "chunk_sha256 does not match data")
    if body.size > max_bytes:
        raise MaterialRejected("material_oversize", f"size is over the {max_bytes}-byte limit")
    if not body.data or len(body.data) > body.size or body.count > body.size:
        raise MaterialRejected("material_oversize", "data or count do not fit the declared size")


def _context(outlet_id: str, material_id: str, index: int) -> bytes:
    return f"material|{outlet_id}|{material_id}|{index}".encode()


@dataclass(slots=True)
class ChunkBatch:
    """The materials touched by one ingest batch, so chunks of one material in one batch
    share their header row and a resend within the batch is seen."""

    materials: dict[tuple[str, str], Material]
    chunks: set[tuple[str, str, int]]

    @classmethod
    def new(cls) -> ChunkBatch:
        return cls(materials={}, chunks=set())


def _material(
    session: Session, batch: ChunkBatch, outlet_id: str, material_id: str
) -> Material | None:
    key = (outlet_id, material_id)
    found = batch.materials.get(key)
    if found is None:
        found = session.scalars(
            select(Material).where(
                Material.outlet_id == outlet_id, Material.material_id == material_id
            )
        ).one_or_none()
        if found is not None:
            batch.materials[key] = found
    return found


def store_chunk(
    session: Session,
    batch: ChunkBatch,
    *,
    outlet_id: str,
    body: MaterialChunkBody,
    received_at: datetime,
) -> bool:
    """Store one chunk (the caller commits); False for a duplicate; ``MaterialRejected``."""
    material = _material(session, batch, outlet_id, body.material_id)
    if material is None:
        material = Material(
            outlet_id=outlet_id,
            material_id=body.material_id,
            sha256=body.sha256,
            size=body.size,
            chunk_count=body.count,
            created_at=received_at,
        )
        session.add(material)
        session.flush()
        batch.materials[(outlet_id, body.material_id)] = material
    elif (material.sha256, material.size, material.chunk_count) != (
        body.sha256,
        body.size,
        body.count,
    ):
        raise MaterialRejected(
            "material_mismatch", "sha256, size or count differ from earlier chunks"
        )
    if material.purged_at is not None:
        return False  # delivered and forgotten: a late resend
    key = (outlet_id, body.material_id, body.index)
    if key in batch.chunks:
        return False
    stored = session.execute(
        select(MaterialChunk.chunk_sha256, MaterialChunk.size).where(
            MaterialChunk.material_pk == material.id, MaterialChunk.chunk_index == body.index
        )
    ).one_or_none()
    if stored is not None:
        if stored.chunk_sha256 != body.chunk_sha256:
            raise MaterialRejected("material_mismatch", "a different chunk of this index is stored")
        batch.chunks.add(key)
        return False
    total = session.scalar(
        select(func.coalesce(func.sum(MaterialChunk.size), 0)).where(
            MaterialChunk.material_pk == material.id
        )
    )
    if int(total or 0) + len(body.data) > material.size:
        raise MaterialRejected("material_oversize", "chunks add up to more than the declared size")
    session.add(
        MaterialChunk(
            material_pk=material.id,
            chunk_index=body.index,
            size=len(body.data),
            chunk_sha256=body.chunk_sha256,
            data=current_vault().seal_bytes(
                body.data, context=_context(outlet_id, body.material_id, body.index)
            ),
            received_at=received_at,
        )
    )
    session.flush()
    batch.chunks.add(key)
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class MaterialPart:
    """One referenced material as it goes upstream: its header; bytes read on demand."""

    pk: int
    outlet_id: str
    material_id: str
    name: str | None
    size: int
    sha256: str
    chunk_count: int

    def describe(self) -> dict[str, Any]:
        """What the signed JSON document says of it (docs/transactions.md, "Request")."""
        return {"ref": self.material_id, "name": self.name, "size": self.size,
                "sha256": self.sha256}  # fmt: skip


def _part(session: Session, material: Material, name: str | None) -> MaterialPart:
    """``material`` if complete (every chunk index stored); else ``MaterialRejected``."""
    if material.purged_at is not None:
        raise MaterialRejected("material_incomplete", "the material's chunks were purged")
    indexes = session.scalars(
        select(MaterialChunk.chunk_index)
        .where(MaterialChunk.material_pk == material.id)
        .order_by(MaterialChunk.chunk_index)
    ).all()
    if list(indexes) != list(range(material.chunk_count)):
        raise MaterialRejected(
            "material_incomplete",
            f"{len(indexes)} of {material.chunk_count} chunks of a referenced material stored",
        )
    return MaterialPart(
        pk=material.id, outlet_id=material.outlet_id, material_id=material.material_id,
        name=name, size=material.size, sha256=material.sha256, chunk_count=material.chunk_count,
    )  # fmt: skip


def iter_material(session: Session, part: MaterialPart) -> Iterator[bytes]:
    """The material's bytes one stored chunk at a time (never the whole in memory).

    Each chunk is read alone and opened (authenticated); after the last one the whole's
    size and sha256 are compared with the header. A failure raises ``MaterialRejected``
    (``material_incomplete`` or ``material_checksum``) — after the bytes before it were
    yielded, so a consumer that streams them must abort what it sent.
    """
    vault = current_vault()
    digest = hashlib.sha256()
    total = 0
    for index in range(part.chunk_count):
        sealed = session.execute(
            select(MaterialChunk.data).where(
                MaterialChunk.material_pk == part.pk, MaterialChunk.chunk_index == index
            )
        ).scalar_one_or_none()
        if sealed is None:
            raise MaterialRejected("material_incomplete", "a chunk of the material is gone")
        try:
            data = vault.open_bytes(
                sealed, context=_context(part.outlet_id, part.material_id, index)
            )
        except VaultError:
            raise MaterialRejected(
                "material_checksum", "a stored chunk failed authentication"
            ) from None
        del sealed
        digest.update(data)
        total += len(data)
        yield data
    if total != part.size or digest.hexdigest() != part.sha256:
        raise MaterialRejected("material_checksum", "assembled material does not match sha256/size")


def check_submission_materials(
    session: Session,
    batch: ChunkBatch,
    *,
    outlet_id: str,
    tx_id: str,
    body: SubmissionBody,
    max_total_bytes: int = DEFAULT_SUBMISSION_MAX_BYTES,
) -> None:
    """Verify every referenced material and tie it to ``tx_id`` (of the same outlet:
    materials are named per outlet); ``MaterialRejected``.

    Materials adding up to more than ``max_total_bytes`` are refused
    (``materials_oversize``) before any is read; each one is then read and hashed
    chunk by chunk, so memory does not grow with its size.
    """
    found: list[Material] = []
    for ref in body.materials:
        material = _material(session, batch, outlet_id, ref.ref)
        if material is None:
            raise MaterialRejected("material_incomplete", "a referenced material is unknown")
        found.append(material)
    if sum(material.size for material in found) > max_total_bytes:
        raise MaterialRejected(
            "materials_oversize",
            f"materials add up to more than the {max_total_bytes}-byte limit per submission",
        )
    for material in found:
        for _data in iter_material(session, _part(session, material, None)):
            pass
    for material in found:
        if material.tx_id is None:
            material.tx_id = tx_id


def materials_for_delivery(session: Session, entry: InboxEntry) -> list[MaterialPart]:
    """The submission's materials in the order of ``body.materials``, each checked
    complete (not read: ``iter_material`` streams the bytes when they are sent)."""
    refs: Sequence[Any] = entry.body.get("materials") or []
    out: list[MaterialPart] = []
    batch = ChunkBatch.new()
    for ref in refs:
        material = _material(session, batch, entry.outlet_id, str(ref.get("ref")))
        if material is None:
            raise MaterialRejected("material_incomplete", "a referenced material is unknown")
        name = ref.get("name")
        out.append(_part(session, material, name if isinstance(name, str) else None))
    return out


def purge_materials(
    session: Session, *, now: datetime, retention: timedelta, orphan_retention: timedelta
) -> int:
    """Delete the chunks no longer needed (the caller commits); returns materials purged."""
    delivered = (  # the referencing submission, of the same outlet: (outlet_id, tx_id)
        select(InboxEntry.id)
        .where(
            InboxEntry.outlet_id == Material.outlet_id,
            InboxEntry.tx_id == Material.tx_id,
            InboxEntry.state == "delivered",
            InboxEntry.delivered_at < now - retention,
        )
        .exists()
    )
    ids = list(
        session.scalars(
            select(Material.id).where(
                Material.purged_at.is_(None),
                delivered
                | (Material.tx_id.is_(None) & (Material.created_at < now - orphan_retention)),
            )
        )
    )
    if not ids:
        return 0
    session.execute(delete(MaterialChunk).where(MaterialChunk.material_pk.in_(ids)))
    session.execute(
        update(Material)
        .where(Material.id.in_(ids))
        .values(purged_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(ids)


def material_purge(
    *, retention: timedelta, orphan_retention: timedelta
) -> Callable[[Session, datetime], int]:
    """``purge_materials`` with these retentions, for ``piivault.purge.purge_loop``."""

    def purge(session: Session, now: datetime) -> int:
        return purge_materials(
            session, now=now, retention=retention, orphan_retention=orphan_retention
        )

    return purge
