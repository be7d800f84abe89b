"""``fleet-server service unit`` / ``units``: the fleet server's systemd units
(docs/deploy.md).

One unit per worker process. ``--template`` renders ``govedge-fleet@.service``: instance
``%i`` reads ``/etc/govedge/fleet-server-%i.env`` after the shared environment file, for
what differs between the workers of one machine (``GOVEDGE_LISTEN``), and names itself
``HOST-%i`` in the share group's heartbeat rows. ``units --out-dir`` writes the whole
set: that template, ``govedge-fleet.target`` (every worker of the machine started,
stopped and restarted together) and the CRL refresh, ``govedge-broker-reload.service``
with its daily ``.timer``.

``units --api-workers N --ingest-workers M`` splits the workers by role (``run
--role``): ``govedge-fleet-api@.service`` (instances 1..N, each reading
``/etc/govedge/fleet-server-api-%i.env``) and ``govedge-fleet-ingest@.service``, whose
instance is the loopback port of its probes and ``/metrics`` (``@9101``, ``@9102``…), so
an ingest worker needs no file of its own. Both are started by the same target.

Every unit sets ``GOVEDGE_STATE_DIR`` to its ``StateDirectory`` and reads the same
settings file as an operator's shell command does (``fleet_server.envfile``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import click

from govedge_systemd import SANDBOX, UnitError, check_names, check_paths, check_state_dirs

DEFAULT_VENV: Final = PurePosixPath("/opt/govedge-fleet/venv")
DEFAULT_ENV_FILE: Final = PurePosixPath("/etc/govedge/fleet-server.env")
DEFAULT_STATE_DIR: Final = PurePosixPath("/var/lib/govedge")
TARGET: Final = "govedge-fleet.target"
RELOAD_SERVICE: Final = "govedge-broker-reload.service"
RELOAD_TIMER: Final = "govedge-broker-reload.timer"
# The first loopback port of the ingest workers' probes and /metrics (instance = port).
INGEST_PORT: Final = 9101
MAX_WORKERS: Final = 64


@dataclass(frozen=True, slots=True)
class ServerLayout:
    venv: PurePosixPath = DEFAULT_VENV
    env_file: PurePosixPath = DEFAULT_ENV_FILE
    state_dir: PurePosixPath = DEFAULT_STATE_DIR
    user: str = "govedge-fleet"
    # Directories outside the state directory the server writes: the broker's CRL copy
    # (docs/security.md, "Broker configuration") when the broker runs on this machine.
    writable: tuple[PurePosixPath, ...] = ()
    template: bool = False
    # ``run --role``: "all" (the worker unit of old), or the api/ingest template.
    role: str = "all"

    @property
    def name(self) -> str:
        """The unit file's name."""
        if self.role != "all":
            return f"govedge-fleet-{self.role}@.service"
        return "govedge-fleet@.service" if self.template else "govedge-fleet.service"

    def check(self) -> None:
        paths = [("venv", self.venv), ("env file", self.env_file), ("state dir", self.state_dir)]
        check_paths([*paths, *(("writable", p) for p in self.writable)])
        check_names([("user", self.user)], kind="user")
        check_state_dirs([("state dir", self.state_dir)], why="the unit's StateDirectory")


def _hardening(layout: ServerLayout) -> list[str]:
    """The [Service] lines every fleet unit shares: who, where, and the sandbox."""
    return [
        # Settings as GOVEDGE_* (docs/operations.md); the file holds the database
        # password, so it is root's, 0640 with the service's group.
        f"EnvironmentFile={layout.env_file}",
        # The state directories (fleet-pki, fleet-pii-keys, fleet-releases, …) and the
        # first admin's file live here, whatever the working directory.
        f"Environment=GOVEDGE_STATE_DIR={layout.state_dir}",
        f"WorkingDirectory={layout.state_dir}",
        f"StateDirectory={layout.state_dir.name}",
        "StateDirectoryMode=0700",
        "UMask=0077",
        f"User={layout.user}",
        f"Group={layout.user}",
        "ProtectSystem=strict",
        *(f"ReadWritePaths={path}" for path in layout.writable),
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        *SANDBOX,
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet=",
        "StandardOutput=journal",
        "StandardError=journal",
    ]


def _per_instance(layout: ServerLayout) -> list[str]:
    """What differs between a template's instances: their own settings file (read after
    the shared one) and their name in the share group's heartbeat rows."""
    if layout.role == "all" and not layout.template:
        return []
    part = "" if layout.role == "all" else f"-{layout.role}"
    return [
        f"EnvironmentFile=-{layout.env_file.with_suffix('')}{part}-%i.env",
        f"Environment=GOVEDGE_SERVER_ID=%H{part}-%i",
    ]


# Per role: what the unit says it is, and what its ExecStart adds to ``run``. The role
# is an option, not an environment variable, so no settings file can change it; an
# ingest worker's probes listen on the loopback port its instance names.
_ROLE_LINES: Final = {
    "all": ("govedge fleet server (API, MQTT ingest, delivery)", ""),
    "api": ("govedge fleet server: operator API and pages", " --role api"),
    "ingest": (
        "govedge fleet server: MQTT ingest, delivery, alerts (probes on 127.0.0.1:%i)",
        " --role ingest --listen 127.0.0.1:%i",
    ),
}


