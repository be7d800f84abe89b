"""A database with sealed personal data never gets new PII keys made beside it.

Real ``fleet-server`` processes on a real SQLite file: a database holding a sealed
transaction body, then ``migrate`` (and an admin command) started from another
directory without the key setting. They must refuse, name the directory they looked in
and the setting, create nothing, and leave the body readable with the right keys. The
installed layout (``GOVEDGE_STATE_DIR`` through the settings file) finds the keys from
any directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
BODY = {"applicant_name": "张三", "id_number": "110101199003071234"}

_SEAL = """
import sys
from datetime import UTC, datetime
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.models import InboxEntry as Inbox
engine = make_engine(sys.argv[1])
with make_sessionmaker(engine).begin() as session:
    session.add(Inbox(tx_id="tx-1", outlet_id="o-1", idempotency_key="o-1:tx-1",
                      tx_kind="submission", body={"applicant_name": "张三",
                      "id_number": "110101199003071234"}, created_ts=1,
                      received_at=datetime.now(UTC), state="pending"))
"""

_READ = """
import json, sys
from sqlalchemy import select
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.models import InboxEntry as Inbox
engine = make_engine(sys.argv[1])
with make_sessionmaker(engine)() as session:
    print(json.dumps(session.scalars(select(Inbox)).one().body, ensure_ascii=False))
