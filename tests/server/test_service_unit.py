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
    assert found["StateDirectory"] == ["govedge-fleet"]
    assert found["StateDirectoryMode"] == ["0700"]
    assert found["WorkingDirectory"] == ["/var/lib/govedge-fleet"]
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
    assert found["Environment"] == ["GOVEDGE_SERVER_ID=%H-%i"]


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
