"""``fleet-server``: ``run`` the API and ingest in one process, or ``migrate`` the database.

Options override ``GOVEDGE_*`` environment variables, which override the defaults.
This is the only place that configures logging.
"""

from __future__ import annotations

import logging
import sys

import click
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from fleet_server.migrate import upgrade_url
from fleet_server.settings import Settings

_DB_HELP = "sqlite:///PATH or postgresql+psycopg://... (GOVEDGE_DATABASE_URL)."
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _settings(**options: str | None) -> Settings:
    overrides = {name: value for name, value in options.items() if value is not None}
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise click.UsageError(f"bad settings: {problems}") from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=_LOG_FORMAT, stream=sys.stderr)


def _upgrade(database_url: str) -> None:
    try:
        upgrade_url(database_url)
    except SQLAlchemyError as exc:
        # hide_parameters keeps row values out of this text; the first line says enough.
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        click.echo(f"fleet-server: cannot migrate the database: {first_line}", err=True)
        sys.exit(3)


@click.group()
def main() -> None:
    """govedge fleet server: registry, presence and MQTT ingest."""


@main.command()
@click.option("--mqtt-url", help="Broker, mqtt://host:port or mqtts:// (GOVEDGE_MQTT_URL).")
@click.option("--database-url", help=_DB_HELP)
@click.option("--listen", help="HOST:PORT for the HTTP API (GOVEDGE_LISTEN).")
@click.option("--server-id", help="Name in the retained server state (GOVEDGE_SERVER_ID).")
@click.option("--log-level", help="DEBUG, INFO, WARNING… (GOVEDGE_LOG_LEVEL).")
def run(
    mqtt_url: str | None,
    database_url: str | None,
    listen: str | None,
    server_id: str | None,
    log_level: str | None,
) -> None:
    """Upgrade the database, then serve the API and ingest MQTT until SIGTERM/SIGINT."""
    from fleet_server.server import StartupFailed, serve  # keeps `migrate` light

    settings = _settings(
        mqtt_url=mqtt_url,
        database_url=database_url,
        listen=listen,
        server_id=server_id,
        log_level=log_level,
    )
    _configure_logging(settings.log_level)
    _upgrade(settings.database_url)
    try:
        serve(settings)
    except StartupFailed as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(3)


@main.command()
@click.option("--database-url", help=_DB_HELP)
@click.option("--log-level", help="DEBUG, INFO, WARNING… (GOVEDGE_LOG_LEVEL).")
def migrate(database_url: str | None, log_level: str | None) -> None:
    """Upgrade the database schema to the newest revision."""
    settings = _settings(database_url=database_url, log_level=log_level)
    _configure_logging(settings.log_level)
    _upgrade(settings.database_url)
    click.echo("database schema is up to date")
