"""The ingest's batched writes format UTC timestamps for SQLite themselves (faster than
SQLAlchemy's processor): the stored text must be exactly SQLAlchemy's, so rows written
by the ingest and rows written through the ORM compare and sort alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from fleet_server.bulkwrite import _processor
from fleet_server.models import UTCDateTime

_DIALECT = sqlite.dialect()
_SQLALCHEMY = UTCDateTime().dialect_impl(_DIALECT).bind_processor(_DIALECT)
_OURS = _processor(UTCDateTime(), _DIALECT)


def test_the_fast_processor_is_the_one_chosen_on_sqlite() -> None:
    assert _OURS is not None
    assert _OURS is not _SQLALCHEMY


@settings(max_examples=500, deadline=None)
@given(
    at=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    offset_min=st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_the_stored_text_is_sqlalchemys(at: datetime, offset_min: int) -> None:
    assert _OURS is not None
    assert _SQLALCHEMY is not None
    local = at.astimezone(timezone(timedelta(minutes=offset_min)))
    assert _OURS(local) == _SQLALCHEMY(local)
    assert _OURS(None) is None


def test_a_naive_timestamp_is_refused_as_before() -> None:
    assert _OURS is not None
    with pytest.raises(ValueError, match="naive"):
        _OURS(datetime(2026, 1, 1, 8, 0))
