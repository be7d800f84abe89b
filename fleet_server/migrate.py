"""Run the Alembic migrations shipped inside the package, without an ``alembic.ini``.

``fleet-server migrate`` and ``fleet-server run`` both call ``upgrade``; tests also
call ``downgrade``. The connection comes from our own engine, so SQLite pragmas apply.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from fleet_server.db import make_engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """An Alembic config whose script location is this package's ``migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, *, revision: str = "head") -> None:
    """Bring the schema up to ``revision``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    logger.info("database schema at %s", revision)


def downgrade(engine: Engine, *, revision: str = "base") -> None:
    """Take the schema down to ``revision``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def upgrade_url(database_url: str) -> None:
    """Open ``database_url``, upgrade it to head and close it again."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
