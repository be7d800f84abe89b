"""End to end in secure mode: enroll with the real CLIs, run over mqtts://, apply a config
signed by the server with the key the enrollment answer handed over."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from govedge_testbed import Mosquitto
from tests.e2e.conftest import BIN, Agent, poll, start_server, stop_process
from tests.server.helpers import config_signing_key


def test_enroll_then_run_over_mqtts(
    secure_broker: Mosquitto, pki_dir: Path, tmp_path: Path
) -> None:
    server = start_server(
        secure_broker.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={
            "GOVEDGE_PKI_DIR": str(pki_dir),
            "GOVEDGE_CONFIG_SIGNING_KEY": str(config_signing_key(tmp_path)),
        },
    )
    agent = None
    try:
        created = httpx.post(
            f"{server.url}/api/v1/enrollments",
            json={"outlet_id": "outlet-tls-1", "ttl_s": 600},
            headers=server.headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        data_dir = tmp_path / "agent"
        enroll = [str(BIN / "edge-agent"), "enroll", "--server", server.url,
                  "--token", created.json()["token"], "--data-dir", str(data_dir)]  # fmt: skip
        result = subprocess.run(enroll, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "outlet-tls-1" in result.stdout
        assert (data_dir / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
        # The config-signing keys came with the answer: configs verify without a keys file.
        assert (data_dir / "tls" / "config-keys.json").is_file()
        # The token is single-use.
        again = subprocess.run(enroll, capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode == 1
        assert "403" in again.stderr

        agent = Agent(
            outlet_id="outlet-tls-1",
            data_dir=data_dir,
            mqtt_url=secure_broker.url,
            log=tmp_path / "agent.log",
        )
        agent.start()
        poll(lambda: server.state("outlet-tls-1") == "online", timeout=30)

        # A config for this outlet is signed, verified with the enrolled key and applied.
        put = httpx.put(
            f"{server.url}/api/v1/config/outlet:outlet-tls-1", json={"log_level": "DEBUG"},
            headers=server.headers | {"If-Match": "0"}, timeout=10,
        )  # fmt: skip
        assert put.status_code == 200, put.text

        def in_sync() -> bool:
            view = httpx.get(
                f"{server.url}/api/v1/outlets/outlet-tls-1/config",
                headers=server.headers, timeout=10,
            ).json()  # fmt: skip
            return bool(view["status"] == "in_sync" and view["desired"]["config"])

        poll(in_sync, timeout=30)
    finally:
        if agent is not None:
            agent.stop()
        stop_process(server.proc)
