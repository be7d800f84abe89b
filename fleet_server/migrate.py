"""Run the Alembic migrations shipped inside the package, without an ``alembic.ini``.

``fleet-server migrate`` and ``fleet-server run`` both call ``upgrade``; tests also
call ``downgrade``. The connection comes from our own engine, so SQLite pragmas apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    _run(engine, lambda config: command.upgrade(config, revision))
    logger.info("database schema at %s", revision)


def downgrade(engine: Engine, *, revision: str = "base") -> None:
    """Take the schema down to ``revision``."""
    _run(engine, lambda config: command.downgrade(config, revision))


def _run(engine: Engine, step: Callable[[Config], None]) -> None:
    config = alembic_config()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild a SQLite table by DROP and RENAME; with foreign keys
            # on, the DROP deletes every row that references the table through ON DELETE
            # CASCADE (rectifications, their follow-ups). The pragma only takes effect
            # outside a transaction, so it is set before the migration's transaction.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                step(config)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise RuntimeError(
                            f"migration left a dangling foreign key: {tuple(broken)}"
                        )
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def upgrade_url(database_url: str) -> None:
    """Open ``database_url``, upgrade it to head and close it again."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
