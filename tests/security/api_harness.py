"""An in-process app on a fresh SQLite (or given PostgreSQL) database, one user per role."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fleet_server.app import create_app
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.tables import Alert
from fleet_server.migrate import upgrade
from fleet_server.models import DeadLetter, Evaluation, InboxEntry, Rectification
from fleet_server.security import Role
from fleet_server.security.users import create_user
from fleet_server.settings import Settings
from fleet_server.transactions.identity import upstream_idempotency_key
from tests.server.txkit import submission

with warnings.catch_warnings():
    # starlette asks for its httpx2 fork; plain httpx (our dependency) still works.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@dataclass
class Api:
    """The app under test, its database and a token per role."""

    client: TestClient
    engine: Engine
    tokens: dict[Role, str]

    def session(self) -> Session:
        return make_sessionmaker(self.engine)()

    def as_role(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@contextmanager
def running_api(
    tmp_path: Path, *, mqtt_url: str, database_url: str | None = None, **settings: object
) -> Iterator[Api]:
    url = database_url or f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    tokens: dict[Role, str] = {}
    with make_sessionmaker(engine)() as session:
        for role in Role:
            new = create_user(
                session, name=f"u-{role.value}", role=role, ttl=timedelta(hours=1), actor="test"
            )
            tokens[role] = new.token
    # State in the test's own directory (a caller may name its own): never the checkout.
    state: dict[str, object] = {
        "pki_dir": tmp_path / "pki",
        "releases_dir": tmp_path / "releases",
        "playbook_runs_dir": tmp_path / "playbook-runs",
    }
    config = Settings(
        database_url=url,
        mqtt_url=mqtt_url,
        **(state | settings),  # type: ignore[arg-type]
    )
    app = create_app(config, engine=engine)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client=client, engine=engine, tokens=tokens)
    finally:
        engine.dispose()


def seed_actionable_rows(api: Api) -> tuple[int, int, int]:
    """A dead letter, a rectification and an open alert to act on: their ids."""
    now = datetime.now(UTC)
    with api.session() as session, session.begin():
        entry = InboxEntry(
            tx_id="tx-audit-1", outlet_id="o-1",
            idempotency_key=upstream_idempotency_key("o-1", "tx-audit-1"), tx_kind="submission",
            body=submission(), created_ts=0, received_at=now, state="dead",
            attempts=3, next_due_at=None, result_pending=False,
        )  # fmt: skip
        session.add(entry)
        session.flush()
        dead = DeadLetter(
            inbox_id=entry.id, tx_id=entry.tx_id, outlet_id="o-1", tx_kind="submission",
            target=None, reason="no_route", detail=None, status_code=None, attempts=3,
            created_at=now,
        )  # fmt: skip
        evaluation = Evaluation(
            tx_id="tx-audit-2", outlet_id="o-1", window="W1", case_number=None, level_code=5,
            stars=1, channel="4", is_bad=True, is_default=False, real_name=True,
            evaluated_at=now,
        )  # fmt: skip
        session.add_all([dead, evaluation])
        session.flush()
        ticket = Rectification(
            evaluation_id=evaluation.id, outlet_id="o-1", window="W1", opened_at=now,
            deadline_at=now + timedelta(days=15), status="open",
        )  # fmt: skip
        alert = Alert(
            rule="outlet_offline", outlet_id="o-1", device_id="", severity="warning",
            state="open", summary="outlet o-1 offline", value=None, detail={},
            opened_at=now, updated_at=now,
        )  # fmt: skip
        session.add_all([ticket, alert])
        session.flush()
        return dead.id, ticket.id, alert.id
