"""End to end in secure mode: enroll with the real CLIs, then run over mqtts://."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from govedge_testbed import Mosquitto
from tests.e2e.conftest import BIN, Agent, poll, start_server, stop_process


def test_enroll_then_run_over_mqtts(
    secure_broker: Mosquitto, pki_dir: Path, tmp_path: Path
) -> None:
    server = start_server(
        secure_broker.url,
        f"sqlite:///{tmp_path / 'fleet.db'}",
        tmp_path / "server.log",
        env={"GOVEDGE_PKI_DIR": str(pki_dir)},
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
    finally:
        if agent is not None:
            agent.stop()
        stop_process(server.proc)
