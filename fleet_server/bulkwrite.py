"""Batched UPDATE by primary key as one Core ``executemany``, for the ingest's hot path.

SQLAlchemy's ORM bulk update (``session.execute(update(Model), rows)``) spends most of
its time per row in ORM bookkeeping (identity keys, per-row command collection); at
thousands of rows a second that was the largest cost of the ingest worker. This builds
one statement ``UPDATE t SET c1 = :v_c1, ... WHERE k1 = :k_k1 AND ...`` for a fixed
set of columns and runs it once for all rows (the driver's executemany), with each
column's own type processing (JSON, UTC datetimes) still applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, and_, bindparam
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update


def update_statement(table: Table, *, keys: Sequence[str], columns: Sequence[str]) -> Update:
    """``UPDATE table SET columns... WHERE keys...``; parameters ``v_<col>``, ``k_<key>``."""
    where = and_(*(table.c[k] == bindparam(f"k_{k}", type_=table.c[k].type) for k in keys))
    values = {c: bindparam(f"v_{c}", type_=table.c[c].type) for c in columns}
    return table.update().where(where).values(values)


def update_rows(
    session: Session,
    statement: Update,
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str],
    columns: Sequence[str],
) -> None:
    """Run ``statement`` (from ``update_statement``) for every row in ``rows``."""
    if not rows:
        return
    params = [
        {**{f"k_{k}": row[k] for k in keys}, **{f"v_{c}": row[c] for c in columns}} for row in rows
    ]
    session.connection().execute(statement, params)
