"""``fleetctl config …`` against a real fleet server process (SQLite, real Mosquitto):
set from JSON and TOML, a stale version reported, get, history, diff, rollback, show,
drift and the dry run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from govedge_testbed import Mosquitto
from tests.server.helpers import FleetServer, run_fleetctl


@pytest.fixture
def server(broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"),
    )
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


_fleetctl = run_fleetctl


def _file(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return str(path)


def test_fleetctl_config_round_trip(server: FleetServer, tmp_path: Path) -> None:
    profile = [{"outlet_id": "o-fc", "name": "西湖区便民服务中心", "region_code": "330106"}]
    server.http.put("/api/v1/outlet-profiles", json=profile).raise_for_status()
    first, second = {"log_level": "INFO"}, {"log_level": "DEBUG", "outbox": {"rate_per_s": 4.0}}
    out = _fleetctl(server, "config", "set", "global", _file(tmp_path, "g1.json", first),
                    "--comment", "第一版").stdout  # fmt: skip
    assert "global: version 1 stored" in out
    region = _file(tmp_path, "r.toml", "[telemetry]\ninterval_s = 60.0\n")
    assert "region:33: version 1 stored" in _fleetctl(server, "config", "set", "region:33",
                                                      region).stdout  # fmt: skip
    assert "version 2" in _fleetctl(server, "config", "set", "global",
                                    _file(tmp_path, "g2.json", second), "--closed-hours-only",
                                    "--comment", "debug").stdout  # fmt: skip
    # An edit made against version 1, now stale: refused, said so, nothing stored.
    stale = _fleetctl(server, "config", "set", "global", _file(tmp_path, "g3.json", {}),
                      "--if-match", "1", code=1)  # fmt: skip
    assert "changed meanwhile" in stale.stderr
    assert "version 2" in stale.stderr
    assert json.loads(_fleetctl(server, "config", "get", "global").stdout) == second
    old = _fleetctl(server, "config", "get", "global", "--version", "1")
    assert json.loads(old.stdout) == first
    assert "global version 1 by test-admin" in old.stderr
    history = _fleetctl(server, "config", "history", "global").stdout
    assert "第一版" in history
    assert "closed hours only" in history
    diff = json.loads(_fleetctl(server, "config", "diff", "global", "1", "2", "--json").stdout)
    assert [(c["path"], c["op"]) for c in diff] == [
        ("log_level", "changed"), ("outbox", "added"),
    ]  # fmt: skip
    rolled = _fleetctl(server, "config", "rollback", "global", "1", "--comment", "undo").stdout
    assert "global: version 3 stored" in rolled
    assert json.loads(_fleetctl(server, "config", "get", "global").stdout) == first
    # The outlet: each value with the scope that set it, and no report from its agent yet.
    view = json.loads(_fleetctl(server, "config", "show", "o-fc", "--json").stdout)
    assert view["provenance"] == {"log_level": "global", "telemetry.interval_s": "region:33"}
    shown = _fleetctl(server, "config", "show", "o-fc").stdout
    assert "unknown" in shown
    assert "telemetry.interval_s" in shown
    assert "region:33" in shown
    drift = json.loads(_fleetctl(server, "config", "drift", "--json").stdout)
    assert [(row["outlet_id"], row["status"]) for row in drift] == [("o-fc", "unknown")]
    assert "o-fc" in _fleetctl(server, "config", "drift").stdout
    missing = _fleetctl(server, "config", "show", "o-none", code=1)
    assert "o-none not found" in missing.stderr


def test_fleetctl_config_validate_and_refusals(server: FleetServer, tmp_path: Path) -> None:
    profile = [{"outlet_id": "o-fv", "name": "便民服务站", "region_code": "330106"}]
    server.http.put("/api/v1/outlet-profiles", json=profile).raise_for_status()
    windows = {"queue": {"windows": [{"window": "1", "business_types": ["A"], "pad": "p1"}]}}
    _fleetctl(server, "config", "set", "global", _file(tmp_path, "g.json", windows))
    unbind = {"queue": {"windows": [{"window": "1", "business_types": ["A"]}]}}
    dry = _fleetctl(server, "config", "validate", "region:3301", _file(tmp_path, "u.json", unbind))
    assert "1 outlet(s) would change, 1 losing devices" in dry.stdout
    assert "window 1: pad p1 unbound" in dry.stdout
    # Nothing stored by the dry run.
    _fleetctl(server, "config", "get", "region:3301", code=1)
    bad = _file(tmp_path, "bad.json", {"queue": {"voice": {"volume": 300}}})
    refused = _fleetctl(server, "config", "validate", "global", bad, code=1)
    assert "the document is invalid" in refused.stderr
    assert "queue.voice.volume" in refused.stderr
    refused = _fleetctl(server, "config", "set", "global", bad, code=1)
    assert "queue.voice.volume" in refused.stderr
    scope = _fleetctl(server, "config", "set", "region:hz", bad, code=1)
    assert "region code must be 2-12 digits" in scope.stderr
    broken = _fleetctl(server, "config", "set", "global",
                       _file(tmp_path, "broken.json", "{"), code=1)  # fmt: skip
    assert "cannot read" in broken.stderr
    assert [row["version"] for row in server.get("/api/v1/config")] == [1]
