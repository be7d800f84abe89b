"""Install a verified artifact beside the running version, offline.

The version is built in ``versions/.{version}.partial`` and renamed to
``versions/{version}`` only when its virtualenv is complete, so a half install never
looks installed (a crash leaves a ``.partial`` that the next attempt removes).

The tool: ``uv`` when the ``update_uv_bin`` setting names its binary (seconds on outlet
hardware; ``--offline``: the find-links directories and uv's cache, never the network),
otherwise ``python -m venv`` and pip with ``--no-index`` (no extra dependency on the
outlet, but minutes). A bundle is unpacked and used as ``--find-links``, its ``*.txt``
locks as constraints; a wheel finds its dependencies in the ``update_find_links``
directories (a wheelhouse kept from earlier bundles) or uv's cache, held to the
``update_constraints`` pins.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.updates.errors import UpdateFailed
from edge_agent.updates.layout import Layout, fsync_dir, normal_version
from govedge_wire.releases import SignedManifest

if TYPE_CHECKING:
    import tarfile

log = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 1800.0
# A venv unpacks to about four times the artifact (wheels are zip-compressed, the agent's
# dependencies include numpy and OpenCV), plus the download itself.
UNPACK_FACTOR = 4


def disk_needed(manifest: SignedManifest, reserve_bytes: int) -> int:
    """Bytes that must be free under the home before a download starts."""
    return manifest.size * (UNPACK_FACTOR + 1) + reserve_bytes


def check_disk(layout: Layout, manifest: SignedManifest, reserve_bytes: int) -> None:
    layout.home.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(layout.home).free
    needed = disk_needed(manifest, reserve_bytes)
    if free < needed:
        raise UpdateFailed("disk_full", f"{free} bytes free, {needed} needed")


def clean_partials(layout: Layout) -> None:
    """Remove what an interrupted install left (``versions/.*.partial``)."""
    if layout.versions.is_dir():
        for leftover in layout.versions.glob(".*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)


async def install_beside(
    layout: Layout,
    artifact: Path,
    manifest: SignedManifest,
    *,
    uv_bin: Path | None,
    find_links: tuple[Path, ...],
    constraints: Path | None = None,
) -> Path:
    """Install ``artifact`` as ``versions/{version}``; its venv, or ``UpdateFailed``."""
    version = normal_version(manifest.version)
    clean_partials(layout)
    final = layout.version_dir(version)
    if (final / "venv" / "bin" / "edge-agent").exists():
        return final / "venv"
    shutil.rmtree(final, ignore_errors=True)
    partial = layout.partial_dir(version)
    partial.mkdir(parents=True)
    links = [*find_links]
    if manifest.kind == "bundle":
        unpacked = partial / "bundle"
        await asyncio.to_thread(_unpack, artifact, unpacked)
        links.insert(0, unpacked)
    else:
        links.insert(0, artifact.parent)
    venv = partial / "venv"
    requirement = f"govedge[agent]=={version}"
    link_args = [arg for d in links for arg in ("--find-links", str(d))]
    locks = [constraints] if constraints is not None else []
    if manifest.kind == "bundle":
        locks += sorted((partial / "bundle").rglob("*.txt"))
    link_args += [arg for lock in locks for arg in ("--constraint", str(lock))]
    if uv_bin is not None:
        await _run([str(uv_bin), "venv", "--python", sys.executable, str(venv)])
        # --compile-bytecode as pip does by default: without it every start of the new
        # version compiles its modules again when the service cannot write __pycache__
        # (about half of the agent's start-up CPU, docs/performance.md).
        await _run(
            [str(uv_bin), "pip", "install", "--offline", "--compile-bytecode", "--python",
             str(venv / "bin" / "python"), *link_args, requirement]
        )  # fmt: skip
    else:
        await _run([sys.executable, "-m", "venv", str(venv)])
        await _run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index",
             "--disable-pip-version-check", *link_args, requirement]
        )  # fmt: skip
    if manifest.kind == "bundle":
        shutil.rmtree(partial / "bundle", ignore_errors=True)
    return await asyncio.to_thread(_complete, partial, final)


def _complete(partial: Path, final: Path) -> Path:
    """Point the scripts at the final path, then rename: the version is now complete."""
    # Both tools write the venv's absolute path into its scripts' shebangs and
    # pyvenv.cfg; they must name ``versions/{v}`` once renamed.
    old, new = str(partial).encode(), str(final).encode()
    for path in [*(partial / "venv" / "bin").iterdir(), partial / "venv" / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1024 * 1024:
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))
    partial.rename(final)
    fsync_dir(final.parent)
    return final / "venv"


def _unpack(artifact: Path, into: Path) -> None:
    # The archive modules load with the first update, not with every start (issue 17).
    import tarfile
    import zipfile

    into.mkdir(parents=True)
    if artifact.suffix == ".zip":
        with zipfile.ZipFile(artifact) as archive:
            archive.extractall(into)  # noqa: S202 - the server refused paths leaving it
    else:
        with tarfile.open(artifact) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(into, filter="data")
            else:
                # Python before 3.11.4 (Debian 12 ships 3.11.2) has no extraction
                # filters: only plain files and folders inside ``into`` are taken.
                archive.extractall(into, members=_plain_members(archive))  # noqa: S202 - checked


def _plain_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The archive's members if every one is a plain file or folder with a relative
    path that stays inside; else ``UpdateFailed`` (``install_failed``)."""
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in parts:
            raise UpdateFailed("install_failed", f"bundle member refused: {member.name[:100]!r}")
        member.mode &= 0o755
    return members


async def _run(argv: list[str]) -> None:
    # The service runs with PYTHONOPTIMIZE=2 and a bytecode cache of its own
    # (edge_agent/service/unit.py). venv and pip run as their authors test them,
    # unoptimized, and the bytecode they compile goes into the new venv itself, not into
    # the cache under the ``.partial`` path it is renamed from.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONOPTIMIZE", "PYTHONPYCACHEPREFIX")
    }
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    try:
        async with asyncio.timeout(INSTALL_TIMEOUT_S):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise UpdateFailed("install_failed", f"{Path(argv[0]).name} timed out") from None
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip().splitlines()[-3:]
        log.error("install step failed: %s", " | ".join(tail))
        raise UpdateFailed("install_failed", " | ".join(tail)[-400:])
