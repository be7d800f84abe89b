"""``fleetctl rollouts create`` refuses bad input before it sends anything: wave sizes
that are neither a count nor a share, thresholds outside 0-1, a missing release. Run as
the real command; the server address points nowhere, so an accepted input would fail
to connect instead (exit 2) — these must fail earlier, with click's usage error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet_server.fleetctl_rollouts import parse_waves

BIN = Path(sys.executable).parent
NOWHERE = "http://127.0.0.1:9"


def _fleetctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "fleetctl"), "--server", NOWHERE, "--timeout", "2", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_default_waves_parse_to_counts_and_shares() -> None:
    assert parse_waves("1,1%,10%,50%,100%") == [1, "1%", "10%", "50%", "100%"]
    assert parse_waves(" 5 , 2.5% ") == [5, "2.5%"]


@pytest.mark.parametrize(
    ("waves", "says"),
    [
        ("1,0%", "a share must be above 0% and at most 100%"),
        ("1,150%", "a share must be above 0% and at most 100%"),
        ("1,x%", "a share must be above 0% and at most 100%"),
        ("0,10%", "give a count of at least 1 or a share like 10%"),
        ("-3", "give a count of at least 1 or a share like 10%"),
    ],
)
def test_bad_waves_are_refused_before_anything_is_sent(waves: str, says: str) -> None:
    result = _fleetctl("rollouts", "create", "--release", "1.1.0", "--waves", waves)
    assert result.returncode == 2
    assert says in result.stderr
    assert "cannot reach" not in result.stderr


def test_thresholds_outside_zero_to_one_and_a_missing_release_are_refused() -> None:
    result = _fleetctl("rollouts", "create", "--release", "1.1.0", "--failure-threshold", "1.5")
    assert result.returncode == 2
    assert "--failure-threshold" in result.stderr
    result = _fleetctl("rollouts", "create", "--region", "3301")
    assert result.returncode == 2
    assert "--release" in result.stderr


def test_an_unreachable_server_is_one_clear_line() -> None:
    result = _fleetctl("rollouts", "list")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot reach fleet server at {NOWHERE}")
