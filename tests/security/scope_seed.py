"""Two outlets for the scope tests: ``in-1`` (region 410102) and ``out-1`` (420101),
each with a row of every kind that belongs to an outlet, and region-scoped users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fleet_server.campaigns.tables import Campaign, CampaignOutlet
from fleet_server.health.tables import Alert, AlertRuleOverride, OutletProfile
from fleet_server.models import (
    Agent,
    DeadLetter,
    Evaluation,
    InboxEntry,
    Outlet,
    Rectification,
)
from fleet_server.playbooks.tables import OutletAccess, OutletArchive, PlaybookHost, PlaybookRun
from fleet_server.security import Role
from fleet_server.security.users import create_user
from fleet_server.transactions.identity import upstream_idempotency_key
from tests.security.api_harness import Api
from tests.server.txkit import submission

INSIDE, OUTSIDE = "in-1", "out-1"
REGIONS = {INSIDE: "410102", OUTSIDE: "420101"}
SCOPE = "4101"


@dataclass(frozen=True)
class Rows:
    """The ids of one outlet's rows."""

    alert: int
    dead_letter: int
    rectification: int
    campaign: int
    run: int
    override: int
    archive: int


def _seed_outlet(api: Api, outlet_id: str, *, at: int) -> Rows:
    now = datetime.now(UTC)
    with api.session() as session, session.begin():
        session.add(Outlet(id=outlet_id, display_name=f"Outlet {outlet_id}", created_at=now))
        session.add(
            OutletProfile(
                outlet_id=outlet_id, name=f"Outlet {outlet_id}", kind="street_centre",
                region_code=REGIONS[outlet_id], latitude=34.7 + at, longitude=113.6 + at,
                service_items=[], tags=["pilot"],
            )
        )  # fmt: skip
        session.flush()
        session.add(
            Agent(outlet_id=outlet_id, state="online", state_since=now, last_seen=now, devices=[])
        )
        tx = f"tx-{outlet_id}"
        entry = InboxEntry(
            tx_id=tx, outlet_id=outlet_id, idempotency_key=upstream_idempotency_key(outlet_id, tx),
            tx_kind="submission", body=submission(), created_ts=0, received_at=now, state="dead",
            attempts=3, next_due_at=None, result_pending=False,
        )  # fmt: skip
        session.add(entry)
        session.flush()
        dead = DeadLetter(
            inbox_id=entry.id, tx_id=tx, outlet_id=outlet_id, tx_kind="submission", target=None,
            reason="no_route", detail=None, status_code=None, attempts=3, created_at=now,
        )  # fmt: skip
        evaluation = Evaluation(
            tx_id=f"ev-{outlet_id}", outlet_id=outlet_id, window="W1", case_number=None,
            level_code=5, stars=1, channel="4", is_bad=True, is_default=False, real_name=True,
            evaluated_at=now,
        )  # fmt: skip
        session.add_all([dead, evaluation])
        session.flush()
        ticket = Rectification(
            evaluation_id=evaluation.id, outlet_id=outlet_id, window="W1", opened_at=now,
            deadline_at=now + timedelta(days=15), status="open",
        )  # fmt: skip
        alert = Alert(
            rule="outlet_offline", outlet_id=outlet_id, device_id="", severity="warning",
            state="open", summary=f"outlet {outlet_id} offline", value=None, detail={},
            opened_at=now, updated_at=now,
        )  # fmt: skip
        campaign = Campaign(
            name=f"c-{outlet_id}", release="9.9.9", target={"regions": [REGIONS[outlet_id]]},
            settings={}, waves=[1], wave_times={}, current_wave=-1, state="paused",
            state_reason=None, created_by="test", created_at=now, updated_at=now,
            next_wave_at=None,
        )  # fmt: skip
        run = PlaybookRun(
            playbook="p.yml", status="successful", check_mode=True, during_opening_hours=False,
            forks=1, target={"outlets": [outlet_id]}, extra_vars={}, created_at=now,
            created_by="test", finished_at=now,
        )  # fmt: skip
        override = AlertRuleOverride(
            scope="outlet", scope_value=outlet_id, rule="outlet_offline", params={}
        )
        session.add_all([ticket, alert, campaign, run, override])
        session.flush()
        session.add(
            CampaignOutlet(
                campaign_id=campaign.id, outlet_id=outlet_id, position=0, wave=0,
                state="pending", since=now, reason=None, detail=None, from_version="1.0.0",
                release="9.9.9", attempts=0, offered_at=None, last_report_at=None,
            )
        )  # fmt: skip
        session.add(PlaybookHost(run_id=run.id, outlet_id=outlet_id, status="held",
                                 held_reason="open", ok=0, changed=0, failed=0, unreachable=0,
                                 skipped=0))  # fmt: skip
        session.add(OutletAccess(outlet_id=outlet_id, ansible_host="10.0.0.1", host_vars={},
                                 updated_at=now, updated_by="test"))  # fmt: skip
        archive = OutletArchive(outlet_id=outlet_id, run_id=run.id, name="diagnose.tar.gz",
                                size=4, sha256="0" * 64, created_at=now)  # fmt: skip
        session.add(archive)
        session.flush()
        runs_dir = api.client.app.state.security.settings.playbook_runs_dir
        folder = runs_dir / str(run.id) / "archives" / outlet_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / archive.name).write_bytes(b"\x1f\x8b\x08\x00")
        return Rows(alert.id, dead.id, ticket.id, campaign.id, run.id, override.id, archive.id)


def seed_two_outlets(api: Api) -> dict[str, Rows]:
    """Both outlets with their rows, and a config layer for each outlet and region."""
    rows = {outlet: _seed_outlet(api, outlet, at=at) for at, outlet in enumerate(REGIONS)}
    admin = api.as_role(Role.ADMIN)
    for layer in ("outlet:in-1", "outlet:out-1", "region:4101", "region:4201"):
        answer = api.client.put(f"/api/v1/config/{layer}", json={}, headers=admin)
        assert answer.status_code in (200, 201), answer.text
    return rows


def scoped_users(api: Api, prefixes: tuple[str, ...] = (SCOPE,)) -> dict[Role, dict[str, str]]:
    """A user per non-admin role limited to ``prefixes``: their auth headers."""
    headers: dict[Role, dict[str, str]] = {}
    with api.session() as session:
        for role in (Role.VIEWER, Role.OPERATOR, Role.TECHNICIAN):
            new = create_user(
                session, name=f"s{len(prefixes)}-{role.value}", role=role,
                ttl=timedelta(hours=1), actor="test", regions=prefixes,
            )  # fmt: skip
            headers[role] = {"Authorization": f"Bearer {new.token}"}
    return headers
