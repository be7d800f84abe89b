"""Scanned materials on the server: chunks stored idempotently, assembled and verified.

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
- ``check_submission_materials``: a submission is accepted only when every material
  it references is complete and its assembled bytes match the declared ``size`` and
  ``sha256``; otherwise it is refused (``material_incomplete`` or
  ``material_checksum``) and nothing is stored. The outlet's ack barrier makes this
  the normal case; an incomplete material means the server lost chunks it had
  acknowledged (a database restored from backup), which a resend cannot repair.
- ``materials_for_delivery``: the assembled materials travel upstream inside the
  submission's document (docs/transactions.md, "Request").
- ``purge_materials``: chunks are deleted once the referencing submission was
  delivered ``GOVEDGE_MATERIAL_RETENTION_DAYS`` ago, and chunks of materials no
  submission referenced after ``GOVEDGE_MATERIAL_ORPHAN_DAYS``.

Nothing here logs or returns material content.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from fleet_server.models import InboxEntry, Material, MaterialChunk
from fleet_server.piivault import VaultError, current_vault
from fleet_server.transactions.bodies import MaterialChunkBody, SubmissionBody

__all__ = [
    "MaterialRejected",
    "check_chunk",
    "check_submission_materials",
    "material_purge",
    "materials_for_delivery",
    "purge_materials",
    "store_chunk",
]

DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024


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


def _assemble(session: Session, material: Material) -> bytes:
    """The material's bytes; ``MaterialRejected`` if incomplete or not what was declared."""
    if material.purged_at is not None:
        raise MaterialRejected("material_incomplete", "the material's chunks were purged")
    chunks = session.scalars(
        select(MaterialChunk)
        .where(MaterialChunk.material_pk == material.id)
        .order_by(MaterialChunk.chunk_index)
    ).all()
    if [c.chunk_index for c in chunks] != list(range(material.chunk_count)):
        raise MaterialRejected(
            "material_incomplete",
            f"{len(chunks)} of {material.chunk_count} chunks of a referenced material stored",
        )
    vault = current_vault()
    try:
        data = b"".join(
            vault.open_bytes(
                c.data, context=_context(material.outlet_id, material.material_id, c.chunk_index)
            )
            for c in chunks
        )
    except VaultError:
        raise MaterialRejected(
            "material_checksum", "a stored chunk failed authentication"
        ) from None
    if len(data) != material.size or hashlib.sha256(data).hexdigest() != material.sha256:
        raise MaterialRejected("material_checksum", "assembled material does not match sha256/size")
    return data


def check_submission_materials(
    session: Session,
    batch: ChunkBatch,
    *,
    outlet_id: str,
    tx_id: str,
    body: SubmissionBody,
) -> None:
    """Verify every referenced material and tie it to ``tx_id`` (of the same outlet:
    materials are named per outlet); ``MaterialRejected``."""
    found: list[Material] = []
    for ref in body.materials:
        material = _material(session, batch, outlet_id, ref.ref)
        if material is None:
            raise MaterialRejected("material_incomplete", "a referenced material is unknown")
        _assemble(session, material)
        found.append(material)
    for material in found:
        if material.tx_id is None:
            material.tx_id = tx_id


def materials_for_delivery(session: Session, entry: InboxEntry) -> list[dict[str, Any]]:
    """The submission's materials as sent upstream: ``ref``, ``name``, ``size``,
    ``sha256`` and ``data_base64``, in the order of ``body.materials``."""
    refs: Sequence[Any] = entry.body.get("materials") or []
    out: list[dict[str, Any]] = []
    batch = ChunkBatch.new()
    for ref in refs:
        material = _material(session, batch, entry.outlet_id, str(ref.get("ref")))
        if material is None:
            raise MaterialRejected("material_incomplete", "a referenced material is unknown")
        data = _assemble(session, material)
        out.append(
            {
                "ref": material.material_id,
                "name": ref.get("name"),
                "size": material.size,
                "sha256": material.sha256,
                "data_base64": base64.b64encode(data).decode("ascii"),
            }
        )
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
