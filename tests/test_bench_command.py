"""``scripts/bench``: the whole benchmark suite in one command (issue 17).

Real processes: the command runs the cheapest real bench (``web_scale`` on SQLite with
100 outlets, a real broker and ``fleet-server run``) and records into a copy of
docs/performance.md. Nothing here asserts a speed; the figures' values are the bench's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from govedge_testbed import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
TINY_WEB = "web_scale=--outlets 20 --runs 1 --no-postgres"
FIGURE_FIELDS = {"value", "unit", "baseline", "ratio", "goal", "goal_on", "higher", "met", "bench"}
BEGIN, END = "<!-- bench:summary:begin -->", "<!-- bench:summary:end -->"


def bench(*args: str, max_load: str = "1000") -> subprocess.CompletedProcess[str]:
    """The command, its figures recorded only when the test says (``--doc`` copy)."""
    env = {**os.environ, "GOVEDGE_BENCH_MAX_LOAD": max_load}
    return subprocess.run(
        [str(ROOT / "scripts" / "bench"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=110,
        check=False,
    )


@pytest.fixture
def doc(tmp_path: Path) -> Path:
    """A copy of the real docs/performance.md for the command to record into."""
    copy = tmp_path / "performance.md"
    copy.write_text((ROOT / "docs" / "performance.md").read_text())
    return copy


def outside_summary(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    return head + rest.partition(END)[2]


def test_figures_table_and_summary_and_a_failing_bench_fails_the_command(
    broker: Mosquitto, tmp_path: Path, doc: Path
) -> None:
    # One run (each bench is a real server start): campaign is given a flag it refuses,
    # web_scale runs at its tiniest. The failure makes the exit 1; web_scale still reports.
    before = doc.read_text()
    out = tmp_path / "figures.json"
    run = bench("--only", "campaign,web_scale", "--quick", "--args", "campaign=--no-such-flag",
                "--args", TINY_WEB, "--json", str(out),
                "--write-doc", "--doc", str(doc))  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    failed = document["benches"]["campaign"]
    assert failed["status"] == "failed"
    assert "exit 2" in failed["note"]
    assert "--no-such-flag" in failed["note"]  # argparse's own words, from the bench's log
    assert not any(key.startswith("campaign.") for key in document["figures"])
    assert document["benches"]["web_scale"]["status"] == "ok"
    assert document["quick"] is True
    assert set(document["load_average"]) == {"start", "end"}
    figures = document["figures"]
    list_p95 = figures["web_scale.sqlite.outlet_list_first_page.p95"]
    assert set(list_p95) == FIGURE_FIELDS
    assert list_p95["unit"] == "ms"
    assert list_p95["value"] > 0
    assert list_p95["higher"] is False
    # The goal is stated for 10,000 outlets, so a 20-outlet run judges nothing.
    assert list_p95["goal"] is None
    assert list_p95["met"] is None
    assert "web_scale.sqlite.fleet_overview.p95" in figures  # keys are slugs, one per read
    assert "| figure | value | unit | baseline | ratio | goal | met |" in run.stdout
    assert "| web_scale.sqlite.map_data_points.p95 |" in run.stdout
    assert "| campaign | failed: exit 2" in run.stdout
    recorded = doc.read_text()
    section = recorded.partition(BEGIN)[2].partition(END)[0]
    assert "### Summary (--quick" in section
    assert "Run: campaign, web_scale" in section
    assert "Load average" in section
    assert "| web_scale.sqlite.fleet_overview.p95 |" in section
    assert "| campaign | failed: exit 2" in section
    assert str(tmp_path) not in section  # no path of this machine in the doc
    assert outside_summary(recorded).strip() == outside_summary(before).strip()


def test_a_busy_machine_is_not_recorded_unless_forced(tmp_path: Path, doc: Path) -> None:
    # The cheapest real entry: the ingest bench refusing a flag ends in a second or two,
    # and its failure row is what gets recorded (or not).
    before = doc.read_text()
    entry = "fleet_ingest_1w_50k"
    args = ["--only", entry, "--quick", "--args", f"{entry}=--no-such-flag",
            "--write-doc", "--doc", str(doc)]  # fmt: skip
    refused = bench(*args, max_load="0")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not recorded" in refused.stdout
    assert "above 0" in refused.stdout
    assert doc.read_text() == before
    assert "| fleet_ingest_1w_50k | failed: exit 2" in refused.stdout

    forced = bench(*args, "--force", max_load="0")
    assert forced.returncode == 1, forced.stdout + forced.stderr
    section = doc.read_text().partition(BEGIN)[2].partition(END)[0]
    assert "**busy machine**" in section
    assert "| fleet_ingest_1w_50k | failed: exit 2" in section


def test_unknown_bench_names_are_refused() -> None:
    run = bench("--only", "web_scale,nonesuch", "--no-doc")
    assert run.returncode == 2
    assert "unknown bench nonesuch" in run.stderr
    assert "web_scale" not in run.stdout  # nothing ran


def load_suite() -> Any:
    """bench/suite.py as a module (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_suite", ROOT / "bench" / "suite.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_suite"] = module  # dataclasses look their module up there
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module


def script(path: Path, body: str) -> Path:
    path.write_text("import argparse, sys, time\n" + body)
    return path


def test_benches_without_figures_or_past_their_limit_are_reported_so(tmp_path: Path) -> None:
    # Real child processes: tiny stand-ins for a bench that predates --json, one that
    # takes --json but writes nothing, and one that hangs. No broker or server needed.
    suite = load_suite()
    legacy = script(tmp_path / "legacy.py", "ap = argparse.ArgumentParser()\n"
                    "ap.add_argument('--quick', action='store_true')\nap.parse_args()\n"
                    "print('| its own table |')\n")  # fmt: skip
    silent = script(tmp_path / "silent.py", "ap = argparse.ArgumentParser()\n"
                    "ap.add_argument('--quick', action='store_true')\n"
                    'ap.add_argument("--json")\nap.parse_args()\n')  # fmt: skip
    hangs = script(tmp_path / "hangs.py", "print('starting', flush=True)\ntime.sleep(60)\n")
    outcomes = [
        suite.run_one(suite.Bench("legacy", str(legacy)), quick=True, extra=[], work=tmp_path),
        suite.run_one(suite.Bench("silent", str(silent)), quick=True, extra=[], work=tmp_path),
        suite.run_one(
            suite.Bench("hangs", str(hangs), quick=(), timeout_quick=2),
            quick=True,
            extra=[],
            work=tmp_path,
        ),
    ]
    assert [(o.status, o.note) for o in outcomes[:2]] == [
        ("no figures", "no figures (bench has no --json yet)"),
        ("no figures", "no figures (bench has no --json yet)"),
    ]
    assert outcomes[2].status == "failed"
    assert outcomes[2].note.startswith("timed out after 2 s: starting")
    table = suite.summary_table(outcomes)
    assert "| legacy | no figures (bench has no --json yet) |" in table
    assert "| hangs | failed: timed out after 2 s: starting |" in table


def test_a_bench_ended_by_a_signal_leaves_nothing_running(tmp_path: Path) -> None:
    # A stand-in that starts a child (as a bench starts its broker) and is then ended
    # by SIGTERM, so none of its own cleanup runs.
    suite = load_suite()
    pid_file = tmp_path / "child.pid"
    killed = script(tmp_path / "killed.py", "import os, signal, subprocess\n"
                    "child = subprocess.Popen(['sleep', '60'])\n"
                    f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
                    "os.kill(os.getpid(), signal.SIGTERM)\n")  # fmt: skip
    outcome = suite.run_one(
        suite.Bench("killed", str(killed), quick=()), quick=True, extra=[], work=tmp_path
    )
    assert outcome.status == "failed"
    assert outcome.note.startswith("exit -15")
    child = int(pid_file.read_text())
    assert gone(child)


def gone(pid: int, *, within: float = 5.0) -> bool:
    """Whether ``pid`` has ended (a zombie waiting for init to reap it counts)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_an_entry_left_out_of_quick_runs_when_named(tmp_path: Path) -> None:
    # --quick is held to five minutes: the 50,000-outlet entry, the hall display's calls
    # and the pages drawn in Chromium are "not measured" there with their reason, and run
    # when --only names them.
    suite = load_suite()
    assert [b.name for b in suite.SUITE if b.skip_quick] == [
        "fleet_ingest_1w_50k", "hall_call", "web_draw"
    ]  # fmt: skip
    figures = script(tmp_path / "figures.py", "ap = argparse.ArgumentParser()\n"
                     "ap.add_argument('--quick', action='store_true')\n"
                     'ap.add_argument("--json")\na = ap.parse_args()\n'
                     "open(a.json, 'w').write('{\"figures\": []}')\n")  # fmt: skip
    entry = suite.Bench("big", str(figures), skip_quick="takes long")
    left_out = suite.run_one(entry, quick=True, extra=[], work=tmp_path)
    assert (left_out.status, left_out.note) == ("not measured", "takes long")
    named = suite.run_one(entry, quick=True, extra=[], work=tmp_path, asked=True)
    assert named.status == "ok", named.note
    full = suite.run_one(entry, quick=False, extra=[], work=tmp_path)
    assert full.status == "ok", full.note
