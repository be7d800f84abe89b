"""The campaign engine: starts waves, sends offers, judges waves and thresholds.

One thread ticks every ``interval_s`` (and when woken by an update report), only in the
process that leads (the alert engine's leadership: one process per database drives
campaigns). A tick reads each running campaign in one transaction: the outlets under
way (scheduled or mid-install) as rows, the rest as counts, so its cost follows the
work in flight rather than the campaign's size:

1. a release marked bad pauses the campaign;
2. an outlet mid-install whose birth has run the release for longer than the trial's
   ``health_timeout_s`` becomes healthy (a lost ``healthy``: an unhealthy version would
   have been rolled back, with a new birth, by then); one silent past
   ``health_timeout_s`` + ``SILENCE_MARGIN_S`` fails (``timeout``);
3. the failure share (failed or rolled back / offered, since the last resume) above
   ``failure_threshold`` pauses the campaign at once, before any offer;
4. a wave whose outlets are all final is judged (healthy share against
   ``success_threshold``): the next starts after ``wave_wait_s``, or the campaign pauses;
   a scheduled outlet that stayed away ``offline_after_s`` after its wave started, when
   the rest of its wave is final, becomes skipped (``offline``);
5. offers go to scheduled outlets that are online, inside their window, with a slot.

Offers are published as they are decided; a lost one is sent again (``RESEND_S``, or at
the outlet's next birth, at most every ``BIRTH_RESEND_S``). An outlet born again while
downloading, verifying or installing (its agent restarted and forgot the offer) is
offered again the same way; the installer cleans up what the killed attempt left.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.campaigns.service import set_state
from fleet_server.campaigns.states import FAILED, FINAL, IN_PROGRESS, move
from fleet_server.campaigns.stats import CampaignStats
from fleet_server.campaigns.tables import Campaign, CampaignOutlet
from fleet_server.campaigns.windows import window
from fleet_server.config.holds import hours_for
from fleet_server.config.tables import OutletConfig
from fleet_server.health.tables import OutletProfile
from fleet_server.models import Agent
from fleet_server.releases.artifacts import ArtifactRefused, version_key
from fleet_server.releases.tables import Release

logger = logging.getLogger(__name__)

SILENCE_MARGIN_S: Final = 300
RESEND_S: Final = 300
BIRTH_RESEND_S: Final = 30


class OfferPublishing(Protocol):
    """The ingest's publisher (``Publisher.publish_update``)."""

    def publish_update(self, offer: dict[str, Any]) -> bool:
        """Publish one offer (not retained); False while disconnected."""


@dataclass(frozen=True, slots=True)
class _AgentView:
    state: str
    version: str | None
    birth_at: datetime | None


def same_version(a: str | None, b: str) -> bool:
    """Equal under PEP 440 (``1.4`` is ``1.4.0``)."""
    if a is None:
        return False
    try:
        return version_key(a) == version_key(b)
    except ArtifactRefused:
        return a == b


# The outlets a tick reads as rows: waiting for an offer or mid-install.
ACTIVE: Final = frozenset({"scheduled", *IN_PROGRESS})

# Steps an agent forgets when its process restarts (the offer lives in memory only);
# ``restarting`` is left out: a birth then is the new version starting.
INTERRUPTIBLE: Final = frozenset({"downloading", "verifying", "installing"})


def _restarted_since(agent: _AgentView | None, row: CampaignOutlet) -> bool:
    """The agent was born again after its last report: it lost the offer it worked on."""
    last = row.last_report_at or row.offered_at
    return (
        agent is not None
        and agent.birth_at is not None
        and last is not None
        and (agent.birth_at > last)
    )


