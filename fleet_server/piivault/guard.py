"""Opening the PII keys for a database: never a new key directory beside sealed data.

A key directory given by a relative path (the development default) follows the working
directory. Started elsewhere, the server used to create a fresh directory with a fresh
key there, and every body already sealed in the database became unreadable, with
nothing said until the first read. Here a database that holds sealed rows gets its keys
only from a directory that has keys; otherwise the start is refused, naming the
directory looked at and the settings that choose it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

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
# The sealed column of each, for the key id of its newest row (``_newest_key_ids``).
_SEALED_COLUMN: Final = {
    "inbox": "body",
    "material_chunks": "data",
    "rectification_follow_ups": "note",
}


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


def _key_id(value: object) -> str | None:
    """The key id a stored sealed value names: ``kid:``-prefixed bytes (materials) or a
    JSON envelope (bodies, notes: a dict or its text)."""
    if isinstance(value, bytes | memoryview):
        key_id, sep, _ = bytes(value).partition(b":")
        return key_id.decode("ascii", "replace") if sep else None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict) and "kid" in value:
        return str(value["kid"])
    return None


def _newest_key_ids(connection: Connection) -> dict[str, str]:
    """Table → the key id of its newest sealed row (the current key, most likely)."""
    inspector = sa.inspect(connection)
    found: dict[str, str] = {}
    for table, unpurged in _SEALED:
        if not inspector.has_table(table):
            continue
        columns = {column["name"] for column in inspector.get_columns(table)}
        column = _SEALED_COLUMN[table]
        if column not in columns or "id" not in columns:
            continue
        if unpurged is not None and unpurged not in columns:
            continue
        kind: sa.types.TypeEngine[Any] = (
            sa.LargeBinary() if table == "material_chunks" else sa.Text()
        )
        query = sa.select(sa.column(column, kind)).select_from(sa.table(table))
        if unpurged is not None:
            query = query.where(sa.column(unpurged).is_(None))
        value = connection.execute(query.order_by(sa.column("id").desc()).limit(1)).scalar()
        key_id = _key_id(value)
        if key_id is not None:
            found[table] = key_id
    return found


def open_vault_for(key_dir: Path, database: Engine | Connection) -> Vault:
    """The vault for ``database``: ``key_dir`` is created (with a first key) only while
    the database holds no sealed value; else it must already hold keys (``VaultError``
    naming it and the settings otherwise, and nothing is written)."""
    if isinstance(database, Engine):
        with database.connect() as connection:
            return _open_for(key_dir, connection)
    return _open_for(key_dir, database)


_FIX: Final = (
    "Set GOVEDGE_PII_KEY_DIR (or GOVEDGE_STATE_DIR, whose fleet-pii-keys it is by "
    "default) to the directory holding this database's keys, e.g. in "
    "/etc/govedge/fleet-server.env"
)


def _open_for(key_dir: Path, connection: Connection) -> Vault:
    sealed = holds_sealed_data(connection)
    try:
        vault = open_vault(key_dir, create=not sealed)
    except VaultError as exc:
        if not sealed:
            raise
        raise VaultError(
            f"the database holds sealed personal data but the PII key directory "
            f"{key_dir.absolute()} has no keys ({exc}); refusing to create new keys, which "
            f"could never open that data. {_FIX}"
        ) from None
    # Keys, but not this database's: e.g. a directory made by an earlier start from the
    # wrong place. Its newest rows were sealed with keys it must hold.
    for table, key_id in _newest_key_ids(connection).items():
        if not vault.has_key(key_id):
            raise VaultError(
                f"the PII key directory {key_dir.absolute()} does not hold key "
                f"{key_id[:16]!r}, which sealed the newest {table} row of this database: "
                f"these are another database's keys, or a directory made by mistake. {_FIX}"
            )
    return vault
