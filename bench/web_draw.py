"""The map and the outlet list drawn in Chromium at fleet scale, logged in (issue 16).

``web_scale.py`` times the API's answers; this times what an operator waits for: from
the navigation to ``/ui/map`` until every outlet's marker is drawn, and to
``/ui/outlets`` until the list's first page is shown. The same fill as ``web_scale``
(N outlets with coordinates, 20 regions, 5 devices each) in SQLite, a real
``fleet-server run`` with login on, a viewer logged in through the login page once,
then ``runs`` fresh pages per view (one warm-up not counted) in headless Chromium
(Playwright driving Debian's chromium, as the browser tests do).

The map's time is split where it goes: the page's HTML (``responseEnd``), the points'
answer (``/api/v1/fleet/map-points``'s ``responseEnd``), the markers in the DOM (the
page's script built the SVG and the browser parsed it) and drawn (the animation frame
after that one, so layout and paint of the 10,000 circles are inside).

    python bench/web_draw.py [--quick] [--outlets N] [--runs N] [--write-doc] [--json FILE]
                             [--verbose]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, machine, pct, start_server, stop, table, update_doc
from _figures import Figure, write_figures
from web_scale import fill

from fleet_server.web.admin_pages import LIST_PAGE
from govedge_testbed import Mosquitto

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
USER, PASSWORD = "bench-viewer", "bench viewer password 1"
# Issue 16 asks for a stated time. Most of a page's time here is the browser's own
# (HTML parsed, scripts compiled, a first frame from headless software rendering), the
# same for ten outlets as for 10,000, so each view is also measured in the same run
# with a fleet of SMALL outlets: the baseline the ratio is taken against. Goals at
# 10,000 outlets: the list as quick as at ten (a page of 50 either way, ratio ≤ 1.25)
# and shown within 500 ms p95; the map, which draws every outlet, within 1.5 s p95.
SMALL = 10
GOAL_LIST_MS = 500.0
GOAL_LIST_RATIO = 1.25
GOAL_MAP_MS = 1500.0

# Installed before any page script: watches for the expected number of elements and
# records, in ms since the navigation started, when they are in the DOM and when the
# next animation frame comes (the frame that painted them has then been produced).
WATCH = """(want) => {
  window.__bench = {};
  const [selector, count] = want;
  const look = () => {
    if (document.querySelectorAll(selector).length >= count) {
      window.__bench.in_dom = performance.now();
      requestAnimationFrame(() => { window.__bench.drawn = performance.now(); });
      return;
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
}"""
TIMINGS = """(resource) => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource").find((e) => e.name.includes(resource));
  return { html: nav.responseEnd, dom_ready: nav.domContentLoadedEventEnd,
           asked: res ? res.startTime : null, data: res ? res.responseEnd : null,
           requests: performance.getEntriesByType("resource").map((e) => [
             e.name.replace(location.origin, ""), Math.round(e.startTime),
             Math.round(e.responseStart), Math.round(e.responseEnd)]),
           ...window.__bench };
}"""
VIEWS = {
    # view: (path, selector of what must be shown, the data request to split out)
    "map": ("/ui/map", "#map circle[data-outlet]", "/api/v1/fleet/map-points"),
    "list": ("/ui/outlets", "#rg-rows tr[data-outlet]", "/api/v1/outlets?"),
}


def add_viewer(database_url: str, env: dict[str, str]) -> None:
    """The real ``fleet-server users add`` (login on, as in the field)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
    subprocess.run(
        [str(BIN / "fleet-server"), "users", "add", USER, "--role", "viewer",
         "--password-stdin", "--database-url", database_url],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120, check=True,
        env={**clean, **env},
    )  # fmt: skip


def measure(
    base: str, outlets: int, runs: int, *, verbose: bool
) -> dict[str, list[dict[str, float]]]:
    """``runs`` navigations per view in a logged-in context; timings in ms."""
    from playwright.sync_api import sync_playwright

    results: dict[str, list[dict[str, float]]] = {view: [] for view in VIEWS}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{base}/ui/login")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/ui/overview")
            page.close()
            for view, (path, selector, resource) in VIEWS.items():
                want = outlets if view == "map" else min(LIST_PAGE, outlets)
                for n in range(runs + 1):  # the first warms the server and the browser
                    page = context.new_page()
                    page.add_init_script(f"({WATCH})({[selector, want]!r})")
                    page.goto(f"{base}{path}", wait_until="commit")
                    page.wait_for_function("() => window.__bench && window.__bench.drawn",
                                           timeout=120_000, polling=50)  # fmt: skip
                    timings = page.evaluate(TIMINGS, resource)
                    page.close()
                    if verbose:  # each request's start, first byte and end, ms
                        print(view, n, timings)
                    if n:
                        results[view].append(timings)
            context.close()
        finally:
            browser.close()
    return results


