"""``fleet-server`` commands for security: ``users …``, ``enroll-token``, ``broker-config``.

Each opens the database itself (upgrading it first, like ``run``), so it works before
the first start. Tokens are printed to stdout once and never logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

import click

from fleet_server import login_cli
from fleet_server.broker_config import BrokerConfigError, write_broker_config
from fleet_server.cli_session import cli_session, cli_settings
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.pki import FleetCA, PkiError
from fleet_server.security import NewToken, Role, SecurityError
from fleet_server.security import enrollment as enrollment_ops
from fleet_server.security import passwords as password_ops
from fleet_server.security import users as user_ops
from fleet_server.security.broker_control import reload_broker
from fleet_server.settings import Settings

_DB_HELP = "sqlite:///PATH or postgresql+psycopg://... (GOVEDGE_DATABASE_URL)."
_CLI_ACTOR = "cli"

logger = logging.getLogger(__name__)


_settings = cli_settings
_session = cli_session


def _fail(exc: Exception) -> None:
    click.echo(f"fleet-server: {exc}", err=True)
    sys.exit(1)


def _echo_token(new: NewToken) -> None:
    click.echo(f"user {new.user} ({new.role.value}); API token, shown only now:")
    click.echo(new.token)
    click.echo(f"expires {new.expires_at.isoformat()}")


@click.group()
def users() -> None:
    """Operator accounts: add, list, disable, token."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--database-url", help=_DB_HELP)
@click.option("--ttl-days", type=click.IntRange(1, 366), default=None, help="Token lifetime.")
@click.option("--password-stdin", is_flag=True, help="Read the web password from stdin.")
@click.option("--generate-password", is_flag=True, help="Generate a password and print it.")
@click.option(
    "--region", "regions", multiple=True, metavar="PREFIX",
    help="Limit the user to outlets whose region code starts with PREFIX (repeatable).",
)  # fmt: skip
def users_add(
    name: str,
    role: str,
    database_url: str | None,
    ttl_days: int | None,
    regions: tuple[str, ...],
    *,
    password_stdin: bool,
    generate_password: bool,
) -> None:
    """Create an account: ask for its web password (on a terminal), print its API token.

    Without a terminal and without --password-stdin/--generate-password the account has
    a token only (scripts); `users passwd` sets a password later.
    """
    settings = _settings(database_url=database_url)
    ttl = timedelta(days=ttl_days) if ttl_days else timedelta(seconds=settings.api_token_ttl_s)
    password, generated = login_cli.read_password(
        from_stdin=password_stdin, generate=generate_password
    )
    with _session(settings) as session:
        try:
            if password is not None:
                password_ops.check_strength(password)
            new = user_ops.create_user(
                session, name=name, role=Role(role), ttl=ttl, actor=_CLI_ACTOR, regions=regions
            )
            if password is not None:
                password_ops.set_password(session, name=name, password=password, actor=_CLI_ACTOR)
        except SecurityError as exc:
            _fail(exc)
            return
    _echo_token(new)
    if generated:
        click.echo(f"web password for {name}, shown only now:")
        click.echo(password)
    elif password is None:
        click.echo(f"no web password set; `fleet-server users passwd {name}` sets one", err=True)


@users.command("token")
@click.argument("name")
@click.option("--database-url", help=_DB_HELP)
@click.option("--ttl-days", type=click.IntRange(1, 366), default=None, help="Token lifetime.")
def users_token(name: str, database_url: str | None, ttl_days: int | None) -> None:
    """Print a new API token for an existing account (old ones stay until they expire)."""
    settings = _settings(database_url=database_url)
    ttl = timedelta(days=ttl_days) if ttl_days else timedelta(seconds=settings.api_token_ttl_s)
    with _session(settings) as session:
        try:
            new = user_ops.issue_token(session, name=name, ttl=ttl, actor=_CLI_ACTOR)
        except SecurityError as exc:
            _fail(exc)
            return
    _echo_token(new)


