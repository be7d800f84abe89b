"""Two server processes' change numbers shared through one real SQLite database
(``fleet_server.health.live_share``): each hub here stands for one process."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.health.live import LiveHub
from fleet_server.health.live_share import LiveShare
from fleet_server.migrate import upgrade


def _pair(tmp_path: Path) -> tuple[LiveHub, LiveShare, LiveHub, LiveShare]:
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    ingest, api = LiveHub(), LiveHub()
    return (ingest, LiveShare(ingest, sessions, interval_s=1),
            api, LiveShare(api, sessions, interval_s=1))  # fmt: skip


def test_a_change_in_one_process_moves_the_other_once_and_never_echoes(tmp_path: Path) -> None:
    ingest, ingest_share, api, api_share = _pair(tmp_path)
    ingest_share.step()
    api_share.step()  # both have read the number: nothing to tell yet
    assert api.version == 0

    ingest.bump()
    ingest.bump()  # two changes within one interval: one shared write
    ingest_share.step()
    api_share.step()
    assert api.version == 1  # the page on the API process refetches once
    assert not api.take_local_change()  # brought in, not to be shared back

    seen = ingest.version
    ingest_share.step()
    api_share.step()
    assert (ingest.version, api.version) == (seen, 1)  # no echo either way

    api.bump()  # an operator acked an alert through the API process
    api_share.step()
    ingest_share.step()
    assert ingest.version == seen + 1


def test_both_changing_in_one_interval_each_hears_of_the_other(tmp_path: Path) -> None:
    ingest, ingest_share, api, api_share = _pair(tmp_path)
    ingest_share.step()
    api_share.step()
    ingest.bump()
    api.bump()
    before = (ingest.version, api.version)
    ingest_share.step()
    api_share.step()  # its write lands on top of the ingest's
    ingest_share.step()
    assert api.version == before[1] + 1
    assert ingest.version == before[0] + 1


def test_a_failed_write_is_counted_and_shared_when_the_database_answers(tmp_path: Path) -> None:
    ingest, ingest_share, api, api_share = _pair(tmp_path)
    ingest_share.step()
    api_share.step()
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    with engine.begin() as conn:  # the table gone: every statement fails
        conn.execute(text("ALTER TABLE live_changes RENAME TO live_changes_away"))
    ingest.bump()
    ingest_share.step()
    assert ingest_share.errors == 1
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE live_changes_away RENAME TO live_changes"))
    ingest_share.step()  # the change kept for the next try
    api_share.step()
    assert api.version == 1
    engine.dispose()
