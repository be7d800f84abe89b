"""schemathesis against the server's own OpenAPI document, in-process, as an admin.

The app runs on a fresh migrated SQLite database with its ingest connected to the
session's real Mosquitto (so ``/readyz`` answers as in production). Every operation
gets generated requests, valid and invalid; no answer may be a 5xx, and every answer
must match the documented status codes, content types and schemas.
"""

from __future__ import annotations

import os
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.schemas import BaseSchema
from schemathesis.transport import requests as st_requests

from fleet_server.app import create_app
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.security import Role
from fleet_server.security.users import create_user
from fleet_server.settings import Settings
from govedge_testbed import Mosquitto

EXAMPLES = int(os.environ.get("GOVEDGE_SCHEMATHESIS_EXAMPLES", "50"))
_TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> BaseSchema:
    workdir: Path = tmp_path_factory.mktemp("st")
    url = f"sqlite:///{workdir / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        admin = create_user(
            session, name="st-admin", role=Role.ADMIN, ttl=timedelta(hours=1), actor="test"
        )
    _TOKEN["admin"] = admin.token
    config = Settings(
        database_url=url,
        mqtt_url=broker.url,
        pki_dir=workdir / "pki",
        releases_dir=workdir / "releases",
        playbook_runs_dir=workdir / "playbook-runs",
    )
    app = create_app(config, engine=engine)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# About 7,500 generated calls: 110 s on a quiet machine, past the default 120 s limit
# when the other test worker is busy.
@pytest.mark.timeout(600)
def test_api_conforms_to_its_openapi(
    api_schema: BaseSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every operation, one after another; all failures are reported together."""
    # urllib3-future (grafana-client → niquests → urllib3-future; `uv tree --invert
    # --package urllib3-future`) replaces the pool container schemathesis counts
    # connections in; in-process ASGI has none to count.
    monkeypatch.setattr(st_requests, "_count_opened_connections", lambda _session: 0)
    headers = {"Authorization": f"Bearer {_TOKEN['admin']}"}
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 30
    only = os.environ.get("GOVEDGE_SCHEMATHESIS_ONLY")
    for operation in operations:
        if only and only not in operation.label:
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            # "Schema-valid request accepted" cannot hold where the server validates
            # meaning the schema cannot express (a catalogue file's rows, since < until).
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            run()
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # collect, so one run shows every broken operation
            failures.append(
                f"{operation.label}: {''.join(traceback.format_exception(exc))[-4000:]}"
            )
    assert not failures, "\n\n".join(failures)
