"""The whole benchmark suite in one command (issue 17): ``scripts/bench``.

Runs each benchmark as its own process with ``--json TMPFILE`` (and ``--quick`` when
asked), merges their figures into one JSON document keyed by figure, prints one table
and records it in docs/performance.md between the ``bench:summary`` markers.

    scripts/bench [--quick] [--json FILE] [--only NAME,...] [--args NAME=ARGS ...]
                  [--write-doc | --no-doc] [--force] [--doc PATH]

A benchmark that fails is a row with its error and makes the command exit 1 once the
others have run. Figures are recorded in the doc only from a quiet machine: when the
1-minute load average (at the start or the end) exceeds the core count, or
``GOVEDGE_BENCH_MAX_LOAD`` when set, the doc is left alone unless ``--force``, which
records the run marked "busy machine".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PERF_DOC, ROOT, machine, table, update_doc

SECTION = "summary"
ERROR_LINE = re.compile(r"^\w*(Error|Exception)\b|Error: ")
ABSOLUTE_PATH = re.compile(r"/(?:[\w.+-]+/)+([\w.+-]+)")
NO_JSON = "no figures (bench has no --json yet)"


@dataclass(frozen=True)
class Bench:
    """One entry of the suite: a script and its arguments for a full and a quick run."""

    name: str
    script: str  # a file of bench/ (or an absolute path)
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ("--quick",)
    # A flag the script must offer for this entry to run (a mode others are adding).
    needs: str | None = None
    skip_quick: str | None = None  # why the entry is not run with --quick
    timeout_full: float = 1800
    timeout_quick: float = 150


SUITE: tuple[Bench, ...] = (
    # What --quick means is each bench's own (the ingest's is growing towards a short
    # ladder over the full 10,000 outlets): its limit leaves room for that.
    Bench("fleet_ingest_1w_10k", "fleet_ingest.py", ("--outlets", "10000", "--no-kill"),
          ("--quick", "--no-kill"), timeout_quick=240),
    # Workers: 1 (the baseline) and 2 in one run; the full run says how far 4 go.
    Bench("fleet_ingest_2w_10k", "fleet_ingest.py", ("--outlets", "10000", "--no-kill", "--workers", "1,2,4"),
          ("--quick", "--no-kill", "--workers", "2"), needs="--workers", timeout_quick=420),
    # 50,000 connections (past one Mosquitto's descriptors here: edge brokers bridged),
    # births, a broker restart and the real 30 s cadence held; --quick holds 45 s.
    # Not in --quick: connecting, birthing and holding 50,000 outlets takes over two
    # minutes by nature, and --quick is held to five minutes in all.
    Bench("fleet_ingest_1w_50k", "fleet_ingest.py", ("--outlets", "50000", "--rates", "1667", "--no-kill"),
          ("--quick", "--outlets", "50000", "--rates", "1667", "--no-kill"), timeout_quick=600,
          skip_quick="50,000 outlets take over 2 minutes by nature: run without --quick, or name it in --only"),
    Bench("outbox_drain", "outbox_drain.py", timeout_quick=240),
    # The alert pass's cost in the server process, which the clerk's latency shares.
    Bench("alert_pass", "alert_pass.py"),
    # The ingest worker's own CPU per telemetry message, in-process (no broker).
    Bench("ingest_worker", "ingest_worker.py"),
    Bench("agent_footprint", "agent_footprint.py"),
    Bench("agent_devices", "agent_devices.py"),
    # Call → shown on the hall display in Chromium (issue 12): the agent's start and
    # each announcement's length make even --quick over a minute.
    Bench("hall_call", "hall_call.py", timeout_full=600,
          skip_quick="the hall display's calls take over a minute: run without --quick, or name it in --only"),
    Bench("web_scale", "web_scale.py"),
    # The map and the outlet list drawn in Chromium, logged in (issue 16): its --quick
    # (1,000 outlets, 8 pages) takes over a minute on a loaded machine.
    Bench("web_draw", "web_draw.py", timeout_quick=240,
          skip_quick="Chromium's pages take over a minute: run without --quick, or name it in --only"),
    Bench("campaign", "campaign.py"),
    Bench("config_rollout", "config_rollout.py"),
)  # fmt: skip


@dataclass
class Outcome:
    """What one entry gave: its figures, or why it has none."""

    bench: Bench
    status: str  # "ok", "failed", "not measured", "no figures"
    note: str = ""
    seconds: float = 0.0
    load_average: float | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)


def offers(script: Path, flag: str) -> bool:
    """Whether the script declares ``flag`` (modes land on other branches). Read from its
    source: asking ``--help`` would import the bench's whole stack, seconds under load."""
    return f'"{flag}"' in script.read_text()


