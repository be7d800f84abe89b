"""The installer from an offer to the switch, in process, against a real HTTP server.

The artifact is a real wheel of this repository under another version, signed with a
test key; the install is real (uv, offline from its cache, pinned to the lock: see
conftest). The MQTT side is covered by test_agent_update.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.updates import Installer, InstallerSettings, Layout
from edge_agent.updates.layout import RESTART_EXIT_CODE
from govedge_wire import UpdateOffer
from govedge_wire.releases import SignedManifest
from tests.updates.conftest import ArtifactServer, Signer, uv_bin

VERSION = "9.1.0"


class Reports:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, state: str, **fields: Any) -> None:
        self.seen.append({"state": state, **fields})

    @property
    def states(self) -> list[str]:
        # Progress reports repeat "downloading"; the sequence of steps is what counts.
        out: list[str] = []
        for report in self.seen:
            if not out or out[-1] != report["state"]:
                out.append(report["state"])
        return out


def offer(
    manifest: SignedManifest, *, window_s: float = 600, version: str = VERSION
) -> UpdateOffer:
    now = time.time_ns() // 1_000_000
    return UpdateOffer(
        outlet_id="o-upd-1",
        session=1,
        seq=1,
        campaign_id=7,
        version=version,
        manifest=manifest.model_dump(mode="json"),
        artifact_path=f"/api/v1/releases/{VERSION}/artifact",
        not_before_ts=now,
        window_end_ts=int(now + window_s * 1000),
        health_timeout_s=60,
    )


def installer(
    home: Path,
    signer: Signer,
    server_url: str,
    *,
    reserve: int = 0,
    pins: Path | None = None,
    supervised: bool = True,
) -> tuple[Installer, Reports, list[int]]:
    from edge_agent.fleet_config.keys import parse_config_keys

    reports = Reports()
    restarts: list[int] = []
    built = Installer(
        InstallerSettings(
            layout=Layout(home),
            running_version="0.1.0",
            supervised=supervised,
            server_url=server_url,
            uv_bin=uv_bin(),
            find_links=(),
            disk_reserve_bytes=reserve,
            constraints=pins,
            download_backoff_s=0.01,
        ),
        report=reports,
        keys=lambda: parse_config_keys(signer.keys_json),
        proof=lambda: None,
        restart=lambda: restarts.append(RESTART_EXIT_CODE),
    )
    return built, reports, restarts


async def run_offer(built: Installer, the_offer: UpdateOffer) -> None:
    await built.offer(the_offer)
    await built.wait()


def test_a_good_offer_installs_beside_switches_and_asks_for_a_restart(
    tmp_path: Path,
    signer: Signer,
    release_wheel: Path,
    uv_cache_warm: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In the service's environment (edge_agent/service/unit.py): optimized, with a
    # bytecode cache of its own.
    cache = tmp_path / "bytecode"
    monkeypatch.setenv("PYTHONOPTIMIZE", "2")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(cache))
    home = tmp_path / "home"
    manifest = signer.manifest(release_wheel, VERSION)
    data = release_wheel.read_bytes()
    with ArtifactServer(data, f'"{manifest.sha256}"') as server:
        built, reports, restarts = installer(home, signer, server.url, pins=uv_cache_warm)
        asyncio.run(run_offer(built, offer(manifest)))
    assert reports.states == ["downloading", "verifying", "installing", "restarting"]
    assert restarts == [75]
    layout = Layout(home)
    assert layout.link("current") == VERSION
    trial = layout.read_trial()
    assert trial is not None
    assert trial["outcome"] == "pending"
    assert (trial["version"], trial["previous"], trial["campaign_id"]) == (VERSION, "0.1.0", 7)
    assert trial["starts"] == 0
    # The new venv runs and says its version; no half install is left.
    edge_agent = home / "current" / "venv" / "bin" / "edge-agent"
    assert edge_agent.exists()
    shown = subprocess.run(
        [str(home / "current" / "venv" / "bin" / "python"), "-c",
         "import importlib.metadata as m; print(m.version('govedge'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout.strip() == VERSION
    assert not list((home / "versions").glob(".*.partial"))
    # uv compiled the new venv's bytecode into the venv (for commands run by hand), not
    # into the service's cache under the path the install was renamed from.
    assert list((home / "versions" / VERSION / "venv").rglob("daemon.cpython-*.pyc"))
    assert not cache.exists() or not [p for p in cache.rglob("*") if ".partial" in str(p)]


def test_a_tampered_artifact_is_a_hash_mismatch_and_nothing_switches(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    home = tmp_path / "home"
    manifest = signer.manifest(release_wheel, VERSION)
    data = bytearray(release_wheel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with ArtifactServer(bytes(data), f'"{manifest.sha256}"') as server:
        built, reports, restarts = installer(home, signer, server.url)
        asyncio.run(run_offer(built, offer(manifest)))
    assert reports.states == ["downloading", "verifying", "failed"]
    assert reports.seen[-1]["reason"] == "hash_mismatch"
    assert restarts == []
    layout = Layout(home)
    assert layout.link("current") is None
    assert layout.read_trial() is None
    assert not any(layout.download_dir(VERSION).iterdir())  # the bad file is deleted


def test_a_wrongly_signed_manifest_is_refused_before_any_download(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    other = Signer(Ed25519PrivateKey.generate())
    manifest = other.manifest(release_wheel, VERSION)
    with ArtifactServer(release_wheel.read_bytes(), '"x"') as server:
        built, reports, _ = installer(tmp_path / "home", signer, server.url)
        asyncio.run(run_offer(built, offer(manifest)))
        assert server.requests == []
    assert [(r["state"], r["reason"]) for r in reports.seen] == [("failed", "bad_manifest")]
    # A manifest of another version than offered: wrong_release.
    right_key_other_version = signer.manifest(release_wheel, "9.2.0")
    built, reports, _ = installer(tmp_path / "home", signer, "http://127.0.0.1:1")
    asyncio.run(run_offer(built, offer(right_key_other_version)))
    assert [(r["state"], r["reason"]) for r in reports.seen] == [("failed", "wrong_release")]


def test_a_download_cut_midway_resumes_with_a_range(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    home = tmp_path / "home"
    manifest = signer.manifest(release_wheel, VERSION)
    data = release_wheel.read_bytes()
    etag = f'"{manifest.sha256}"'
    with ArtifactServer(data, etag, cut_after=len(data) // 3) as server:
        # Without the pins the offline install may fail: the download is what is looked at.
        built, reports, _ = installer(home, signer, server.url, reserve=0)
        asyncio.run(run_offer(built, offer(manifest)))
        first, second = server.requests[:2]
    assert "range" not in first
    # Resumed from what reached the disk (whole chunks), not from zero.
    resumed_at = int(second["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(data) // 3
    assert second["if-range"] == etag
    assert "verifying" in reports.states
    assert "hash_mismatch" not in [r.get("reason") for r in reports.seen]
    # The whole file arrived, byte for byte.
    assert (Layout(home).download_dir(VERSION) / release_wheel.name).read_bytes() == data


def test_an_offer_after_its_window_is_skipped(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    manifest = signer.manifest(release_wheel, VERSION)
    built, reports, _ = installer(tmp_path / "home", signer, "http://127.0.0.1:1")
    asyncio.run(run_offer(built, offer(manifest, window_s=-1)))
    assert [(r["state"], r["reason"]) for r in reports.seen] == [("skipped", "window_missed")]
    assert not (tmp_path / "home" / "versions").exists()


def test_an_unsupervised_agent_skips_offers(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    manifest = signer.manifest(release_wheel, VERSION)
    built, reports, _ = installer(tmp_path / "h", signer, "http://127.0.0.1:1", supervised=False)
    asyncio.run(run_offer(built, offer(manifest)))
    assert [(r["state"], r["reason"]) for r in reports.seen] == [("skipped", "unsupervised")]


def test_too_little_disk_is_disk_full_before_downloading(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    # The reserve setting asks for more than any disk here has: the real free space of the
    # real file system is compared, nothing is faked.
    manifest = signer.manifest(release_wheel, VERSION)
    built, reports, _ = installer(tmp_path / "home", signer, "http://127.0.0.1:1", reserve=2**62)
    asyncio.run(run_offer(built, offer(manifest)))
    assert [(r["state"], r["reason"]) for r in reports.seen] == [("failed", "disk_full")]


def test_a_repeated_offer_changes_nothing_and_another_is_busy(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    manifest = signer.manifest(release_wheel, VERSION)
    data = release_wheel.read_bytes()

    async def scenario(server_url: str) -> Reports:
        built, reports, _ = installer(tmp_path / "home", signer, server_url)
        first = offer(manifest)
        await built.offer(first)
        await built.offer(first)  # the repeat while working on it: nothing
        other = offer(signer.manifest(release_wheel, "9.3.0"), version="9.3.0")
        await built.offer(other)
        await built.wait()
        return reports

    with ArtifactServer(data, f'"{manifest.sha256}"') as server:
        reports = asyncio.run(scenario(server.url))
    skipped = [r for r in reports.seen if r["state"] == "skipped"]
    assert [(r["version"], r["reason"]) for r in skipped] == [("9.3.0", "busy")]
    assert [r["state"] for r in reports.seen].count("verifying") == 1


def test_an_offer_of_the_running_version_is_healthy_at_once(
    tmp_path: Path, signer: Signer, release_wheel: Path
) -> None:
    manifest = signer.manifest(release_wheel, "0.1")  # 0.1 is 0.1.0 in normal form
    built, reports, restarts = installer(tmp_path / "home", signer, "http://127.0.0.1:1")
    asyncio.run(run_offer(built, offer(manifest, version="0.1.0")))
    assert [r["state"] for r in reports.seen] == ["healthy"]
    assert restarts == []


def test_a_bundle_installs_from_its_own_wheels_and_lock(
    tmp_path: Path, signer: Signer, release_wheel: Path, uv_cache_warm: Path
) -> None:
    bundle = tmp_path / f"govedge-{VERSION}-bundle.tar.gz"
    with tarfile.open(bundle, "w:gz") as archive:
        archive.add(release_wheel, arcname=release_wheel.name)
        # The bundle's requirements lock: used as constraints, no setting needed.
        archive.add(uv_cache_warm, arcname="requirements.txt")
    manifest = signer.manifest(bundle, VERSION, kind="bundle")
    home = tmp_path / "home"
    with ArtifactServer(bundle.read_bytes(), f'"{manifest.sha256}"') as server:
        built, reports, restarts = installer(home, signer, server.url)
        asyncio.run(run_offer(built, offer(manifest)))
    assert reports.states == ["downloading", "verifying", "installing", "restarting"], reports.seen
    assert restarts == [75]
    assert Layout(home).installed() == [VERSION]
    assert not (home / "versions" / VERSION / "bundle").exists()  # unpacked wheels removed
