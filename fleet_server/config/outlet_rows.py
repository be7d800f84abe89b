"""``outlet_configs`` read and written in bulk, for passes over the whole fleet.

Reads are plain column tuples (no ORM objects: 10,000 outlets per pass); writes are
one ``executemany`` per kind of change. Updates compare-and-set on the
``desired_version`` read, so two server processes never both issue a version: the
loser's commit is rolled back (``Raced``) and its next pass starts from the winner's.
JSON columns set to None hold JSON ``null`` (read back as None), so "is there a held
config" is asked in Python, never as ``IS NULL`` in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from fleet_server.bulkwrite import update_statement
from fleet_server.config.tables import OutletConfig

_TABLE: Table = OutletConfig.__table__  # type: ignore[assignment]
SIGNED_COLUMNS: Final = (
    "desired_version",
    "desired_hash",
    "desired",
    "envelope",
    "issued_at",
    "published_at",
    "held",
    "in_sync_since",
    "drifting_since",
)


class Raced(Exception):
    """Another process changed an outlet's desired version meanwhile."""


@dataclass(slots=True)
class OutletRow:
    """What a pass needs of one outlet's row (no envelope: that is read when needed)."""

    outlet_id: str
    desired_version: int
    desired_hash: str | None
    issued_at: datetime | None
    published_at: datetime | None
    held: dict[str, Any] | None
    reported_hash: str | None
    in_sync_since: datetime | None
    drifting_since: datetime | None
    # The key id the stored envelope was signed with (a rotation re-signs the others).
    signed_key_id: str | None
    # What the agent last said it runs on or refused: a database restored from a backup
    # may hold a desired version below these, and the next one must still be higher.
    reported_version: int | None = None
    refused_version: int | None = None


def desired_hash_changes(
    session: Session, known: dict[str, str | None]
) -> tuple[dict[str, str | None], list[str]]:
    """Every outlet's ``desired_hash`` now, and the outlets whose desired config a cache
    read at ``known`` must read again: new, re-signed, or without a hash (a row the
    signer did not write, so its hash says nothing). One narrow read of the table."""
    # .all(): dict() of the Result itself would treat it as a mapping
    hashes: dict[str, str | None] = dict(
        session.execute(select(OutletConfig.outlet_id, OutletConfig.desired_hash)).all()
    )
    changed = [
        outlet
        for outlet, desired_hash in hashes.items()
        if desired_hash is None or known.get(outlet) != desired_hash
    ]
    return hashes, changed


def load_rows(session: Session) -> dict[str, OutletRow]:
    """Every outlet's row, by outlet id."""
    c = OutletConfig
    rows = session.execute(
        select(
            c.outlet_id, c.desired_version, c.desired_hash, c.issued_at, c.published_at,
            c.held, c.reported_hash, c.in_sync_since, c.drifting_since,
            c.envelope["key_id"].as_string(), c.reported_version, c.refused_version,
        )
    )  # fmt: skip
    return {row[0]: OutletRow(*row) for row in rows}


def _cas_update(session: Session, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """UPDATE … WHERE outlet_id = :k AND desired_version = :old, for every row."""
    if not rows:
        return
    statement = update_statement(_TABLE, keys=("outlet_id",), columns=columns)
    statement = statement.where(_TABLE.c.desired_version == _old_version_param())
    params = [
        {
            "k_outlet_id": row["outlet_id"],
            "k_old_version": row["old_version"],
            **{f"v_{name}": row[name] for name in columns},
        }
        for row in rows
    ]
    connection = session.connection()
    result = connection.execute(statement, params)
    if connection.dialect.supports_sane_multi_rowcount and result.rowcount != len(rows):
        raise Raced(f"{len(rows) - result.rowcount} outlets changed by another process")


def _old_version_param() -> Any:
    return bindparam("k_old_version", type_=_TABLE.c.desired_version.type)


def write_signed(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store newly signed configs: rows with ``old_version`` (None: a new row) and
    every ``SIGNED_COLUMNS`` value."""
    fresh = [row for row in rows if row["old_version"] is None]
    if fresh:
        session.execute(
            insert(OutletConfig),
            [{"outlet_id": r["outlet_id"], **{n: r[n] for n in SIGNED_COLUMNS}} for r in fresh],
        )
    _cas_update(session, SIGNED_COLUMNS, [row for row in rows if row["old_version"] is not None])


def write_held(session: Session, rows: list[dict[str, Any]]) -> None:
    """Store or clear held configs: rows with ``outlet_id``, ``old_version``, ``held``."""
    fresh = [row for row in rows if row["old_version"] is None]
    if fresh:
        session.execute(
            insert(OutletConfig),
            [{"outlet_id": r["outlet_id"], "desired_version": 0, "held": r["held"]} for r in fresh],
        )
    _cas_update(session, ("held",), [row for row in rows if row["old_version"] is not None])


def unpublished(session: Session) -> list[tuple[str, int, dict[str, Any]]]:
    """(outlet, version, envelope) of every signed config not yet acknowledged by the broker."""
    c = OutletConfig
    rows = session.execute(
        select(c.outlet_id, c.desired_version, c.envelope).where(
            c.published_at.is_(None), c.envelope.is_not(None)
        )
    )
    return [(outlet, int(version), dict(envelope)) for outlet, version, envelope in rows]


def mark_published(session: Session, done: Iterable[tuple[str, int]], *, at: datetime) -> None:
    """Set ``published_at`` where the version is still the one published."""
    params = [
        {"k_outlet_id": outlet, "k_old_version": version, "v_published_at": at}
        for outlet, version in done
    ]
    if not params:
        return
    statement = update_statement(_TABLE, keys=("outlet_id",), columns=("published_at",))
    statement = statement.where(_TABLE.c.desired_version == _old_version_param())
    session.connection().execute(statement, params)
