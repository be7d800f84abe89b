"""Which database errors count as an outage (503) and which stay server errors (500):
real errors from a real PostgreSQL, a port nobody listens on, and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from fleet_server.db import make_engine
from fleet_server.db_outage import is_unreachable
from govedge_testbed import free_port


def _error_of(url: str, statement: str) -> Exception:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    except Exception as exc:  # the error is what the test reads
        return exc
    finally:
        engine.dispose()
    raise AssertionError("the statement succeeded")


def test_a_postgresql_nobody_listens_on_is_unreachable() -> None:
    exc = _error_of(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", "SELECT 1")
    assert isinstance(exc, OperationalError)
    assert is_unreachable(exc)


@pytest.mark.postgres
def test_a_cancelled_statement_on_a_live_postgresql_is_not_an_outage(postgres_url: str) -> None:
    """PostgreSQL's own OperationalErrors (here a statement timeout, SQLSTATE 57014) are
    not a lost database: they stay the server's 500."""
    exc = _error_of(postgres_url, "SET statement_timeout = 1; SELECT pg_sleep(2)")
    assert isinstance(exc, OperationalError)
    assert getattr(exc.orig, "sqlstate", None) == "57014"
    assert not is_unreachable(exc)


def test_a_sqlite_error_is_not_an_outage(tmp_path: Path) -> None:
    exc = _error_of(f"sqlite:///{tmp_path / 'f.db'}", "SELEC nonsense")
    assert isinstance(exc, OperationalError)  # SQLite reports syntax errors this way
    assert not is_unreachable(exc)
