"""``fleet-server releases add`` and ``fleetctl releases`` against a real ``fleet-server run``."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from govedge_testbed import Mosquitto
from tests.server.helpers import FleetServer
from tests.server.releases.kit import wheel_bytes, wheel_name

BIN = Path(__file__).resolve().parents[3] / ".venv" / "bin"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, env=env)


def test_releases_through_both_command_lines(broker: Mosquitto, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    releases = tmp_path / "releases"
    server = FleetServer(
        mqtt_url=broker.url, database_url=database, workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"), GOVEDGE_PII_KEY_DIR=str(tmp_path / "pii"),
        GOVEDGE_RELEASES_DIR=str(releases),
    )  # fmt: skip
    server.start()
    try:
        ctl = (str(BIN / "fleetctl"), "--server", server.url, "--token", server.token)
        # fleetctl streams the file to the API.
        first = tmp_path / wheel_name("1.0.0")
        first.write_bytes(wheel_bytes("1.0.0"))
        added = _run(*ctl, "releases", "add", str(first), "--version", "1.0.0", "--notes", "first")
        assert added.returncode == 0, added.stderr
        assert "release 1.0.0 stored" in added.stdout
        assert hashlib.sha256(first.read_bytes()).hexdigest() in added.stdout
        again = _run(*ctl, "releases", "add", str(first), "--version", "1.0.0")
        assert "already stored" in again.stdout
        # fleet-server stores directly, with the server's settings.
        second = tmp_path / wheel_name("1.1.0")
        second.write_bytes(wheel_bytes("1.1.0"))
        direct = _run(
            str(BIN / "fleet-server"), "releases", "add", str(second), "--version", "1.1.0",
            "--database-url", database, "--releases-dir", str(releases),
            "--signing-key", server.env["GOVEDGE_CONFIG_SIGNING_KEY"],
        )  # fmt: skip
        assert direct.returncode == 0, direct.stderr
        assert "release 1.1.0 stored" in direct.stdout
        garbage = tmp_path / wheel_name("3.0")
        garbage.write_bytes(b"not a wheel")
        direct_refused = _run(
            str(BIN / "fleet-server"), "releases", "add", str(garbage), "--version", "3.0",
            "--database-url", database, "--releases-dir", str(releases),
            "--signing-key", server.env["GOVEDGE_CONFIG_SIGNING_KEY"],
        )  # fmt: skip
        assert direct_refused.returncode == 1
        assert "not a readable zip; nothing stored" in direct_refused.stderr
        assert sorted(p.name for p in releases.rglob("*.whl")) == [
            wheel_name("1.0.0"),
            wheel_name("1.1.0"),
        ]
        refused = _run(*ctl, "releases", "add", str(second), "--version", "2.0")
        assert refused.returncode != 0
        assert "422" in refused.stderr
        listed = json.loads(_run(*ctl, "releases", "list", "--json").stdout)
        assert [row["version"] for row in listed] == ["1.1.0", "1.0.0"]
        shown = json.loads(_run(*ctl, "releases", "show", "1.1.0", "--json").stdout)
        assert shown["manifest"]["sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
        assert shown["created_by"] == "cli"
        bad = _run(*ctl, "releases", "bad", "1.0.0", "--reason", "printer crash")
        assert bad.returncode == 0, bad.stderr
        assert "marked bad" in bad.stdout
        table = _run(*ctl, "releases", "list").stdout
        assert "bad" in table
        assert "1.1.0" in table
    finally:
        assert server.stop() == 0, server.stderr()
