"""End to end (issue 11): a release goes from the operator's upload, through a campaign,
to an agent that installs it and proves it healthy, or rolls it back by itself.

Every part is the real one: a ``fleet-server`` process (releases signed with its config
key, the campaign engine, the ingest), the real Mosquitto, an outlet enrolled with the
server (certificate, key, config keys on disk as in the field), and the agent installed
in a ``GOVEDGE_HOME`` layout and run by the real ``edge-agent supervise``. Releases are
real wheels of this checkout built by ``govedge_testbed.releases`` (one with a crash on
start injected). The agent installs with uv offline, held to the locked pins (uv's
cache is warmed once per session), as an outlet with a kept cache does.

The outlet's opening hours are on another weekday, so the test runs inside its
maintenance window (an outlet with no hours is never offered an update).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.local_api.apps import AppRegistry
from edge_agent.updates.layout import linked_version, switch_link
from fleet_server.transactions.identity import upstream_idempotency_key
from govedge_testbed import Mosquitto
from govedge_testbed.releases import build_release, install_version
from govedge_testbed.upstream import Upstream
from govedge_wire.pii import make_id_number
from govedge_wire.releases import manifest_payload
from tests.e2e.conftest import BIN, poll
from tests.enrolling import enroll_outlet, store_enrollment
from tests.server.helpers import FleetServer
from tests.server.txkit import serving_upstream, transaction_server
from tests.supervisor.harness import alive, children
from tests.updates.conftest import pins, uv_bin, uv_cache_warm

OLD, GOOD, CRASHES, SILENT = "1.0.0", "1.1.0", "1.2.0", "1.3.0"
REGION = "330902"  # routed to the "zhoushan" target by the test catalogue
__all__ = ["pins", "uv_cache_warm"]  # the update tests' session fixtures, shared

# One worker builds the module's release wheels once (docs/development.md).
pytestmark = [pytest.mark.timeout(420), pytest.mark.xdist_group("update_flow")]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("update-flow-releases")
    return {
        OLD: build_release(out, OLD),
        GOOD: build_release(out, GOOD),
        CRASHES: build_release(out, CRASHES, "crash_on_start"),
        SILENT: build_release(out, SILENT, "never_connects"),
    }


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with serving_upstream() as fake:
        yield fake


@pytest.fixture
def server(broker: Mosquitto, upstream: Upstream, tmp_path: Path) -> Iterator[FleetServer]:
    workdir = tmp_path / "server"
    workdir.mkdir()
    with transaction_server(
        broker.url, upstream, workdir, ["zhoushan", "hcp"],
        GOVEDGE_PKI_DIR=str(workdir / "pki"),
        GOVEDGE_RELEASES_DIR=str(workdir / "releases"),
        GOVEDGE_CAMPAIGN_TICK_S="0.5",
    ) as fleet:  # fmt: skip
        yield fleet


def _closed_now_hours() -> dict[str, Any]:
    """Open only three days from now: closed today, so inside the maintenance window."""
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(time.gmtime().tm_wday + 3) % 7]
    return {day: ["09:00-17:00"]}


def _upload(server: FleetServer, wheel: Path, version: str) -> None:
    answer = server.http.post(
        "/api/v1/releases",
        params={"version": version, "file_name": wheel.name},
        content=wheel.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text


def _campaign(server: FleetServer, release: str, outlet_id: str, health_s: int = 60) -> int:
    answer = server.http.post(
        "/api/v1/campaigns",
        json={
            "name": f"update {release}", "release": release,
            "target": {"outlets": [outlet_id]}, "waves": [1], "jitter_s": 0,
            "health_timeout_s": health_s, "failure_threshold": 0.1,
        },
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _outlet_row(server: FleetServer, campaign_id: int, outlet_id: str) -> dict[str, Any]:
    row: dict[str, Any] = server.get(f"/api/v1/campaigns/{campaign_id}/outlets/{outlet_id}")
    return row


class Outlet:
    """An enrolled outlet PC: the install home and ``edge-agent supervise`` over it."""

    def __init__(self, root: Path, broker: Mosquitto, outlet_id: str, pins_file: Path) -> None:
        self.home = root / "govedge"
        self.data_dir = root / "agent-data"
        self.outlet_id = outlet_id
        self.broker = broker
        self.pins = pins_file
        self.log_path = root / "supervisor.log"
        self.local_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.app_token = ""

    def install(self, wheel: Path, version: str) -> None:
        """What a technician's install leaves: ``version`` installed, ``good`` and
        ``current`` on it."""
        self.home.mkdir(parents=True)
        install_version(self.home, wheel, version)
        switch_link(self.home, "good", version)
        switch_link(self.home, "current", version)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
        env.update(
            GOVEDGE_UPDATE_UV_BIN=str(uv_bin()),
            GOVEDGE_UPDATE_CONSTRAINTS=str(self.pins),
            GOVEDGE_KEEPALIVE_S="5",
        )
        args = ["--mqtt-url", self.broker.url, "--outlet-id", self.outlet_id]
        args += ["--data-dir", str(self.data_dir), "--reconnect-cap", "1"]
        args += ["--local-api-port", str(self.local_port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "edge-agent"), "supervise", "--home", str(self.home), "--", *args],
                cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def agent_pids(self) -> list[int]:
        assert self.proc is not None
        return [p for p in children(self.proc.pid) if alive(p)]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


def _free_port() -> int:
    from govedge_testbed import free_port

    return free_port()


@pytest.fixture
def outlet(
    tmp_path: Path,
    broker: Mosquitto,
    server: FleetServer,
    wheels: dict[str, Path],
    uv_cache_warm: Path,
    outlet_id: str,
) -> Iterator[Outlet]:
    """Enrolled, hours set, 1.0.0 installed and running under the supervisor, online."""
    place = Outlet(tmp_path / "outlet", broker, outlet_id, uv_cache_warm)
    key, issued = enroll_outlet(server.http.post, outlet_id)
    store_enrollment(place.data_dir, outlet_id, server.url, key, issued)
    _, place.app_token = AppRegistry(place.data_dir).add("counter-web", origins=[])
    profile = {"outlet_id": outlet_id, "kind": "township_centre", "region_code": REGION,
               "opening_hours": _closed_now_hours()}  # fmt: skip
    stored = server.http.put("/api/v1/outlet-profiles", json=[profile])
    assert stored.status_code == 200, stored.text
    place.install(wheels[OLD], OLD)
    place.start()
    try:
        _wait_running(server, outlet_id, OLD, place)
        yield place
    finally:
        place.stop()


def _wait_running(server: FleetServer, outlet_id: str, version: str, place: Outlet) -> None:
    def running() -> bool:
        row = server.http.get(f"/api/v1/outlets/{outlet_id}")
        if row.status_code != httpx.codes.OK:
            return False
        body = row.json()
        return bool(body["state"] == "online" and body.get("agent_version") == version)

    deadline = time.monotonic() + 120
    while not running():
        if time.monotonic() > deadline:
            pytest.fail(f"{outlet_id} not online on {version}; supervisor log:\n{place.log()}")
        time.sleep(0.5)


def _final(server: FleetServer, campaign_id: int, outlet_id: str) -> dict[str, Any]:
    final = ("healthy", "failed", "rolled_back", "skipped")
    found: dict[str, Any] = poll(
        lambda: (r := _outlet_row(server, campaign_id, outlet_id))["state"] in final and r,
        timeout=240,
        interval=0.5,
    )
    return found


class Clerk(threading.Thread):
    """A clerk's app filing cases all through the update, as a real app does: each case
    has its own ``Idempotency-Key``, resent until the agent answers (the agent is away
    while it restarts into the new version)."""

    def __init__(self, outlet: Outlet) -> None:
        super().__init__(name="clerk", daemon=True)
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{outlet.local_port}",
            headers={"Authorization": f"Bearer {outlet.app_token}"},
            timeout=10,
        )
        self.accepted: dict[str, str] = {}  # Idempotency-Key -> tx_id the clerk saw
        self.retries = 0
        self.halt = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.halt.is_set():
            number += 1
            key = f"update-flow-{number:04d}"
            while not self.halt.is_set():
                try:
                    answer = self.http.post("/v1/submissions", json=_case(number),
                                            headers={"Idempotency-Key": key})  # fmt: skip
                except httpx.TransportError:
                    self.retries += 1
                    time.sleep(0.2)
                    continue
                if answer.status_code in (200, 201, 202):
                    self.accepted[key] = answer.json()["tx_id"]
                    break
                self.retries += 1
                time.sleep(0.2)
            time.sleep(0.2)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        self.http.close()


def _case(number: int) -> dict[str, Any]:
    return {
        "item_code": "000101",
        "region_code": REGION,
        "applicant": {"name": "张三丰", "id_number": make_id_number("330106", "19900101", number)},
        "window": "1",
        "clerk": "S007",
    }


def _update_while_a_clerk_works(
    server: FleetServer, outlet: Outlet, wheels: dict[str, Path], release: str, ends_on: str
) -> tuple[int, dict[str, Any], Clerk]:
    """A campaign for ``release`` while a clerk files cases, until the outlet is online
    on ``ends_on`` and takes cases again; (campaign id, its final outlet row, the clerk)."""
    clerk = Clerk(outlet)
    clerk.start()
    poll(lambda: clerk.accepted, timeout=60)  # the old version takes cases
    _upload(server, wheels[release], release)
    campaign_id = _campaign(server, release, outlet.outlet_id)
    try:
        row = _final(server, campaign_id, outlet.outlet_id)
        _wait_running(server, outlet.outlet_id, ends_on, outlet)
        seen = len(clerk.accepted)
        poll(lambda: len(clerk.accepted) > seen, timeout=60)  # and after the update
    finally:
        clerk.stop()
    return campaign_id, row, clerk


def _each_case_upstream_once(upstream: Upstream, outlet_id: str, clerk: Clerk) -> None:
    expected = {upstream_idempotency_key(outlet_id, tx) for tx in clerk.accepted.values()}
    poll(lambda: set(upstream.accepted) >= expected, timeout=120, interval=0.5)
    assert set(upstream.accepted) == expected
    assert all(upstream.accepted_count[tx] == 1 for tx in expected)


def test_a_good_release_ends_healthy_on_the_new_version(
    server: FleetServer,
    outlet: Outlet,
    upstream: Upstream,
    wheels: dict[str, Path],
    outlet_id: str,
) -> None:
    campaign_id, row, clerk = _update_while_a_clerk_works(server, outlet, wheels, GOOD, GOOD)
    assert row["state"] == "healthy", (row, outlet.log())
    # The supervisor made the new version good; the old one is kept for a rollback.
    assert linked_version(outlet.home, "good") == GOOD
    assert linked_version(outlet.home, "current") == GOOD
    assert (outlet.home / "versions" / OLD).is_dir()
    campaign = poll(
        lambda: (c := server.get(f"/api/v1/campaigns/{campaign_id}"))["state"] == "completed" and c,
        timeout=60,
    )
    assert campaign["release"] == GOOD
    # Every case the clerk saw accepted, before, during and after the update, reached
    # upstream exactly once, and nothing else did.
    _each_case_upstream_once(upstream, outlet_id, clerk)


def test_a_release_that_crashes_on_start_is_rolled_back_by_the_agent_alone(
    server: FleetServer,
    outlet: Outlet,
    upstream: Upstream,
    wheels: dict[str, Path],
    outlet_id: str,
) -> None:
    campaign_id, row, clerk = _update_while_a_clerk_works(server, outlet, wheels, CRASHES, OLD)
    # The outbox the old version left, and what was added around the failed start,
    # reach upstream exactly once after the rollback.
    _each_case_upstream_once(upstream, outlet_id, clerk)
    assert row["state"] == "rolled_back", (row, outlet.log())
    assert row["reason"] == "crashed_on_start"
    assert linked_version(outlet.home, "current") == OLD
    assert linked_version(outlet.home, "good") == OLD
    _wait_running(server, outlet_id, OLD, outlet)
    # One outlet of one begun is past the 10 % failure threshold: paused by itself.
    campaign = poll(
        lambda: (c := server.get(f"/api/v1/campaigns/{campaign_id}"))["state"] == "paused" and c,
        timeout=60,
    )
    assert "failure threshold" in campaign["state_reason"]
    poll(lambda: _alert(server, "update_failed", outlet_id), timeout=60)
    poll(lambda: _alert(server, "campaign_paused", "_fleet"), timeout=60)


def _alert(server: FleetServer, rule: str, outlet_id: str) -> bool:
    alerts: list[dict[str, Any]] = server.get(f"/api/v1/alerts?outlet_id={outlet_id}")
    return any(alert["rule"] == rule for alert in alerts)


def test_a_release_that_never_connects_is_rolled_back_after_its_health_timeout(
    server: FleetServer, outlet: Outlet, wheels: dict[str, Path], outlet_id: str
) -> None:
    _upload(server, wheels[SILENT], SILENT)
    campaign_id = _campaign(server, SILENT, outlet_id, health_s=15)
    row = _final(server, campaign_id, outlet_id)
    assert row["state"] == "rolled_back", (row, outlet.log())
    assert row["reason"] == "not_healthy"
    assert linked_version(outlet.home, "current") == OLD
    assert linked_version(outlet.home, "good") == OLD
    _wait_running(server, outlet_id, OLD, outlet)


def _refused(server: FleetServer, outlet: Outlet, campaign_id: int, reason: str) -> None:
    """Failed with ``reason``; nothing installed; the old version online throughout."""
    row = _final(server, campaign_id, outlet.outlet_id)
    assert (row["state"], row["reason"]) == ("failed", reason), (row, outlet.log())
    assert linked_version(outlet.home, "current") == OLD
    assert linked_version(outlet.home, "good") == OLD
    assert sorted(p.name for p in (outlet.home / "versions").iterdir()) == [OLD]
    assert server.get(f"/api/v1/outlets/{outlet.outlet_id}")["state"] == "online"


def test_an_artifact_changed_on_the_server_is_refused_and_nothing_installed(
    server: FleetServer, outlet: Outlet, wheels: dict[str, Path], outlet_id: str, tmp_path: Path
) -> None:
    _upload(server, wheels[GOOD], GOOD)
    stored = tmp_path / "server" / "releases" / GOOD / wheels[GOOD].name
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped on the server's disk, size unchanged
    stored.write_bytes(bytes(data))
    _refused(server, outlet, _campaign(server, GOOD, outlet_id), "hash_mismatch")


def test_a_manifest_signed_by_another_key_is_refused_and_nothing_installed(
    server: FleetServer, outlet: Outlet, wheels: dict[str, Path], outlet_id: str, tmp_path: Path
) -> None:
    _upload(server, wheels[GOOD], GOOD)
    database = sqlite3.connect(tmp_path / "server" / "fleet.db")
    with database:
        (text,) = database.execute(
            "SELECT manifest FROM releases WHERE version = ?", (GOOD,)
        ).fetchone()
        manifest = json.loads(text)
        forged = Ed25519PrivateKey.generate().sign(manifest_payload(manifest))
        manifest["signature"] = base64.b64encode(forged).decode()
        database.execute(
            "UPDATE releases SET manifest = ? WHERE version = ?", (json.dumps(manifest), GOOD)
        )
    database.close()
    _refused(server, outlet, _campaign(server, GOOD, outlet_id), "bad_manifest")


def test_an_agent_killed_mid_install_comes_back_and_the_update_still_ends_healthy(
    server: FleetServer, outlet: Outlet, wheels: dict[str, Path], outlet_id: str
) -> None:
    _upload(server, wheels[GOOD], GOOD)
    campaign_id = _campaign(server, GOOD, outlet_id)
    poll(lambda: _outlet_row(server, campaign_id, outlet_id)["state"] == "installing",
         timeout=120, interval=0.05)  # fmt: skip
    (agent,) = outlet.agent_pids()
    os.kill(agent, signal.SIGKILL)  # a crash of the agent half way through the install
    # The supervisor starts the old version again; it has no half-installed version
    # to trust (a ``.partial`` is removed) and the server offers the update again.
    row = _final(server, campaign_id, outlet_id)
    assert row["state"] == "healthy", (row, outlet.log())
    assert linked_version(outlet.home, "good") == GOOD
    assert not list((outlet.home / "versions").glob(".*.partial"))
    _wait_running(server, outlet_id, GOOD, outlet)
