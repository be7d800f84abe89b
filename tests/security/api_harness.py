"""An in-process app on a fresh SQLite database, with one user per role."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fleet_server.app import create_app
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.security import Role
from fleet_server.security.users import create_user
from fleet_server.settings import Settings

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
def running_api(tmp_path: Path, *, mqtt_url: str, **settings: object) -> Iterator[Api]:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    tokens: dict[Role, str] = {}
    with make_sessionmaker(engine)() as session:
        for role in Role:
            new = create_user(
                session, name=f"u-{role.value}", role=role, ttl=timedelta(hours=1), actor="test"
            )
            tokens[role] = new.token
    config = Settings(
        database_url=url,
        mqtt_url=mqtt_url,
        pki_dir=tmp_path / "pki",
        **settings,  # type: ignore[arg-type]
    )
    app = create_app(config, engine=engine)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client=client, engine=engine, tokens=tokens)
    finally:
        engine.dispose()