def tail(path: Path, lines: int = 3) -> str:
    """The last lines of a bench's output, on one line that fits a table cell."""
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    shown = text[-lines:]
    # A server's shutdown lines can follow the error that ended the bench: name it first.
    errors = [line for line in text if ERROR_LINE.search(line)]
    if errors and errors[-1] not in shown:
        shown = [errors[-1], *shown]
    joined = " / ".join(line.strip() for line in shown) or "no output"
    # Paths of this machine (temporary dirs, the checkout) say nothing in the doc.
    joined = ABSOLUTE_PATH.sub(r"\1", joined)
    return joined.replace("|", "/")[-400:]


def run_one(
    bench: Bench, *, quick: bool, extra: list[str], work: Path, asked: bool = False
) -> Outcome:
    """Run one entry; ``asked``: named with ``--only`` (then run even if ``skip_quick``)."""
    script = ROOT / "bench" / bench.script
    if quick and bench.skip_quick and not asked:
        return Outcome(bench, "not measured", bench.skip_quick)
    if bench.needs and not offers(script, bench.needs):
        return Outcome(bench, "not measured", f"bench/{bench.script} has no {bench.needs} mode yet")
    out, log = work / f"{bench.name}.json", work / f"{bench.name}.log"
    argv = [sys.executable, str(script), *(bench.quick if quick else bench.full), *extra]
    # A bench without --json yet still runs (its own table is in the log) and is
    # reported as having no figures: its argparse would refuse the flag.
    if offers(script, "--json"):
        argv += ["--json", str(out)]
    print(f"==> {bench.name}: {shlex.join(argv[1:])}", flush=True)
    t0 = time.monotonic()
    with log.open("wb") as sink:
        # Its own session, so a timeout ends the bench and the broker/servers it started.
        proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=bench.timeout_quick if quick else bench.timeout_full)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    seconds = time.monotonic() - t0
    if code != 0:
        # A bench ended by a signal runs no cleanup: end what it left (its broker, its
        # servers), all in its session's process group and nothing else.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if code is None:
        return Outcome(bench, "failed", f"timed out after {seconds:.0f} s: {tail(log)}", seconds)
    if code != 0:
        return Outcome(bench, "failed", f"exit {code}: {tail(log)}", seconds)
    if not out.exists():
        return Outcome(bench, "no figures", NO_JSON, seconds)
    try:
        document = json.loads(out.read_text())
        figures = list(document["figures"])
    except (ValueError, KeyError, TypeError) as exc:
        return Outcome(bench, "failed", f"unreadable --json output: {exc}", seconds)
    return Outcome(bench, "ok", "", seconds, document.get("load_average"), figures)


def merged(outcomes: list[Outcome], meta: dict[str, Any]) -> dict[str, Any]:
    """The suite's JSON: one key per figure (prefixed by its entry), one per entry."""
    figures: dict[str, Any] = {}
    for o in outcomes:
        for fig in o.figures:
            entry = {k: v for k, v in fig.items() if k != "key"}
            figures[f"{o.bench.name}.{fig['key']}"] = {**entry, "bench": o.bench.name}
    benches = {
        o.bench.name: {
            "status": o.status,
            "note": o.note,
            "seconds": round(o.seconds, 1),
            "load_average": o.load_average,
        }
        for o in outcomes
    }
    return {**meta, "benches": benches, "figures": figures}