"""


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without any key or state setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVEDGE_")}
    return {**env, "GOVEDGE_ENV_FILE": "", **extra}


def _run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture
def sealed_database(tmp_path: Path) -> tuple[str, Path]:
    """A migrated SQLite database with one sealed body, and its key directory."""
    keys = tmp_path / "keys"
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    env = _env(GOVEDGE_PII_KEY_DIR=str(keys))
    made = _run(
        [str(BIN / "fleet-server"), "migrate", "--database-url", url], cwd=tmp_path, env=env
    )
    assert made.returncode == 0, made.stderr
    sealed = _run([sys.executable, "-c", _SEAL, url], cwd=tmp_path, env=env)
    assert sealed.returncode == 0, sealed.stderr
    raw = (tmp_path / "fleet.db").read_bytes()
    assert b"110101199003071234" not in raw  # stored sealed
    return url, keys


def _read_body(url: str, keys: Path, cwd: Path) -> object:
    import json

    read = _run(
        [sys.executable, "-c", _READ, url], cwd=cwd, env=_env(GOVEDGE_PII_KEY_DIR=str(keys))
    )
    assert read.returncode == 0, read.stderr
    return json.loads(read.stdout)


@pytest.mark.parametrize("command", [["migrate"], ["users", "list"]], ids=["migrate", "users"])
def test_another_directory_is_refused_and_nothing_is_created(
    sealed_database: tuple[str, Path], tmp_path: Path, command: list[str]
) -> None:
    url, keys = sealed_database
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    keys_before = _files(keys)

    done = _run(
        [str(BIN / "fleet-server"), *command, "--database-url", url], cwd=elsewhere, env=_env()
    )

    assert done.returncode != 0
    assert str(elsewhere / "fleet-pii-keys") in done.stderr
    assert "GOVEDGE_PII_KEY_DIR" in done.stderr
    assert "refusing to create new keys" in done.stderr
    assert _files(elsewhere) == []  # no key directory, no key
    assert _files(keys) == keys_before
    assert _read_body(url, keys, elsewhere) == BODY


def test_an_empty_key_directory_is_refused_too(
    sealed_database: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = sealed_database
    empty = tmp_path / "empty-keys"
    empty.mkdir()
    done = _run(
        [str(BIN / "fleet-server"), "migrate", "--database-url", url],
        cwd=tmp_path, env=_env(GOVEDGE_PII_KEY_DIR=str(empty)),
    )  # fmt: skip
    assert done.returncode == 2
    assert str(empty) in done.stderr
    assert _files(empty) == []


def test_a_key_directory_of_another_database_is_refused(
    sealed_database: tuple[str, Path], tmp_path: Path
) -> None:
    # What an earlier start from the wrong directory left behind: keys, but not these.
    url, keys = sealed_database
    stray = tmp_path / "stray"
    stray.mkdir()
    other = _run(
        [str(BIN / "fleet-server"), "migrate", "--database-url", f"sqlite:///{stray / 'x.db'}"],
        cwd=stray, env=_env(),
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    stray_keys = stray / "fleet-pii-keys"
    before = _files(stray_keys)
    assert len(before) == 1

    done = _run(
        [str(BIN / "fleet-server"), "migrate", "--database-url", url], cwd=stray, env=_env()
    )

    assert done.returncode == 2
    assert str(stray_keys) in done.stderr
    assert "which sealed the newest inbox row" in done.stderr
    assert _files(stray_keys) == before
    assert _read_body(url, keys, stray) == BODY


def test_the_settings_file_finds_the_state_directory_from_anywhere(tmp_path: Path) -> None:
    state = tmp_path / "var-lib-govedge"
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    settings_file = tmp_path / "fleet-server.env"
    settings_file.write_text(
        f"# as in /etc/govedge/fleet-server.env\nGOVEDGE_STATE_DIR={state}\n"
        f'GOVEDGE_DATABASE_URL="{url}"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(GOVEDGE_ENV_FILE=str(settings_file))

    first = _run([str(BIN / "fleet-server"), "migrate"], cwd=elsewhere, env=env)
    assert first.returncode == 0, first.stderr
    sealed = _run([sys.executable, "-c", _SEAL, url], cwd=tmp_path, env=_env(
        GOVEDGE_PII_KEY_DIR=str(state / "fleet-pii-keys")))  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    keys_before = _files(state / "fleet-pii-keys")
    assert len(keys_before) == 1

    again = _run([str(BIN / "fleet-server"), "migrate"], cwd=tmp_path, env=env)

    assert again.returncode == 0, again.stderr
    assert _files(elsewhere) == []
    assert _files(state / "fleet-pii-keys") == keys_before
    assert _read_body(url, state / "fleet-pii-keys", elsewhere) == BODY


def test_a_fresh_database_still_gets_its_first_key_in_the_working_directory(
    tmp_path: Path,
) -> None:
    # The development default (the demo, a first try): no setting, a new database.
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    done = _run(
        [str(BIN / "fleet-server"), "migrate", "--database-url", url], cwd=tmp_path, env=_env()
    )
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "fleet-pii-keys").glob("*.key"))) == 1


def test_a_named_settings_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.env"
    done = _run(
        [str(BIN / "fleet-server"), "migrate", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
        cwd=tmp_path, env=_env(GOVEDGE_ENV_FILE=str(missing)),
    )  # fmt: skip
    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.postgres
def test_postgres_wrong_or_missing_keys_are_refused_and_the_right_ones_accepted(
    postgres_url: str, tmp_path: Path
) -> None:
    keys, stray = tmp_path / "keys", tmp_path / "stray"
    fleet_server = str(BIN / "fleet-server")
    migrate = [fleet_server, "migrate", "--database-url", postgres_url]
    made = _run(migrate, cwd=tmp_path, env=_env(GOVEDGE_PII_KEY_DIR=str(keys)))
    assert made.returncode == 0, made.stderr
    sealed = _run([sys.executable, "-c", _SEAL, postgres_url], cwd=tmp_path,
                  env=_env(GOVEDGE_PII_KEY_DIR=str(keys)))  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    stray_db = _run([fleet_server, "migrate", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
                    cwd=tmp_path, env=_env(GOVEDGE_PII_KEY_DIR=str(stray)))  # fmt: skip
    assert stray_db.returncode == 0, stray_db.stderr

    missing_keys = _run(migrate, cwd=tmp_path, env=_env())
    wrong_keys = _run(migrate, cwd=tmp_path, env=_env(GOVEDGE_PII_KEY_DIR=str(stray)))
    right_keys = _run(migrate, cwd=tmp_path, env=_env(GOVEDGE_PII_KEY_DIR=str(keys)))

    assert missing_keys.returncode == 2
    assert "refusing to create new keys" in missing_keys.stderr
    assert not (tmp_path / "fleet-pii-keys").exists()
    assert wrong_keys.returncode == 2
    assert "which sealed the newest inbox row" in wrong_keys.stderr
    assert right_keys.returncode == 0, right_keys.stderr
    assert _read_body(postgres_url, keys, tmp_path) == BODY
