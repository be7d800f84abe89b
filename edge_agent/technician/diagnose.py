"""A diagnosis archive of one outlet PC, for the technician and the outlet's record.

``diagnose.tar.gz`` holds ``summary.json`` (the service's state as systemd sees it, the
running agent's own status from its technician socket, install state, identity, outbox,
disk, clock, the network path to the broker and the fleet API), ``devices.json`` (the
running agent's own device inventory and retired ids from the technician socket, beside
the USB devices udev knows: a device udev sees but the agent does not use is the first
thing to look at) and ``journal.txt`` (the agent's recent log lines). Every text that
did not come from the agent's own masking (the journal, error messages) goes through
``mask_text`` before it is written: an archive leaves the outlet, so it must hold no
citizen's ID or mobile number. The archive is written 0600 and atomically (a temporary
file renamed).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_agent.settings import AgentSettings
from edge_agent.technician.outbox_state import read_outbox_state
from edge_agent.technician.socket_client import ask_agent
from edge_agent.updates.layout import install_status
from govedge_wire.pii import mask_text

JOURNAL_UNIT = "govedge-agent"
NET_TIMEOUT_S = 5.0
# The agent answers its device list after one health sample of every device (each with
# its own deadline), so the socket gets more time than a network probe.
SOCKET_TIMEOUT_S = 20.0
SERVICE_PROPERTIES = (
    "ActiveState", "SubState", "MainPID", "NRestarts", "ActiveEnterTimestamp", "Result",
)  # fmt: skip


def _safe(section: Callable[[], Any]) -> Any:
    """One section's facts, or the reason it could not be read (masked)."""
    try:
        return section()
    except Exception as exc:  # a diagnosis reports what fails, it never stops on it
        return {"error": mask_text(f"{type(exc).__name__}: {exc}")[:500]}


def _version() -> str:
    try:
        return metadata.version("govedge")
    except metadata.PackageNotFoundError:
        return "unknown"


def _identity(keys_dir: Path) -> dict[str, Any]:
    from edge_agent.enrollment.store import TlsStore
    from edge_agent.enrollment.trust import fingerprint

    store = TlsStore(keys_dir)
    identity = store.identity()
    return {
        "outlet_id": identity.outlet_id,
        "server_url": identity.server_url,
        "not_before": identity.not_before.isoformat(),
        "not_after": identity.not_after.isoformat(),
        "ca_fingerprint": fingerprint(store.pinned_ca()),
    }


