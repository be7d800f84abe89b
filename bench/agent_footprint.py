"""Agent footprint (issue 17): RSS without and with a camera, idle CPU, startup to online.

A real ``edge-agent run --simulate`` against a real Mosquitto. "Online" is the agent's
birth arriving at a subscriber on the broker, timed from the process spawn. "Without a
camera" runs the same agent through ``_agent_without_camera.py``, which takes the
camera kind's simulator away before the CLI starts (every other simulated device stays),
so the difference is what a camera costs. RSS is the median over the idle window;
idle CPU is the agent's CPU time over that window (``--idle`` seconds, 60 by default),
which starts ``SETTLE_S`` (15 s; 5 s with ``--quick``) after the devices attached: the first seconds after a start
still carry start-up work (rebirths as devices come ready, the camera's first frames),
which a short window taken right after the start counted as idle. Each agent runs with
the environment its checkout's systemd unit gives it (``MALLOC_ARENA_MAX``, ``PYTHONOPTIMIZE``), and this
checkout's agent and the compared one find their data directory as after a first
start (the profile schema memo written, when the checkout has one), as on an outlet PC.
Start-up is also given as the agent's CPU seconds until the birth arrives, which the
load of a shared machine barely changes (the wall time it does).

Before measuring, the bench compiles .pyc files for the venv and this checkout, as an
install does (pip by default, ``uv pip install --compile-bytecode``), and the optimized
ones the unit's PYTHONOPTIMIZE=2 reads (also the standard library's), as the service's
first start leaves them in its bytecode cache: an environment with
``PYTHONDONTWRITEBYTECODE`` would otherwise compile every module at every start.

With the camera, the RSS after it took one still (the technician socket's
self-test) is measured too: an outlet scans documents all day; then the bench waits for
the camera's idle release (its capture process exits after ``idle_release`` s without a
still, 60 by default: docs/devices/document-camera.md) and measures once more.
The agent's own RSS is the goal figure. Its children are counted beside it ("+
children"): the camera's capture process (OpenCV and the frame buffers, while the
camera is held) and any simulator child alive then (pcscd, when the PC/SC simulation
started it); an agent whose camera ran in its own process has no such child. The idle
CPU is given the same way: the agent's own (the goal figure) and with its children's
(living and reaped, ``_procs.tree_cpu_seconds``). RSS is also split as
/proc/PID/smaps_rollup splits it: anonymous memory (the heap,
what the agent allocates) and file-backed pages (shared libraries and extension
modules mapped in).

``--compare DIR`` also runs the agent of another checkout (e.g. ``git archive main``
unpacked in DIR) in the same run, against the same broker and load, before this one:
its figures are the JSON's baselines, so each ratio is this checkout ÷ that one.

    python bench/agent_footprint.py [--quick] [--idle S] [--compare DIR] [--json FILE]
                                    [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psutil

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from _common import BIN, _spawn, machine, median, poll, stop, table, update_doc  # noqa: E402
from _figures import Figure, write_figures  # noqa: E402
from _procs import tree_cpu_seconds  # noqa: E402

from edge_agent.profiles import load_profiles  # noqa: E402
from edge_agent.profiles.schema_memo import MEMO_FILE as SCHEMA_MEMO_FILE  # noqa: E402
from govedge_testbed import Mosquitto  # noqa: E402

GOALS = {"rss_no_camera": 64.0, "rss_camera": 90.0, "idle_cpu": 0.3, "online_s": 2.0}
# From the devices attached to the idle window's start (see the docstring). --quick
# waits less: the shipped simulated devices are ready and reborn within ~2 s of the
# start here, so 5 s still leaves the start-up work out of a quick run's window.
SETTLE_S = 15.0
QUICK_SETTLE_S = 5.0


def unit_environment(checkout: Path) -> dict[str, str]:
    """The environment ``checkout``'s systemd unit gives its agent ({} before the unit
    set any): the allocator and, since the unit has it, PYTHONOPTIMIZE=2.

    Not the unit's bytecode cache directory: ``compile_bytecode`` writes the optimized
    bytecode in place, which is what that cache holds after the agent's first start.
    """
    probe = (
        "import json, edge_agent.service.unit as u;"
        "env = getattr(u, 'SERVICE_ENVIRONMENT', getattr(u, 'AGENT_ENVIRONMENT', {}));"
        "print(json.dumps({k: v for k, v in env.items() if k != 'PYTHONPYCACHEPREFIX'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(checkout)},
        cwd=checkout,  # "-c" puts the working directory first on the path
        capture_output=True,
        text=True,
        check=True,
    )
    environment: dict[str, str] = json.loads(done.stdout)
    return environment


class BirthWatch:
    """Records when each outlet's birth reaches the broker."""

    def __init__(self, port: int) -> None:
        self.births: dict[str, float] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("govedge/v1/+/up/birth", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.births.setdefault(msg.topic.split("/")[2], time.monotonic())

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def one_agent(
    broker: Mosquitto,
    watch: BirthWatch,
    work: Path,
    *,
    camera: bool,
    idle_s: float,
    checkout: Path = ROOT,
    wait_release: bool = True,
    settle_s: float = SETTLE_S,
) -> dict[str, Any]:
    tag = "" if checkout == ROOT else "-compare"
    outlet = f"bench-footprint-{'cam' if camera else 'nocam'}{tag}"
    data_dir = work / outlet
    data_dir.mkdir(mode=0o700, parents=True)
    remember_checked_profiles(checkout, data_dir)
    launcher = (
        [str(BIN / "edge-agent")]
        if camera
        else [sys.executable, str(checkout / "bench" / "_agent_without_camera.py")]
    )
    # Another checkout's packages come first on the path (the venv's are this one's).
    env = unit_environment(checkout) | ({} if checkout == ROOT else {"PYTHONPATH": str(checkout)})
    log = work / f"{outlet}.log"
    t0 = time.monotonic()
    with log.open("ab") as out:
        proc = _spawn(
            [*launcher, "run", "--mqtt-url", broker.url, "--outlet-id", outlet,
             "--data-dir", str(data_dir), "--local-api-port", "0", "--simulate"],
            out,
            env,
        )  # fmt: skip
    try:
        online_cpu_s = cpu_until(proc.pid, lambda: outlet in watch.births, what=f"{outlet} birth")
        online_s = watch.births[outlet] - t0
        poll(lambda: "simulated devices attached" in log.read_text(), timeout=60, what="devices")
        attached = int(re.search(r"(\d+) simulated devices attached", log.read_text()).group(1))  # type: ignore[union-attr]
        time.sleep(settle_s)  # let the start-up work end (the camera opens its source)
        p = psutil.Process(proc.pid)
        c0, t0_tree, t1 = sum(p.cpu_times()[:2]), tree_cpu_seconds(p), time.monotonic()
        rss, family = [], []
        while time.monotonic() - t1 < idle_s:
            rss.append(p.memory_info().rss / 2**20)
            family.append(rss[-1] + children_rss(p))
            time.sleep(1)
        window = time.monotonic() - t1
        cpu = 100 * (sum(p.cpu_times()[:2]) - c0) / window
        cpu_family = 100 * (tree_cpu_seconds(p) - t0_tree) / window
        anon_mib, file_mib = smaps_split(proc.pid)
        modules = subprocess.run(
            ["grep", "-c", "cv2", f"/proc/{proc.pid}/maps"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        captured = rss_after_capture(proc.pid, data_dir) if camera else None
        # The release comes the camera's idle_release (60 s) after the still: not waited
        # for with --quick, which the suite holds to five minutes in all.
        released = rss_after_release(proc.pid, data_dir) if camera and wait_release else None
        return {"captured": captured, "released": released, "camera": camera,
                "checkout": checkout, "online_s": online_s, "attached": attached,
                "rss": median(rss), "family": median(family), "cpu_family": cpu_family,
                "cpu": cpu, "online_cpu_s": online_cpu_s, "cv2_mapped": modules not in ("", "0"), "anon": anon_mib,
                "file": file_mib}  # fmt: skip
    finally:
        stop(proc)


def children_rss(process: psutil.Process) -> float:
    """MiB resident in ``process``'s descendants (the camera's capture process)."""
    total = 0.0
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return total


def rss_five_seconds(pid: int) -> tuple[float, float]:
    """Median RSS over 5 s of the agent, and of the agent with its children."""
    process = psutil.Process(pid)
    alone, family = [], []
    for _ in range(5):
        time.sleep(1)
        alone.append(process.memory_info().rss / 2**20)
        family.append(alone[-1] + children_rss(process))
    return median(alone), median(family)


def _technician(data_dir: Path) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(data_dir / "technician.sock"))
    return httpx.Client(transport=transport, base_url="http://agent", timeout=30)


def _camera(client: httpx.Client) -> dict[str, Any]:
    listed: list[dict[str, Any]] = client.get("/devices").json()["devices"]
    return next(d for d in listed if d["kind"] == "document_camera")


def remember_checked_profiles(checkout: Path, data_dir: Path) -> None:
    """An outlet PC's agent after its first start: the profiles that passed the schema
    are remembered (edge_agent/profiles/schema_memo.py), so jsonschema stays out.

    Written by ``checkout``'s own code, for the compared agent too (nothing for a
    checkout from before the memo, whose agent checks at every start).
    """
    if checkout == ROOT:
        load_profiles(schema_memo=data_dir / SCHEMA_MEMO_FILE, log_problems=False)
        return
    probe = (
        "import sys\n"
        "try:\n"
        "    from edge_agent.profiles.schema_memo import MEMO_FILE\n"
        "except ImportError:\n"
        "    sys.exit(0)\n"
        "from pathlib import Path\n"
        "from edge_agent.profiles import load_profiles\n"
        "load_profiles(schema_memo=Path(sys.argv[1]) / MEMO_FILE, log_problems=False)\n"
    )
    subprocess.run(
        [sys.executable, "-c", probe, str(data_dir)],
        env={**os.environ, "PYTHONPATH": str(checkout)},
        cwd=checkout,
        capture_output=True,
        check=True,
    )


def rss_after_capture(pid: int, data_dir: Path) -> tuple[float, float]:
    """RSS (median of 5 s) after the camera took one still: an outlet scans all day.

    The still is taken by the technician socket's self-test (it keeps only the size).
    """
    with _technician(data_dir) as client:
        camera = _camera(client)["device_id"]
        result = client.post(f"/devices/{camera}/self-test").json()
    if not result.get("ok"):
        raise RuntimeError(f"the camera's self-test failed: {result}")
    return rss_five_seconds(pid)


def rss_after_release(pid: int, data_dir: Path) -> tuple[float, float] | None:
    """RSS (median of 5 s) once the camera's idle release happened (None: an agent that
    holds its camera open, whose health has no ``held``, or no release within 150 s)."""
    deadline = time.monotonic() + 150
    with _technician(data_dir) as client:
        while (held := _camera(client)["health"].get("held")) is not False:
            if held is None or time.monotonic() > deadline:
                return None
            time.sleep(1)
    return rss_five_seconds(pid)


# What of the standard library no agent imports (compile_bytecode).
_STDLIB_UNUSED = r"/(test|tests|idlelib|tkinter|lib2to3|turtledemo|ensurepip|site-packages)/"


def compile_bytecode(checkouts: list[Path]) -> None:
    """.pyc files for the venv and the checkouts, as an install writes them, and the
    optimized ones (``-OO``) for those and the standard library, as a service's first
    start leaves them in its bytecode cache (edge_agent/service/unit.py)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    paths = [sysconfig.get_paths()["purelib"]]
    paths += [
        str(checkout / package)
        for checkout in checkouts
        for package in ("edge_agent", "govedge_wire", "govedge_http")
    ]
    compile_all = [sys.executable, "-m", "compileall", "-q", "-j", "0", "-o", "0", "-o", "2"]
    subprocess.run([*compile_all, *paths], env=env, stdout=subprocess.DEVNULL, check=False)
    # The standard library without what no agent imports: its own test suite, the GUI
    # and 2to3, and the base interpreter's site-packages (the venv has its own). Here
    # that leaves out 12,000 of 13,000 files: compiling them was about 70 s of the
    # first quick run's 120 (an `import` of the agent loads none of them).
    subprocess.run(
        [*compile_all, "-x", _STDLIB_UNUSED, sysconfig.get_paths()["stdlib"]],
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    )


def cpu_until(pid: int, done: Any, *, what: str, timeout: float = 60) -> float:
    """The process's CPU seconds (user + system) when ``done()`` first holds (20 ms steps)."""
    process = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    cpu = 0.0
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        cpu = sum(process.cpu_times()[:2])
        time.sleep(0.02)
    return cpu


def smaps_split(pid: int) -> tuple[float, float]:
    """Anonymous and file-backed resident MiB of ``pid`` (``/proc/PID/smaps_rollup``)."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            fields[name] = int(rest.split()[0]) / 1024
    anon = fields.get("Anonymous", 0.0)
    return anon, fields.get("Rss", 0.0) - anon


def figures(runs: list[dict[str, Any]]) -> list[Figure]:
    """The goal figures (scripts/bench's shape); CPU and startup from the no-camera run.
    With ``--compare`` the other checkout's figures are the baselines."""

    def pick(camera: bool, compare: bool) -> dict[str, Any] | None:
        return next((r for r in runs if r["camera"] == camera
                     and (r["checkout"] != ROOT) == compare), None)  # fmt: skip

    plain, camera = pick(False, False), pick(True, False)
    assert plain is not None and camera is not None
    plain_0, camera_0 = pick(False, True), pick(True, True)

    def base(run: dict[str, Any] | None, key: str) -> float | None:
        return None if run is None else float(run[key])

    def pair(run: dict[str, Any] | None, key: str, i: int) -> float | None:
        return None if run is None or run[key] is None else float(run[key][i])

    figures = [
        Figure("agent.rss_no_camera_mib", plain["rss"], "MiB", base(plain_0, "rss"),
               goal=GOALS["rss_no_camera"], higher=False),
        Figure("agent.rss_camera_mib", camera["rss"], "MiB", base(camera_0, "rss"),
               goal=GOALS["rss_camera"], higher=False),
        Figure("agent.rss_camera_with_children_mib", camera["family"], "MiB",
               base(camera_0, "family"), higher=False),
        Figure("agent.rss_camera_captured_mib", camera["captured"][0], "MiB",
               pair(camera_0, "captured", 0), goal=GOALS["rss_camera"], higher=False),
        Figure("agent.rss_camera_captured_with_children_mib", camera["captured"][1], "MiB",
               pair(camera_0, "captured", 1), higher=False),
        Figure("agent.idle_cpu_pct", plain["cpu"], "% of a core", base(plain_0, "cpu"),
               goal=GOALS["idle_cpu"], higher=False),
        Figure("agent.startup_online_s", plain["online_s"], "s", base(plain_0, "online_s"),
               goal=GOALS["online_s"], higher=False),
        Figure("agent.startup_cpu_s", plain["online_cpu_s"], "CPU s",
               base(plain_0, "online_cpu_s"), higher=False),
    ]  # fmt: skip
    if camera["released"] is not None:  # the camera's capture process exited when idle
        figures.insert(5, Figure(
            "agent.rss_camera_released_with_children_mib", camera["released"][1], "MiB",
            pair(camera_0, "released", 1), goal=GOALS["rss_camera"], higher=False,
        ))  # fmt: skip
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--quick",
        action="store_true",
        help="10 s idle window from 5 s after the start; the camera's release not awaited",
    )
    ap.add_argument("--idle", type=float)
    ap.add_argument("--compare", type=Path, help="also run the agent of this checkout first")
    ap.add_argument("--json", type=Path, help="write the figures there (scripts/bench)")
    ap.add_argument("--write-doc", action="store_true")
    args = ap.parse_args()
    idle_s = args.idle or (10 if args.quick else 60)
    settle_s = QUICK_SETTLE_S if args.quick else SETTLE_S
    print(machine())
    checkouts = [*([args.compare.resolve()] if args.compare else []), ROOT]
    compile_bytecode(checkouts)
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    try:
        with Mosquitto(workdir=work / "broker") as broker:
            watch = BirthWatch(broker.port)
            try:
                runs = [
                    one_agent(
                        broker,
                        watch,
                        work,
                        camera=c,
                        idle_s=idle_s,
                        checkout=checkout,
                        wait_release=not args.quick,
                        settle_s=settle_s,
                    )
                    for checkout in checkouts
                    for c in (False, True)
                ]
            finally:
                watch.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()[0]
    env_note = "; ".join(
        f"{'this checkout' if c == ROOT else c.name}: "
        + (" ".join(f"{k}={v}" for k, v in unit_environment(c).items()) or "none")
        for c in checkouts
    )
    rows = []
    for r in runs:
        goal = GOALS["rss_camera" if r["camera"] else "rss_no_camera"]
        rows.append([
            ("with camera" if r["camera"] else "without camera")
            + ("" if r["checkout"] == ROOT else f" ({r['checkout'].name})"), r["attached"],
            "yes" if r["cv2_mapped"] else "no", r["rss"], f"{r['rss'] / goal:.2f} of {goal:.0f}",
            f"{r['family']:.1f}", f"{r['anon']:.1f} / {r['file']:.1f}",
            "–" if r["captured"] is None else "{:.1f} / {:.1f}".format(*r["captured"]),
            "–" if r["released"] is None else "{:.1f} / {:.1f}".format(*r["released"]),
            r["cpu"], f"{r['cpu_family']:.2f}", f"{r['cpu'] / GOALS['idle_cpu']:.2f} of 0.3",
            r["online_s"],
            f"{r['online_s'] / GOALS['online_s']:.2f} of 2", r["online_cpu_s"],
        ])  # fmt: skip
    text = (
        f"### Results ({datetime.now(UTC):%Y-%m-%d}; {machine()})\n\n"
        f"Idle window {idle_s:.0f} s, from {settle_s:.0f} s after the devices attached. "
        f"Agents run with their unit's environment ({env_note}). Load average {load_start:.1f} at the start, "
        f"{load_end:.1f} at the end (shared machine: CPU and startup are pessimistic).\n\n"
        + table(
            ["agent", "devices", "OpenCV in the agent", "RSS MiB", "RSS / goal",
             "+ children MiB", "anon / file MiB", "after a still MiB (+ children)",
             "after the idle release MiB (+ children)", "idle CPU %", "+ children %",
             "CPU / goal", "spawn → online s", "online / goal", "CPU s to online"],
            rows,
        )
    )  # fmt: skip
    print(text)
    write_figures(args.json, figures(runs))
    if args.write_doc:
        update_doc("agent_footprint", text)


if __name__ == "__main__":
    main()
