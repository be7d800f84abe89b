"""``edge-agent update install|status``: a technician's install, and a kill mid-install.

Real processes: ``python -m edge_agent update ...`` with uv and the locked pins
(conftest), a real wheel of this repository signed with a test key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.updates.layout import Layout
from tests.agent.harness import poll
from tests.updates.conftest import Signer, uv_bin

VERSION = "9.1.0"


def keys_file(tmp_path: Path, signer: Signer) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(signer.keys_json))
    return path


def argv(home: Path, wheel: Path, manifest: Path, keys: Path, pins: Path) -> list[str]:
    return [
        sys.executable, "-m", "edge_agent", "update", "install", str(wheel),
        "--manifest", str(manifest), "--home", str(home), "--data-dir", str(home / "no-data"),
        "--config-keys-file", str(keys), "--uv-bin", str(uv_bin()), "--constraints", str(pins),
    ]  # fmt: skip


def status(home: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "update", "status", "--home", str(home), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


def test_the_first_install_on_an_empty_home_sets_current_and_good(
    tmp_path: Path, signer: Signer, release_wheel: Path, uv_cache_warm: Path
) -> None:
    home = tmp_path / "govedge"
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(signer.manifest(release_wheel, VERSION).to_bytes())
    keys = keys_file(tmp_path, signer)
    done = subprocess.run(
        argv(home, release_wheel, manifest, keys, uv_cache_warm), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    shown = status(home)
    assert (shown["current"], shown["good"], shown["versions"], shown["trial"]) == (
        VERSION,
        VERSION,
        [VERSION],
        None,
    )
    text = subprocess.run(
        [sys.executable, "-m", "edge_agent", "update", "status", "--home", str(home)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"current   {VERSION}" in text
    # A manifest signed by someone else: refused, nothing changes.
    other = Signer(Ed25519PrivateKey.generate())
    manifest.write_bytes(other.manifest(release_wheel, "9.2.0").to_bytes())
    refused = subprocess.run(
        argv(home, release_wheel, manifest, keys, uv_cache_warm), capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "bad_manifest" in refused.stderr
    assert status(home)["versions"] == [VERSION]


def test_a_kill_mid_install_leaves_current_alone_and_the_next_attempt_cleans_up(
    tmp_path: Path, signer: Signer, release_wheel: Path, uv_cache_warm: Path
) -> None:
    home = tmp_path / "govedge"
    layout = Layout(home)
    (layout.version_dir("0.1.0") / "venv").mkdir(parents=True)
    layout.switch("current", "0.1.0")
    layout.switch("good", "0.1.0")
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(signer.manifest(release_wheel, VERSION).to_bytes())
    keys = keys_file(tmp_path, signer)
    command = argv(home, release_wheel, manifest, keys, uv_cache_warm)
    # Its own process group, so SIGKILL takes uv with it as a power cut would.
    installing = subprocess.Popen(command, start_new_session=True)
    partial = layout.partial_dir(VERSION)
    try:
        poll(partial.exists, timeout=60, what="the install to start")
        os.killpg(installing.pid, signal.SIGKILL)
    finally:
        installing.wait(30)
    assert installing.returncode == -signal.SIGKILL
    assert partial.exists()  # killed halfway: left behind...
    assert layout.link("current") == "0.1.0"  # ...and nothing switched
    assert layout.installed() == ["0.1.0"]  # a .partial never counts as installed
    assert layout.read_trial() is None
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert not partial.exists()
    assert layout.link("current") == VERSION
    assert layout.link("good") == "0.1.0"
    trial = layout.read_trial()
    assert trial is not None
    assert (trial["outcome"], trial["previous"], trial["campaign_id"]) == ("pending", "0.1.0", None)
