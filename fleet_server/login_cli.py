"""``fleet-server users`` commands for the web login: passwords, lockout, sessions.

``users add`` (in ``security_cli``) sets the first password through ``read_password``;
``passwd``, ``unlock`` and ``sessions`` are here. Passwords are read from the terminal
(asked twice) or from stdin (``--password-stdin``), never from an argument, which other
users of the machine could see in the process list.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from datetime import UTC, datetime

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.cli_session import cli_session, cli_settings
from fleet_server.models import User
from fleet_server.security import SecurityError
from fleet_server.security import passwords as password_ops
from fleet_server.security.sessions import list_sessions

DB_HELP = "sqlite:///PATH or postgresql+psycopg://... (GOVEDGE_DATABASE_URL)."
CLI_ACTOR = "cli"


def read_password(*, from_stdin: bool, generate: bool) -> tuple[str | None, bool]:
    """The password to set and whether it was generated (so it must be printed).

    Neither flag and no terminal: None (a token-only account, for scripts).
    """
    if generate:
        return password_ops.generate_password(), True
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if not sys.stdin.isatty():
        return None, False
    return click.prompt("password", hide_input=True, confirmation_prompt=True), False


def _fail(exc: Exception) -> None:
    click.echo(f"fleet-server: {exc}", err=True)
    sys.exit(1)


def _user_id(session: Session, name: str) -> int:
    user_id = session.scalar(select(User.id).where(User.name == name))
    if user_id is None:
        _fail(SecurityError(f"user {name!r} not found"))
    return int(user_id or 0)


def _open(database_url: str | None) -> AbstractContextManager[Session]:
    return cli_session(cli_settings(database_url=database_url))


@click.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--generate-password", is_flag=True, help="Generate one and print it.")
@click.option("--database-url", help=DB_HELP)
def users_passwd(
    name: str, database_url: str | None, *, password_stdin: bool, generate_password: bool
) -> None:
    """Set NAME's password; their open web sessions end (API tokens stay)."""
    password, generated = read_password(from_stdin=password_stdin, generate=generate_password)
    if password is None:
        _fail(SecurityError("no terminal: use --password-stdin or --generate-password"))
        return
    with _open(database_url) as session:
        try:
            password_ops.set_password(session, name=name, password=password, actor=CLI_ACTOR)
        except SecurityError as exc:
            _fail(exc)
            return
    if generated:
        click.echo(f"password for {name}, shown only now:")
        click.echo(password)
    click.echo(f"password of {name} changed; their web sessions were ended", err=True)


@click.command("unlock")
@click.argument("name")
@click.option("--database-url", help=DB_HELP)
def users_unlock(name: str, database_url: str | None) -> None:
    """Lift NAME's login lockout (forget their failed logins)."""
    with _open(database_url) as session:
        _user_id(session, name)
        count = password_ops.unlock(session, name=name, actor=CLI_ACTOR)
    click.echo(f"user {name} unlocked ({count} failed logins forgotten)")


@click.command("sessions")
@click.argument("name")
@click.option("--revoke", is_flag=True, help="End all of NAME's web sessions.")
@click.option("--database-url", help=DB_HELP)
def users_sessions(name: str, database_url: str | None, *, revoke: bool) -> None:
    """List NAME's web sessions, or end them all with --revoke."""
    with _open(database_url) as session:
        user_id = _user_id(session, name)
        if revoke:
            count = password_ops.end_sessions(session, name=name, user_id=user_id, actor=CLI_ACTOR)
            click.echo(f"{count} web sessions of {name} ended")
            return
        rows = list_sessions(session, user_id=user_id, now=datetime.now(UTC))
    click.echo(f"{len(rows)} web sessions of {name}")
    for row in rows:
        click.echo(
            f"since {row.created_at.isoformat()}  last used {row.last_used_at.isoformat()}"
            f"  ends {row.expires_at.isoformat()}"
        )
