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
