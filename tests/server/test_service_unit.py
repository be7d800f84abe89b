"""The fleet server's systemd unit: ``systemd-analyze verify`` clean, as the agent's is.

No service manager runs here; ``verify`` parses the unit, checks every directive
(hardening included) and that ``ExecStart`` names an executable. What systemd would
apply at run time is not exercised.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import missing

FLEET_SERVER = Path(sys.executable).parent / "fleet-server"
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.timeout(120)


def render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLEET_SERVER), "service", "unit", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        missing("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def verify_all(units: list[Path]) -> subprocess.CompletedProcess[str]:
    if ANALYZE is None:
        missing("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run(
        [ANALYZE, "verify", *map(str, units)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def venv_with_server(root: Path) -> Path:
    """A venv directory whose ``bin/fleet-server`` is this environment's."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "fleet-server").symlink_to(FLEET_SERVER)
    return venv


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found.setdefault(key, []).append(value)
    return found


def test_the_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    venv = venv_with_server(tmp_path)
    rendered = render("--venv", str(venv), "--writable", "/etc/mosquitto/govedge")
    assert rendered.returncode == 0, rendered.stderr
    unit = tmp_path / "govedge-fleet.service"
    unit.write_text(rendered.stdout)
    checked = verify(unit)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == ""
    found = directives(rendered.stdout)
    assert found["ExecStart"] == [f"{venv}/bin/fleet-server run"]
    assert found["StateDirectory"] == ["govedge"]
    assert found["StateDirectoryMode"] == ["0700"]
    assert found["WorkingDirectory"] == ["/var/lib/govedge"]
    assert "GOVEDGE_STATE_DIR=/var/lib/govedge" in found["Environment"]
    assert found["ReadWritePaths"] == ["/etc/mosquitto/govedge"]
    assert found["NoNewPrivileges"] == ["yes"]
    assert found["ProtectSystem"] == ["strict"]
    # The check is real: a unit whose server is not installed is refused.
    (venv / "bin" / "fleet-server").unlink()
    refused = verify(unit)
    assert refused.returncode != 0
    assert "fleet-server" in refused.stderr


def test_the_template_gives_each_worker_its_own_settings(tmp_path: Path) -> None:
    venv = venv_with_server(tmp_path)
    rendered = render("--venv", str(venv), "--template")
    assert rendered.returncode == 0, rendered.stderr
    unit = tmp_path / "govedge-fleet@.service"
    unit.write_text(rendered.stdout)
    checked = verify(unit)
    assert checked.returncode == 0, checked.stderr
    found = directives(rendered.stdout)
    assert found["EnvironmentFile"] == [
        "/etc/govedge/fleet-server.env",
        "-/etc/govedge/fleet-server-%i.env",
    ]
    assert found["Environment"] == [
        "GOVEDGE_SERVER_ID=%H-%i",
        "GOVEDGE_STATE_DIR=/var/lib/govedge",
    ]


