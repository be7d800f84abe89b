"""Shared fixtures: a real Mosquitto and a real PostgreSQL on free loopback ports.

Under ``CI=true`` a missing service fails the run; elsewhere it skips with the reason,
so a developer without PostgreSQL can still run the rest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import pytest

from edge_agent.devices.social_security_card_reader.vpcd import (
    PcscStack,
    PcscUnavailable,
    environment_ok,
)
from govedge_testbed import Mosquitto, Postgres, ServiceUnavailable, VictoriaMetrics
from tests.migrated_template import head_schema_script, replaying_upgrade

IN_CI = os.environ.get("CI", "").lower() == "true"
# Sealing keys for transaction bodies (fleet_server.piivault): one throwaway directory
# per run, inherited by server subprocesses, never ./fleet-pii-keys in the repo.
os.environ.setdefault("GOVEDGE_PII_KEY_DIR", tempfile.mkdtemp(prefix="govedge-pii-"))
# The other state directories (fleet CA, releases, playbook runs, the first admin's
# file) likewise: a server a test starts without naming them writes there, not into the
# working directory (the repository); and never the machine's installed settings file.
os.environ.setdefault("GOVEDGE_STATE_DIR", tempfile.mkdtemp(prefix="govedge-state-"))
os.environ["GOVEDGE_ENV_FILE"] = ""
# pcscd runs once per machine with one virtual reader (vpcd.py), and scripts/test runs the
# tests in parallel workers (pytest-xdist). Simulated agents leave the social-security
# card out; the tests that read it run in one xdist group, one at a time (below).
os.environ["GOVEDGE_SIMULATE_PCSC"] = "false"
PCSC_GROUP = "pcsc"
# Their simulated agents drop every GOVEDGE_ variable and so keep the card.
_PCSC_MODULES = frozenset({"test_simulate.py", "test_pii_scan_e2e.py"})


REPO = Path(__file__).resolve().parent.parent
# What tools leave in a checkout by design, and the browser tests' kept screenshots
# (test-artifacts/, tests/health/conftest.py); anything else new after a run is a test
# writing into the repository (a relative default directory, a stray output file).
_TOOL_LITTER = (
    "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
    "test-artifacts",
)  # fmt: skip


def repository_entries() -> set[str]:
    """Untracked and ignored entries of the checkout (ignored directories as one line),
    without the tools' caches; empty when this is not a git checkout."""
    try:
        listed = subprocess.run(
            ["git", "status", "--porcelain", "--ignored=traditional", "--untracked-files=normal"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return set()
    return {
        line[3:]
        for line in listed.splitlines()
        if line[:2] in ("??", "!!")
        and not any(part in _TOOL_LITTER for part in line[3:].split("/"))
    }


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the xdist controller or a plain run
        session.config.stash[_ENTRIES_AT_START] = repository_entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_ENTRIES_AT_START, None)
    if before is None:
        return
    stray = sorted(repository_entries() - before)
    if stray:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "tests left new files in the repository: " + ", ".join(stray[:20])
        if reporter is not None:
            reporter.write_sep("=", message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_ENTRIES_AT_START = pytest.StashKey[set[str]]()


@pytest.hookimpl(tryfirst=True)  # before xdist turns the group marks into its schedule
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (
            "pcsc" in getattr(item, "fixturenames", ())
            or item.path.name in _PCSC_MODULES
            or "social_security_card_reader" in item.path.parts
        ):
            item.add_marker(pytest.mark.xdist_group(PCSC_GROUP))


class _Service(Protocol):
    def start(self) -> None: ...


_S = TypeVar("_S", bound=_Service)


def missing(what: str) -> NoReturn:
    """Something a test needs is not here: fail under CI=true, skip (saying what) elsewhere."""
    if IN_CI:
        pytest.fail(f"required under CI=true: {what}")
    pytest.skip(what)  # only outside CI; CI must fail instead (see above)


def started_service(make: Callable[[], _S]) -> _S:
    """Make and start a service; a missing one fails under CI=true and skips elsewhere."""
    try:
        service = make()
        service.start()
    except ServiceUnavailable as exc:
        missing(f"service not available: {exc}")
    return service


_HEAD_SCHEMA: list[str] = []


def _head_schema() -> list[str]:
    """The migrated schema as SQL, made on first use in this test process."""
    if not _HEAD_SCHEMA:
        _HEAD_SCHEMA.extend(head_schema_script())
    return _HEAD_SCHEMA


@pytest.fixture(autouse=True)
def _replay_migrated_schema(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Empty SQLite databases upgraded to head in this process get the schema the real
    migrations made once (tests/migrated_template.py); ``real_migrations`` tests and
    every server subprocess run the migrations themselves."""
    if request.node.get_closest_marker("real_migrations"):
        return
    from alembic import command

    monkeypatch.setattr(command, "upgrade", replaying_upgrade(command.upgrade, _head_schema))


@pytest.fixture(scope="session")
def espeak_ng() -> str:
    """The path of espeak-ng (the announcements' synthesiser); see ``missing``."""
    path = shutil.which("espeak-ng")
    if path is None:
        missing("espeak-ng is not installed (apt-get install espeak-ng)")
    return path


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    """One real Mosquitto for the session; tests use unique outlet ids to stay apart."""
    mosquitto = started_service(Mosquitto)
    yield mosquitto
    mosquitto.close()


@pytest.fixture
def private_broker() -> Iterator[Mosquitto]:
    """A broker of the test's own, for tests that restart or kill it."""
    mosquitto = started_service(Mosquitto)
    yield mosquitto
    mosquitto.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Postgres]:
    """One throwaway PostgreSQL cluster for the session."""
    cluster = started_service(Postgres)
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: Postgres) -> str:
    """A fresh, empty database in the session's cluster."""
    return postgres_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A migrated fleet database, once on SQLite and once on PostgreSQL: its sessionmaker."""
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.migrate import upgrade

    url = (
        f"sqlite:///{tmp_path / 'fleet.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = make_engine(url)
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def victoria() -> Iterator[VictoriaMetrics]:
    """A real VictoriaMetrics of the test's own (InfluxDB v2 write API), empty."""
    store = started_service(VictoriaMetrics)
    yield store
    store.close()


@pytest.fixture(scope="session")
def pcsc() -> Iterator[PcscStack]:
    """One real pcscd with a vpcd reader for the whole session (one pcscd per machine)."""
    problem = environment_ok()
    if problem is None:
        try:
            stack = PcscStack().start()
        except PcscUnavailable as exc:
            problem = str(exc)
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PC/SC stack required under CI=true: {problem}")
        pytest.skip(f"no PC/SC stack here: {problem}")  # outside CI only
    yield stack
    stack.stop()


@pytest.fixture
def outlet_id() -> str:
    """A unique outlet id, so tests sharing a broker never see each other's messages."""
    return f"test-{uuid.uuid4().hex[:10]}"
