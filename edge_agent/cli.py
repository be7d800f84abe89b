"""``edge-agent`` command line; the only place that configures logging.

``edge-agent run`` prints ``edge-agent {outlet_id} started`` to stdout once the signal
handlers are installed, logs to stderr, and exits 0 after SIGTERM/SIGINT, 2 on bad
settings, 1 when the data directory cannot be used.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from edge_agent.errors import AgentError, SettingsError

if TYPE_CHECKING:
    from edge_agent.settings import AgentSettings

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("edge_agent")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc when present)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: AgentSettings) -> None:
    """Log to stderr in the configured format and level."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # paho's packet trace is only wanted when debugging the agent itself.
    mqtt_level = logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    logging.getLogger("edge_agent.mqtt").setLevel(mqtt_level)


def settings_options(func: F) -> F:
    """The options shared by ``run`` and ``show-config``."""
    options = [
        click.option(
            "--config",
            "config_file",
            type=click.Path(path_type=Path),
            default=None,
            help="TOML file with settings (lowest priority after defaults).",
        ),
        click.option(
            "--mqtt-url",
            default=None,
            help="mqtts://host:8883 of the broker (mqtt://host:1883: development only).",
        ),
        click.option("--outlet-id", default=None, help="This outlet's id."),
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Directory for the agent's durable state (created 0700).",
        ),
        click.option(
            "--keys-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Directory for the TLS key, certificate and fleet CA (default DATA_DIR/tls).",
        ),
        click.option(
            "--telemetry-interval",
            "telemetry_interval_s",
            type=float,
            default=None,
            help="Seconds between host telemetry samples (default 30).",
        ),
        click.option(
            "--keepalive",
            "keepalive_s",
            type=int,
            default=None,
            help="MQTT keep-alive in seconds (default 30).",
        ),
        click.option(
            "--reconnect-base",
            "reconnect_base_s",
            type=float,
            default=None,
            help="Backoff base in seconds (default 1).",
        ),
        click.option(
            "--reconnect-cap",
            "reconnect_cap_s",
            type=float,
            default=None,
            help="Backoff cap in seconds (default 60).",
        ),
        click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR."),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default=None,
            help="stderr log format (default text).",
        ),
        click.option(
            "--profiles-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Folder of device profiles (default: the shipped device_profiles/).",
        ),
        click.option(
            "--outbox-quota",
            "outbox_quota_bytes",
            type=int,
            default=None,
            help="Outbox disk quota in bytes (default 2 GiB).",
        ),
        click.option(
            "--outbox-rate",
            "outbox_rate_per_s",
            type=float,
            default=None,
            help="Outbox messages per second to the broker (default 20).",
        ),
        click.option(
            "--simulate/--no-simulate",
            default=None,
            help="Attach a simulator of every device kind instead of real hardware.",
        ),
        click.option(
            "--local-api-port",
            type=int,
            default=None,
            help="Port of the clerks' local API on 127.0.0.1 (default 8765).",
        ),
        click.option(
            "--timezone",
            default=None,
            help="The outlet's IANA time zone (default Asia/Shanghai).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _load_or_exit(config_file: Path | None, cli_values: dict[str, Any]) -> AgentSettings:
    # The daemon, the settings and what they import load in the commands that use them:
    # ``edge-agent supervise``, the parent of the agent on every outlet PC, needs none of
    # it (docs/performance.md, "Agent footprint").
    from edge_agent.settings import load_settings

    try:
        return load_settings(config_file=config_file, **cli_values)
    except SettingsError as exc:
        click.echo(f"edge-agent: error: {exc}", err=True)
        sys.exit(exc.exit_code)


# The technician's and installer's subcommands (module, attribute): imported when named
# or listed (--help), so ``edge-agent run`` does not carry them (issue 17).
_LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "enroll": ("edge_agent.enrollment.cli", "enroll_command"),
    "apps": ("edge_agent.local_api.cli", "apps"),
    "update": ("edge_agent.updates.cli", "update"),
    "service": ("edge_agent.service.cli", "service"),
    "outbox": ("edge_agent.technician.cli", "outbox_command"),
    "certificate": ("edge_agent.technician.cli", "certificate_command"),
    "diagnose": ("edge_agent.technician.cli", "diagnose_command"),
    "device": ("edge_agent.technician.device_cli", "device_command"),
}