class CampaignEngine:
    """Drives running campaigns; ``tick`` is the unit tests drive."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        publisher: OfferPublishing,
        stats: CampaignStats,
        leading: Callable[[], bool] = lambda: True,
        default_zone: str = "Asia/Shanghai",
        interval_s: float = 2.0,
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._stats = stats
        self._leading = leading
        self._zone = default_zone
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="campaign-engine", daemon=True)

    def start(self) -> None:
        """Tick in the background."""
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop after the tick in progress."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def wake(self) -> None:
        """Tick now (a report arrived, a campaign changed)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self._leading():
                    self.tick()
            except Exception:  # the thread must outlive any bug or database outage
                self._stats.count("tick_errors")
                logger.exception("campaign tick failed; trying again at the next")
            self._wake.wait(self._interval_s)

    def tick(self, *, now: datetime | None = None) -> int:
        """One pass over running campaigns; the number of offers sent."""
        now = now or datetime.now(UTC)
        offers: list[dict[str, Any]] = []
        with self._lock, self._sessions.begin() as session:
            running = session.scalars(
                select(Campaign).where(Campaign.state == "running").order_by(Campaign.id)
            ).all()
            for campaign in running:
                offers += self._drive(session, campaign, now)
            session.flush()
            by_state = session.execute(
                select(Campaign.state, func.count()).group_by(Campaign.state)
            )
            self._stats.campaigns({str(row[0]): int(row[1]) for row in by_state})
        self._stats.count("offers_sent", len(offers))
        return len(offers)

    # -- one campaign ------------------------------------------------------------

    def _drive(self, session: Session, campaign: Campaign, now: datetime) -> list[dict[str, Any]]:
        settings = campaign.settings
        release = session.get(Release, campaign.release)
        if release is None or release.bad_at is not None:
            why = release.bad_reason if release is not None else "gone"
            self._pause(session, campaign, f"release {campaign.release} marked bad: {why}")
            return []
        # Only the outlets the engine can act on are read as rows (scheduled or mid-
        # install); the rest of the campaign (pending, final) is read as counts. A tick
        # then costs what is under way, not the campaign's size.
        rows = list(
            session.scalars(
                select(CampaignOutlet)
                .where(CampaignOutlet.campaign_id == campaign.id, CampaignOutlet.state.in_(ACTIVE))
                .order_by(CampaignOutlet.position)
            )
        )
        agents = self._agents(session, [r.outlet_id for r in rows])
        trial = timedelta(seconds=int(settings["health_timeout_s"]))
        silence = trial + timedelta(seconds=SILENCE_MARGIN_S)
        for row in rows:
            if row.state not in IN_PROGRESS:
                continue
            agent = agents.get(row.outlet_id)
            if (
                agent is not None
                and row.offered_at is not None
                and agent.birth_at is not None
                and agent.birth_at > row.offered_at
                # A birth on the new version during its trial proves nothing yet (the
                # supervisor may still roll back); one older than the trial's timeout
                # with no later birth means the trial ended healthy and its report was
                # lost.
                and now - agent.birth_at >= trial
                and same_version(agent.version, row.release)
            ):
                move(session, row, "healthy", at=now, detail="confirmed by the agent's birth")
            elif now - (row.last_report_at or row.offered_at or row.since) > silence:
                move(session, row, "failed", at=now, reason="timeout",
                     detail="no report within the health timeout")  # fmt: skip
                self._stats.count("timeouts")
        crossed = self._failure_crossed(session, campaign)
        if crossed is not None:
            self._pause(session, campaign, crossed)
            return []
        if not self._advance(session, campaign, rows, now):
            return []
        missing = [r.outlet_id for r in rows if r.outlet_id not in agents]
        agents.update(self._agents(session, missing))  # outlets of a wave just started
        return self._offers(session, campaign, rows, agents, now)

    def _failure_crossed(self, session: Session, campaign: Campaign) -> str | None:
        since = campaign.settings.get("counted_from")
        query = (
            select(CampaignOutlet.state, func.count())
            .where(CampaignOutlet.campaign_id == campaign.id,
                   CampaignOutlet.offered_at.is_not(None))
            .group_by(CampaignOutlet.state)
        )  # fmt: skip
        if since:
            query = query.where(CampaignOutlet.offered_at >= datetime.fromisoformat(since))
        by_state = {str(state): int(n) for state, n in session.execute(query)}
        begun = sum(by_state.values())
        failed = sum(n for state, n in by_state.items() if state in FAILED)
        limit = float(campaign.settings["failure_threshold"])
        if begun and failed / begun > limit:
            return (f"failure threshold crossed: {failed} of {begun} outlets begun "
                    f"failed or rolled back (more than {limit:.0%})")  # fmt: skip
        return None

    @staticmethod
    def _wave_counts(session: Session, campaign_id: int, wave: int) -> dict[str, int]:
        query = (
            select(CampaignOutlet.state, func.count())
            .where(CampaignOutlet.campaign_id == campaign_id, CampaignOutlet.wave == wave)
            .group_by(CampaignOutlet.state)
        )
        return {str(state): int(n) for state, n in session.execute(query)}

    def _advance(
        self, session: Session, campaign: Campaign, rows: list[CampaignOutlet], now: datetime
    ) -> bool:
        """Judge the current wave, start the next; False when the campaign stopped."""
        settings = campaign.settings
        current = campaign.current_wave
        if current >= 0:
            counts = self._wave_counts(session, campaign.id, current)
            size = sum(counts.values())
            started = datetime.fromisoformat(campaign.wave_times[str(current)]["started_at"])
            away = timedelta(seconds=int(settings.get("offline_after_s", 86_400)))
            waiting = [r for r in rows if r.wave == current and r.state not in FINAL]
            others = sum(n for state, n in counts.items() if state not in FINAL | ACTIVE)
            if (
                waiting
                and not others
                and now - started >= away
                and all(r.state == "scheduled" for r in waiting)
            ):
                for row in waiting:
                    move(session, row, "skipped", at=now, reason="offline",
                         detail="not online inside its window during its wave")  # fmt: skip
                waiting = []
            if waiting or others:
                return True
            healthy = counts.get("healthy", 0)
            need = float(settings["success_threshold"])
            if size and healthy / size < need and settings.get("accepted_wave") != current:
                self._pause(session, campaign, f"wave {current + 1}: {healthy} of {size} "
                            f"outlets healthy, below the success threshold {need:.0%}")  # fmt: skip
                return False
            times = dict(campaign.wave_times)
            if times[str(current)].get("finished_at") is None:
                times[str(current)] = {**times[str(current)], "finished_at": now.isoformat()}
                campaign.wave_times = times
                campaign.next_wave_at = now + timedelta(seconds=int(settings["wave_wait_s"]))
            if current + 1 >= len(campaign.waves):
                set_state(session, campaign, "completed", reason=None, actor="engine",
                          action="campaign.complete")  # fmt: skip
                return False
        if campaign.next_wave_at is not None and now < campaign.next_wave_at:
            return True
        rows += self._start_wave(session, campaign, current + 1, now)
        return True

    def _start_wave(
        self, session: Session, campaign: Campaign, wave: int, now: datetime
    ) -> list[CampaignOutlet]:
        """Schedule the wave's outlets; the rows now scheduled."""
        starting = list(
            session.scalars(
                select(CampaignOutlet)
                .where(CampaignOutlet.campaign_id == campaign.id, CampaignOutlet.wave == wave,
                       CampaignOutlet.state == "pending")
                .order_by(CampaignOutlet.position)
            )
        )  # fmt: skip
        for row in starting:
            move(session, row, "scheduled", at=now)
        campaign.current_wave = wave
        campaign.wave_times = {
            **campaign.wave_times,
            str(wave): {"started_at": now.isoformat(), "finished_at": None},
        }
        campaign.next_wave_at = None
        campaign.updated_at = now
        logger.info("campaign %d: wave %d of %d started", campaign.id, wave + 1,
                    len(campaign.waves))  # fmt: skip
        return starting

    def _offers(
        self, session: Session, campaign: Campaign, rows: list[CampaignOutlet],
        agents: dict[str, _AgentView], now: datetime,
    ) -> list[dict[str, Any]]:  # fmt: skip
        settings = campaign.settings
        holding = sum(
            1 for r in rows
            if r.state in IN_PROGRESS or (r.state == "scheduled" and r.offered_at is not None)
        )  # fmt: skip
        free = int(settings["concurrency"]) - holding
        due = [
            r for r in rows
            if (r.state == "scheduled" and r.wave <= campaign.current_wave)
            or (r.state in INTERRUPTIBLE and _restarted_since(agents.get(r.outlet_id), r))
        ]  # fmt: skip
        hours = self._hours(session, [r.outlet_id for r in due])
        manifests: dict[str, dict[str, Any]] = {}
        offers: list[dict[str, Any]] = []
        for row in due:
            agent = agents.get(row.outlet_id)
            if agent is None or agent.state != "online":
                continue
            if row.offered_at is None:
                if free <= 0:
                    continue
            elif not (
                now - row.offered_at >= timedelta(seconds=RESEND_S)
                or (
                    agent.birth_at is not None
                    and agent.birth_at > row.offered_at
                    and now - row.offered_at >= timedelta(seconds=BIRTH_RESEND_S)
                )
            ):
                continue
            end = window(hours.get(row.outlet_id), now=now, default_zone=self._zone)
            if end is None:
                continue
            if row.release not in manifests:
                stored = session.get(Release, row.release)
                if stored is None or stored.bad_at is not None:
                    continue
                manifests[row.release] = stored.manifest
            jitter = random.randint(0, int(settings["jitter_s"]))
            offer = {
                "outlet_id": row.outlet_id,
                "campaign_id": campaign.id,
                "version": row.release,
                "manifest": manifests[row.release],
                "artifact_path": f"/api/v1/releases/{row.release}/artifact",
                "not_before_ts": int((now.timestamp() + jitter) * 1000),
                "window_end_ts": int(end.timestamp() * 1000),
                "health_timeout_s": int(settings["health_timeout_s"]),
            }
            # Published before the commit: an offer sent but not recorded (a failed
            # commit) is sent again, which the agent takes idempotently.
            if not self._publisher.publish_update(offer):
                break  # the broker is away: the next tick offers
            if row.offered_at is None:
                free -= 1
            row.offered_at = now
            row.attempts += 1
            offers.append(offer)
        return offers

    # -- reads and writes ---------------------------------------------------------

    def _pause(self, session: Session, campaign: Campaign, reason: str) -> None:
        set_state(session, campaign, "paused", reason=reason, actor="engine",
                  action="campaign.pause")  # fmt: skip
        self._stats.count("auto_pauses")
        logger.warning("campaign %d paused: %s", campaign.id, reason)

    @staticmethod
    def _agents(session: Session, outlet_ids: list[str]) -> dict[str, _AgentView]:
        found: dict[str, _AgentView] = {}
        query = select(Agent.outlet_id, Agent.state, Agent.agent_version, Agent.birth_at)
        for start in range(0, len(outlet_ids), 500):
            chunk = outlet_ids[start : start + 500]
            for outlet_id, state, version, birth_at in session.execute(
                query.where(Agent.outlet_id.in_(chunk))
            ):
                found[outlet_id] = _AgentView(state=state, version=version, birth_at=birth_at)
        return found

    @staticmethod
    def _hours(session: Session, outlet_ids: list[str]) -> dict[str, Any]:
        """Each outlet's deciding hours: its desired config's, else its profile's."""
        hours: dict[str, Any] = {}
        for start in range(0, len(outlet_ids), 500):
            chunk = outlet_ids[start : start + 500]
            profiles: dict[str, Any] = dict(
                session.execute(
                    select(OutletProfile.outlet_id, OutletProfile.opening_hours).where(
                        OutletProfile.outlet_id.in_(chunk)
                    )
                ).all()
            )
            desired: dict[str, Any] = dict(
                session.execute(
                    select(OutletConfig.outlet_id, OutletConfig.desired).where(
                        OutletConfig.outlet_id.in_(chunk)
                    )
                ).all()
            )
            for outlet_id in chunk:
                hours[outlet_id] = hours_for(desired.get(outlet_id) or {}, profiles.get(outlet_id))
        return hours
