"""A run's own files beside ansible-runner's: what the server supplies (fleet_vars.py),
the pinned SSH host keys, and what the run leaves behind (archives, new pins).

Host keys: every run gets a ``known_hosts`` of its own, holding the keys pinned for its
hosts. A host with a pinned key is checked strictly (``StrictHostKeyChecking=yes``: a PC
whose key changed, say after a reinstall, is unreachable until an admin clears the pin);
a host without one is trusted on this first contact (``accept-new``) and its key is
pinned once the run has really reached it. Hosts reached with
``ansible_connection=local`` need neither.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.playbooks.fleet_vars import Supply
from fleet_server.playbooks.tables import OutletAccess, OutletArchive, PlaybookHost
from govedge_wire.release_check import file_sha256

ENROLL_TTL: Final = timedelta(hours=1)
# The host var that carries a minted one-time enrollment token (taken out of the
# run's inventory file when the run ends).
TOKEN_VAR: Final = "govedge_agent_enroll_token"  # noqa: S105 - a variable's name
# A fetched archive larger than this is left in the run's folder, not attached.
ARCHIVE_MAX_BYTES: Final = 512 * 1024 * 1024
# Host statuses that prove the run got through to the PC (a key seen then is pinned).
_REACHED: Final = frozenset({"ok", "changed", "failed", "skipped"})


@dataclass(frozen=True, slots=True)
class Prepared:
    """The extra vars and host vars the run starts with."""

    extra_vars: dict[str, Any]
    hosts: dict[str, dict[str, Any]]
    known_hosts: Path


def _known_hosts_pattern(host: str, port: int | None) -> str:
    return host if port in (None, 22) else f"[{host}]:{port}"


def _over_ssh(host_vars: Mapping[str, Any]) -> bool:
    return host_vars.get("ansible_connection", "ssh") in ("ssh", "paramiko", "smart")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def prepare(
    data_dir: Path,
    run_id: int,
    supply: Supply,
    hosts: Mapping[str, dict[str, Any]],
    sessions: sessionmaker[Session],
    mint_token: Callable[[Session, str, int], str],
) -> Prepared:
    """Write the run's supplied files and known_hosts; the vars to run with."""
    fleet = data_dir / "fleet"
    fleet.mkdir(mode=0o700, parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if supply.artifact is not None and supply.manifest is not None:
        manifest = fleet / "manifest.json"
        _write_private(manifest, json.dumps(supply.manifest).encode())
        keys = fleet / "config-keys.json"
        _write_private(keys, json.dumps(supply.config_keys).encode())
        extra.update(
            govedge_agent_release_file=str(supply.artifact),
            govedge_agent_release_manifest=str(manifest),
            govedge_agent_config_keys_file=str(keys),
        )
    if supply.archives:
        archives = data_dir / "archives"
        archives.mkdir(mode=0o700, exist_ok=True)
        extra["govedge_agent_archive_dir"] = str(archives)
    known_hosts = data_dir / "known_hosts"
    out: dict[str, dict[str, Any]] = {outlet: dict(v) for outlet, v in hosts.items()}
    with sessions() as session, session.begin():
        pins = {
            row.outlet_id: row.host_key
            for row in session.scalars(
                select(OutletAccess).where(OutletAccess.outlet_id.in_(list(out)))
            )
        }
        lines = []
        for outlet, host_vars in out.items():
            if not _over_ssh(host_vars):
                continue
            address = str(host_vars.get("ansible_host") or outlet)
            port = host_vars.get("ansible_port")
            pinned = pins.get(outlet)
            if pinned:
                lines.append(f"{_known_hosts_pattern(address, port)} {pinned}\n")
            args = [
                f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))}",
                f"-o StrictHostKeyChecking={'yes' if pinned else 'accept-new'}",
                "-o HashKnownHosts=no",
            ]
            # the server's alone: no record or extra var may add to them (access.py,
            # catalogue.check_extra_vars), since ssh keeps an option's first value
            host_vars["ansible_ssh_common_args"] = " ".join(args)
    _write_private(known_hosts, "".join(lines).encode())
    if supply.enroll_tokens:
        with sessions() as session:
            for outlet, host_vars in out.items():
                host_vars[TOKEN_VAR] = mint_token(session, outlet, run_id)
    return Prepared(extra_vars=extra, hosts=out, known_hosts=known_hosts)


def _seen_keys(known_hosts: Path) -> dict[str, str]:
    """``pattern → "type base64"`` from the run's known_hosts (plain, not hashed)."""
    seen: dict[str, str] = {}
    try:
        text = known_hosts.read_text(encoding="utf-8")
    except OSError:
        return seen
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith(("#", "|")):
            for pattern in fields[0].split(","):
                seen[pattern] = f"{fields[1]} {fields[2]}"
    return seen


def pin_new_keys(
    session: Session, run_id: int, hosts: Mapping[str, dict[str, Any]], known_hosts: Path
) -> list[str]:
    """Pin the host key of each SSH host the run reached that had none; their ids."""
    seen = _seen_keys(known_hosts)
    reached = {
        row.outlet_id
        for row in session.scalars(select(PlaybookHost).where(PlaybookHost.run_id == run_id))
        if row.status in _REACHED
    }
    pinned = []
    for outlet, host_vars in hosts.items():
        if outlet not in reached or not _over_ssh(host_vars):
            continue
        address = str(host_vars.get("ansible_host") or outlet)
        key = seen.get(_known_hosts_pattern(address, host_vars.get("ansible_port")))
        row = session.get(OutletAccess, outlet)
        if key is None or row is None or row.host_key:
            continue
        row.host_key, row.host_key_pinned_at = key[:2000], datetime.now(UTC)
        pinned.append(outlet)
    return pinned


def attach_archives(
    session: Session, run_id: int, data_dir: Path, outlets: set[str]
) -> list[OutletArchive]:
    """Record the files the run fetched into ``archives/<outlet>/`` on those outlets."""
    attached = []
    root = data_dir / "archives"
    for outlet in sorted(outlets):
        folder = root / outlet
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.is_symlink():
                continue
            size = path.stat().st_size
            if size > ARCHIVE_MAX_BYTES:
                continue
            row = OutletArchive(
                outlet_id=outlet, run_id=run_id, name=path.name[:255], size=size,
                sha256=file_sha256(path), created_at=datetime.now(UTC),
            )  # fmt: skip
            session.add(row)
            attached.append(row)
    return attached


def archive_path(runs_dir: Path, row: OutletArchive) -> Path:
    """Where an attached archive's file is."""
    return runs_dir / str(row.run_id) / "archives" / row.outlet_id / row.name
