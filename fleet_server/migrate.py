"""Run the Alembic migrations shipped inside the package, without an ``alembic.ini``.

``fleet-server migrate`` and ``fleet-server run`` both call ``upgrade``; tests also
call ``downgrade``. The connection comes from our own engine, so SQLite pragmas apply.

Workers started together all migrate at start, so a migration runs under a lock held
until its transaction ends: a PostgreSQL advisory lock, or an exclusive ``flock`` on the
SQLite database file (SQLite itself locks with POSIX record locks, which ``flock`` does
not touch). The one waiting then finds the schema at head and does nothing. The PII
vault is chosen under the same lock (``piivault.guard``), so two first starts cannot
each make a first key.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from fleet_server.db import make_engine
from fleet_server.piivault import default_key_dir, open_vault_for, use_vault, vault_chosen

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock's key: "govedge" in ASCII, the same for every fleet database.
MIGRATION_LOCK_KEY: Final = int.from_bytes(b"govedge", "big")


def alembic_config() -> Config:
    """An Alembic config whose script location is this package's ``migrations``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, *, revision: str = "head", key_dir: Path | None = None) -> None:
    """Bring the schema up to ``revision``.

    The PII vault the migrations (and then the process) use: ``key_dir``'s, or when not
    given the one already chosen, else ``piivault.default_key_dir``'s; opened through
    ``piivault.guard`` (``VaultError`` instead of new keys beside sealed data).
    """
    _run(engine, lambda config: command.upgrade(config, revision), key_dir=key_dir)
    logger.info("database schema at %s", revision)


def downgrade(engine: Engine, *, revision: str = "base") -> None:
    """Take the schema down to ``revision``."""
    _run(engine, lambda config: command.downgrade(config, revision), key_dir=None)


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive ``flock`` on the SQLite database file (none for a memory database)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
        yield
    finally:
        os.close(fd)


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends; a second worker waits here, then sees head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def _choose_vault(connection: Connection, key_dir: Path | None) -> None:
    if key_dir is not None or not vault_chosen():
        use_vault(open_vault_for(key_dir or default_key_dir(), connection))


def _run(engine: Engine, step: Callable[[Config], None], *, key_dir: Path | None) -> None:
    config = alembic_config()
    with _sqlite_file_lock(engine), engine.connect() as connection:
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
                _lock(connection)
                _choose_vault(connection, key_dir)
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


def upgrade_url(database_url: str, *, key_dir: Path | None = None) -> None:
    """Open ``database_url``, upgrade it to head and close it again."""
    engine = make_engine(database_url)
    try:
        upgrade(engine, key_dir=key_dir)
    finally:
        engine.dispose()