def cell(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def summary_table(outcomes: list[Outcome]) -> str:
    rows: list[list[Any]] = []
    for o in outcomes:
        if o.status != "ok":
            said = o.note if o.note.startswith(o.status) else f"{o.status}: {o.note}"
            rows.append([o.bench.name, said, "", "", "", "", ""])
            continue
        rows += [
            [f"{o.bench.name}.{f['key']}", f["value"], f["unit"], cell(f.get("baseline")),
             cell(f.get("ratio")), cell(f.get("goal")), cell(f.get("met"))]
            for f in o.figures
        ]  # fmt: skip
        if not o.figures:
            rows.append([o.bench.name, "no figures (the bench reported none)", "", "", "", "", ""])
    return table(["figure", "value", "unit", "baseline", "ratio", "goal", "met"], rows)


def max_load() -> float:
    """The load average above which a run is not recorded: the core count by default."""
    override = os.environ.get("GOVEDGE_BENCH_MAX_LOAD")
    return float(override) if override else float(os.cpu_count() or 1)


def parse_extra(values: list[str]) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = {}
    for value in values:
        name, sep, args = value.partition("=")
        if not sep:
            raise SystemExit(f"bench: --args wants NAME=ARGS, got {value!r}")
        extra.setdefault(name, []).extend(shlex.split(args))
    return extra


def main() -> int:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="each bench's --quick mode")
    ap.add_argument("--json", type=Path, help="write the merged figures there")
    ap.add_argument("--only", help="comma-separated entries: " + ", ".join(b.name for b in SUITE))
    ap.add_argument("--args", action="append", default=[], metavar="NAME=ARGS",
                    help="extra arguments for one entry, e.g. 'web_scale=--outlets 100'")  # fmt: skip
    doc = ap.add_mutually_exclusive_group()
    doc.add_argument("--write-doc", action="store_true", help="record an --only run as well")
    doc.add_argument("--no-doc", action="store_true", help="leave docs/performance.md alone")
    ap.add_argument("--force", action="store_true", help="record a busy machine's run, marked so")
    ap.add_argument("--doc", type=Path, default=PERF_DOC, help=argparse.SUPPRESS)
    args = ap.parse_args()
    known = {b.name: b for b in SUITE}
    names = args.only.split(",") if args.only else list(known)
    unknown = [n for n in names if n not in known]
    extra = parse_extra(args.args)
    unknown += [n for n in extra if n not in known]
    if unknown:
        ap.error(f"unknown bench {', '.join(unknown)}; known: {', '.join(known)}")
    load_start = os.getloadavg()[0]
    started, t0 = datetime.now(UTC), time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        for name in names:
            outcome = run_one(
                known[name],
                quick=args.quick,
                extra=extra.get(name, []),
                work=Path(tmp),
                asked=bool(args.only),
            )
            print(f"    {outcome.status} in {outcome.seconds:.0f} s {outcome.note}", flush=True)
            outcomes.append(outcome)
    load_end = os.getloadavg()[0]
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": args.quick,
        "load_average": {"start": round(load_start, 2), "end": round(load_end, 2)},
        "max_load": max_load(),
        "seconds": round(time.monotonic() - t0, 1),
    }
    text = summary_table(outcomes)
    print()
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(merged(outcomes, meta), indent=2, ensure_ascii=False) + "\n"
        )
    record(args, outcomes, text, meta, partial=bool(args.only))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def record(
    args: argparse.Namespace,
    outcomes: list[Outcome],
    text: str,
    meta: dict[str, Any],
    *,
    partial: bool,
) -> None:
    """Write the summary section, unless asked not to or the machine was busy."""
    if args.no_doc or (partial and not args.write_doc):
        return
    loads = meta["load_average"]
    busy = max(loads["start"], loads["end"]) > meta["max_load"]
    if busy and not args.force:
        print(
            f"not recorded in {args.doc}: load average {loads['start']:.1f} at the start, "
            f"{loads['end']:.1f} at the end, above {meta['max_load']:g} (the core count or "
            "GOVEDGE_BENCH_MAX_LOAD); figures from a busy machine mislead. --force records "
            "the run marked as such."
        )
        return
    mode = "--quick" if args.quick else "full"
    ran = ", ".join(o.bench.name for o in outcomes) if partial else "every bench"
    heading = f"### Summary ({mode}, {meta['date'][:10]}; {meta['machine']})"
    if busy:
        heading += " — **busy machine**"
    body = (
        f"{heading}\n\nRun: {ran}, {meta['seconds']:.0f} s in all. "
        f"Load average {loads['start']:.1f} at the start, {loads['end']:.1f} at the end "
        f"(1 min; {os.cpu_count()} cores).\n\n{text}"
    )
    update_doc(SECTION, body, doc=args.doc)


if __name__ == "__main__":
    sys.exit(main())
