"""Opening the PII keys for a database: never a new key directory beside sealed data.

A key directory given by a relative path (the development default) follows the working
directory. Started elsewhere, the server used to create a fresh directory with a fresh
key there, and every body already sealed in the database became unreadable, with
nothing said until the first read. Here a database that holds sealed rows gets its keys
only from a directory that has keys; otherwise the start is refused, naming the
directory looked at and the settings that choose it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from fleet_server.piivault.keysource import open_vault
from fleet_server.piivault.vault import Vault, VaultError

# Every table with a sealed column, and the condition under which a row still holds a
# sealed value (inbox bodies are emptied once purged). Checked only where the table (and
# the condition's column) exists, so a database at any revision can be asked.
_SEALED: Final[tuple[tuple[str, str | None], ...]] = (
    ("inbox", "purged_at"),
    ("material_chunks", None),
    ("rectification_follow_ups", None),
)


def holds_sealed_data(connection: Connection) -> bool:
    """Whether any row of ``connection``'s database holds a value sealed with a PII key."""
    inspector = sa.inspect(connection)
    for table, unpurged in _SEALED:
        if not inspector.has_table(table):
            continue
        columns = {column["name"] for column in inspector.get_columns(table)}
        if unpurged is not None and unpurged not in columns:
            continue  # before 0005: bodies were plain text, nothing sealed yet
        query = sa.select(sa.literal(1)).select_from(sa.table(table))
        if unpurged is not None:
            query = query.where(sa.column(unpurged).is_(None))
        if connection.execute(query.limit(1)).first() is not None:
            return True
    return False


def open_vault_for(key_dir: Path, database: Engine | Connection) -> Vault:
    """The vault for ``database``: ``key_dir`` is created (with a first key) only while
    the database holds no sealed value; else it must already hold keys (``VaultError``
    naming it and the settings otherwise, and nothing is written)."""
    if isinstance(database, Engine):
        with database.connect() as connection:
            sealed = holds_sealed_data(connection)
    else:
        sealed = holds_sealed_data(database)
    try:
        return open_vault(key_dir, create=not sealed)
    except VaultError as exc:
        if not sealed:
            raise
        raise VaultError(
            f"the database holds sealed personal data but the PII key directory "
            f"{key_dir.absolute()} has no keys ({exc}); refusing to create new keys, which "
            "could never open that data. Set GOVEDGE_PII_KEY_DIR (or GOVEDGE_STATE_DIR, "
            "whose fleet-pii-keys it is by default) to the directory holding this "
            "database's keys, e.g. in /etc/govedge/fleet-server.env"
        ) from None