@users.command("list")
@click.option("--database-url", help=_DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def users_list(database_url: str | None, *, as_json: bool) -> None:
    """List accounts (never tokens)."""
    settings = _settings(database_url=database_url)
    with _session(settings) as session:
        rows = [
            {
                "name": u.name,
                "role": u.role,
                "disabled": u.disabled,
                "created_at": u.created_at.isoformat(),
                "regions": list(u.region_prefixes or []),
            }
            for u in user_ops.list_users(session)
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        flag = "  DISABLED" if row["disabled"] else ""
        regions = row["regions"]
        where = " ".join(regions) if isinstance(regions, list) and regions else "whole fleet"
        click.echo(f"{row['name']:<24} {row['role']:<11} {row['created_at']}  {where}{flag}")


@users.command("scope")
@click.argument("name")
@click.option("--region", "regions", multiple=True, metavar="PREFIX",
              help="A region-code prefix the user is limited to (repeatable).")  # fmt: skip
@click.option("--all", "whole", is_flag=True, help="The whole fleet (no limit).")
@click.option("--database-url", help=_DB_HELP)
def users_scope(
    name: str, regions: tuple[str, ...], database_url: str | None, *, whole: bool
) -> None:
    """Set the outlets a user sees and acts on; applies to their next request."""
    if whole == bool(regions):
        _fail(click.UsageError("give either --region PREFIX (one or more) or --all"))
        return
    settings = _settings(database_url=database_url)
    with _session(settings) as session:
        try:
            user = user_ops.set_scope(session, name=name, regions=regions, actor=_CLI_ACTOR)
        except SecurityError as exc:
            _fail(exc)
            return
        shown = " ".join(user.region_prefixes) or "the whole fleet"
    click.echo(f"user {name}: {shown}")


@users.command("disable")
@click.argument("name")
@click.option("--database-url", help=_DB_HELP)
def users_disable(name: str, database_url: str | None) -> None:
    """Disable an account; its tokens stop working at once."""
    settings = _settings(database_url=database_url)
    with _session(settings) as session:
        try:
            user_ops.disable_user(session, name=name, actor=_CLI_ACTOR)
        except SecurityError as exc:
            _fail(exc)
            return
    click.echo(f"user {name} disabled")


users.add_command(login_cli.users_passwd)
users.add_command(login_cli.users_unlock)
users.add_command(login_cli.users_sessions)


@click.command("enroll-token")
@click.argument("outlet_id")
@click.option(
    "--ttl",
    "ttl_s",
    type=click.IntRange(60, 30 * 86_400),
    default=86_400,
    show_default=True,
    help="Seconds the token stays valid.",
)
@click.option("--database-url", help=_DB_HELP)
def enroll_token(outlet_id: str, ttl_s: int, database_url: str | None) -> None:
    """Print a one-time enrollment token for OUTLET_ID (for `edge-agent enroll`)."""
    settings = _settings(database_url=database_url)
    with _session(settings) as session:
        try:
            new = enrollment_ops.create_enrollment(
                session, outlet_id=outlet_id, ttl=timedelta(seconds=ttl_s), actor=_CLI_ACTOR
            )
        except SecurityError as exc:
            _fail(exc)
            return
    click.echo(new.token)
    click.echo(f"outlet {new.outlet_id}; valid once until {new.expires_at.isoformat()}", err=True)


@click.command("broker-config")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8883, show_default=True)
@click.option("--bind", default="", help="Listener address (default: all).")
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="Name or IP agents use for the broker (repeat; default localhost, 127.0.0.1).",
)
@click.option(
    "--pki-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Fleet CA directory (GOVEDGE_PKI_DIR).",
)
@click.option(
    "--crl-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="CRL copy the broker reads, rewritten on every revocation (default: OUT/crl.pem).",
)
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Have Mosquitto write its pid here (for GOVEDGE_BROKER_PID_FILE: reload on revoke); "
    "not with Debian's conf.d, whose mosquitto.conf has one.",
)
@click.option(
    "--conf-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Listener config file (default: OUT/mosquitto.conf; Debian: "
    "/etc/mosquitto/conf.d/govedge.conf).",
)
def broker_config(
    out: Path,
    port: int,
    bind: str,
    hostnames: tuple[str, ...],
    pki_dir: Path | None,
    crl_file: Path | None,
    pid_file: Path | None,
    conf_file: Path | None,
) -> None:
    """Write a Mosquitto TLS config, its ACL, certificates and the CRL's copy to --out."""
    settings = _settings(pki_dir=pki_dir)
    try:
        ca = FleetCA(settings.pki_dir)
        files = write_broker_config(
            ca,
            out,
            port=port,
            bind=bind,
            hostnames=hostnames or ("localhost", "127.0.0.1"),
            crl_file=crl_file,
            pid_file=pid_file,
            conf_file=conf_file,
        )
        ca.ensure_server_client()
    except (PkiError, OSError, BrokerConfigError) as exc:
        _fail(exc)
        return
    click.echo(f"wrote {files.conf} (ACL {files.acl}, CRL copy {files.crl})")
    if files.share_guard is None:
        click.echo(
            f"warning: share guard not built ({files.share_guard_missing}): an outlet's key "
            "holder may join the workers' share group and make them lose messages; keep "
            "GOVEDGE_MQTT_SHARE_GROUP secret until it is (docs/security.md, Shared "
            "subscriptions)",
            err=True,
        )
    if files.dynsec is None:
        click.echo(
            "warning: Mosquitto's dynamic-security plugin was not found: a revocation ends "
            "only the agent's own client id, not a connection under another one "
            "(docs/security.md, Revocation)",
            err=True,
        )


