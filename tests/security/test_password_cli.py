"""``fleet-server users`` for the web login: a password from stdin or generated, a
password change that ends sessions, unlock after a lockout, sessions listed and revoked;
each change in the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from fleet_server.cli import main as fleet_server_cli
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.models import AuditEntry, User
from fleet_server.security.passwords import Lockout, LoginResult, check_login
from fleet_server.security.sessions import open_session, session_principal

POLICY = Lockout(max_failures=5, window=timedelta(minutes=15), address_max_failures=50)


def _login(url: str, name: str, password: str) -> LoginResult:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine).begin() as session:
            return check_login(
                session, name=name, password=password, address="192.0.2.7", policy=POLICY,
                now=datetime.now(UTC),
            ).result  # fmt: skip
    finally:
        engine.dispose()


def _actions(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    finally:
        engine.dispose()


def test_add_passwd_unlock_and_sessions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    run = CliRunner().invoke
    db = ["--database-url", url]

    add_ada = ["users", "add", "ada", "--role", "operator", "--password-stdin", *db]
    added = run(fleet_server_cli, add_ada, input="first password 1\n")
    assert added.exit_code == 0, added.output
    assert any(line.startswith("gvt_") for line in added.output.splitlines())  # for scripts
    assert "first password 1" not in added.output
    assert _login(url, "ada", "first password 1") is LoginResult.OK
    short = run(fleet_server_cli, ["users", "add", "bo", "--role", "viewer", "--password-stdin",
                                   *db], input="short\n")  # fmt: skip
    assert short.exit_code == 1
    assert "at least 10 characters" in short.output
    listed = run(fleet_server_cli, ["users", "list", *db])
    assert "bo" not in listed.output  # nothing was created

    made = run(fleet_server_cli, ["users", "add", "cy", "--role", "viewer",
                                  "--generate-password", *db])  # fmt: skip
    assert made.exit_code == 0, made.output
    lines = made.output.splitlines()
    generated = lines[lines.index("web password for cy, shown only now:") + 1]
    assert _login(url, "cy", generated) is LoginResult.OK

    # A session, then a password change: the session ends, the new password works.
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        user_id = session.scalars(select(User.id).where(User.name == "ada")).one()
        secret = open_session(session, user_id=user_id, ttl=timedelta(hours=1),
                              now=datetime.now(UTC))  # fmt: skip
    listed = run(fleet_server_cli, ["users", "sessions", "ada", *db])
    assert "1 web sessions of ada" in listed.output
    changed = run(fleet_server_cli, ["users", "passwd", "ada", "--password-stdin", *db],
                  input="second password 2\n")  # fmt: skip
    assert changed.exit_code == 0, changed.output
    with make_sessionmaker(engine)() as session:
        idle = timedelta(minutes=30)
        assert session_principal(session, secret, idle=idle, now=datetime.now(UTC)) is None
    engine.dispose()
    assert _login(url, "ada", "first password 1") is LoginResult.WRONG
    assert _login(url, "ada", "second password 2") is LoginResult.OK

    # Five wrong passwords lock ada; an admin's unlock lets the right one in again.
    results = [_login(url, "ada", "guess") for _ in range(5)]
    assert results[-1] is LoginResult.USER_LOCKED
    assert _login(url, "ada", "second password 2") is LoginResult.USER_LOCKED
    unlocked = run(fleet_server_cli, ["users", "unlock", "ada", *db])
    assert unlocked.exit_code == 0, unlocked.output
    assert "5 failed logins forgotten" in unlocked.output
    assert _login(url, "ada", "second password 2") is LoginResult.OK
    assert run(fleet_server_cli, ["users", "unlock", "nobody", *db]).exit_code == 1

    revoked = run(fleet_server_cli, ["users", "sessions", "ada", "--revoke", *db])
    assert revoked.exit_code == 0
    assert {"user.password", "user.unlock", "user.sessions_revoke"} <= set(_actions(url))


def test_the_first_admin_is_written_to_a_private_file_never_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Under systemd stdout is the journal, which the adm group reads: the first admin's
    # secrets go to a 0600 file under the state directory, stdout names the file only.
    from fleet_server.migrate import upgrade
    from fleet_server.security.users import authenticate
    from fleet_server.security_cli import bootstrap
    from fleet_server.settings import Settings

    url = f"sqlite:///{tmp_path / 'first.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    state = tmp_path / "var-lib-govedge"
    bootstrap(Settings(database_url=url, state_dir=state))
    printed = capsys.readouterr()

    secret_file = state / "first-admin.txt"
    assert str(secret_file) in printed.out
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700
    values = dict(
        line.split("=", 1) for line in secret_file.read_text().splitlines() if "=" in line
    )
    assert values["user"] == "admin"
    for secret in (values["password"], values["api_token"]):
        assert secret not in printed.out
        assert secret not in printed.err
    assert _login(url, "admin", values["password"]) is LoginResult.OK
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            principal = authenticate(session, values["api_token"], now=datetime.now(UTC))
    finally:
        engine.dispose()
    assert principal is not None
    assert principal.name == "admin"
    assert [p.name for p in state.iterdir()] == ["first-admin.txt"]  # no partial left

    bootstrap(Settings(database_url=url, state_dir=state))  # not again
    assert capsys.readouterr().out == ""
    assert secret_file.read_text().count(values["password"]) == 1
