"""``edge-agent update install|status``: the technician's path (playbooks, a USB stick).

``install`` verifies the manifest with the outlet's config-signing keys and the file
against it, installs beside the running version like an offer does, then: on an empty
home it sets ``current`` and ``good`` (the first install, no trial); otherwise it writes
a trial and switches ``current``, and the next start of the service runs the trial.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import click

from edge_agent.enrollment.errors import EnrollmentError
from edge_agent.enrollment.keys_option import keys_dir_of, keys_dir_option
from edge_agent.fleet_config.keys import ConfigKeysError, load_config_keys
from edge_agent.updates.download import verify_artifact
from edge_agent.updates.errors import UpdateFailed
from edge_agent.updates.install import check_disk, install_beside
from edge_agent.updates.layout import (
    DEFAULT_HOME,
    Layout,
    install_status,
    new_trial,
    normal_version,
)
from govedge_wire.releases import ManifestRefused, SignedManifest, verify_manifest

_HOME = click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="GOVEDGE_INSTALL_HOME",
    default=DEFAULT_HOME,
    show_default=True,
    help="the install home (versions/, current, good, update/)",
)


@click.group(name="update")
def update() -> None:
    """Install an agent release by hand, or show what is installed."""


@update.command(name="install")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--manifest", "manifest_file", required=True, type=click.Path(path_type=Path))
@_HOME
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="GOVEDGE_DATA_DIR",
    default=Path("/var/lib/govedge"),
    show_default=True,
    help="the agent's DATA_DIR (its config-signing keys verify the manifest)",
)
@keys_dir_option
@click.option("--config-keys-file", type=click.Path(path_type=Path), default=None)
@click.option("--uv-bin", type=click.Path(path_type=Path), envvar="GOVEDGE_UPDATE_UV_BIN")
@click.option("--find-links", type=click.Path(path_type=Path), multiple=True)
@click.option("--constraints", type=click.Path(path_type=Path), default=None)
@click.option("--reserve-bytes", type=int, default=256 * 1024 * 1024, show_default=True)
def install_command(
    file: Path,
    manifest_file: Path,
    home: Path,
    data_dir: Path,
    keys_dir: Path | None,
    config_keys_file: Path | None,
    uv_bin: Path | None,
    find_links: tuple[Path, ...],
    constraints: Path | None,
    reserve_bytes: int,
) -> None:
    """Verify FILE against the signed MANIFEST and install it beside the running version."""
    try:
        keys = load_config_keys(keys_dir_of(data_dir, keys_dir, move=True), config_keys_file)
        manifest = verify_manifest(manifest_file.read_bytes(), keys)
        version = normal_version(manifest.version)
        layout = Layout(home)
        check_disk(layout, manifest, reserve_bytes)
        venv = asyncio.run(_install(layout, file, manifest, uv_bin, find_links, constraints))
    except ManifestRefused as exc:
        _fail("bad_manifest", str(exc))
    except (ConfigKeysError, EnrollmentError, OSError, ValueError) as exc:
        _fail("install_failed", str(exc))
    except UpdateFailed as exc:
        _fail(exc.reason, exc.detail)
    current = layout.link("current")
    if current is None:
        layout.switch("current", version)
        layout.switch("good", version)
        click.echo(f"installed {version} in {venv}; current and good point at it")
        return
    if current == version:
        click.echo(f"{version} is installed and already current")
        return
    layout.write_trial(
        new_trial(version=version, previous=current, campaign_id=None, health_timeout_s=120)
    )
    layout.switch("current", version)
    click.echo(f"installed {version}; current switched from {current}: restart the service")


async def _install(
    layout: Layout,
    file: Path,
    manifest: SignedManifest,
    uv_bin: Path | None,
    find_links: tuple[Path, ...],
    constraints: Path | None,
) -> Path:
    folder = layout.download_dir(manifest.version)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    part = folder / f"{manifest.file_name}.part"
    await asyncio.to_thread(shutil.copyfile, file, part)
    # 0600 as the playbook copies it there: the file replaces that copy, and a second
    # upgrade_agent run with the same release must find it unchanged (changed=0).
    await asyncio.to_thread(part.chmod, 0o600)
    artifact = await verify_artifact(part, manifest)
    return await install_beside(
        layout, artifact, manifest, uv_bin=uv_bin, find_links=find_links, constraints=constraints
    )


@update.command(name="status")
@_HOME
@click.option("--json", "as_json", is_flag=True)
def status_command(home: Path, as_json: bool) -> None:
    """Current, good, installed versions, the trial and the last finished one."""
    layout = Layout(home)
    state = install_status(home)
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(f"home      {home}")
    click.echo(f"current   {state['current'] or '-'}")
    click.echo(f"good      {state['good'] or '-'}")
    click.echo(f"versions  {', '.join(layout.installed()) or '-'}")
    for label, trial in (("trial", state["trial"]), ("last", state["last"])):
        if isinstance(trial, dict):
            reason = f" ({trial.get('reason')})" if trial.get("reason") else ""
            click.echo(
                f"{label:<9} {trial.get('previous')} -> {trial.get('version')}: "
                f"{trial.get('outcome')}{reason}, starts {trial.get('starts')}, "
                f"since {trial.get('created_at')}"
            )
        else:
            click.echo(f"{label:<9} -")


def _fail(reason: str, detail: str) -> None:
    click.echo(f"edge-agent update: {reason}: {detail}", err=True)
    sys.exit(1)
