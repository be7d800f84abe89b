"""Batched UPDATE by primary key and INSERT as one driver ``executemany``, for the ingest.

SQLAlchemy's ORM bulk update (``session.execute(update(Model), rows)``) spends most of
its time per row in ORM bookkeeping (identity keys, per-row command collection); at
thousands of rows a second that was the largest cost of the ingest worker. This builds
one statement ``UPDATE t SET c1 = :v_c1, ... WHERE k1 = :k_k1 AND ...`` for a fixed
set of columns and runs it once for all rows (the driver's executemany).

The statement is compiled once per dialect into a plan: its SQL text, its parameters in
the driver's order and each column's own bind processing (JSON, UTC datetimes). Rows
then go to the driver as tuples (or dicts, for a named paramstyle) through
``exec_driver_sql``: even Core's per-row parameter construction was a fifth of the
worker's time at 2,500 telemetry messages a second (docs/performance.md). On SQLite a
UTC timestamp is formatted by one ``isoformat`` call instead of SQLAlchemy's
seven-field %-format (``_sqlite_utc_text``; the plan checks both agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Dialect, Table, and_, bindparam
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.types import TypeEngine

from fleet_server.models import UTCDateTime

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """One statement compiled for one dialect, ready for raw executemany."""

    statement: Update | Insert
    sql: str
    positional: bool
    names: tuple[str, ...]  # the driver's parameter names, in the SQL's order
    columns: tuple[str, ...]  # the row key each parameter reads
    processors: tuple[_Processor, ...]


_PLANS: dict[tuple[int, str], _Plan] = {}


def update_statement(table: Table, *, keys: Sequence[str], columns: Sequence[str]) -> Update:
    """``UPDATE table SET columns... WHERE keys...``; parameters ``v_<col>``, ``k_<key>``."""
    where = and_(*(table.c[k] == bindparam(f"k_{k}", type_=table.c[k].type) for k in keys))
    values = {c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}
    return table.update().where(where).values(values)


def insert_statement(table: Table) -> Insert:
    """``INSERT INTO table`` of every column but an autoincrement key; parameters ``v_<col>``.

    Every column is named, so no default is compiled in: each row must give them all.
    """
    columns = [c for c in table.c if c is not table.autoincrement_column]
    return table.insert().values({c.name: bindparam(f"v_{c.name}", type_=c.type) for c in columns})


def _plan(statement: Update | Insert, dialect: Dialect) -> _Plan:
    key = (id(statement), dialect.name)
    plan = _PLANS.get(key)
    if plan is not None and plan.statement is statement:
        return plan
    compiled = statement.compile(dialect=dialect)
    keys = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
    if any(k[:2] not in ("k_", "v_") for k in keys):
        raise ValueError(f"a parameter the rows cannot give: {sorted(keys)}")
    binds = [compiled.binds[k] for k in keys]
    plan = _Plan(
        statement=statement,
        sql=compiled.string,
        positional=compiled.positional,
        names=tuple(compiled.bind_names[b] for b in binds),
        # "k_outlet_id" reads row["outlet_id"] (see update_statement)
        columns=tuple(k[2:] for k in keys),
        processors=tuple(_processor(b.type, dialect) for b in binds),
    )
    _PLANS[key] = plan
    return plan


# A timestamp with microseconds, outside UTC: any difference in formatting shows on it.
_PROBE = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC).astimezone()


def _processor(bind_type: TypeEngine[Any], dialect: Dialect) -> _Processor:
    """The column's bind processing; for a UTC timestamp on SQLite the faster one.

    SQLAlchemy's SQLite DATETIME processor builds a dict of seven fields and %-formats
    it for every value (~6 us; two or three timestamps per telemetry message). The fast
    one is used only if it gives the same text as SQLAlchemy's on a probe value.
    """
    processor = bind_type.dialect_impl(dialect).bind_processor(dialect)
    if (
        dialect.name == "sqlite"
        and isinstance(bind_type, UTCDateTime)
        and processor is not None
        and processor(_PROBE) == _sqlite_utc_text(_PROBE)
    ):
        return _sqlite_utc_text
    return processor


def _sqlite_utc_text(value: datetime | None) -> str | None:
    """A UTC timestamp as SQLite stores it: ``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC, naive)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # the ingest's own times are UTC already: no conversion
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def update_rows(
    session: Session,
    statement: Update,
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str],
    columns: Sequence[str],
) -> None:
    """Run ``statement`` (from ``update_statement``) for every row in ``rows``.

    ``keys`` and ``columns`` are those ``statement`` was built with; every row must
    have them all.
    """
    _execute_many(session, statement, rows)


def insert_rows(session: Session, statement: Insert, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run ``statement`` (from ``insert_statement``) for every row in ``rows``."""
    _execute_many(session, statement, rows)


def _execute_many(
    session: Session, statement: Update | Insert, rows: Sequence[Mapping[str, Any]]
) -> None:
    if not rows:
        return
    connection = session.connection()
    plan = _plan(statement, connection.dialect)
    fields = tuple(zip(plan.columns, plan.processors, strict=True))
    tuples = [tuple(row[c] if p is None else p(row[c]) for c, p in fields) for row in rows]
    if plan.positional:
        connection.exec_driver_sql(plan.sql, tuples)
    else:
        named = [dict(zip(plan.names, t, strict=True)) for t in tuples]
        connection.exec_driver_sql(plan.sql, named)
