"""Fuzzing the ingest in-process: 10,000 malformed payloads per ingested kind.

Each example goes through ``Worker.process`` — what the ingest worker calls per batch:
decode → presence → health recorder → transaction check → inbox store and ack — on a
real, migrated SQLite database. No broker is needed for the volume (acks and rebirth
requests go to a recording stand-in for paho); ``test_fuzz_broker.py`` sends a smaller
run through a real Mosquitto to a real server process.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select

from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.ingest import Ingest
from fleet_server.ingest.queue import Received as _Received
from fleet_server.metrics import FleetMetrics
from fleet_server.migrate import upgrade
from fleet_server.models import InboxEntry
from fleet_server.runtime import HealthRuntime
from fleet_server.settings import Settings
from tests.security.fuzzkit import ALL_KINDS, OUTLET, SESSION, malformed, template, topic_of

# GOVEDGE_FUZZ_EXAMPLES lowers the count for a quick local run; the suite uses 10,000.
EXAMPLES = int(os.environ.get("GOVEDGE_FUZZ_EXAMPLES", "10000"))


class _Published:
    """Stands in for paho: records what the ingest would publish (acks, rebirths)."""

    def __init__(self) -> None:
        self.topics: Counter[str] = Counter()

    def publish(self, topic: str, _payload: bytes, **_kw: Any) -> None:
        self.topics[topic.rsplit("/", 1)[-1]] += 1


# One worker runs the whole module: the last test reads what the fuzz runs before it
# left in the module's ingest, which another xdist worker would build afresh.
pytestmark = pytest.mark.xdist_group("fuzz_ingest")


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{workdir / 'fleet.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    config = Settings(database_url=url, mqtt_url="mqtt://127.0.0.1:1", pki_dir=workdir / "pki")
    health = HealthRuntime(config, sessions=sessions, metrics=FleetMetrics())
    worker = Ingest(config, sessions=sessions, observer=health.recorder)
    worker.publisher.client = _Published()  # type: ignore[assignment]
    # The outlet is born, so envelope-valid mutations reach presence and the tx checks.
    worker._worker.process([_received("birth", template("birth", seq=0))])
    yield worker
    engine.dispose()


def _received(kind: str, message: dict[str, Any]) -> _Received:
    return _Received(topic_of(kind), json.dumps(message).encode(), datetime.now(UTC))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_malformed_payloads_never_crash_the_ingest(
    ingest: Ingest, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = ingest.stats.snapshot()
    fed = births = 0
    birth = _received("birth", template("birth", seq=0))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(malformed(kind))
    def feed(pair: tuple[str, bytes]) -> None:
        nonlocal fed, births
        topic, payload = pair
        fed += 1
        # Revive the outlet when an earlier payload killed it or moved its session, so
        # envelope-valid mutations keep reaching presence and the transaction checks.
        record = ingest._tracker.get(OUTLET)
        batch = [_Received(topic, payload, datetime.now(UTC))]
        if record is None or record.state != "online" or record.session != SESSION:
            # A mutated session (e.g. a numeric string) may have moved it up for good.
            ingest._tracker._records.pop(OUTLET, None)
            batch.insert(0, birth)
            births += 1
        # Raises if anything escapes: the worker loop would count it "internal_error".
        ingest._worker.process(batch)

    with caplog.at_level(logging.ERROR, logger="fleet_server"):
        feed()
    after = ingest.stats.snapshot()
    rejected = Counter(after.rejected) - Counter(before.rejected)
    accepted = after.accepted - before.accepted
    assert fed >= EXAMPLES
    assert "internal_error" not in after.rejected, after.rejected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # Every message is accounted for: applied to presence or rejected with a reason.
    assert accepted + sum(rejected.values()) == fed + births
    # Many distinct reasons rise, not one catch-all.
    for reason in ("not_json", "not_object", "invalid"):
        assert rejected[reason] > 0, rejected
    if kind not in ("birth",):
        assert rejected["kind_mismatch"] + rejected["outlet_mismatch"] > 0, rejected


def test_broken_transaction_bodies_are_rejected_and_counted(ingest: Ingest) -> None:
    """After the runs above: broken bodies were acked ``rejected``; the inbox holds exactly
    the transactions acked ``accepted`` (mutations that happened to stay valid)."""
    noted = ingest.stats.snapshot().noted
    assert noted.get("tx_rejected", 0) > 0, noted
    with ingest._sessions() as session:
        stored = session.scalar(select(func.count()).select_from(InboxEntry))
    assert stored == noted.get("tx_accepted", 0)
    assert ingest.publisher.client.topics["txack"] >= noted["tx_rejected"] + (stored or 0)  # type: ignore[attr-defined]
