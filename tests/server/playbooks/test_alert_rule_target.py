"""A run's target "outlets with an open alert of rule X", through the real API with real
Ansible and alert rows in the database as the alert engine leaves them: open, resolved,
acknowledged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleet_server.health.tables import Alert
from tests.server.playbooks.kit import DONE, PlaybookApi, playbook_api


@pytest.fixture
def pb(tmp_path: Path) -> Iterator[PlaybookApi]:
    with playbook_api(tmp_path) as running:
        yield running


def _alert(pb: PlaybookApi, outlet: str, rule: str, *, resolved: bool = False,
           acked: bool = False) -> None:  # fmt: skip
    now = datetime.now(UTC)
    with pb.api.session() as session, session.begin():
        session.add(Alert(
            rule=rule, outlet_id=outlet, device_id="printer-1" if rule == "printer_paper" else "",
            severity="warning", state="resolved" if resolved else "open", summary=f"{rule} here",
            value=None, detail={}, opened_at=now - timedelta(hours=1), updated_at=now,
            resolved_at=now if resolved else None, acked_at=now if acked else None,
            acked_by="u-operator" if acked else None,
        ))  # fmt: skip


def test_alert_rules_choose_the_outlets_with_such_an_open_alert(pb: PlaybookApi) -> None:
    folders = {o: pb.add_outlet(o) for o in ("o-paper", "o-acked", "o-fixed", "o-disk", "o-off")}
    _alert(pb, "o-paper", "printer_paper")
    _alert(pb, "o-acked", "printer_paper", acked=True)  # someone is on it: still open
    _alert(pb, "o-fixed", "printer_paper", resolved=True)  # the paper came: not any more
    _alert(pb, "o-disk", "disk_almost_full")
    _alert(pb, "o-off", "outlet_offline")  # another rule

    rules = ["printer_paper", "disk_almost_full"]
    run = pb.start(playbook="mark.yml", target={"alert_rules": rules},
                   extra_vars={"marker_text": "fixed"})  # fmt: skip
    assert sorted(pb.hosts(run)) == ["o-acked", "o-disk", "o-paper"]
    assert run["target"]["alert_rules"] == rules
    done = pb.wait(run["id"], until=DONE)
    assert done["status"] == "successful"
    for outlet in ("o-paper", "o-acked", "o-disk"):
        assert (folders[outlet] / "marker.txt").read_text() == "fixed\n"
    for outlet in ("o-fixed", "o-off"):
        assert not (folders[outlet] / "marker.txt").exists()


def test_alert_rules_join_the_other_lists(pb: PlaybookApi) -> None:
    pb.add_outlet("o-named")
    pb.add_outlet("o-alerting")
    _alert(pb, "o-alerting", "clock_skew")
    run = pb.start(playbook="mark.yml",
                   target={"outlets": ["o-named"], "alert_rules": ["clock_skew"]},
                   extra_vars={"marker_text": "x"}, check=True)  # fmt: skip
    assert sorted(pb.hosts(run)) == ["o-alerting", "o-named"]
    pb.wait(run["id"], until=DONE)


def test_a_rule_with_no_open_alert_is_an_empty_target_and_says_so(pb: PlaybookApi) -> None:
    pb.add_outlet("o-fixed")
    _alert(pb, "o-fixed", "printer_paper", resolved=True)
    answer = pb.api.client.post(
        "/api/v1/playbook-runs",
        json={"playbook": "mark.yml", "target": {"alert_rules": ["printer_paper"]},
              "extra_vars": {"marker_text": "x"}},
        headers=pb.tech,
    )  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "the target is empty (no outlet has an open alert of printer_paper)"
    )
    assert pb.api.client.get("/api/v1/playbook-runs", headers=pb.tech).json() == []
