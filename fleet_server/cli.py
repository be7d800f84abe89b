"""``fleet-server``: ``run`` the API and ingest, ``migrate`` the database, ``catalogue import``,
``evaluation-profile`` (a built-in 好差评 profile as a config document), ``releases add``.

Options override ``GOVEDGE_*`` environment variables, which override the defaults.
This is the only place that configures logging.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from fleet_server import (
    config_key_cli,
    grafana_cli,
    releases_cli,
    security_cli,
    service_unit,
    tls_cli,
)
from fleet_server.evaluations.rules import PROFILES
from fleet_server.migrate import upgrade_url
from fleet_server.settings import Settings

if TYPE_CHECKING:
    from fleet_server.routing.targets import TargetsConfig

_DB_HELP = "sqlite:///PATH or postgresql+psycopg://... (GOVEDGE_DATABASE_URL)."
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _settings(**options: str | bool | Path | None) -> Settings:
    overrides = {name: value for name, value in options.items() if value is not None}
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors()
        )
        raise click.UsageError(f"bad settings: {problems}") from None


def _configure_logging(level: str, fmt: str = "text") -> None:
    # Every line is redacted: URLs lose user info and query (webhook tokens), tracebacks
    # of httpx errors included. httpx's per-request INFO lines are noise at our rates.
    from fleet_server.redact import RedactingFormatter

    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        from fleet_server.logjson import JsonFormatter

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter(_LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def _targets(settings: Settings) -> TargetsConfig | None:
    """The validated targets file, or None without one; a bad file exits 2 with the reason.

    Every command that reads the targets file goes through here, so each refuses the same
    file the same way (``fleet_server.routing.targets``).
    """
    from fleet_server.routing.targets import TargetsFileError, load_targets

    if settings.upstream_targets_file is None:
        return None
    try:
        return load_targets(settings.upstream_targets_file)
    except TargetsFileError as exc:
        click.echo(f"fleet-server: bad targets file {exc}", err=True)
        sys.exit(2)


def _check_config_keys(settings: Settings) -> None:
    """A configured but unusable config-signing key stops ``run`` (exit 2) with the reason."""
    from fleet_server.config.keys import ConfigKeyError, load_config_keys

    try:
        load_config_keys(settings)
    except ConfigKeyError as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(2)


def _upgrade(settings: Settings) -> None:
    from fleet_server.piivault import VaultError

    try:
        upgrade_url(settings.database_url, key_dir=settings.pii_key_dir)
    except VaultError as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(2)
    except SQLAlchemyError as exc:
        # hide_parameters keeps row values out of this text; the first line says enough.
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        click.echo(f"fleet-server: cannot migrate the database: {first_line}", err=True)
        sys.exit(3)


@click.group()
def main() -> None:
    """govedge fleet server: registry, presence and MQTT ingest.

    Every command first reads /etc/govedge/fleet-server.env when it exists (or the file
    GOVEDGE_ENV_FILE names; empty: none), as the installed units do (docs/deploy.md).
    """
    from fleet_server.envfile import EnvFileError, load_env_file

    try:
        load_env_file()
    except EnvFileError as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.option("--mqtt-url", help="Broker, mqtt://host:port or mqtts:// (GOVEDGE_MQTT_URL).")
@click.option("--database-url", help=_DB_HELP)
@click.option("--listen", help="HOST:PORT for the HTTP API (GOVEDGE_LISTEN).")
@click.option("--server-id", help="Name in the retained server state (GOVEDGE_SERVER_ID).")
@click.option("--log-level", help="DEBUG, INFO, WARNING… (GOVEDGE_LOG_LEVEL).")
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM certificate (chain) to serve HTTPS with (GOVEDGE_TLS_CERT).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PEM private key of --tls-cert (GOVEDGE_TLS_KEY).",
)
@click.option(
    "--allow-plain-http",
    is_flag=True,
    default=None,
    help="Serve plain HTTP on a non-loopback --listen (GOVEDGE_ALLOW_PLAIN_HTTP).",
)
@click.option(
    "--role",
    type=click.Choice(["all", "api", "ingest"]),
    help="What this process runs (GOVEDGE_ROLE; default all): api = the operator API "
    "and pages, no uplink; ingest = the MQTT ingest, delivery, alerts, campaigns and "
    "purge, with only /healthz, /readyz and /metrics on a loopback --listen.",
)
def run(
    mqtt_url: str | None,
    database_url: str | None,
    listen: str | None,
    server_id: str | None,
    log_level: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    allow_plain_http: bool | None,
    role: str | None,
) -> None:
    """Upgrade the database, then serve the API and ingest MQTT until SIGTERM/SIGINT
    (or one of the two: --role, docs/deploy.md "Roles")."""
    from fleet_server.server import StartupFailed, check_tls_files, serve  # `migrate` stays light

    settings = _settings(
        mqtt_url=mqtt_url,
        database_url=database_url,
        listen=listen,
        server_id=server_id,
        log_level=log_level,
        tls_cert=tls_cert,
        tls_key=tls_key,
        allow_plain_http=allow_plain_http,
        role=role,
    )
    refusal = (
        settings.role_refusal() or settings.plain_http_refusal() or settings.auth_off_refusal()
    )
    if refusal is not None:
        click.echo(f"fleet-server: {refusal}", err=True)
        sys.exit(2)
    _configure_logging(settings.log_level, settings.log_format)
    try:
        check_tls_files(settings)
    except StartupFailed as exc:
        click.echo(f"fleet-server: {exc}", err=True)
        sys.exit(2)
    _check_config_keys(settings)
    targets = _targets(settings)
    _upgrade(settings)
    security_cli.bootstrap(settings)
    try:
        serve(settings, targets=targets)
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
    _upgrade(settings)
    click.echo("database schema is up to date")


@main.group()
def catalogue() -> None:
    """The service-item catalogue (事项清单)."""


@catalogue.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--database-url", help=_DB_HELP)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), help="Default: by suffix.")
@click.option("--replace", is_flag=True, help="Also delete items the file does not list.")
def catalogue_import(
    file: Path, database_url: str | None, fmt: str | None, *, replace: bool
) -> None:
    """Import FILE (CSV or JSON) all or nothing; errors name the row and the field."""
    from datetime import UTC, datetime

    from fleet_server.catalogue import CatalogueError, import_rows, parse_catalogue
    from fleet_server.db import make_engine, make_sessionmaker

    settings = _settings(database_url=database_url)
    _configure_logging(settings.log_level)
    chosen = fmt or ("json" if file.suffix.lower() == ".json" else "csv")
    config = _targets(settings)
    targets = None if config is None else config.names
    try:
        rows = parse_catalogue(
            file.read_bytes(), fmt="json" if chosen == "json" else "csv", targets=targets
        )
    except CatalogueError as exc:
        for error in exc.errors:
            click.echo(f"{file}: {error}", err=True)
        click.echo(f"fleet-server: {len(exc.errors)} errors; nothing imported", err=True)
        sys.exit(1)
    _upgrade(settings)
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            counts = import_rows(session, rows, now=datetime.now(UTC), replace=replace)
    finally:
        engine.dispose()
    click.echo(
        f"imported {len(rows)} items: {counts['created']} created, {counts['updated']} updated,"
        f" {counts['deleted']} deleted"
    )


@main.command("evaluation-profile")
@click.argument("name", type=click.Choice(list(PROFILES)))
def evaluation_profile(name: str) -> None:
    """Print the built-in 好差评 profile NAME as a config document (docs/config.md), to
    set on a config scope as is or edited."""
    import json

    part = PROFILES[name].to_config().model_dump(mode="json", exclude_none=True)
    click.echo(json.dumps({"evaluation": part}, ensure_ascii=False, indent=2))


security_cli.register(main)
main.add_command(tls_cli.https_cert)
main.add_command(config_key_cli.config_key)
main.add_command(releases_cli.releases)
main.add_command(service_unit.service)
grafana_cli.register(main)
