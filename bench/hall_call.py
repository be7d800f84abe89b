"""Hall display: a clerk's call → shown on the 叫号大屏, and its announcement playing (issue 12).

The issue's proof asks that the hall display show a call within a second of
``POST /v1/windows/{w}/call``; tests only check that it is shown and played, and this
bench measures how long it takes. A real ``edge-agent run --simulate`` (every device a
simulator speaking its real protocol: the window's LED screen and pad, the ticket
printer) serves the display page; Debian's Chromium (headless, Playwright, with the
display PC's autoplay flag) opens it with a ``display`` token. For each call:

- t0: just before the clerk's ``POST /v1/windows/1/call`` is sent (wall clock);
- shown: the display's row of window 1 first shows the called ticket (a
  MutationObserver in the page, ``Date.now()``: the same machine's clock);
- played: the page's ``<audio>`` fires ``playing`` for that call's announcement
  (fetched with the display's token and rendered by espeak-ng in the agent);
- the POST's own answer time, as the baseline the display's path adds to.

The next call waits until the display has finished speaking, so each call's time is its
own, not a queue of announcements. Figures: p50/p95/max over N calls; goal: shown
within 1,000 ms (p95 and max).

    python bench/hall_call.py [--quick] [--calls N] [--json FILE] [--write-doc]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BIN, machine, pct, poll, start_agent, stop, table, update_doc  # noqa: E402
from _figures import Figure, load_average_ok, write_figures  # noqa: E402

from govedge_testbed import Mosquitto, free_port  # noqa: E402

GOAL_SHOWN_MS = 1000.0  # issue 12: "shows a call within a second"
WINDOW = "1"  # the simulated outlet's window with the pad and LED screen 1
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",  # as on the display PC (docs/hall-pages.md)
]  # fmt: skip

# Installed in the display page once it is connected: when each window's row first
# shows a ticket, and when the voice starts playing.
WATCH = """() => {
  window.__bench = { shown: {}, playing: [] };
  const rows = document.querySelector("#windows tbody");
  const look = () => {
    const now = Date.now();
    for (const row of rows.querySelectorAll("tr[data-window]")) {
      const key = `${row.dataset.window}:${row.querySelector(".ticket").textContent}`;
      if (!(key in window.__bench.shown)) window.__bench.shown[key] = now;
    }
  };
  new MutationObserver(look).observe(rows, { childList: true, subtree: true, characterData: true });
  look();
  document.getElementById("voice").addEventListener("playing", () => window.__bench.playing.push(Date.now()));
}"""


def add_app(data_dir: Path, name: str, *options: str) -> str:
    """``edge-agent apps add``: the token it prints."""
    done = subprocess.run(
        [str(BIN / "edge-agent"), "apps", "add", name, *options, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def measure(calls: int, work: Path) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    broker = Mosquitto(workdir=work / "broker")
    broker.start()
    agent = None
    try:
        data_dir = work / "agent"
        data_dir.mkdir(mode=0o700)
        port = free_port()
        origin = f"http://127.0.0.1:{port}"
        clerk = add_app(data_dir, "bench-clerk")
        display = add_app(data_dir, "hall-display", "--role", "display", "--origin", origin)
        config = work / "agent.toml"
        # pcscd is one per machine; the display needs no social-security card.
        config.write_text("simulate_pcsc = false\n")
        log = work / "agent.log"
        agent = start_agent(
            broker.url,
            "bench-hall",
            data_dir,
            local_api_port=port,
            extra=["--simulate", "--config", str(config)],
            log=log,
        )
        api = httpx.Client(
            base_url=origin, headers={"Authorization": f"Bearer {clerk}"}, timeout=30
        )

        def queue() -> Any:
            try:
                answer = api.get("/v1/queue")
            except httpx.HTTPError:
                return None
            return answer.json() if answer.status_code == 200 else None

        state = poll(queue, timeout=60, what="the agent's local API")
        [window] = [w for w in state["windows"] if w["window"] == WINDOW]
        business = window["business_types"][0]
        for _ in range(calls):
            api.post("/v1/tickets", json={"business_type": business}).raise_for_status()

        shown: list[float] = []
        played: list[float] = []
        answered: list[float] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(f"{origin}/hall/display#token={display}")
                page.wait_for_selector("#link[data-state='open']")
                page.wait_for_selector(f"[data-window='{WINDOW}']")
                page.evaluate(WATCH)
                for i in range(calls):
                    t0 = time.time() * 1000
                    called = api.post(f"/v1/windows/{WINDOW}/call")
                    answered.append(time.time() * 1000 - t0)
                    called.raise_for_status()
                    body = called.json()
                    ticket = body["ticket"]["number"]
                    if body["announcement"] is None or not body["announcement"]["audio_url"]:
                        raise SystemExit(
                            "the agent rendered no announcement: is espeak-ng installed?"
                        )
                    key = f"{WINDOW}:{ticket}"
                    # Functions, not expressions: the page's CSP forbids eval.
                    page.wait_for_function(
                        "(key) => key in window.__bench.shown", arg=key, timeout=30_000
                    )
                    page.wait_for_function(
                        "(n) => document.body.dataset.spoken === n",
                        arg=str(i + 1),
                        timeout=60_000,
                    )
                    if page.evaluate("() => document.body.dataset.unspoken"):
                        raise SystemExit("the display could not play an announcement")
                    seen = page.evaluate("() => window.__bench")
                    shown.append(seen["shown"][key] - t0)
                    played.append(seen["playing"][i] - t0)
            finally:
                browser.close()
        api.close()
        return {"shown": shown, "played": played, "answered": answered}
    finally:
        stop(agent)
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--calls", type=int, help="calls to time (default 30, 10 with --quick)")
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--json", type=Path, help="write the figures there (bench/_figures.py)")
    args = ap.parse_args()
    calls = args.calls or (10 if args.quick else 30)
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is not installed (apt-get install chromium)")
    print(machine())
    load_before, _ = load_average_ok()
    work = Path(tempfile.mkdtemp(prefix="bench-hall-"))
    try:
        r = measure(calls, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after, _ = load_average_ok()
    rows = [
        [label, pct(r[k], 50), pct(r[k], 95), max(r[k])]
        for label, k in (
            ("`POST /v1/windows/1/call` answered (the clerk's app)", "answered"),
            ("call → shown in the display's window row", "shown"),
            ("call → its announcement playing on the display", "played"),
        )
    ]
    text = "\n".join(
        [
            f"{calls} calls, one at a time (each after the previous one was spoken); "
            f"1-minute load average {load_before:.2f} before, {load_after:.2f} after.",
            "",
            table(["from the clerk's POST (ms)", "p50", "p95", "max"], rows),
            "",
            f"Goal: shown within {GOAL_SHOWN_MS:,.0f} ms (p95 and max): "
            + ("met." if max(r["shown"]) <= GOAL_SHOWN_MS else "**not met**."),
        ]
    )
    print()
    print(text)
    answered50 = pct(r["answered"], 50)
    write_figures(args.json, [
        Figure("hall_call_shown.p50", pct(r["shown"], 50), "ms", baseline=answered50, higher=False),
        Figure("hall_call_shown.p95", pct(r["shown"], 95), "ms", goal=GOAL_SHOWN_MS, higher=False),
        Figure("hall_call_shown.max", max(r["shown"]), "ms", goal=GOAL_SHOWN_MS, higher=False),
        Figure("hall_call_played.p50", pct(r["played"], 50), "ms", higher=False),
        Figure("hall_call_played.p95", pct(r["played"], 95), "ms", higher=False),
    ])  # fmt: skip
    if args.write_doc:
        mode = "--quick" if args.quick else "full"
        update_doc(
            "hall_call-quick" if args.quick else "hall_call",
            f"### Results ({mode}, {time.strftime('%Y-%m-%d')}; {machine()})\n\n{text}",
        )


if __name__ == "__main__":
    main()
