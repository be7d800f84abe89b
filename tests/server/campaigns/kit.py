"""Campaign test kit: a stored release, outlets born through the real ingest, an engine
ticked by the test, and a subscriber seeing offers as agents would."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.campaigns.engine import CampaignEngine
from fleet_server.campaigns.plan import CampaignCreate
from fleet_server.campaigns.reports import UpdateReports
from fleet_server.campaigns.service import create
from fleet_server.campaigns.stats import CampaignStats
from fleet_server.campaigns.tables import Campaign, CampaignOutlet
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.ingest import Ingest
from fleet_server.migrate import upgrade
from fleet_server.models import Agent
from fleet_server.releases.artifacts import version_key
from fleet_server.releases.tables import Release
from fleet_server.settings import Settings
from govedge_wire import UpdateOffer, UpdateStatus, decode
from tests.server.config.kit import add_outlet
from tests.server.helpers import FakeAgent, mqtt_client, poll

# Hours that are closed all week but Monday: "open now" is a Monday in the tests.
CLOSED: dict[str, Any] = {"time_zone": "UTC"}
OPEN_MONDAY: dict[str, Any] = {"time_zone": "UTC", "mon": ["00:00-24:00"]}
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
TUESDAY = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


def add_release(session: Session, version: str) -> None:
    """A release row as the store writes it (the file itself is not needed here)."""
    session.add(
        Release(
            version=version, version_key=version_key(version),
            file_name=f"govedge-{version}-py3-none-any.whl",
            kind="wheel", size=1, sha256="0" * 64, created_at=datetime.now(UTC),
            created_by="test", notes=None,
            manifest={"version": version, "file_name": f"govedge-{version}-py3-none-any.whl"},
            bad_at=None, bad_by=None, bad_reason=None,
        )
    )  # fmt: skip


class OfferWatcher:
    """Every ``down/update`` offer, decoded, as agents receive them."""

    def __init__(self, mqtt_url: str) -> None:
        self.offers: queue.Queue[UpdateOffer] = queue.Queue()
        self.client = mqtt_client(mqtt_url, name="offer-watch")

        def take(_c: object, _u: object, message: Any) -> None:
            decoded = decode(message.topic, bytes(message.payload))
            assert isinstance(decoded, UpdateOffer)
            assert not message.retain
            self.offers.put(decoded)

        self.client.on_message = take
        acked: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_args: acked.put(True)
        self.client.subscribe("govedge/v1/+/down/update", qos=1)
        acked.get(timeout=10)

    def take(self, count: int, *, timeout: float = 10.0) -> list[UpdateOffer]:
        return [self.offers.get(timeout=timeout) for _ in range(count)]

    def drain(self) -> list[UpdateOffer]:
        found = []
        while not self.offers.empty():
            found.append(self.offers.get_nowait())
        return found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Rollout:
    sessions: sessionmaker[Session]
    ingest: Ingest
    engine: CampaignEngine
    stats: CampaignStats
    agents: dict[str, FakeAgent]

    def outlet(self, campaign_id: int, outlet_id: str) -> CampaignOutlet:
        with self.sessions() as session:
            row = session.get(CampaignOutlet, (campaign_id, outlet_id))
            assert row is not None
            session.expunge(row)
            return row

    def states(self, campaign_id: int) -> dict[str, str]:
        with self.sessions() as session:
            rows = session.scalars(
                select(CampaignOutlet).where(CampaignOutlet.campaign_id == campaign_id)
            )
            return {r.outlet_id: r.state for r in rows}

    def campaign(self, campaign_id: int) -> Campaign:
        with self.sessions() as session:
            row = session.get(Campaign, campaign_id)
            assert row is not None
            session.expunge(row)
            return row

    def create(self, **body: Any) -> int:
        with self.sessions.begin() as session:
            campaign, _ = create(session, CampaignCreate.model_validate(body), actor="tester")
            return campaign.id

    def report(self, outlet_id: str, campaign_id: int, state: str, **fields: Any) -> None:
        agent = self.agents[outlet_id]
        seq = agent.seq
        agent.seq += 1
        agent.send(
            UpdateStatus(
                outlet_id=outlet_id, session=agent.session, seq=seq, campaign_id=campaign_id,
                version=fields.pop("version", "1.4.0"),
                running_version=fields.pop("running_version", "1.3.0"), state=state, **fields,
            )
        )  # fmt: skip

    def wait_state(self, campaign_id: int, outlet_id: str, state: str) -> None:
        poll(
            lambda: self.outlet(campaign_id, outlet_id).state == state,
            what=f"{outlet_id} {state}",
        )

    def new_engine(self) -> CampaignEngine:
        """Another engine on the same database: a restarted server."""
        return CampaignEngine(sessions=self.sessions, publisher=self.ingest.publisher,
                              stats=self.stats, default_zone="UTC")  # fmt: skip


@contextmanager
def rollout(database_url: str, mqtt_url: str, outlets: dict[str, Any]) -> Iterator[Rollout]:
    """The real ingest with the update desk; outlets (id → hours) born online running
    1.3.0; release 1.4.0 stored; an engine the test ticks."""
    db = make_engine(database_url)
    upgrade(db)
    sessions = make_sessionmaker(db)
    stats = CampaignStats()
    settings = Settings(database_url=database_url, mqtt_url=mqtt_url)
    ingest = Ingest(settings, sessions=sessions, updates=UpdateReports(stats=stats))
    ingest.start()
    agents: dict[str, FakeAgent] = {}
    try:
        poll(lambda: ingest.stats.broker_connected, what="ingest connected")
        with sessions.begin() as session:
            add_release(session, "1.4.0")
            for outlet_id, hours in outlets.items():
                add_outlet(session, outlet_id, region="3301", kind="hall", hours=hours)
        for outlet_id in outlets:
            agent = FakeAgent(mqtt_url, outlet_id, session=5)
            agent.birth(agent_version="1.3.0")
            agents[outlet_id] = agent
        for outlet_id in outlets:
            poll(lambda o=outlet_id: _online(sessions, o), what=f"{outlet_id} online")
        engine = CampaignEngine(sessions=sessions, publisher=ingest.publisher, stats=stats,
                                default_zone="UTC")  # fmt: skip
        yield Rollout(sessions, ingest, engine, stats, agents)
    finally:
        for agent in agents.values():
            agent.close()
        ingest.stop(timeout=5)
        db.dispose()


def _online(sessions: sessionmaker[Session], outlet_id: str) -> bool:
    with sessions() as session:
        row = session.get(Agent, outlet_id)
        return row is not None and row.state == "online"