class _LazyGroup(click.Group):
    """A group whose ``_LAZY_COMMANDS`` load on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute = _LAZY_COMMANDS[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(name="edge-agent", cls=_LazyGroup)
def main() -> None:
    """govedge edge agent: one per outlet PC."""


@main.command()
@settings_options
def run(config_file: Path | None, **cli_values: Any) -> None:
    """Connect to the broker and run until SIGTERM/SIGINT."""
    from edge_agent.daemon import run_agent

    settings = _load_or_exit(config_file, cli_values)
    configure_logging(settings)

    def announce() -> None:
        click.echo(f"edge-agent {settings.outlet_id} started")
        sys.stdout.flush()

    def announce_simulated(count: int) -> None:
        click.echo(f"edge-agent {settings.outlet_id}: {count} simulated devices attached")
        sys.stdout.flush()

    def announce_local_api(port: int) -> None:
        click.echo(f"edge-agent {settings.outlet_id}: local API on http://127.0.0.1:{port}")
        sys.stdout.flush()

    try:
        code = asyncio.run(
            run_agent(
                settings,
                on_started=announce,
                on_simulated=announce_simulated,
                on_local_api=announce_local_api,
            )
        )
    except* AgentError as group:
        first = group.exceptions[0]
        log.error("%s", first)  # noqa: TRY400 - one line on purpose, no traceback storm
        code = first.exit_code if isinstance(first, AgentError) else 1
        sys.exit(code)
    if code:
        log.info("stopped to restart into an update (exit %d)", code)
        sys.exit(code)
    log.info("stopped")


@main.command(name="show-config")
@settings_options
def show_config(config_file: Path | None, **cli_values: Any) -> None:
    """Print the effective settings as JSON and exit (2 if they are invalid)."""
    settings = _load_or_exit(config_file, cli_values)
    click.echo(settings.model_dump_json(indent=2))


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    default=None,
    help="The install home (default $GOVEDGE_INSTALL_HOME or /opt/govedge).",
)
@click.argument("agent_args", nargs=-1, type=click.UNPROCESSED)
def supervise(home: Path | None, agent_args: tuple[str, ...]) -> None:
    """Run HOME/current's agent (``-- run options``) and roll a failed update back."""
    from edge_agent.supervisor import Supervisor, home_from_env

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)
    args = list(agent_args)
    if args[:1] == ["--"]:
        args = args[1:]
    sys.exit(Supervisor((home or home_from_env()).absolute(), args).run())


@main.group()
def profiles() -> None:
    """Device profiles: check them before deploying."""


@profiles.command(name="check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def profiles_check(path: Path | None) -> None:
    """Validate profiles (a file or folder; default the shipped ones); exit 1 on problems."""
    from edge_agent.profiles import profiles_check_main

    sys.exit(profiles_check_main(path))


@profiles.command(name="schema")
@click.option("--write", is_flag=True, help="Rewrite schema.json's kind enum from the registry.")
def profiles_schema(write: bool) -> None:
    """Check (or with --write regenerate) schema.json's kind enum against the device kinds."""
    from edge_agent.profiles.kinds import schema_is_current, write_schema
    from edge_agent.profiles.loader import SCHEMA_PATH

    if write:
        changed = write_schema()
        click.echo(f"{SCHEMA_PATH}: {'rewritten' if changed else 'already current'}")
    elif not schema_is_current():
        click.echo(f"{SCHEMA_PATH} is stale: run edge-agent profiles schema --write", err=True)
        sys.exit(1)


__all__ = ["main"]
