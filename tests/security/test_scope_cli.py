"""``fleet-server users add --region`` and ``users scope``: stored, listed, audited, and
carried by a web session from its next request (no stale session keeps an old scope)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from fleet_server.cli import main as fleet_server_cli
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.tables import OutletProfile
from fleet_server.models import AuditEntry, User
from fleet_server.security.scope import _PROFILES, Scope, normalise
from fleet_server.security.sessions import open_session, session_principal


def test_add_scope_list_and_a_live_session(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    run = CliRunner().invoke
    db = ["--database-url", url]
    added = run(fleet_server_cli, ["users", "add", "zoe", "--role", "operator",
                                   "--region", "4101", "--region", "4102", *db])  # fmt: skip
    assert added.exit_code == 0, added.output
    listed = json.loads(run(fleet_server_cli, ["users", "list", "--json", *db]).output)
    assert [u["regions"] for u in listed if u["name"] == "zoe"] == [["4101", "4102"]]

    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as session:
        user_id = session.scalars(select(User.id).where(User.name == "zoe")).one()
        secret = open_session(session, user_id=user_id, ttl=timedelta(hours=1),
                              now=datetime.now(UTC))  # fmt: skip

    def scope_now() -> Scope:
        with make_sessionmaker(engine).begin() as session:
            principal = session_principal(session, secret, idle=timedelta(hours=1),
                                          now=datetime.now(UTC))  # fmt: skip
            assert principal is not None
            return principal.scope

    assert scope_now() == Scope(("4101", "4102"))
    changed = run(fleet_server_cli, ["users", "scope", "zoe", "--region", "4201", *db])
    assert changed.exit_code == 0, changed.output
    assert scope_now() == Scope(("4201",))
    assert run(fleet_server_cli, ["users", "scope", "zoe", "--all", *db]).exit_code == 0
    assert scope_now().whole_fleet
    both = run(fleet_server_cli, ["users", "scope", "zoe", "--all", "--region", "41", *db])
    assert both.exit_code != 0
    bad = run(fleet_server_cli, ["users", "scope", "zoe", "--region", "41x", *db])
    assert bad.exit_code == 1
    assert "2-12 digits" in bad.output
    admin = run(fleet_server_cli, ["users", "add", "root2", "--role", "admin",
                                   "--region", "41", *db])  # fmt: skip
    assert admin.exit_code == 1
    assert "whole-fleet" in admin.output
    with make_sessionmaker(engine)() as session:
        actions = list(session.scalars(select(AuditEntry.action).where(
            AuditEntry.target == "user:zoe")))  # fmt: skip
    engine.dispose()
    assert actions == ["user.create", "user.scope", "user.scope"]


def test_prefixes_are_normalised() -> None:
    assert normalise(["4102", "41", "4101", "41"]) == ("41",)
    assert normalise(["4201", "4101"]) == ("4101", "4201")
    assert Scope(("4101",)).admits_region("410102")
    assert not Scope(("4101",)).admits_region("4201")
    assert not Scope(("4101",)).admits_region(None)


def test_the_lightweight_profile_table_matches_the_model() -> None:
    model = OutletProfile.__table__
    assert _PROFILES.name == model.name
    assert {c.name for c in _PROFILES.columns} <= {c.name for c in model.columns}
