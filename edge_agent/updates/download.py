"""Download a release artifact with the outlet's certificate proof, resuming after a cut.

The file streams to ``update/downloads/{version}/{file}.part``; after a broken link the
next attempt asks for ``Range: bytes=N-`` with ``If-Range: "<sha256>"`` (the server's
ETag), so a changed file is sent whole (200) rather than spliced. Attempts are bounded
with a backoff; the finished file is trusted only once its size and SHA-256 match the
verified manifest (docs/updates.md, "Downloads").
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge_agent.backoff import full_jitter_delay
from edge_agent.updates.errors import UpdateFailed
from govedge_wire.release_check import file_sha256
from govedge_wire.releases import (
    CERTIFICATE_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    SignedManifest,
    download_proof_payload,
)

log = logging.getLogger(__name__)

CHUNK: Final = 64 * 1024
TIMEOUT_S: Final = 30.0

Progress = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class OutletProof:
    """The enrolled certificate and key that sign each download request."""

    certificate_pem: bytes
    key: ec.EllipticCurvePrivateKey

    def headers(self, method: str, path: str) -> dict[str, str]:
        at = int(time.time())
        signature = self.key.sign(
            download_proof_payload(method, path, at), ec.ECDSA(hashes.SHA256())
        )
        return {
            CERTIFICATE_HEADER: base64.b64encode(self.certificate_pem).decode(),
            TIME_HEADER: str(at),
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        }


def load_proof(certificate_pem: bytes, key_pem: bytes) -> OutletProof:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the outlet key is not an EC key")
    return OutletProof(certificate_pem, key)


async def download(
    *,
    server_url: str,
    artifact_path: str,
    manifest: SignedManifest,
    target_dir: Path,
    proof: OutletProof | None,
    progress: Progress,
    attempts: int = 6,
    backoff_base_s: float = 1.0,
    verify: ssl.SSLContext | bool = True,
) -> Path:
    """The downloaded ``.part`` file (whole, not yet checked); ``UpdateFailed`` if not."""
    # httpx (with its CLI's rich and pygments: ~0.2 s, several MiB) loads on the first
    # download, not with every agent: most days no update is offered (docs/performance.md).
    import httpx

    part = target_dir / f"{manifest.file_name}.part"
    await asyncio.to_thread(_prepare, target_dir, part, target_dir / manifest.file_name)
    url = server_url.rstrip("/") + artifact_path
    last_error = ""
    for attempt in range(attempts):
        try:
            await _fetch(url, artifact_path, part, manifest, proof, progress, verify)
            break
        except (httpx.HTTPError, OSError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:200]
            delay = full_jitter_delay(attempt, base=backoff_base_s, cap=60.0)
            log.warning(
                "download of %s broke off (%s); retry in %.1f s",
                manifest.version,
                last_error,
                delay,
            )
            await asyncio.sleep(delay)
    else:
        raise UpdateFailed("download_failed", f"{attempts} attempts: {last_error}")
    return part


async def verify_artifact(part: Path, manifest: SignedManifest) -> Path:
    """The artifact renamed from ``.part`` once size and SHA-256 match; else deleted and
    ``UpdateFailed`` (``hash_mismatch``)."""
    return await asyncio.to_thread(_check, part, manifest)


def _prepare(target_dir: Path, part: Path, done: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    if done.exists():  # a whole download of an earlier offer: checked again after
        done.replace(part)


def _check(part: Path, manifest: SignedManifest) -> Path:
    digest = file_sha256(part)
    size = part.stat().st_size
    if size != manifest.size or digest != manifest.sha256:
        part.unlink(missing_ok=True)
        raise UpdateFailed("hash_mismatch", f"got {size} bytes, sha256 {digest[:12]}")
    done = part.with_name(manifest.file_name)
    part.replace(done)
    return done


def _size(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


async def _fetch(
    url: str,
    path: str,
    part: Path,
    manifest: SignedManifest,
    proof: OutletProof | None,
    progress: Progress,
    verify: ssl.SSLContext | bool,
) -> None:
    import httpx  # loaded by ``download`` already: see there

    have = await asyncio.to_thread(_size, part)
    if have >= manifest.size:
        # Complete already (or too long: the hash check decides and deletes it).
        return
    headers = proof.headers("GET", path) if proof is not None else {}
    if have:
        headers["Range"] = f"bytes={have}-"
        headers["If-Range"] = f'"{manifest.sha256}"'
    async with (
        httpx.AsyncClient(timeout=TIMEOUT_S, verify=verify) as client,
        client.stream("GET", url, headers=headers) as answer,
    ):
        if answer.status_code == 416:
            await asyncio.to_thread(part.unlink, missing_ok=True)  # ours is longer: restart
            raise httpx.HTTPError("416 range not satisfiable; starting over")
        if answer.status_code == 200:
            have = 0
        elif answer.status_code != 206:
            raise httpx.HTTPError(f"server answered {answer.status_code}")
        mode = "ab" if have else "wb"
        last_report = 0.0
        with part.open(mode) as handle:
            async for chunk in answer.aiter_bytes(CHUNK):
                handle.write(chunk)
                have += len(chunk)
                now = time.monotonic()
                if now - last_report >= 5.0:  # rate-limited progress reports
                    last_report = now
                    await progress(min(have / manifest.size, 1.0))
            handle.flush()
            os.fsync(handle.fileno())
    if have < manifest.size:
        raise httpx.HTTPError(f"connection ended after {have} of {manifest.size} bytes")
