"""The demo: a private Mosquitto, the fleet server on SQLite, and a few simulated outlets.

Every part is the real program (``mosquitto``, ``fleet-server run``, ``edge-agent run``)
in its own process. Each agent runs with ``--simulate`` (a simulator of every device
kind, driven through the real drivers, and a simulated citizen at the 好差评 pad) and its
own ``--local-api-port``. The fleet is made to look like one (``demo_fleet``): the
outlets' registry rows, regions and a catalogue are loaded through the server's API, a
demo upstream takes deliveries, a clerk files cases at every outlet, and VictoriaMetrics
records the time series when it is installed. Ctrl-C (or SIGTERM) stops the clerk and
the agents first, so each publishes its clean death, then the server, then the broker.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import httpx

from edge_agent.local_api.apps import AppRegistry
from govedge_testbed.demo_fleet import DemoOutlet, demo_outlets, load_fleet, start_upstream
from govedge_testbed.demo_fleet.clerk import CounterApp, DemoClerk, ratings_for
from govedge_testbed.mosquitto import Mosquitto
from govedge_testbed.ports import free_port, wait_for_port
from govedge_testbed.services import ServiceUnavailable
from govedge_testbed.victoria import VictoriaMetrics


def _outlets(count: int) -> list[DemoOutlet]:
    """The first ``count`` outlets of the demo registry: one of each kind comes first
    (township centre, bank counter, village station, 24-hour kiosk), then more."""
    return demo_outlets()[:count]


def _port_free(port: int) -> bool:
    return not wait_for_port(port, timeout=0.05)


def _spawn(
    argv: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def _config_signing_key(bindir: Path, data_dir: Path) -> Path:
    """The demo server's config-signing key (docs/config.md), made once per data dir."""
    path = data_dir / "config-signing.pem"
    if not path.exists():
        result = subprocess.run(
            [str(bindir / "fleet-server"), "config-key", "generate", str(path)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            click.echo(
                f"demo: cannot make the config-signing key: {result.stderr.strip()}", err=True
            )
            sys.exit(1)
    return path


def _stop(proc: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def _demo_admin(bindir: Path, database_url: str) -> tuple[str, str, str]:
    """An admin account for the demo via ``fleet-server users add --generate-password``:
    its name, web password and API token (each run makes a new one, so a kept
    ``--data-dir`` never reuses an old password)."""
    name = f"demo-admin-{int(time.time())}"
    result = subprocess.run(
        [str(bindir / "fleet-server"), "users", "add", name, "--role", "admin",
         "--generate-password", "--database-url", database_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    tokens = [line for line in lines if line.startswith("gvt_")]
    marks = [i for i, line in enumerate(lines) if line.startswith("web password for")]
    if result.returncode != 0 or not tokens or not marks or marks[0] + 1 >= len(lines):
        click.echo(f"demo: cannot create the demo admin: {result.stderr.strip()}", err=True)
        sys.exit(1)
    return name, lines[marks[0] + 1], tokens[0]


def _console_token(bindir: Path, agent_dir: Path, origin: str) -> str | None:
    """Register the counter console of one outlet with ``edge-agent apps add`` (the
    technician's command; a new token each run); its token, or None if that failed."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    apps = [str(bindir / "edge-agent"), "apps"]
    subprocess.run(
        [*apps, "remove", "counter-console", "--data-dir", str(agent_dir)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip  # a kept --data-dir has last run's registration
    result = subprocess.run(
        [*apps, "add", "counter-console", "--origin", origin, "--data-dir", str(agent_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    token = result.stdout.strip()
    return token if result.returncode == 0 and token else None


@click.command()
@click.option(
    "--outlets",
    "outlet_count",
    default=4,
    show_default=True,
    type=click.IntRange(1, len(demo_outlets())),
    help="How many outlets of the demo registry run an agent.",
)
@click.option("--port", default=8080, show_default=True, help="Server port (a free one if taken).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the database and agent state here (default: a temporary directory).",
)
@click.option("--telemetry-interval", default=5.0, show_default=True, help="Agent telemetry, s.")
@click.option(
    "--case-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="The clerk files a case at each outlet every, s (six times slower after eight).",
)
def main(
    outlet_count: int,
    port: int,
    data_dir: Path | None,
    telemetry_interval: float,
    case_interval: float,
) -> None:
    """Run a small govedge fleet on this machine until Ctrl-C."""
    tmp = None
    if data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="govedge-demo-")
        data_dir = Path(tmp.name)
    data_dir.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    if not _port_free(port):
        port = free_port()
    url = f"http://127.0.0.1:{port}"
    agents: list[subprocess.Popen[bytes]] = []
    servers: list[subprocess.Popen[bytes]] = []
    try:
        broker = Mosquitto(workdir=data_dir / "mosquitto")
        broker.start()
    except ServiceUnavailable as exc:
        click.echo(f"demo: {exc}", err=True)
        sys.exit(1)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    _log_clerk(logs / "demo-clerk.log")
    upstream = start_upstream(data_dir)
    victoria = _victoria_metrics()
    clerk: DemoClerk | None = None
    try:
        # The agents first: they start while the server does (the slowest part on a
        # busy machine) and are seen by it once it subscribes (they are asked to
        # announce themselves again).
        outlets = _outlets(outlet_count)
        counters = []
        for index, outlet in enumerate(outlets):
            proc, counter = _start_agent(
                bindir, broker.url, data_dir, outlet, index, telemetry_interval
            )
            agents.append(proc)
            counters.append(counter)
        # Two commands that each load the whole server: side by side.
        with ThreadPoolExecutor(max_workers=2) as pool:
            admin = pool.submit(_demo_admin, bindir, f"sqlite:///{data_dir / 'fleet.db'}")
            key = pool.submit(_config_signing_key, bindir, data_dir)
            (name, password, token), signing_key = admin.result(), key.result()
        server_env = {
            **os.environ,
            "GOVEDGE_CONFIG_SIGNING_KEY": str(signing_key),
            "GOVEDGE_UPSTREAM_TARGETS_FILE": str(upstream.targets_file),
            # A history point per telemetry message, so the charts fill in a minute.
            "GOVEDGE_HEALTH_HISTORY_INTERVAL_S": str(telemetry_interval),
        }
        if victoria is not None:
            server_env["GOVEDGE_TIMESERIES_URL"] = victoria.url
        server = _spawn(
            [
                str(bindir / "fleet-server"), "run",
                "--mqtt-url", broker.url,
                "--database-url", f"sqlite:///{data_dir / 'fleet.db'}",
                "--listen", f"127.0.0.1:{port}",
            ],
            logs / "fleet-server.log",
            env=server_env,
        )  # fmt: skip
        servers.append(server)
        if not _wait_ready(url, server, deadline=time.monotonic() + 60):
            click.echo(f"demo: the fleet server did not start; see {logs}", err=True)
            sys.exit(1)
        _load_registry(url, token, outlets)
        clerk = DemoClerk(counters, interval_s=case_interval)
        clerk.start()
        # The printed clerk API must answer when the user tries it.
        first_port = int(counters[0].api_url.rsplit(":", 1)[1])
        if not wait_for_port(first_port, timeout=60):
            click.echo(f"demo: the first outlet's agent did not start; see {logs}", err=True)
            sys.exit(1)
        click.echo(f"govedge demo: fleet server at {url}  (API docs: {url}/docs)")
        click.echo(f"  broker {broker.url}, {outlet_count} outlets, data and logs in {data_dir}")
        click.echo(f"  operator pages: {url}/")
        click.echo(f"    user name: {name}")
        click.echo(f"    password:  {password}  (made for this run)")
        click.echo(f"  admin API token for scripts (demo only): {token}")
        click.echo(f"  try:  GOVEDGE_TOKEN={token} .venv/bin/fleetctl --server {url} outlets list")
        first = counters[0]
        click.echo(
            f"  clerk local API of {first.outlet.id} (simulated devices): "
            f"{first.api_url}  (docs: {first.api_url}/docs)"
        )
        click.echo(f"    clerk app token (demo only): {first.token}")
        local = first.api_url
        agent_dir = data_dir / "agents" / first.outlet.id
        for line in _hall_screens(bindir, agent_dir, local):
            click.echo(line)
        console_token = _console_token(bindir, agent_dir, local)
        if console_token is not None:
            click.echo(
                f"  counter console of {first.outlet.id}: {local}/console/?window=1&clerk=demo"
            )
            click.echo(f"    its app token (enter it once): {console_token}")
        click.echo(f"  demo upstream (provincial platform, 好差评): {upstream.url}")
        series = victoria.url if victoria is not None else "off (victoria-metrics not installed)"
        click.echo(f"  time series: {series}")
        click.echo("  Ctrl-C stops everything.")
        while not stop.wait(0.5):
            if server.poll() is not None:
                click.echo(f"demo: the fleet server exited; see {logs}", err=True)
                break
    finally:
        if clerk is not None:
            clerk.stop()
        for proc in agents + servers:  # agents first: the server sees each clean death
            _stop(proc)
        broker.close()
        upstream.receiver.stop()
        if victoria is not None:
            victoria.close()
        if tmp is not None:
            tmp.cleanup()
        click.echo("govedge demo stopped.")


def _hall_screens(bindir: Path, agent_dir: Path, origin: str) -> list[str]:
    """Register the hall display and kiosk as an operator would; their page addresses."""
    lines = []
    for page, role, title in (("display", "display", "叫号大屏"), ("kiosk", "kiosk", "取号机")):
        added = subprocess.run(
            [
                str(bindir / "edge-agent"), "apps", "add", f"hall-{page}",
                "--role", role, "--origin", origin, "--data-dir", str(agent_dir),
            ],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        token = added.stdout.decode().strip()
        lines.append(f"  {title} ({page}): {origin}/hall/{page}#token={token}")
    return lines


def _log_clerk(path: Path) -> None:
    """The clerk's lines go to their own log, not the terminal the login is printed on."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("govedge_testbed.demo_fleet")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _victoria_metrics() -> VictoriaMetrics | None:
    """A private VictoriaMetrics for the time series when it is installed, else None
    (the operator pages' history charts do not need it; Grafana does)."""
    try:
        victoria = VictoriaMetrics()
        victoria.start()
    except ServiceUnavailable:
        return None
    return victoria


def _load_registry(url: str, token: str, outlets: list[DemoOutlet]) -> None:
    """The demo's regions, outlet registry and catalogue, through the server's API."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            load_fleet(client, outlets)
    except httpx.HTTPError as exc:
        click.echo(f"demo: the fleet server refused the demo registry: {exc}", err=True)
        sys.exit(1)


def _start_agent(
    bindir: Path,
    mqtt_url: str,
    data_dir: Path,
    outlet: DemoOutlet,
    index: int,
    telemetry_interval: float,
) -> tuple[subprocess.Popen[bytes], CounterApp]:
    """The agent of ``outlet`` with a registered clerk app (a new token each run)."""
    agent_dir = data_dir / "agents" / outlet.id
    agent_dir.mkdir(parents=True, exist_ok=True)
    apps = AppRegistry(agent_dir)
    apps.remove("demo-clerk")  # a kept --data-dir: the old token goes
    _, clerk_token = apps.add("demo-clerk", origins=[])
    api_port = free_port()
    proc = _spawn(
        [
            str(bindir / "edge-agent"), "run",
            "--mqtt-url", mqtt_url,
            "--outlet-id", outlet.id,
            "--data-dir", str(agent_dir),
            "--telemetry-interval", str(telemetry_interval),
            "--simulate",
            "--local-api-port", str(api_port),
        ],
        data_dir / "logs" / f"agent-{outlet.id}.log",
        env={**os.environ, "GOVEDGE_SIMULATE_RATINGS": json.dumps(ratings_for(index))},
    )  # fmt: skip
    return proc, CounterApp(outlet, f"http://127.0.0.1:{api_port}", clerk_token)


def _wait_ready(url: str, server: subprocess.Popen[bytes], *, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == httpx.codes.OK:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


if __name__ == "__main__":
    main()