@click.command("broker-reload")
@click.option("--database-url", help=_DB_HELP)
@click.option(
    "--pki-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Fleet CA directory (GOVEDGE_PKI_DIR).",
)
def broker_reload(database_url: str | None, pki_dir: Path | None) -> None:
    """Rewrite the CRL (fresh nextUpdate) and make the broker reload it.

    Uses GOVEDGE_BROKER_PID_FILE or GOVEDGE_BROKER_RELOAD_COMMAND; run it from a timer so
    the broker never holds an expired CRL (which would refuse every client).
    """
    settings = _settings(database_url=database_url, pki_dir=pki_dir)
    try:
        with _session(settings) as session:
            enrollment_ops.write_crl(session, FleetCA(settings.pki_dir))
    except (PkiError, OSError) as exc:
        _fail(exc)
        return
    done, how = reload_broker(settings)
    if not done:
        _fail(RuntimeError(how))
        return
    click.echo(f"CRL rewritten; {how}")


def register(main: click.Group) -> None:
    """Add these commands to the ``fleet-server`` group."""
    main.add_command(users)
    main.add_command(enroll_token)
    main.add_command(broker_config)
    main.add_command(broker_reload)


def _reload_at_start(settings: Settings) -> None:
    """The CRL was just rewritten: let a configured broker reload it (best effort)."""
    if settings.broker_pid_file is None and not settings.broker_reload_command:
        return
    done, how = reload_broker(settings)
    (logger.info if done else logger.warning)("CRL rewritten at start: %s", how)


FIRST_ADMIN_FILE = "first-admin.txt"


def write_first_admin(settings: Settings, new: NewToken, password: str) -> Path:
    """``state_dir/first-admin.txt``, mode 0600 from its creation (never readable by
    others, not even for a moment), replacing an older one whole; its path."""
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = (settings.state_dir / FIRST_ADMIN_FILE).absolute()
    partial = path.with_name(f".{FIRST_ADMIN_FILE}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(
            "# govedge fleet server: the first admin account, made at the first start.\n"
            "# Log in at the server's address (/) and change the password with\n"
            f"# `fleet-server users passwd {new.user}`; then delete this file.\n"
            f"user={new.user}\n"
            f"password={password}\n"
            f"api_token={new.token}\n"
            f"api_token_expires={new.expires_at.isoformat()}\n"
        )
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return path


def bootstrap(settings: Settings) -> None:
    """At ``run``: create the first admin if there is no account, and rewrite the CRL so
    its nextUpdate stays in the future.

    The first admin's token and password go to a file only the service user reads
    (``write_first_admin``); stdout, which systemd keeps in the journal for anyone in
    the ``adm`` or ``systemd-journal`` group, gets its path only.
    """
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            new = user_ops.ensure_first_admin(
                session, ttl=timedelta(seconds=settings.api_token_ttl_s)
            )
            if new is not None:
                # A password too, so the operator pages can be opened at once (/).
                password = password_ops.generate_password()
                password_ops.set_password(session, name=new.user, password=password, actor="system")
                try:
                    path = write_first_admin(settings, new, password)
                except OSError as exc:
                    # The account exists; its password and token can be reset by hand.
                    click.echo(
                        f"fleet-server: created the first admin {new.user!r} but could not "
                        f"write its password file in {settings.state_dir}: {exc.strerror}; "
                        f"set one with `fleet-server users passwd {new.user}` and get a token "
                        f"with `fleet-server users token {new.user}`",
                        err=True,
                    )
                else:
                    click.echo(
                        f"fleet-server: created the first admin {new.user!r}; its web password"
                        f" and API token are in {path} (readable by this service's user only;"
                        " read it, change the password, delete the file)"
                    )
                sys.stdout.flush()
            if (settings.pki_dir / "ca.key").exists():
                enrollment_ops.write_crl(session, FleetCA(settings.pki_dir))
                _reload_at_start(settings)
    finally:
        engine.dispose()