def _disk(paths: list[Path]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in paths:
        probe = path if path.exists() else path.parent
        usage = shutil.disk_usage(probe)
        found[str(path)] = {"total_bytes": usage.total, "free_bytes": usage.free}
    return found


def _run(argv: list[str]) -> str | None:
    """A command's output, or None when the command is not on this PC."""
    if shutil.which(argv[0]) is None:
        return None
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout


def _clock() -> dict[str, Any]:
    shown = _run(["timedatectl", "show", "--property=NTPSynchronized", "--property=Timezone"])
    facts = dict(line.split("=", 1) for line in (shown or "").splitlines() if "=" in line)
    return {
        "utc_now": datetime.now(UTC).isoformat(),
        "local_zone": time.strftime("%Z"),
        "timezone": facts.get("Timezone"),
        "ntp_synchronized": {"yes": True, "no": False}.get(facts.get("NTPSynchronized", "")),
    }


def _tcp(host: str, port: int) -> dict[str, Any]:
    started = time.monotonic()
    addresses = sorted(
        {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    )
    resolved = time.monotonic()
    with socket.create_connection((host, port), timeout=NET_TIMEOUT_S):
        connected = time.monotonic()
    return {
        "host": host,
        "port": port,
        "addresses": addresses,
        "resolve_ms": round((resolved - started) * 1000, 1),
        "connect_ms": round((connected - resolved) * 1000, 1),
    }


def _fleet_api(server_url: str, ca_file: Path | None) -> dict[str, Any]:
    context = ssl.create_default_context()
    if ca_file is not None and ca_file.exists():
        context.load_verify_locations(cafile=str(ca_file))
    url = f"{server_url.rstrip('/')}/healthz"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=NET_TIMEOUT_S, context=context) as answer:  # noqa: S310 - the enrolled server's URL
            status, date = answer.status, answer.headers.get("Date")
    except urllib.error.HTTPError as exc:
        status, date = exc.code, exc.headers.get("Date")
    took = round((time.monotonic() - started) * 1000, 1)
    offset = None
    if date:
        offset = round(datetime.now(UTC).timestamp() - parsedate_to_datetime(date).timestamp(), 1)
    # the Date header has whole seconds: an offset within ±2 s is as good as none
    return {"url": url, "status": status, "ms": took, "clock_offset_s": offset}


def _usb_scan() -> list[dict[str, Any]]:
    import asyncio

    from edge_agent.discovery.udev import UdevSource

    return [asdict(d) for d in asyncio.run(UdevSource().scan())]


def _ask_agent(data_dir: Path, path: str) -> Any:
    """``GET path`` on the running agent's technician socket; ``RuntimeError`` saying why
    not when no agent answers (the section then holds that reason)."""
    return ask_agent(data_dir, path, timeout_s=SOCKET_TIMEOUT_S)


def _masked(value: Any) -> Any:
    """``value`` with ``mask_text`` applied to every string in it (keys included).

    Masked value by value, not as JSON text: a number the diagnosis measured (free bytes
    of a 13-19 GB disk) would otherwise be "masked" into invalid JSON; numbers are the
    PC's own figures, never a citizen's.
    """
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {mask_text(str(k)): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_text(str(value))


def _agent_status(data_dir: Path) -> dict[str, Any]:
    found = _safe(lambda: {"running": True, **_ask_agent(data_dir, "/status")})
    return found if "running" in found else {"running": False, **found}


def _service() -> dict[str, Any]:
    """The unit's state as systemd sees it (where systemd runs the PC)."""
    if shutil.which("systemctl") is None:
        return {"error": "systemctl is not on this PC (no systemd runs the agent)"}
    argv = ["systemctl", "show", JOURNAL_UNIT, *(f"--property={p}" for p in SERVICE_PROPERTIES)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:  # e.g. a PC (or container) that systemd did not boot
        return {"error": f"systemctl: {(done.stderr or done.stdout).strip()[:300]}"}
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def _journal(lines: int, log_file: Path | None) -> str:
    if log_file is not None:
        with log_file.open(encoding="utf-8", errors="replace") as handle:
            text = "".join(handle.readlines()[-lines:])
    else:
        argv = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(lines), "-u", JOURNAL_UNIT]
        text = _run(argv) or "(journalctl is not installed on this PC)\n"
    return mask_text(text)


def collect(
    *,
    settings: AgentSettings | None,
    data_dir: Path,
    home: Path,
    journal_lines: int = 2000,
    log_file: Path | None = None,
    keys_dir: Path | None = None,
) -> dict[str, bytes]:
    """The archive's files by name (``keys_dir`` unset: ``DATA_DIR/tls``)."""
    keys = keys_dir if keys_dir is not None else data_dir / "tls"
    identity = _safe(lambda: _identity(keys))
    server_url = identity.get("server_url") if isinstance(identity, dict) else None
    network: dict[str, Any] = {}
    if settings is not None:
        network["broker"] = _safe(lambda: _tcp(settings.mqtt_host, settings.mqtt_port))
    if server_url:
        network["fleet_api"] = _safe(lambda: _fleet_api(server_url, keys / "ca.pem"))
    summary = {
        "generated_at": datetime.now(UTC).isoformat(),
        "hostname": socket.gethostname(),
        "agent_version": _version(),
        "service": _safe(_service),
        "agent": _agent_status(data_dir),
        "install": _safe(lambda: install_status(home)),
        "identity": identity,
        "settings": _safe(lambda: settings.model_dump(mode="json")) if settings else None,
        "outbox": _safe(
            lambda: read_outbox_state(data_dir, now_ms=int(time.time() * 1000)).as_dict()
        ),
        "disk": _safe(lambda: _disk([home, data_dir, Path("/")])),
        "clock": _safe(_clock),
        "network": network,
    }
    devices = {"agent": _safe(lambda: _ask_agent(data_dir, "/devices")), "usb": _safe(_usb_scan)}
    as_json = json.dumps(_masked(summary), indent=2, ensure_ascii=False, default=str)
    devices_json = json.dumps(_masked(devices), indent=2, ensure_ascii=False, default=str)
    journal = _safe(lambda: _journal(journal_lines, log_file))
    return {
        "summary.json": as_json.encode(),
        "devices.json": devices_json.encode(),
        "journal.txt": (journal if isinstance(journal, str) else json.dumps(journal)).encode(),
    }


def write_archive(out: Path, files: dict[str, bytes]) -> None:
    """``files`` as a gzip tar at ``out``, 0600, written whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    now = time.time()
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"diagnose/{name}")
            info.size, info.mtime, info.mode = len(data), int(now), 0o600
            archive.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
