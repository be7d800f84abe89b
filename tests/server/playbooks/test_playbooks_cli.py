"""``fleetctl playbooks`` against a real ``fleet-server run`` (without the venv on PATH),
and a run cut short by the server going away."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.tables import Alert
from govedge_testbed import Mosquitto
from tests.server.helpers import FleetServer, poll
from tests.server.playbooks.kit import CLOSED, DATA, need_ansible

BIN = Path(__file__).resolve().parents[3] / ".venv" / "bin"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def _outlet(server: FleetServer, outlet_id: str, folder: Path, **host_vars: object) -> None:
    folder.mkdir(parents=True)
    profile = {"outlet_id": outlet_id, "region_code": "410402", "opening_hours": CLOSED}
    server.http.put("/api/v1/outlet-profiles", json=[profile]).raise_for_status()
    access = {"host_vars": {"ansible_connection": "local", "outlet_dir": str(folder),
                            "ansible_python_interpreter": sys.executable, **host_vars}}  # fmt: skip
    server.http.put(f"/api/v1/outlets/{outlet_id}/access", json=access).raise_for_status()


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[1]), fields[19]) if fields[0] not in ("Z", "X") else None


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root``: pid → start time (so a reused pid is not it)."""
    table = {int(p.name): _stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found: dict[int, str] = {}
    parents = {root}
    while parents:
        below = {pid: st for pid, st in table.items() if st and st[0] in parents}
        below = {pid: st for pid, st in below.items() if pid not in found}
        found.update({pid: st[1] for pid, st in below.items() if st})
        parents = set(below)
    return found


def _sleeping_run(server: int) -> dict[int, str] | None:
    """Once slow.yml's ``sleep 60`` runs: the server's child that runs ansible-runner
    and every process below it (pid → start time)."""
    tree = _descendants(server)
    for pid in tree:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\x0060"):
                child = pid
                while (up := _stat(child)) is not None and up[0] != server:
                    child = up[0]
                return {child: tree[child], **_descendants(child)} if child in tree else None
    return None


def _cmdlines(pids: list[int]) -> list[str]:
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def _why_alive(pids: list[int]) -> str:
    """What each process still alive is doing (state, parent, kernel wait, and the
    Python stack of a Python one), for the failure message of a hang."""
    spy = Path(sys.executable).parent / "py-spy"
    lines = []
    for pid, cmdline in zip(pids, _cmdlines(pids), strict=False):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            state = re.search(r"^State:\s*(.+)$", status, re.M)
            ppid = re.search(r"^PPid:\s*(\d+)$", status, re.M)
            wchan = Path(f"/proc/{pid}/wchan").read_text()
            lines.append(f"{pid} {cmdline!r} state={state and state.group(1)} "
                         f"ppid={ppid and ppid.group(1)} wchan={wchan}")  # fmt: skip
        if "python" in cmdline and spy.exists():
            dump = subprocess.run([str(spy), "dump", "--pid", str(pid)], capture_output=True,
                                  text=True, timeout=30, check=False)  # fmt: skip
            lines.append(dump.stdout + dump.stderr)
    return "the run's processes did not end:\n" + "\n".join(lines)


def _alive(processes: dict[int, str]) -> list[int]:
    return [pid for pid, started in processes.items() if (_stat(pid) or (0, ""))[1] == started]


def _bar(stdout: str, outlet: str) -> str | None:
    """What the outlet's progress bar line says after the bar (None: no bar)."""
    found = re.search(rf"^{re.escape(outlet)} +[━╸╺]+ +(.+?) *$", stdout, re.M)
    return " ".join(found.group(1).split()) if found else None


def _alert(server: FleetServer, outlet: str, rule: str, *, state: str) -> None:
    """An alert row as the alert engine leaves it (open, or resolved)."""
    engine = make_engine(server.database_url)
    now = datetime.now(UTC)
    with make_sessionmaker(engine)() as session, session.begin():
        session.add(Alert(
            rule=rule, outlet_id=outlet, device_id="", severity="warning", state=state,
            summary=rule, value=None, detail={}, opened_at=now, updated_at=now,
            resolved_at=now if state == "resolved" else None,
        ))  # fmt: skip
    engine.dispose()


def test_fleetctl_runs_and_watches_a_playbook(broker: Mosquitto, tmp_path: Path) -> None:
    need_ansible()
    server = FleetServer(
        mqtt_url=broker.url, database_url=f"sqlite:///{tmp_path / 'fleet.db'}", workdir=tmp_path,
        GOVEDGE_PKI_DIR=str(tmp_path / "pki"), GOVEDGE_PII_KEY_DIR=str(tmp_path / "pii"),
        GOVEDGE_PLAYBOOKS_DIR=str(DATA), GOVEDGE_PLAYBOOK_RUNS_DIR=str(tmp_path / "runs"),
        GOVEDGE_PLAYBOOK_ALLOW_LOCAL="true",  # the outlets are this machine
        PATH="/usr/bin:/bin",  # as under systemd: ansible-playbook is found beside python
        UPSTREAM_API_TOKEN="tok-secret-xyz",  # a secret in the server's environment
    )  # fmt: skip
    server.start()
    try:
        _outlet(server, "o-cli-a", tmp_path / "a")
        _outlet(server, "o-cli-b", tmp_path / "b", fail_here=True)
        ctl = (str(BIN / "fleetctl"), "--server", server.url, "--token", server.token)
        listed = _run(*ctl, "playbooks", "list")
        assert listed.returncode == 0, listed.stderr
        assert "mark.yml" in listed.stdout
        assert "marker_text*:str" in listed.stdout
        ran = _run(*ctl, "playbooks", "run", "mark.yml", "--region", "4104",
                   "-e", "marker_text=hello", "--watch")  # fmt: skip
        assert ran.returncode == 1, ran.stderr  # one outlet failed
        assert "run 1 started: 2 outlets" in ran.stdout
        assert "-- Write the marker" in ran.stdout
        lines = ran.stdout.splitlines()
        assert any(line.split()[:2] == ["o-cli-a", "ok"] for line in lines)
        assert any(line.split()[:2] == ["o-cli-b", "failed"] for line in lines)
        # A progress bar per outlet, ending with its final result and counts.
        # (the counts are Ansible's closing stats for each host)
        done_a = "changed ok=3 changed=1 failed=0 unreachable=0 skipped=2"
        assert _bar(ran.stdout, "o-cli-a") == done_a, ran.stdout
        done_b = "failed ok=1 changed=0 failed=1 unreachable=0 skipped=1"
        assert _bar(ran.stdout, "o-cli-b") == done_b, ran.stdout
        assert (tmp_path / "a" / "marker.txt").read_text() == "hello\n"
        # The run's artifacts are kept, without the server's secrets.
        kept = [p for p in (tmp_path / "runs" / "1").rglob("*") if p.is_file()]
        assert any(p.name == "job_events" or p.parent.name == "job_events" for p in kept)
        assert not [p for p in kept if "tok-secret-xyz" in p.read_text(errors="replace")]
        shown = _run(*ctl, "playbooks", "show", "1")
        assert "run 1 mark.yml: failed" in shown.stdout
        assert "o-cli-a" in shown.stdout
        assert "changed" in shown.stdout
        runs = _run(*ctl, "playbooks", "runs")
        assert "mark.yml" in runs.stdout
        assert "failed" in runs.stdout
        refused = _run(*ctl, "playbooks", "run", "mark.yml", "--outlet", "o-cli-a")
        assert refused.returncode != 0
        assert "marker_text: required" in refused.stderr

        # A long run, then the server is killed: the next start marks it interrupted.
        slow = _run(*ctl, "playbooks", "run", "slow.yml", "--outlet", "o-cli-a")
        assert "run 2 started" in slow.stdout, slow.stderr
        poll(lambda: server.get("/api/v1/playbook-runs/2")["status"] == "running",
             timeout=30, what="run 2 running")  # fmt: skip
        assert server.proc is not None
        # the run's processes: ansible-runner's child, ansible-playbook, `sleep 60`
        pid = server.proc.pid
        running = poll(lambda: _sleeping_run(pid), timeout=30, what="the run's processes")
        server.proc.kill()
        server.proc.wait()
        # none of them goes on without the server (a generous bound: a hang detector)
        deadline = time.monotonic() + 30
        while _alive(running) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(running), _why_alive(_alive(running))
        server.start()
        run = server.get("/api/v1/playbook-runs/2")
        assert run["status"] == "interrupted"
        assert run["error"] == (
            "the fleet server stopped while this run was in progress; the hosts' state is unknown"
        )
        assert [(h["outlet_id"], h["status"]) for h in run["hosts"]] == [("o-cli-a", "interrupted")]
        cancel = _run(*ctl, "playbooks", "cancel", "2")
        assert cancel.returncode != 0
        assert "interrupted" in cancel.stderr

        # Outlets with an open alert of a rule: only o-cli-a has one (o-cli-b's is over).
        _alert(server, "o-cli-a", "printer_paper", state="open")
        _alert(server, "o-cli-b", "printer_paper", state="resolved")
        fixed = _run(*ctl, "playbooks", "run", "mark.yml", "--alert-rule", "printer_paper",
                     "--alert-rule", "disk_almost_full", "-e", "marker_text=paper", "--check",
                     "--watch")  # fmt: skip
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert "run 3 started: 1 outlets" in fixed.stdout
        assert _bar(fixed.stdout, "o-cli-a").startswith("changed ")
        assert _bar(fixed.stdout, "o-cli-b") is None
        none = _run(*ctl, "playbooks", "run", "mark.yml", "--alert-rule", "clock_skew",
                    "-e", "marker_text=x")  # fmt: skip
        assert none.returncode != 0
        assert "no outlet has an open alert of clock_skew" in none.stderr

        # The spelling: `fleetctl playbook run NAME --outlets a,b [--check]`,
        # watched by default; the region form chooses the same two outlets.
        alias = _run(*ctl, "playbook", "run", "mark", "--outlets", "o-cli-a,o-cli-b",
                     "-e", "marker_text=alias", "--check")  # fmt: skip
        assert alias.returncode == 1, alias.stdout + alias.stderr  # o-cli-b fails, as above
        assert "run 4 started: 2 outlets" in alias.stdout
        assert _bar(alias.stdout, "o-cli-a").startswith("changed ")
        assert _bar(alias.stdout, "o-cli-b").startswith("failed ")
        assert server.get("/api/v1/playbook-runs/4")["check"] is True
        assert (tmp_path / "a" / "marker.txt").read_text() == "hello\n"  # check: unchanged
        region = _run(*ctl, "playbook", "run", "mark.yml", "--region", "4104",
                      "-e", "marker_text=r", "--check", "--no-watch")  # fmt: skip
        assert region.returncode == 0, region.stderr
        assert "run 5 started: 2 outlets" in region.stdout
        assert _bar(region.stdout, "o-cli-a") is None  # not watched
    finally:
        server.stop()
