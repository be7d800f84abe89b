"""The installer and the trial check as the running agent builds them.

The agent's identity for downloads is its enrollment (``DATA_DIR/tls``: server URL,
certificate, key); the manifest keys are its config-signing keys (docs/config.md). An
agent runs supervised when ``GOVEDGE_SUPERVISED=1`` (set by ``edge-agent supervise``).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.enrollment import TlsStore
from edge_agent.enrollment.errors import EnrollmentError
from edge_agent.enrollment.trust import http_trust
from edge_agent.fleet_config.keys import ConfigKeysError, load_config_keys
from edge_agent.settings import AgentSettings
from edge_agent.updates.download import OutletProof, load_proof
from edge_agent.updates.installer import Installer, InstallerSettings, StatusReporter
from edge_agent.updates.layout import Layout

log = logging.getLogger(__name__)

SUPERVISED_ENV: Final = "GOVEDGE_SUPERVISED"


def supervised() -> bool:
    return os.environ.get(SUPERVISED_ENV) == "1"


def build_installer(
    settings: AgentSettings,
    *,
    running_version: str,
    report: StatusReporter,
    restart: Callable[[], None],
) -> Installer:
    store = TlsStore(settings.keys_dir)
    server_url: str | None = None
    tls_verify: ssl.SSLContext | bool = True
    try:
        if store.exists():
            server_url = store.identity().server_url
            tls_verify = http_trust(store.ca_path)  # the system's CAs plus the pinned CA
    except (EnrollmentError, OSError, ValueError) as exc:
        # The agent still runs; an offer is then failed (download_failed) with the reason.
        log.error("no download identity for updates: %s", exc)  # noqa: TRY400
    return Installer(
        InstallerSettings(
            layout=Layout(settings.install_home),
            running_version=running_version,
            supervised=supervised(),
            server_url=server_url,
            uv_bin=settings.update_uv_bin,
            find_links=settings.update_find_links,
            disk_reserve_bytes=settings.update_disk_reserve_bytes,
            constraints=settings.update_constraints,
            tls_verify=tls_verify,
        ),
        report=report,
        keys=lambda: _keys(settings.keys_dir, settings.config_keys_file),
        proof=lambda: _proof(store),
        restart=restart,
    )


def _keys(keys_dir: Path, extra: Path | None) -> dict[str, Ed25519PublicKey]:
    try:
        return load_config_keys(keys_dir, extra)
    except ConfigKeysError as exc:
        log.error("config keys unusable for the release manifest: %s", exc)  # noqa: TRY400
        return {}


def _proof(store: TlsStore) -> OutletProof | None:
    if not store.exists():
        return None
    return load_proof(store.cert_path.read_bytes(), store.key_path.read_bytes())
