"""Playbook runs through the real API with real Ansible: outlets are hosts reached by
``ansible_connection=local``, each writing into its own directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from fleet_server.db import make_sessionmaker
from fleet_server.models import AuditEntry
from fleet_server.playbooks.tables import PlaybookHost, PlaybookRun
from fleet_server.playbooks.worker import RunManager
from fleet_server.security import Role
from tests.server.playbooks.kit import DONE, PlaybookApi, playbook_api

ID_NUMBER = "11010519491231002X"


@pytest.fixture
def pb(tmp_path: Path) -> Iterator[PlaybookApi]:
    with playbook_api(tmp_path) as running:
        yield running


def _refused(pb: PlaybookApi, reason: str) -> float:
    text = pb.api.client.get("/metrics").text
    found = re.search(
        rf'^govedge_playbook_runs_refused_total{{reason="{reason}"}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_the_catalogue_lists_playbooks_with_their_documented_variables(pb: PlaybookApi) -> None:
    answer = pb.api.client.get("/api/v1/playbooks", headers=pb.api.as_role(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    books = {book["name"]: book for book in answer.json()}
    assert set(books) == {"mark.yml", "slow.yml"}  # broken.yml is not offered
    assert books["mark.yml"]["variables"]["marker_text"]["required"] is True
    assert books["mark.yml"]["variables"]["pause_seconds"]["type"] == "int"


def test_a_run_reaches_the_target_reports_a_failing_host_and_holds_an_open_one(
    pb: PlaybookApi,
) -> None:
    good = pb.add_outlet("o-good", region="410402")
    broken = pb.add_outlet("o-broken", region="410403", host_vars={"fail_here": True})
    open_now = pb.add_outlet("o-open", region="410402", opening_hours="24h")
    elsewhere = pb.add_outlet("o-elsewhere", region="420101")
    run = pb.start(
        playbook="mark.yml", target={"regions": ["4104"]}, extra_vars={"marker_text": "v2"}
    )
    assert {h["outlet_id"]: h["status"] for h in run["hosts"]} == {
        "o-good": "pending", "o-broken": "pending", "o-open": "held",
    }  # fmt: skip
    done = pb.wait(run["id"], until=DONE)
    assert done["status"] == "failed"
    hosts = pb.hosts(done)
    assert hosts["o-good"]["status"] == "changed"
    assert hosts["o-broken"]["status"] == "failed"
    assert hosts["o-open"]["status"] == "held"
    assert (
        "open now" in hosts["o-open"]["held_reason"]
        or "never closes" in hosts["o-open"]["held_reason"]
    )
    assert hosts["o-good"]["outlet"] == "/api/v1/outlets/o-good"
    assert done["stats"]["failures"] == {"o-broken": 1}
    assert (good / "marker.txt").read_text() == "v2\n"
    for folder in (broken, open_now, elsewhere):
        assert not (folder / "marker.txt").exists()

    # Events: per host, with task names; ID and phone numbers masked.
    page = pb.api.client.get(
        f"/api/v1/playbook-runs/{run['id']}/events", headers=pb.api.as_role(Role.VIEWER)
    ).json()
    events = page["events"]
    assert {e["event"] for e in events} >= {"playbook_on_start", "runner_on_ok",
                                            "runner_on_failed", "playbook_on_stats"}  # fmt: skip
    assert any(e["task"] == "Write the marker" and e["outlet_id"] == "o-good" for e in events)
    text = "\n".join(e["stdout"] for e in events)
    assert "last citizen" in text
    assert ID_NUMBER not in text
    assert "13812345678" not in text
    later = pb.api.client.get(
        f"/api/v1/playbook-runs/{run['id']}/events",
        params={"after": events[-2]["seq"]}, headers=pb.api.as_role(Role.VIEWER),
    ).json()["events"]  # fmt: skip
    assert [e["seq"] for e in later] == [events[-1]["seq"]]

    # The live stream replays the events and ends with the status.
    with pb.api.client.stream(
        "GET", f"/api/v1/playbook-runs/{run['id']}/stream", headers=pb.api.as_role(Role.VIEWER)
    ) as stream:
        body = "".join(stream.iter_text())
    assert body.count("event: job_event") == len(events)
    assert body.rstrip().endswith('data: {"status": "failed"}')

    # The outlet's record shows its result; the run is audited.
    mine = pb.api.client.get(
        "/api/v1/outlets/o-broken/playbook-runs", headers=pb.api.as_role(Role.OPERATOR)
    ).json()
    assert [(r["id"], r["result"]["status"]) for r in mine] == [(run["id"], "failed")]
    with pb.api.session() as session:
        actions = session.scalars(select(AuditEntry.action)).all()
    assert "playbook.run" in actions
    assert "playbook.access" in actions


def test_an_open_outlet_runs_when_asked(pb: PlaybookApi) -> None:
    folder = pb.add_outlet("o-24h", opening_hours="24h")
    run = pb.start(playbook="mark.yml", target={"outlets": ["o-24h"]},
                   extra_vars={"marker_text": "now"}, during_opening_hours=True)  # fmt: skip
    done = pb.wait(run["id"], until=DONE)
    assert (done["status"], pb.hosts(done)["o-24h"]["status"]) == ("successful", "changed")
    assert (folder / "marker.txt").read_text() == "now\n"


def test_a_tag_chooses_the_outlets_that_carry_it(pb: PlaybookApi) -> None:
    pilot = pb.add_outlet("o-pilot", tags=["pilot"])
    other = pb.add_outlet("o-other", tags=["other"])
    run = pb.start(playbook="mark.yml", target={"tags": ["pilot"]},
                   extra_vars={"marker_text": "tagged"})  # fmt: skip
    done = pb.wait(run["id"], until=DONE)
    assert sorted(pb.hosts(done)) == ["o-pilot"]
    assert (pilot / "marker.txt").read_text() == "tagged\n"
    assert not (other / "marker.txt").exists()


def test_check_mode_changes_nothing(pb: PlaybookApi) -> None:
    folder = pb.add_outlet("o-check", kind="kiosk")
    run = pb.start(playbook="mark.yml", target={"kinds": ["kiosk"]},
                   extra_vars={"marker_text": "dry"}, check=True)  # fmt: skip
    done = pb.wait(run["id"], until=DONE)
    assert done["status"] == "successful"
    assert done["check"] is True
    assert pb.hosts(done)["o-check"]["status"] == "changed"  # would change
    assert not (folder / "marker.txt").exists()


def test_cancel_stops_a_long_run(pb: PlaybookApi) -> None:
    pb.add_outlet("o-slow")
    run = pb.start(playbook="slow.yml", target={"outlets": ["o-slow"]})
    pb.wait(run["id"], until=frozenset({"running"}))
    viewer = pb.api.client.post(
        f"/api/v1/playbook-runs/{run['id']}/cancel", headers=pb.api.as_role(Role.OPERATOR)
    )
    assert viewer.status_code == 403
    answer = pb.api.client.post(f"/api/v1/playbook-runs/{run['id']}/cancel", headers=pb.tech)
    assert answer.status_code == 202, answer.text
    done = pb.wait(run["id"], until=DONE, deadline_s=30)
    assert done["status"] == "canceled"
    assert done["canceled_by"] == "u-technician"
    again = pb.api.client.post(f"/api/v1/playbook-runs/{run['id']}/cancel", headers=pb.tech)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "reason", "says"),
    [
        ({"playbook": "nope.yml", "target": {"outlets": ["o-1"]}}, "playbook", "no playbook"),
        ({"playbook": "../etc/passwd", "target": {"outlets": ["o-1"]}}, "playbook", "no playbook"),
        ({"playbook": "mark.yml", "target": {"outlets": ["o-1"]}}, "playbook", "required"),
        ({"playbook": "mark.yml", "target": {"outlets": ["o-1"]},
          "extra_vars": {"marker_text": "x", "rm_rf": True}}, "playbook", "not a variable"),
        ({"playbook": "mark.yml", "target": {"outlets": ["o-1"]},
          "extra_vars": {"marker_text": "x", "pause_seconds": "ten"}}, "playbook", "must be int"),
        ({"playbook": "mark.yml", "target": {"outlets": ["o-unknown"]},
          "extra_vars": {"marker_text": "x"}}, "target", "unknown outlets"),
        ({"playbook": "mark.yml", "target": {"regions": ["99"]},
          "extra_vars": {"marker_text": "x"}}, "target", "empty"),
    ],
)  # fmt: skip
def test_bad_runs_are_refused_counted_and_change_nothing(
    pb: PlaybookApi, body: dict[str, object], reason: str, says: str
) -> None:
    pb.add_outlet("o-1")
    before = _refused(pb, reason)
    answer = pb.api.client.post("/api/v1/playbook-runs", json=body, headers=pb.tech)
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["detail"]
    assert _refused(pb, reason) == before + 1
    assert pb.api.client.get("/api/v1/playbook-runs", headers=pb.tech).json() == []


def test_only_technicians_and_admins_run(pb: PlaybookApi) -> None:
    pb.add_outlet("o-1")
    body = {"playbook": "mark.yml", "target": {"outlets": ["o-1"]},
            "extra_vars": {"marker_text": "x"}, "check": True}  # fmt: skip
    for role in (Role.VIEWER, Role.OPERATOR):
        answer = pb.api.client.post(
            "/api/v1/playbook-runs", json=body, headers=pb.api.as_role(role)
        )
        assert answer.status_code == 403
    answer = pb.api.client.post(
        "/api/v1/playbook-runs", json=body, headers=pb.api.as_role(Role.ADMIN)
    )
    assert answer.status_code == 202
    pb.wait(answer.json()["id"], until=DONE)


def test_a_restart_marks_running_runs_interrupted(pb: PlaybookApi, tmp_path: Path) -> None:
    with pb.api.session() as session, session.begin():
        run = PlaybookRun(
            playbook="mark.yml", status="running", check_mode=False, during_opening_hours=False,
            forks=5, target={}, extra_vars={}, created_at=datetime.now(UTC), created_by="t",
        )  # fmt: skip
        session.add(run)
        session.flush()
        # mid-run: one host's first task changed something, one not reached, one held
        for outlet, status in (("o-1", "changed"), ("o-2", "pending"), ("o-3", "held")):
            session.add(PlaybookHost(run_id=run.id, outlet_id=outlet, status=status, ok=1,
                                     changed=1, failed=0, unreachable=0, skipped=0))  # fmt: skip
    manager = RunManager(make_sessionmaker(pb.api.engine), runs_dir=tmp_path, ssh_key=None)
    assert manager.mark_interrupted() == 1
    runs = pb.api.client.get("/api/v1/playbook-runs", headers=pb.tech).json()
    assert [r["status"] for r in runs] == ["interrupted"]
    assert runs[0]["error"] == (
        "the fleet server stopped while this run was in progress; the hosts' state is unknown"
    )
    hosts = pb.hosts(pb.run_json(runs[0]["id"]))
    assert {o: h["status"] for o, h in hosts.items()} == {
        "o-1": "interrupted", "o-2": "interrupted", "o-3": "held",
    }  # fmt: skip
    assert hosts["o-1"]["changed"] == 1  # what was seen is kept


def test_events_answer_json_or_a_live_stream_as_the_client_accepts(pb: PlaybookApi) -> None:
    pb.add_outlet("o-sse")
    run = pb.start(playbook="mark.yml", target={"outlets": ["o-sse"]},
                   extra_vars={"marker_text": "sse"})  # fmt: skip
    url = f"/api/v1/playbook-runs/{run['id']}/events"
    viewer = pb.api.as_role(Role.VIEWER)
    # Live: opened while the run goes on, it follows it to the end.
    with pb.api.client.stream("GET", url, headers={**viewer, "Accept": "text/event-stream"}) as s:
        assert s.status_code == 200
        assert s.headers["content-type"].startswith("text/event-stream")
        body = "".join(s.iter_text())
    assert body.rstrip().endswith('event: end\ndata: {"status": "successful"}')
    page = pb.api.client.get(url, headers={**viewer, "Accept": "application/json"})
    assert page.headers["content-type"].startswith("application/json")
    events = page.json()["events"]
    assert page.json()["status"] == "successful"
    assert body.count("event: job_event") == len(events) > 3
    assert [int(i) for i in re.findall(r"^id: (\d+)$", body, re.M)] == [e["seq"] for e in events]
    assert pb.api.client.get(url, headers=viewer).json()["events"] == events  # no Accept: JSON

    # A reconnecting EventSource sends Last-Event-ID: the stream goes on from there.
    resumed = pb.api.client.get(url, headers={**viewer, "Accept": "text/event-stream",
                                              "Last-Event-ID": str(events[-2]["seq"])})  # fmt: skip
    assert re.findall(r"^id: (\d+)$", resumed.text, re.M) == [str(events[-1]["seq"])]
    missing = pb.api.client.get(
        "/api/v1/playbook-runs/999/events", headers={**viewer, "Accept": "text/event-stream"}
    )
    assert missing.status_code == 404
