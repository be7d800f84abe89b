"""The settings and database session the ``fleet-server`` admin commands open.

Each command opens the database itself, upgrading it first (like ``run``), so it works
before the first start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.migrate import upgrade
from fleet_server.piivault import VaultError
from fleet_server.settings import Settings


def cli_settings(**options: object) -> Settings:
    """Settings from the environment, with the options given on the command line."""
    overrides = {name: value for name, value in options.items() if value is not None}
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.UsageError(f"bad settings: {exc}") from None


@contextmanager
def cli_session(settings: Settings) -> Iterator[Session]:
    """A session on the upgraded database of ``settings``."""
    engine = make_engine(settings.database_url)
    try:
        try:
            upgrade(engine, key_dir=settings.pii_key_dir)
        except VaultError as exc:
            raise click.ClickException(str(exc)) from None
        with make_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()
