"""End to end: config from the fleet with the real server, real agents and the real broker.

A region change reaches the region's outlets and no other, an outlet override wins,
and a rollback restores the earlier effective config everywhere it applied; "applied"
is what each agent reports (its applied hash equals the one the server signed).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from govedge_testbed import Mosquitto
from govedge_wire.config import key_id_for
from tests.e2e.conftest import BIN, Agent, Server, poll, start_server, stop_process

# Two outlets of Hangzhou (3301) in two districts, one of Ningbo (3302).
PROFILES = [
    {"outlet_id": "cfg-hz-a", "name": "西湖区网点", "kind": "township", "region_code": "330106"},
    {"outlet_id": "cfg-hz-b", "name": "余杭区网点", "kind": "township", "region_code": "330110"},
    {"outlet_id": "cfg-nb-c", "name": "海曙区网点", "kind": "kiosk", "region_code": "330203"},
]  # fmt: skip
OUTLETS = [p["outlet_id"] for p in PROFILES]


def _signing_key(tmp_path: Path) -> tuple[Path, Path]:
    """``fleet-server config-key generate`` (the real CLI), and the agents' keys file."""
    key = tmp_path / "config-signing.pem"
    made = subprocess.run(
        [str(BIN / "fleet-server"), "config-key", "generate", str(key)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    private = load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    public = private.public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    keys = tmp_path / "config-keys.json"
    keys.write_text(json.dumps({key_id_for(public): base64.b64encode(raw).decode()}))
    return key, keys


def _put(server: Server, scope: str, document: dict[str, Any], *, version: int) -> None:
    response = httpx.put(
        f"{server.url}/api/v1/config/{scope}", json=document, timeout=10,
        headers=server.headers | {"If-Match": str(version)},
    )  # fmt: skip
    assert response.status_code == httpx.codes.OK, response.text


def _view(server: Server, outlet_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.url}/api/v1/outlets/{outlet_id}/config", timeout=10, headers=server.headers
    )
    assert response.status_code == httpx.codes.OK, response.text
    view: dict[str, Any] = response.json()
    return view


def _all_in_sync(server: Server, versions: dict[str, int]) -> Callable[[], bool]:
    """Every outlet in sync at (at least) the given desired version."""

    def check() -> bool:
        for outlet_id, version in versions.items():
            view = _view(server, outlet_id)
            desired = view["desired"]
            if view["status"] != "in_sync" or desired is None or desired["version"] < version:
                return False
        return True

    return check


def test_region_change_override_and_rollback_reach_exactly_their_outlets(
    private_broker: Mosquitto, tmp_path: Path
) -> None:
    key, keys_file = _signing_key(tmp_path)
    server = start_server(
        private_broker.url, f"sqlite:///{tmp_path / 'fleet.db'}", tmp_path / "server.log",
        env={"GOVEDGE_CONFIG_SIGNING_KEY": str(key)},
    )  # fmt: skip
    # An outlet provisioned without enrollment names its trusted keys in its settings.
    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text(f'config_keys_file = "{keys_file}"\n')
    agents: list[Agent] = []
    try:
        httpx.put(
            f"{server.url}/api/v1/outlet-profiles", json=PROFILES, timeout=10,
            headers=server.headers,
        ).raise_for_status()  # fmt: skip
        for outlet_id in OUTLETS:
            agent = Agent(
                outlet_id=outlet_id, data_dir=tmp_path / "agents" / outlet_id,
                mqtt_url=private_broker.url, log=tmp_path / f"agent-{outlet_id}.log",
                extra=["--config", str(agent_toml)],
            )  # fmt: skip
            agents.append(agent)
            agent.start()

        _put(server, "global", {"log_level": "INFO"}, version=0)
        _put(server, "region:3301", {"telemetry": {"interval_s": 7.0}}, version=0)
        _put(server, "outlet:cfg-hz-a", {"telemetry": {"interval_s": 9.0}}, version=0)
        poll(_all_in_sync(server, dict.fromkeys(OUTLETS, 1)), timeout=60, interval=0.5)
        first = {outlet: _view(server, outlet) for outlet in OUTLETS}
        assert first["cfg-hz-a"]["desired"]["config"]["telemetry"] == {"interval_s": 9.0}
        assert first["cfg-hz-a"]["provenance"]["telemetry.interval_s"] == "outlet:cfg-hz-a"
        assert first["cfg-hz-b"]["desired"]["config"]["telemetry"] == {"interval_s": 7.0}
        assert first["cfg-hz-b"]["provenance"]["telemetry.interval_s"] == "region:3301"
        assert "telemetry" not in first["cfg-nb-c"]["desired"]["config"]
        for view in first.values():
            assert view["reported"]["hash"] == view["desired"]["hash"]

        # A region change: Hangzhou's outlets get a new config, Ningbo's does not, and
        # the outlet override still wins at cfg-hz-a.
        _put(server, "region:3301", {"telemetry": {"interval_s": 5.0}, "log_level": "DEBUG"},
             version=1)  # fmt: skip
        b_version = first["cfg-hz-b"]["desired"]["version"] + 1
        poll(_all_in_sync(server, {"cfg-hz-b": b_version}), timeout=60, interval=0.5)
        poll(_all_in_sync(server, dict.fromkeys(OUTLETS, 1)), timeout=60, interval=0.5)
        second = {outlet: _view(server, outlet) for outlet in OUTLETS}
        assert second["cfg-hz-b"]["desired"]["config"]["telemetry"] == {"interval_s": 5.0}
        assert second["cfg-hz-a"]["desired"]["config"]["telemetry"] == {"interval_s": 9.0}
        assert second["cfg-hz-a"]["desired"]["config"]["log_level"] == "DEBUG"
        assert second["cfg-nb-c"]["desired"] == first["cfg-nb-c"]["desired"]

        # Rollback to region version 1: a new version with the old document; every
        # outlet it applied to is back on its first effective config.
        rolled = httpx.post(
            f"{server.url}/api/v1/config/region:3301/rollback", json={"version": 1},
            timeout=10, headers=server.headers | {"If-Match": "2"},
        )  # fmt: skip
        assert rolled.status_code == httpx.codes.OK, rolled.text
        later = {o: second[o]["desired"]["version"] + 1 for o in ("cfg-hz-a", "cfg-hz-b")}
        poll(_all_in_sync(server, later), timeout=60, interval=0.5)
        third = {outlet: _view(server, outlet) for outlet in OUTLETS}
        for outlet in OUTLETS:
            assert third[outlet]["desired"]["hash"] == first[outlet]["desired"]["hash"]
            assert third[outlet]["reported"]["hash"] == first[outlet]["desired"]["hash"]
        assert third["cfg-nb-c"]["desired"]["version"] == first["cfg-nb-c"]["desired"]["version"]
    finally:
        for agent in agents:
            agent.stop()
        stop_process(server.proc)
