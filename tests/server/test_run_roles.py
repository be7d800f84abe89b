"""``fleet-server run --role``: the combinations it refuses, each with the reason, before
it touches the database (docs/deploy.md, "Roles"). The roles at work, with a real
broker and PostgreSQL: tests/e2e/test_split_roles.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from govedge_testbed import free_port
from tests.e2e.conftest import BIN, child_env

pytestmark = pytest.mark.timeout(120)


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    database = f"sqlite:///{tmp_path / 'fleet.db'}"
    done = subprocess.run(
        [str(BIN / "fleet-server"), "run", "--database-url", database, *args],
        capture_output=True, text=True, timeout=60, check=False, env=child_env(env),
    )  # fmt: skip
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "extra",
    [[], ["--tls-cert", "server.pem", "--tls-key", "server.key"], ["--allow-plain-http"]],
    ids=["plain", "tls", "plain-allowed"],
)
def test_an_ingest_process_refuses_an_address_the_network_reaches(
    tmp_path: Path, extra: list[str]
) -> None:
    """Its HTTP side is probes and /metrics for this machine only, TLS or not."""
    code, stderr = _run(tmp_path, "--role", "ingest", "--listen", f"0.0.0.0:{free_port()}",
                        *extra)  # fmt: skip
    assert code == 2
    assert "refusing --role ingest on 0.0.0.0" in stderr
    assert "loopback" in stderr
    assert not (tmp_path / "fleet.db").exists()


def test_a_role_from_the_environment_is_checked_like_the_option(tmp_path: Path) -> None:
    code, stderr = _run(tmp_path, env={"GOVEDGE_ROLE": "worker"})
    assert code == 2
    assert "bad settings: role" in stderr
    assert not (tmp_path / "fleet.db").exists()
    code, stderr = _run(tmp_path, "--listen", "0.0.0.0:8080", env={"GOVEDGE_ROLE": "ingest"})
    assert code == 2
    assert "refusing --role ingest" in stderr


def test_an_unknown_role_option_names_the_choices(tmp_path: Path) -> None:
    code, stderr = _run(tmp_path, "--role", "everything")
    assert code == 2
    assert "'all', 'api', 'ingest'" in stderr
