"""The campaign engine with the real broker and ingest: waves, windows, thresholds,
concurrency, forward-only states, restarts and a release marked bad."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fleet_server.alerts.engine import AlertEngine
from fleet_server.campaigns.service import resume
from fleet_server.health.tables import Alert, OutletProfile
from fleet_server.models import Agent
from fleet_server.releases.tables import Release
from fleet_server.security.audit import AuditEntry
from govedge_testbed import Mosquitto
from tests.server.campaigns.kit import OfferWatcher, Rollout, add_release, rollout
from tests.server.helpers import poll

CLOSED: dict[str, Any] = {"time_zone": "UTC"}  # never open: always in its window
OPEN: dict[str, Any] = {"time_zone": "UTC"} | {
    day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


@pytest.fixture
def watcher(broker: Mosquitto) -> Iterator[OfferWatcher]:
    watch = OfferWatcher(broker.url)
    yield watch
    watch.close()


def _fleet(
    broker: Mosquitto, tmp_path: Path, outlets: dict[str, Any], url: str | None = None
) -> Any:
    return rollout(url or f"sqlite:///{tmp_path / 'fleet.db'}", broker.url, outlets)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _install(run: Rollout, campaign_id: int, outlet_id: str, final: str = "healthy") -> None:
    for state in ("downloading", "verifying", "installing", "restarting"):
        run.report(outlet_id, campaign_id, state)
    run.report(outlet_id, campaign_id, final, **({"reason": "install_failed"}
                                                 if final != "healthy" else {}))  # fmt: skip
    run.wait_state(campaign_id, outlet_id, final)


def test_canary_first_then_the_wave_only_inside_windows(
    broker: Mosquitto, tmp_path: Path, watcher: OfferWatcher
) -> None:
    outlets = {"o-1": CLOSED, "o-2": CLOSED, "o-3": CLOSED, "o-4": OPEN}
    with _fleet(broker, tmp_path, outlets) as run:
        cid = run.create(release="1.4.0", target={"regions": ["33"]}, waves=[1, "100%"],
                         jitter_s=0)  # fmt: skip
        assert run.engine.tick() == 1
        (offer,) = watcher.take(1)
        assert (offer.outlet_id, offer.campaign_id, offer.version) == ("o-1", cid, "1.4.0")
        assert offer.artifact_path == "/api/v1/releases/1.4.0/artifact"
        assert offer.manifest["version"] == "1.4.0"
        assert offer.window_end_ts > time.time() * 1000
        assert run.states(cid) == {"o-1": "scheduled", "o-2": "pending", "o-3": "pending",
                                   "o-4": "pending"}  # fmt: skip
        _install(run, cid, "o-1")
        # A late step after healthy changes nothing and is counted.
        run.report("o-1", cid, "downloading")
        poll(lambda: run.stats.snapshot()[1].get("not_forward"), what="late report counted")
        assert run.outlet(cid, "o-1").state == "healthy"
        # The canary is healthy: the next wave starts; o-4 is open, so it gets nothing.
        assert run.engine.tick() == 2
        assert sorted(o.outlet_id for o in watcher.take(2)) == ["o-2", "o-3"]
        assert run.outlet(cid, "o-4").state == "scheduled"
        assert run.engine.tick() == 0
        with run.sessions.begin() as session:
            profile = session.get(OutletProfile, "o-4")
            assert profile is not None
            profile.opening_hours = CLOSED  # the outlet closed: its window opened
        assert run.engine.tick() == 1
        assert watcher.take(1)[0].outlet_id == "o-4"
        for outlet_id in ("o-2", "o-3", "o-4"):
            _install(run, cid, outlet_id)
        run.engine.tick()
        assert run.campaign(cid).state == "completed"
        history = [h.state for h in _history(run, cid, "o-1")]
        assert history == ["scheduled", "downloading", "verifying", "installing", "restarting",
                           "healthy"]  # fmt: skip


def test_a_failed_canary_pauses_and_no_later_outlet_is_ever_offered(
    broker: Mosquitto, tmp_path: Path, watcher: OfferWatcher, database_url: str
) -> None:
    outlets = {"o-1": CLOSED, "o-2": CLOSED, "o-3": CLOSED}
    with _fleet(broker, tmp_path, outlets, database_url) as run:
        cid = run.create(release="1.4.0", target={"outlets": ["o-1", "o-2", "o-3"]},
                         waves=[1, "100%"], jitter_s=0)  # fmt: skip
        assert run.engine.tick() == 1
        _install(run, cid, "o-1", final="rolled_back")
        assert run.engine.tick() == 0
        campaign = run.campaign(cid)
        assert campaign.state == "paused"
        assert "failure threshold" in (campaign.state_reason or "")
        assert run.engine.tick() == 0
        assert run.states(cid) == {"o-1": "rolled_back", "o-2": "pending", "o-3": "pending"}
        assert [o.outlet_id for o in watcher.take(1)] == ["o-1"]
        assert watcher.drain() == []
        with run.sessions() as session:
            actions = session.execute(
                select(AuditEntry.actor, AuditEntry.action).where(
                    AuditEntry.target == f"campaign:{cid}"
                )
            ).all()
        assert ("engine", "campaign.pause") in [tuple(a) for a in actions]
        # Alerts: the paused campaign (filed under "_fleet") and the rolled back outlet.
        alerts = AlertEngine(sessions=run.sessions, interval_s=60)
        alerts.evaluate_once()
        with run.sessions() as session:
            found = {
                (a.rule, a.outlet_id, a.device_id)
                for a in session.scalars(select(Alert).where(Alert.state == "open"))
            }
        assert ("campaign_paused", "_fleet", f"campaign:{cid}") in found
        assert ("update_failed", "o-1", "") in found


def test_concurrency_limits_outlets_between_offer_and_restart(
    broker: Mosquitto, tmp_path: Path, watcher: OfferWatcher
) -> None:
    outlets = {f"o-{n}": CLOSED for n in range(1, 5)}
    with _fleet(broker, tmp_path, outlets) as run:
        cid = run.create(release="1.4.0", target={"kinds": ["hall"]}, waves=["100%"],
                         concurrency=2, jitter_s=0)  # fmt: skip
        assert run.engine.tick() == 2
        assert run.engine.tick() == 0
        _install(run, cid, "o-1")
        assert run.engine.tick() == 1
        assert sorted(o.outlet_id for o in watcher.take(3)) == ["o-1", "o-2", "o-3"]


def test_a_restarted_server_keeps_states_and_a_birth_confirms_health(
    broker: Mosquitto, tmp_path: Path, watcher: OfferWatcher, database_url: str
) -> None:
    with _fleet(broker, tmp_path, {"o-1": CLOSED, "o-2": CLOSED}, database_url) as run:
        cid = run.create(release="1.4.0", target={"outlets": ["o-1", "o-2"]}, waves=[1, 1])
        run.engine.tick()
        for state in ("downloading", "verifying", "installing", "restarting"):
            run.report("o-1", cid, state)
        run.wait_state(cid, "o-1", "restarting")
        engine = run.new_engine()  # the server restarted; the "healthy" was lost
        agent = run.agents["o-1"]
        agent.session, agent.seq = 6, 0
        agent.birth(agent_version="1.4.0")
        poll(lambda: _version(run, "o-1") == "1.4.0", what="the birth stored")
        # During its trial a birth on the new version proves nothing: the supervisor
        # may still roll back.
        engine.tick()
        assert run.outlet(cid, "o-1").state == "restarting"
        after_trial = datetime.now(UTC) + timedelta(seconds=121)  # health_timeout_s 120
        engine.tick(now=after_trial)
        assert run.outlet(cid, "o-1").state == "healthy"
        assert run.outlet(cid, "o-2").state == "scheduled"
        # A report for a campaign the outlet is not in is counted and ignored.
        run.report("o-2", cid + 7, "downloading")
        poll(lambda: run.stats.snapshot()[1].get("unknown_campaign"), what="ignored")


def test_a_release_marked_bad_pauses_its_campaigns(broker: Mosquitto, tmp_path: Path) -> None:
    with _fleet(broker, tmp_path, {"o-1": CLOSED}) as run:
        cid = run.create(release="1.4.0", target={"outlets": ["o-1"]})
        with run.sessions.begin() as session:
            release = session.get(Release, "1.4.0")
            assert release is not None
            release.bad_at, release.bad_by, release.bad_reason = (
                datetime.now(UTC),
                "op",
                "printer crash",
            )
        assert run.engine.tick() == 0
        campaign = run.campaign(cid)
        assert campaign.state == "paused"
        assert "printer crash" in (campaign.state_reason or "")


def _history(run: Rollout, cid: int, outlet_id: str) -> list[Any]:
    from fleet_server.campaigns.tables import CampaignOutletHistory

    with run.sessions() as session:
        rows = list(session.scalars(
            select(CampaignOutletHistory).where(
                CampaignOutletHistory.campaign_id == cid,
                CampaignOutletHistory.outlet_id == outlet_id,
            ).order_by(CampaignOutletHistory.id)
        ))  # fmt: skip
        session.expunge_all()
        return rows


def test_resume_with_a_fixed_release_offers_the_failed_outlet_again(
    broker: Mosquitto, tmp_path: Path, watcher: OfferWatcher
) -> None:
    with _fleet(broker, tmp_path, {"o-1": CLOSED, "o-2": CLOSED}) as run:
        cid = run.create(release="1.4.0", target={"outlets": ["o-1", "o-2"]}, waves=[1, 1])
        run.engine.tick()
        _install(run, cid, "o-1", final="failed")
        run.engine.tick()
        assert run.campaign(cid).state == "paused"
        with run.sessions.begin() as session:
            add_release(session, "1.4.1")
        with run.sessions.begin() as session:
            resume(session, cid, reason="fixed build", release="1.4.1", actor="tester")
        assert run.engine.tick() == 1
        offers = watcher.take(2)
        assert [(o.outlet_id, o.version) for o in offers] == [("o-1", "1.4.0"), ("o-1", "1.4.1")]
        assert (run.outlet(cid, "o-1").state, run.outlet(cid, "o-1").reason) == (
            "scheduled", "retry")  # fmt: skip
        for state in ("downloading", "verifying", "installing", "restarting", "healthy"):
            run.report("o-1", cid, state, version="1.4.1")
        run.wait_state(cid, "o-1", "healthy")
        assert run.engine.tick() == 1  # the next wave, with the fixed release
        assert [(o.outlet_id, o.version) for o in watcher.take(1)] == [("o-2", "1.4.1")]


def _version(run: Rollout, outlet_id: str) -> str | None:
    with run.sessions() as session:
        return session.scalar(select(Agent.agent_version).where(Agent.outlet_id == outlet_id))


def _birth_at(run: Rollout, outlet_id: str) -> datetime | None:
    with run.sessions() as session:
        return session.scalar(select(Agent.birth_at).where(Agent.outlet_id == outlet_id))


def test_an_agent_born_again_mid_download_is_offered_again(
    broker: Mosquitto, tmp_path: Path, watcher: OfferWatcher
) -> None:
    with _fleet(broker, tmp_path, {"o-1": CLOSED}) as run:
        cid = run.create(release="1.4.0", target={"outlets": ["o-1"]}, waves=[1], jitter_s=0)
        assert run.engine.tick() == 1
        assert [o.outlet_id for o in watcher.take(1)] == ["o-1"]
        run.report("o-1", cid, "downloading")
        run.wait_state(cid, "o-1", "downloading")
        later = datetime.now(UTC) + timedelta(seconds=31)
        assert run.engine.tick(now=later) == 0  # still at it: nothing to resend
        # The agent process was killed and started again: the offer was in its memory.
        before = _birth_at(run, "o-1")
        agent = run.agents["o-1"]
        agent.session, agent.seq = 6, 0
        agent.birth(agent_version="1.3.0")
        poll(lambda: _birth_at(run, "o-1") != before, what="the new birth stored")
        assert run.engine.tick(now=later) == 1
        (again,) = watcher.take(1)
        assert (again.outlet_id, again.version, again.campaign_id) == ("o-1", "1.4.0", cid)
        assert run.outlet(cid, "o-1").state == "downloading"
        assert run.engine.tick(now=later) == 0  # once per birth