def run(outlets: int, runs: int, work: Path, *, verbose: bool) -> dict[str, list[dict[str, float]]]:
    env = {"GOVEDGE_STATE_DIR": str(work / "state"), "GOVEDGE_PII_KEY_DIR": str(work / "keys"),
           "GOVEDGE_PKI_DIR": str(work / "pki")}  # fmt: skip
    database_url = f"sqlite:///{work / 'fleet.db'}"
    # The fill runs here: its keys and state go to the run's directory too, never
    # the working directory's fleet-pii-keys (the server would refuse to seal beside them).
    os.environ.update(env)
    fill(database_url, outlets)
    add_viewer(database_url, env)
    with Mosquitto(workdir=work / "broker") as broker:
        # Login on, as in the field (start_server turns it off for the other benches).
        server = start_server(f"mqtt://127.0.0.1:{broker.port}", work,
                              env={**env, "GOVEDGE_API_AUTH": "on"}, database_url=database_url)  # fmt: skip
        try:
            return measure(server.url, outlets, runs, verbose=verbose)
        finally:
            stop(server.proc)


def rows(results: dict[str, list[dict[str, float]]]) -> list[list[Any]]:
    """p50 and p95 of each step, per view."""
    steps = [("page HTML", "html"), ("scripts run (DOMContentLoaded)", "dom_ready"),
             ("data asked", "asked"), ("data answered", "data"), ("in the DOM", "in_dom"),
             ("drawn", "drawn")]  # fmt: skip
    out = []
    for view, samples in results.items():
        for label, key in steps:
            values = [s[key] for s in samples if s.get(key) is not None]
            out.append([view, label, pct(values, 50), pct(values, 95)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1,000 outlets, 3 runs")
    ap.add_argument("--outlets", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print every run's requests")
    ap.add_argument("--json", type=Path, help="write the figures there (bench/_figures.py)")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    outlets = args.outlets or (1_000 if args.quick else 10_000)
    runs = args.runs or (3 if args.quick else 10)
    print(machine())
    load_start = os.getloadavg()[0]
    measured: dict[int, dict[str, list[dict[str, float]]]] = {}
    for size in (SMALL, outlets):  # the baseline first, then the fleet
        work = Path(tempfile.mkdtemp(prefix="bench-draw-"))
        try:
            measured[size] = run(size, runs, work, verbose=args.verbose)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()[0]
    results, small = measured[outlets], measured[SMALL]
    text = (
        f"### Results ({datetime.now(UTC):%Y-%m-%d}; {machine()})\n\n"
        f"{outlets:,} outlets (all placed on the map), SQLite, headless Chromium, logged in "
        f"as a viewer; {runs} fresh pages per view after one warm-up; ms since the "
        f"navigation started; the same views with {SMALL} outlets, measured in the same run, "
        f"are the baseline. Load average {load_start:.1f} at the start, {load_end:.1f} at "
        f"the end. Goals at 10,000 outlets: the list's first page shown ≤ "
        f"{GOAL_LIST_MS:.0f} ms p95 and ≤ {GOAL_LIST_RATIO} × the baseline, every map "
        f"marker drawn ≤ {GOAL_MAP_MS:.0f} ms p95.\n\n"
        + table(["view", "step", "p50 ms", "p95 ms"], rows(results))
        + f"\n\nThe baseline, {SMALL} outlets:\n\n"
        + table(["view", "step", "p50 ms", "p95 ms"], rows(small))
    )
    print(text)
    write_figures(args.json, figures(results, small, outlets))
    if args.write_doc:
        update_doc("web_draw" + ("-quick" if args.quick else ""), text)


def figures(
    results: dict[str, list[dict[str, float]]],
    small: dict[str, list[dict[str, float]]],
    outlets: int,
) -> list[Figure]:
    """The drawn map's and the shown list's p95, each against the small fleet's; the
    goals are stated for 10,000."""
    big = outlets >= 10_000

    def p95(samples: dict[str, list[dict[str, float]]], view: str) -> float:
        return pct([s["drawn"] for s in samples[view]], 95)

    return [
        Figure("map.drawn.p95", p95(results, "map"), "ms", baseline=p95(small, "map"),
               goal=GOAL_MAP_MS if big else None, higher=False),
        Figure("list.first_page.p95", p95(results, "list"), "ms", baseline=p95(small, "list"),
               goal=GOAL_LIST_MS if big else None, higher=False),
        Figure("list.first_page.p95_ratio", p95(results, "list"), "ms",
               baseline=p95(small, "list"), goal=GOAL_LIST_RATIO if big else None,
               goal_on="ratio", higher=False),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