def test_the_unit_set_passes_verify_with_the_same_hardening(tmp_path: Path) -> None:
    # The worker template, the target that starts N of them, and the CRL refresh
    # (service + daily timer) that docs/deploy.md installs, verified together.
    venv = venv_with_server(tmp_path)
    out = tmp_path / "units"
    done = subprocess.run(
        [str(FLEET_SERVER), "service", "units", "--out-dir", str(out), "--workers", "3",
         "--venv", str(venv), "--writable", "/etc/mosquitto/govedge"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "govedge-broker-reload.service",
        "govedge-broker-reload.timer",
        "govedge-fleet.target",
        "govedge-fleet@.service",
    ]
    checked = verify_all(sorted(out.iterdir()))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == ""

    worker = directives((out / "govedge-fleet@.service").read_text())
    reload = directives((out / "govedge-broker-reload.service").read_text())
    target = directives((out / "govedge-fleet.target").read_text())
    timer = directives((out / "govedge-broker-reload.timer").read_text())
    assert worker["PartOf"] == ["govedge-fleet.target"]
    assert worker["WantedBy"] == ["govedge-fleet.target"]
    assert target["Wants"] == [
        "govedge-fleet@1.service govedge-fleet@2.service govedge-fleet@3.service "
        "govedge-broker-reload.timer"
    ]
    assert reload["ExecStart"] == [f"{venv}/bin/fleet-server broker-reload"]
    assert reload["Type"] == ["oneshot"]
    assert timer["Unit"] == ["govedge-broker-reload.service"]
    assert timer["OnCalendar"] == ["daily"]
    # The CRL refresh runs as the workers do: same user, state, settings and sandbox.
    shared = (
        "User", "Group", "StateDirectory", "StateDirectoryMode", "UMask", "EnvironmentFile",
        "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp", "PrivateDevices",
        "NoNewPrivileges", "RestrictAddressFamilies", "CapabilityBoundingSet",
        "SystemCallArchitectures", "RestrictNamespaces",
    )  # fmt: skip
    for key in shared:
        assert reload[key][0] == worker[key][0], key
    assert "GOVEDGE_STATE_DIR=/var/lib/govedge" in reload["Environment"]
    # A worker count the target cannot hold is refused, and nothing is written.
    refused = subprocess.run(
        [str(FLEET_SERVER), "service", "units", "--out-dir", str(tmp_path / "no"),
         "--workers", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "workers must be 1 to 64" in refused.stderr
    assert not (tmp_path / "no").exists()


def _units(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLEET_SERVER), "service", "units", "--out-dir", str(out), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_api_and_ingest_workers_as_their_own_units_pass_verify(tmp_path: Path) -> None:
    # docs/deploy.md, "Roles": API workers 1..N with their own settings file, ingest
    # workers named by the loopback port of their probes, all under the one target.
    venv = venv_with_server(tmp_path)
    out = tmp_path / "units"
    done = _units(out, "--api-workers", "2", "--ingest-workers", "3", "--venv", str(venv),
                  "--writable", "/etc/mosquitto/govedge")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "govedge-broker-reload.service",
        "govedge-broker-reload.timer",
        "govedge-fleet-api@.service",
        "govedge-fleet-ingest@.service",
        "govedge-fleet.target",
    ]
    checked = verify_all(sorted(out.iterdir()))
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == ""

    api = directives((out / "govedge-fleet-api@.service").read_text())
    ingest = directives((out / "govedge-fleet-ingest@.service").read_text())
    target = directives((out / "govedge-fleet.target").read_text())
    # The role is on the command line, where no settings file can change it.
    assert api["ExecStart"] == [f"{venv}/bin/fleet-server run --role api"]
    assert ingest["ExecStart"] == [
        f"{venv}/bin/fleet-server run --role ingest --listen 127.0.0.1:%i"
    ]
    assert api["EnvironmentFile"] == [
        "/etc/govedge/fleet-server.env",
        "-/etc/govedge/fleet-server-api-%i.env",
    ]
    assert "GOVEDGE_SERVER_ID=%H-api-%i" in api["Environment"]
    assert "GOVEDGE_SERVER_ID=%H-ingest-%i" in ingest["Environment"]
    assert target["Wants"] == [
        "govedge-fleet-api@1.service govedge-fleet-api@2.service "
        "govedge-fleet-ingest@9101.service govedge-fleet-ingest@9102.service "
        "govedge-fleet-ingest@9103.service govedge-broker-reload.timer"
    ]
    # Both roles stop and start with the target, with the same sandbox.
    for unit in (api, ingest):
        assert unit["PartOf"] == ["govedge-fleet.target"]
        assert unit["WantedBy"] == ["govedge-fleet.target"]
    for key in ("User", "StateDirectory", "ProtectSystem", "ReadWritePaths",
                "CapabilityBoundingSet", "TimeoutStopSec", "KillMode"):  # fmt: skip
        assert api[key] == ingest[key], key

    moved = _units(tmp_path / "moved", "--api-workers", "1", "--ingest-workers", "1",
                   "--ingest-port", "9300", "--venv", str(venv))  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    moved_target = directives((tmp_path / "moved" / "govedge-fleet.target").read_text())
    assert "govedge-fleet-ingest@9300.service" in moved_target["Wants"][0]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--workers", "2", "--api-workers", "1", "--ingest-workers", "1"], "not both"),
        (["--api-workers", "2"], "go together"),
        (["--ingest-workers", "2"], "go together"),
        (["--api-workers", "0", "--ingest-workers", "1"], "api workers must be 1 to 64"),
        (["--api-workers", "1", "--ingest-workers", "65"], "ingest workers must be 1 to 64"),
        (["--api-workers", "1", "--ingest-workers", "2", "--ingest-port", "65535"],
         "ingest ports must lie in 1024-65535"),
    ],
)  # fmt: skip
def test_a_split_the_units_cannot_hold_is_refused(
    tmp_path: Path, args: list[str], why: str
) -> None:
    refused = _units(tmp_path / "no", *args)
    assert refused.returncode == 2
    assert why in refused.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--venv", "relative/venv", "an absolute path"),
        ("--state-dir", "/srv/fleet", "must be /var/lib/NAME"),
        ("--user", "Root Admin", "a system user name"),
        ("--writable", "/etc/x y", "an absolute path"),
    ],
)
def test_a_value_the_unit_cannot_carry_is_refused(option: str, value: str, why: str) -> None:
    refused = render(option, value)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "fleet-server service unit: error:" in refused.stderr
    assert why in refused.stderr
