"""The demo: a private Mosquitto, the fleet server on SQLite, and a few simulated outlets.

Every part is the real program (``mosquitto``, ``fleet-server run``, ``edge-agent run``)
in its own process. Each agent runs with ``--simulate`` (a simulator of every device
kind, driven through the real drivers) and its own ``--local-api-port``. Ctrl-C (or
SIGTERM) stops the agents first, so each publishes its clean death, then the server,
then the broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import httpx

from govedge_testbed.mosquitto import Mosquitto
from govedge_testbed.ports import free_port, wait_for_port
from govedge_testbed.services import ServiceUnavailable

# One of each outlet kind the product serves: township centre, bank counter, village
# station, 24-hour kiosk; more are numbered on.
_OUTLET_NAMES = ("township-dinghai-01", "bank-pds-icbc-01", "village-fengshou-01", "kiosk-24h-01")


def _outlet_ids(count: int) -> list[str]:
    names = list(_OUTLET_NAMES[:count])
    names += [f"township-demo-{n:02d}" for n in range(len(names) + 1, count + 1)]
    return names


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
@click.option("--outlets", "outlet_count", default=4, show_default=True, type=click.IntRange(1, 50))
@click.option("--port", default=8080, show_default=True, help="Server port (a free one if taken).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the database and agent state here (default: a temporary directory).",
)
@click.option("--telemetry-interval", default=5.0, show_default=True, help="Agent telemetry, s.")
def main(outlet_count: int, port: int, data_dir: Path | None, telemetry_interval: float) -> None:
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
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker = Mosquitto(workdir=data_dir / "mosquitto")
        broker.start()
    except ServiceUnavailable as exc:
        click.echo(f"demo: {exc}", err=True)
        sys.exit(1)
    try:
        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        name, password, token = _demo_admin(bindir, f"sqlite:///{data_dir / 'fleet.db'}")
        signing_key = _config_signing_key(bindir, data_dir)
        server = _spawn(
            [
                str(bindir / "fleet-server"), "run",
                "--mqtt-url", broker.url,
                "--database-url", f"sqlite:///{data_dir / 'fleet.db'}",
                "--listen", f"127.0.0.1:{port}",
            ],
            logs / "fleet-server.log",
            env={**os.environ, "GOVEDGE_CONFIG_SIGNING_KEY": str(signing_key)},
        )  # fmt: skip
        procs.append(server)
        if not _wait_ready(url, server, deadline=time.monotonic() + 60):
            click.echo(f"demo: the fleet server did not start; see {logs}", err=True)
            sys.exit(1)
        api_ports: list[int] = []
        screens: list[str] = []
        for outlet_id in _outlet_ids(outlet_count):
            api_port = free_port()
            api_ports.append(api_port)
            if not screens:  # the first outlet's hall display and kiosk
                screens = _hall_screens(bindir, data_dir / "agents" / outlet_id, api_port)
            agent = _spawn(
                [
                    str(bindir / "edge-agent"), "run",
                    "--mqtt-url", broker.url,
                    "--outlet-id", outlet_id,
                    "--data-dir", str(data_dir / "agents" / outlet_id),
                    "--telemetry-interval", str(telemetry_interval),
                    "--simulate",
                    "--local-api-port", str(api_port),
                ],
                logs / f"agent-{outlet_id}.log",
            )  # fmt: skip
            procs.append(agent)
        click.echo(f"govedge demo: fleet server at {url}  (API docs: {url}/docs)")
        click.echo(f"  broker {broker.url}, {outlet_count} outlets, data and logs in {data_dir}")
        click.echo(f"  operator pages: {url}/")
        click.echo(f"    user name: {name}")
        click.echo(f"    password:  {password}  (made for this run)")
        click.echo(f"  admin API token for scripts (demo only): {token}")
        click.echo(f"  try:  GOVEDGE_TOKEN={token} .venv/bin/fleetctl --server {url} outlets list")
        first = _outlet_ids(outlet_count)[0]
        click.echo(
            f"  clerk local API of {first} (simulated devices): "
            f"http://127.0.0.1:{api_ports[0]}  (docs: http://127.0.0.1:{api_ports[0]}/docs)"
        )
        for line in screens:
            click.echo(line)
        local = f"http://127.0.0.1:{api_ports[0]}"
        console_token = _console_token(bindir, data_dir / "agents" / first, local)
        if console_token is not None:
            click.echo(f"  counter console of {first}: {local}/console/?window=1&clerk=demo")
            click.echo(f"    its app token (enter it once): {console_token}")
        click.echo("  Ctrl-C stops everything.")
        while not stop.wait(0.5):
            if server.poll() is not None:
                click.echo(f"demo: the fleet server exited; see {logs}", err=True)
                break
    finally:
        for proc in reversed(procs):  # agents first: each publishes its clean death
            _stop(proc)
        broker.close()
        if tmp is not None:
            tmp.cleanup()
        click.echo("govedge demo stopped.")


def _hall_screens(bindir: Path, agent_dir: Path, api_port: int) -> list[str]:
    """Register the hall display and kiosk as an operator would; their page addresses."""
    origin = f"http://127.0.0.1:{api_port}"
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