def render_server_unit(layout: ServerLayout, *, in_target: bool = False) -> str:
    """The unit file text for ``layout``; ``in_target``: a worker of ``TARGET``."""
    layout.check()
    name = layout.name
    per_instance = _per_instance(layout)
    description, run_options = _ROLE_LINES[layout.role]
    numbered = layout.template and layout.role != "ingest"
    lines = [
        f"# govedge fleet server ({name}), generated by `fleet-server service unit`.",
        "[Unit]",
        f"Description={description}" + (" worker %i" if numbered else ""),
        "Wants=network-online.target",
        # Ordering only: the database and broker may run on other machines.
        "After=network-online.target postgresql.service mosquitto.service",
        # Stopped and restarted with the target (an upgrade restarts every worker).
        *([f"PartOf={TARGET}"] if in_target else []),
        "StartLimitIntervalSec=600",
        "StartLimitBurst=10",
        "",
        "[Service]",
        "Type=exec",
        # run migrates first, under a lock: workers starting together migrate once.
        f"ExecStart={layout.venv}/bin/fleet-server run{run_options}",
        *_hardening(layout)[:1],
        *per_instance,
        *_hardening(layout)[1:],
        "Restart=on-failure",
        "RestartSec=5",
        # run applies migrations before it listens: allow for a long one.
        "TimeoutStartSec=600",
        # SIGTERM: offline state, queue drained (up to 10 s), exit 0.
        "TimeoutStopSec=30",
        "KillMode=mixed",
        # One broker connection, the API's clients and database connections.
        "LimitNOFILE=65536",
        "SyslogIdentifier=govedge-fleet" + ("" if layout.role == "all" else f"-{layout.role}"),
        "",
        "[Install]",
        f"WantedBy={TARGET if in_target else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


def render_target(workers: int | WorkerSplit) -> str:
    """``govedge-fleet.target``: wants workers 1..``workers`` of the template, or the
    API workers 1..N and the ingest workers on their ports."""
    if isinstance(workers, WorkerSplit):
        instances = workers.instances()
        counted = f"{workers.api} API and {workers.ingest} ingest worker(s)"
    else:
        instances = [f"govedge-fleet@{n}.service" for n in range(1, workers + 1)]
        counted = f"{workers} worker(s)"
    wants = " ".join(instances)
    return "\n".join([
        f"# govedge fleet server workers ({TARGET}), generated by `fleet-server service units`.",
        "[Unit]",
        f"Description=govedge fleet server, {counted} of this machine",
        f"Wants={wants} {RELOAD_TIMER}",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])  # fmt: skip


def render_reload_service(layout: ServerLayout) -> str:
    """``govedge-broker-reload.service``: rewrite the CRL and reload the broker, once."""
    layout.check()
    return "\n".join([
        f"# CRL refresh ({RELOAD_SERVICE}), generated by `fleet-server service units`;",
        f"# started daily by {RELOAD_TIMER} (docs/security.md, \"Revocation\").",
        "[Unit]",
        "Description=govedge fleet: rewrite the CRL and make the broker reload it",
        "Wants=network-online.target",
        "After=network-online.target postgresql.service mosquitto.service",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={layout.venv}/bin/fleet-server broker-reload",
        *_hardening(layout),
        "TimeoutStartSec=120",
        "SyslogIdentifier=govedge-broker-reload",
        "",
    ])  # fmt: skip


def render_reload_timer() -> str:
    """``govedge-broker-reload.timer``: daily, and after a boot that missed it."""
    return "\n".join([
        f"# CRL refresh timer ({RELOAD_TIMER}), generated by `fleet-server service units`.",
        "[Unit]",
        "Description=govedge fleet: daily CRL refresh",
        "",
        "[Timer]",
        "OnCalendar=daily",
        "RandomizedDelaySec=1h",
        "Persistent=true",
        f"Unit={RELOAD_SERVICE}",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])  # fmt: skip


@dataclass(frozen=True, slots=True)
class WorkerSplit:
    """``api`` API workers (instances 1..N) and ``ingest`` ingest workers (instances:
    the loopback ports from ``ingest_port`` on)."""

    api: int
    ingest: int
    ingest_port: int = INGEST_PORT

    def check(self) -> None:
        for what, count in (("api workers", self.api), ("ingest workers", self.ingest)):
            _check_count(what, count)
        last = self.ingest_port + self.ingest - 1
        if self.ingest_port < 1024 or last > 65535:
            raise UnitError(f"ingest ports must lie in 1024-65535, got {self.ingest_port}-{last}")

    def instances(self) -> list[str]:
        api = [f"govedge-fleet-api@{n}.service" for n in range(1, self.api + 1)]
        ports = range(self.ingest_port, self.ingest_port + self.ingest)
        return api + [f"govedge-fleet-ingest@{port}.service" for port in ports]


def _check_count(what: str, count: int) -> None:
    if not 1 <= count <= MAX_WORKERS:
        raise UnitError(f"{what} must be 1 to {MAX_WORKERS}, got {count}")


def render_units(layout: ServerLayout, *, workers: int | WorkerSplit) -> dict[str, str]:
    """File name → text of the whole set (the worker template(s), target, CRL refresh)."""
    if isinstance(workers, WorkerSplit):
        workers.check()
        roles = ["api", "ingest"]
    else:
        _check_count("workers", workers)
        roles = ["all"]
    templates = [
        ServerLayout(
            venv=layout.venv, env_file=layout.env_file, state_dir=layout.state_dir,
            user=layout.user, writable=layout.writable, template=True, role=role,
        )
        for role in roles
    ]  # fmt: skip
    return {
        **{t.name: render_server_unit(t, in_target=True) for t in templates},
        TARGET: render_target(workers),
        RELOAD_SERVICE: render_reload_service(layout),
        RELOAD_TIMER: render_reload_timer(),
    }


def _layout_options(command: Any) -> Any:
    """The layout options ``service unit`` and ``service units`` share."""
    options = [
        click.option("--venv", default=str(DEFAULT_VENV), show_default=True,
                     help="The virtualenv the server is installed in."),
        click.option("--env-file", default=str(DEFAULT_ENV_FILE), show_default=True,
                     help="GOVEDGE_* settings, one per line."),
        click.option("--state-dir", default=str(DEFAULT_STATE_DIR), show_default=True,
                     help="/var/lib/NAME: GOVEDGE_STATE_DIR, PKI, PII keys, releases."),
        click.option("--user", default="govedge-fleet", show_default=True,
                     help="Service user."),
        click.option("--writable", multiple=True,
                     help="Another directory the server writes (the broker's CRL copy)."),
    ]  # fmt: skip
    for option in reversed(options):  # as if stacked as decorators, in this order
        command = option(command)
    return command


@click.group(name="service")
def service() -> None:
    """The fleet server as a systemd service (docs/deploy.md)."""


@service.command("unit")
@_layout_options
@click.option("--template", is_flag=True,
              help="govedge-fleet@.service: one instance per worker of this machine.")  # fmt: skip
def unit(
    venv: str, env_file: str, state_dir: str, user: str, writable: tuple[str, ...],
    template: bool,
) -> None:  # fmt: skip
    """Print the systemd unit (install as /etc/systemd/system/govedge-fleet.service)."""
    layout = ServerLayout(
        venv=PurePosixPath(venv), env_file=PurePosixPath(env_file),
        state_dir=PurePosixPath(state_dir), user=user,
        writable=tuple(PurePosixPath(w) for w in writable), template=template,
    )  # fmt: skip
    try:
        click.echo(render_server_unit(layout), nl=False)
    except UnitError as exc:
        click.echo(f"fleet-server service unit: error: {exc}", err=True)
        sys.exit(2)


@service.command("units")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the unit files (/etc/systemd/system).")  # fmt: skip
@click.option(
    "--workers",
    type=int,
    help="Workers (each runs everything) govedge-fleet.target starts on this "
    "machine.  [default: 2]",
)
@click.option(
    "--api-workers",
    type=int,
    help="API workers (run --role api), with --ingest-workers instead of --workers.",
)
@click.option(
    "--ingest-workers", type=int, help="Ingest workers (run --role ingest), with --api-workers."
)
@click.option(
    "--ingest-port",
    type=int,
    default=INGEST_PORT,
    show_default=True,
    help="The first ingest worker's loopback port for probes and /metrics.",
)
@_layout_options
def units(
    out_dir: Path, workers: int | None, api_workers: int | None, ingest_workers: int | None,
    ingest_port: int, venv: str, env_file: str, state_dir: str, user: str,
    writable: tuple[str, ...],
) -> None:  # fmt: skip
    """Write the worker template(s), govedge-fleet.target and the CRL refresh timer."""
    layout = ServerLayout(
        venv=PurePosixPath(venv), env_file=PurePosixPath(env_file),
        state_dir=PurePosixPath(state_dir), user=user,
        writable=tuple(PurePosixPath(w) for w in writable),
    )  # fmt: skip
    try:
        split = _workers(workers, api_workers, ingest_workers, ingest_port)
        rendered = render_units(layout, workers=split)
    except UnitError as exc:
        click.echo(f"fleet-server service units: error: {exc}", err=True)
        sys.exit(2)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        click.echo(out_dir / name)


def _workers(
    workers: int | None, api: int | None, ingest: int | None, ingest_port: int
) -> int | WorkerSplit:
    """``--workers`` (default 2), or the split by role; a mix of the two is refused."""
    if api is None and ingest is None:
        return 2 if workers is None else workers
    if workers is not None:
        raise UnitError(
            "give --workers (every worker runs everything) or --api-workers with "
            "--ingest-workers, not both"
        )
    if api is None or ingest is None:
        raise UnitError("--api-workers and --ingest-workers go together (at least 1 each)")
    return WorkerSplit(api=api, ingest=ingest, ingest_port=ingest_port)
