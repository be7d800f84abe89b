"""An update offer through the real broker to a real agent process, downloading from the
real fleet server's release route with the outlet's certificate proof.

The fleet server is the real app (SQLite, a stored release of a real wheel built from
this repository as 9.1.0) served over HTTP by uvicorn; the outlet enrolls with it, so
the agent holds its certificate, key, server URL and config-signing keys as in the
field. The agent runs supervised (``GOVEDGE_SUPERVISED=1``) with uv and the locked pins
for its offline install (conftest).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from edge_agent.updates.layout import Layout
from fleet_server.security import Role
from govedge_testbed import Mosquitto
from govedge_wire import Kind, UpdateOffer, UpdateStatus, encode, topic_for
from tests.agent.harness import AgentProcess, Observer, poll
from tests.enrolling import enroll_outlet, store_enrollment
from tests.server.releases.kit import ReleaseApi, release_api
from tests.updates.conftest import uv_bin

VERSION = "9.1.0"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[ReleaseApi, str]]:
    """The real fleet server app, also served over real HTTP; (api, its URL)."""
    with release_api(tmp_path) as api, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = uvicorn.Server(
            uvicorn.Config(
                api.client.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        poll(lambda: server.started, timeout=30, what="uvicorn serving the fleet app")
        try:
            yield api, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def enroll(api: ReleaseApi, outlet_id: str, data_dir: Path, server_url: str) -> None:
    """Enroll as ``edge-agent enroll`` does and store the answer as the agent keeps it."""
    key, issued = enroll_outlet(api.client.post, outlet_id, admin=api.as_role(Role.ADMIN))
    store_enrollment(data_dir, outlet_id, server_url, key, issued)


def test_an_offer_is_downloaded_installed_switched_and_the_agent_exits_75(
    tmp_path: Path,
    broker: Mosquitto,
    outlet_id: str,
    fleet: tuple[ReleaseApi, str],
    release_wheel: Path,
    uv_cache_warm: Path,
) -> None:
    api, url = fleet
    stored = api.upload(release_wheel.read_bytes(), VERSION, release_wheel.name)
    assert stored.status_code == 201, stored.text  # type: ignore[attr-defined]
    manifest = api.client.get(
        f"/api/v1/releases/{VERSION}/manifest", headers=api.as_role(Role.VIEWER)
    ).json()
    data_dir = tmp_path / "agent-data"
    enroll(api, outlet_id, data_dir, url)
    home = tmp_path / "govedge"
    observer = Observer(port=broker.port, outlet_id=outlet_id)
    agent = AgentProcess(
        mqtt_url=broker.url,
        outlet_id=outlet_id,
        data_dir=data_dir,
        log_path=tmp_path / "agent.log",
        extra_env={
            "GOVEDGE_SUPERVISED": "1",
            "GOVEDGE_INSTALL_HOME": str(home),
            "GOVEDGE_UPDATE_UV_BIN": str(uv_bin()),
            "GOVEDGE_UPDATE_CONSTRAINTS": str(uv_cache_warm),
        },
    )
    try:
        poll(lambda: any(m.kind == "birth" for m in observer.all_messages()), timeout=30,
             what="birth")  # fmt: skip
        now = time.time_ns() // 1_000_000
        offer = UpdateOffer(
            outlet_id=outlet_id, session=0, seq=0, campaign_id=3, version=VERSION,
            manifest=manifest, artifact_path=f"/api/v1/releases/{VERSION}/artifact",
            not_before_ts=now, window_end_ts=now + 600_000, health_timeout_s=60,
        )  # fmt: skip
        observer.publish_raw(topic_for(outlet_id, Kind.UPDATE_OFFER), encode(offer))
        observer.wait_for(
            UpdateStatus, lambda m: m.state in ("restarting", "failed", "skipped"), timeout=120
        )
        assert agent.wait(timeout=30) == 75, agent.log()
    finally:
        agent.close()
        observer.close()
    states = [m.state for m in observer.messages(UpdateStatus)]
    steps = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert steps == ["downloading", "verifying", "installing", "restarting"], agent.log()
    assert {m.campaign_id for m in observer.messages(UpdateStatus)} == {3}
    assert {m.running_version for m in observer.messages(UpdateStatus)} == {"0.1.0"}
    layout = Layout(home)
    assert layout.link("current") == VERSION
    trial = layout.read_trial()
    assert trial is not None
    assert (trial["outcome"], trial["campaign_id"], trial["previous"]) == ("pending", 3, "0.1.0")
    assert (home / "current" / "venv" / "bin" / "edge-agent").exists()
