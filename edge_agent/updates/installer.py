"""From an update offer to the restart into the new version (docs/updates.md).

Steps, each reported as an ``UpdateStatus``: check the offer (supervised, window,
manifest signature and version, disk) → ``downloading`` → ``verifying`` →
``installing`` (beside the running version) → write the trial, switch ``current`` →
``restarting`` → the process exits with code 75 and the supervisor starts ``current``.
One install at a time: a repeated offer of the same campaign and version while it runs
changes nothing; another offer meanwhile is ``skipped`` (``busy``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.updates.download import OutletProof, download, verify_artifact
from edge_agent.updates.errors import UpdateFailed
from edge_agent.updates.install import check_disk, install_beside
from edge_agent.updates.layout import Layout, new_trial, normal_version, same_release
from govedge_wire import UpdateOffer
from govedge_wire.releases import ManifestRefused, SignedManifest, verify_manifest

log = logging.getLogger(__name__)


class StatusReporter(Protocol):
    """Publishes one ``UpdateStatus`` (the agent's current connection)."""

    async def __call__(
        self,
        state: str,
        *,
        version: str,
        campaign_id: int | None,
        reason: str | None = None,
        detail: str | None = None,
        progress: float | None = None,
    ) -> object: ...


@dataclass(frozen=True)
class InstallerSettings:
    """What the installer needs from the agent's settings and enrollment."""

    layout: Layout
    running_version: str
    supervised: bool
    server_url: str | None
    uv_bin: Path | None
    find_links: tuple[Path, ...]
    disk_reserve_bytes: int
    constraints: Path | None = None
    download_attempts: int = 6
    download_backoff_s: float = 1.0
    tls_verify: ssl.SSLContext | bool = True


class Installer:
    """Handles offers; at most one install runs at a time."""

    def __init__(
        self,
        settings: InstallerSettings,
        *,
        report: StatusReporter,
        keys: Callable[[], dict[str, Ed25519PublicKey]],
        proof: Callable[[], OutletProof | None],
        restart: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._report = report
        self._keys = keys
        self._proof = proof
        self._restart = restart
        self._working: tuple[int, str] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self._working is not None

    async def offer(self, offer: UpdateOffer) -> None:
        """Start working on ``offer`` in the background (or answer it at once)."""
        key = (offer.campaign_id, _normal_or_raw(offer.version))
        if self._working == key:
            log.info("update offer %s of campaign %d repeated; already working on it", *key[::-1])
            return
        if self._working is not None:
            await self._status(offer, "skipped", reason="busy", detail="another install runs")
            return
        self._working = key
        self._task = asyncio.create_task(self._run(offer), name=f"update-{offer.version}")

    def cancel(self) -> None:
        """Stop a running install (agent shutdown); a ``.partial`` is cleaned next time."""
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> None:
        """Until the current install (if any) ended: for tests and shutdown."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self, offer: UpdateOffer) -> None:
        try:
            await self._install(offer)
        except UpdateFailed as exc:
            log.warning("update to %s failed: %s", offer.version, exc)
            await self._status(offer, "failed", reason=exc.reason, detail=exc.detail or None)
        except Exception as exc:  # an install must never take the agent down
            log.exception("update to %s failed unexpectedly", offer.version)
            await self._status(offer, "failed", reason="install_failed", detail=type(exc).__name__)
        finally:
            self._working = None

    async def _install(self, offer: UpdateOffer) -> None:
        s = self._settings
        if not s.supervised:
            # Nobody could restart this agent into the new version or roll it back.
            await self._status(offer, "skipped", reason="unsupervised", detail="no supervisor")
            return
        if _now_ms() >= offer.window_end_ts:
            await self._status(offer, "skipped", reason="window_missed")
            return
        manifest = self._verified(offer)
        version = normal_version(manifest.version)
        if same_release(version, s.running_version):
            await self._status(offer, "healthy", detail="already running this version")
            return
        wait_s = (offer.not_before_ts - _now_ms()) / 1000
        if wait_s > 0:
            if offer.not_before_ts >= offer.window_end_ts:
                await self._status(offer, "skipped", reason="window_missed")
                return
            await asyncio.sleep(wait_s)
        check_disk(s.layout, manifest, s.disk_reserve_bytes)
        if s.server_url is None:
            raise UpdateFailed("download_failed", "the outlet is not enrolled: no server URL")
        await self._status(offer, "downloading", progress=0.0)

        async def progress(done: float) -> None:
            await self._status(offer, "downloading", progress=round(done, 3))

        part = await download(
            server_url=s.server_url,
            artifact_path=offer.artifact_path,
            manifest=manifest,
            target_dir=s.layout.download_dir(version),
            proof=self._proof(),
            progress=progress,
            attempts=s.download_attempts,
            backoff_base_s=s.download_backoff_s,
            verify=s.tls_verify,
        )
        await self._status(offer, "verifying")
        artifact = await verify_artifact(part, manifest)
        if _now_ms() >= offer.window_end_ts:
            # Downloaded but not installed: a restart outside the window would interrupt
            # clerks. The next offer finds the file and installs at once.
            await self._status(offer, "skipped", reason="window_missed", detail="after download")
            return
        await self._status(offer, "installing")
        await install_beside(
            s.layout,
            artifact,
            manifest,
            uv_bin=s.uv_bin,
            find_links=s.find_links,
            constraints=s.constraints,
        )
        await asyncio.to_thread(self._switch, version, offer)
        await self._status(offer, "restarting")
        self._restart()

    def _switch(self, version: str, offer: UpdateOffer) -> None:
        layout = self._settings.layout
        previous = layout.link("current") or normal_version(self._settings.running_version)
        trial = new_trial(
            version=version,
            previous=previous,
            campaign_id=offer.campaign_id,
            health_timeout_s=offer.health_timeout_s,
        )
        layout.health_file.unlink(missing_ok=True)
        layout.write_trial(trial)  # before the switch: the supervisor must see the trial
        layout.switch("current", version)

    def _verified(self, offer: UpdateOffer) -> SignedManifest:
        try:
            manifest = verify_manifest(dict(offer.manifest), self._keys())
        except ManifestRefused as exc:
            raise UpdateFailed("bad_manifest", f"{exc.reason}: {exc}") from None
        try:
            same = same_release(manifest.version, offer.version)
        except ValueError:
            raise UpdateFailed("bad_manifest", "version is not PEP 440") from None
        if not same:
            raise UpdateFailed("wrong_release", f"manifest is {manifest.version[:64]}")
        return manifest

    async def _status(
        self,
        offer: UpdateOffer,
        state: str,
        *,
        reason: str | None = None,
        detail: str | None = None,
        progress: float | None = None,
    ) -> None:
        await self._report(
            state,
            version=offer.version,
            campaign_id=offer.campaign_id,
            reason=reason,
            detail=detail,
            progress=progress,
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _normal_or_raw(version: str) -> str:
    try:
        return normal_version(version)
    except ValueError:
        return version
