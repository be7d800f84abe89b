"""好差评: province rules, rectification tickets with deadlines, statistics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleet_server.evaluations.rules import rules_for
from govedge_testbed import Mosquitto
from tests.server.helpers import FleetServer, poll
from tests.server.txkit import TxAgent, evaluation, submission


def test_rules_direction_and_working_day_deadlines() -> None:
    national, zhejiang = rules_for("national"), rules_for("zhejiang")
    assert national.stars(1) == 5
    assert zhejiang.stars(1) == 1
    friday = datetime(2026, 11, 6, 9, tzinfo=UTC)
    assert rules_for("dezhou").deadline(friday) == friday + timedelta(days=7)
    assert zhejiang.deadline(friday) == friday + timedelta(days=15)
    assert zhejiang.is_default("7")
    assert not national.is_default("7")


@pytest.fixture(scope="module")
def server(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    workdir: Path = tmp_path_factory.mktemp("evaluations")
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{workdir / 'fleet.db'}",
        workdir=workdir,
        GOVEDGE_API_AUTH="off",  # security is tested in its own modules
        GOVEDGE_EVALUATION_PROFILE="zhejiang",
        GOVEDGE_RECTIFICATION_DAYS="3",
    )
    fleet.start()
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


def test_bad_review_opens_rectification_and_stats(
    server: FleetServer, broker: Mosquitto, outlet_id: str
) -> None:
    agent = TxAgent(broker.url, outlet_id, session=2)
    try:
        agent.birth()
        sent = [
            agent.tx("submission", submission()),
            agent.tx("submission", submission()),
            agent.tx("evaluation", evaluation(5)),  # zhejiang: 5 = 非常满意
            agent.tx("evaluation", evaluation(1)),  # 非常不满意: a 差评
            agent.tx("evaluation", evaluation(4, channel="7")),  # 系统默认评价
            agent.tx("evaluation", evaluation(3, window="W9")),
        ]
        assert all(agent.ack(tx).status == "accepted" for tx in sent)
        bad_channel = agent.tx("evaluation", evaluation(3, channel="9"))
        assert agent.ack(bad_channel).status == "rejected"
    finally:
        agent.close()
    tickets = poll(
        lambda: server.get(f"/api/v1/rectifications?outlet={outlet_id}")["items"], what="ticket"
    )
    assert len(tickets) == 1
    ticket = tickets[0]
    assert ticket["tx_id"] == sent[3]
    assert ticket["stars"] == 1
    assert ticket["status"] == "open"
    opened = datetime.fromisoformat(ticket["opened_at"])
    assert datetime.fromisoformat(ticket["deadline_at"]) == opened + timedelta(days=3)

    stats = server.get(f"/api/v1/evaluations/stats?outlet={outlet_id}&window=W3")
    assert stats["profile"] == "zhejiang"
    assert stats["cases"] == 2
    assert stats["evaluations"] == 3
    assert stats["active_evaluations"] == 2
    assert stats["default_evaluations"] == 1
    assert stats["active_evaluation_rate"] == 1.0
    assert stats["meets_active_rate_target"] is True
    assert stats["satisfaction_rate"] == round(2 / 3, 4)
    assert stats["bad_reviews"] == 1
    assert stats["open_rectifications"] == 1
    assert stats["overdue_rectifications"] == 0
    everything = server.get(f"/api/v1/evaluations/stats?outlet={outlet_id}")
    assert everything["evaluations"] == 4

    answer = server.http.post(
        f"/api/v1/rectifications/{ticket['id']}/follow-up",
        json={"action": "回访", "note": "已电话回访", "by": "supervisor-1"},
    )
    assert answer.status_code == 200, answer.text
    closing = server.http.post(
        f"/api/v1/rectifications/{ticket['id']}/follow-up",
        json={"action": "整改", "note": "窗口已整改", "by": "supervisor-1", "closes": True},
    )
    assert closing.json()["status"] == "closed"
    assert [f["action"] for f in closing.json()["follow_ups"]] == ["回访", "整改"]
    late = server.http.post(
        f"/api/v1/rectifications/{ticket['id']}/follow-up",
        json={"action": "反馈", "note": "x", "by": "y"},
    )
    assert late.status_code == 409


def test_catalogue_api_import_errors_change_nothing(server: FleetServer) -> None:
    csv_text = (
        "code,base_code,name,level,handling_type,promised_days,department,region_codes,target\n"
        "A-1,0001,事项,4,即办件,,局,3309,zhoushan\n"
        "A-2,0002,事项,4,nonsense,,局,3309,zhoushan\n"
    )
    answer = server.http.post("/api/v1/catalogue/import?format=csv", content=csv_text)
    assert answer.status_code == 422
    assert {"row": 2, "field": "handling_type"}.items() <= answer.json()["errors"][0].items()
    assert server.get("/api/v1/catalogue/items") == []


def test_an_agents_default_rating_is_counted_apart_once(
    server: FleetServer, broker: Mosquitto, outlet_id: str
) -> None:
    """A 系统默认评价 the agent flags (on any channel) is not the citizen's own rating."""
    agent = TxAgent(broker.url, outlet_id, session=2)
    default = {**evaluation(5, channel="4"), "system_default": True}
    try:
        agent.birth()
        sent = [
            agent.tx("submission", submission()),
            agent.tx("submission", submission()),
            agent.tx("evaluation", evaluation(4)),
            agent.tx("evaluation", default, tx_id="default-req-0001"),
            # The same default again (an agent that crashed before forgetting it).
            agent.tx("evaluation", default, tx_id="default-req-0001"),
        ]
        statuses = [agent.ack(tx).status for tx in sent[:4]]
        assert statuses == ["accepted"] * 4
        assert agent.ack(sent[4]).status == "duplicate"
    finally:
        agent.close()
    # Acks come after the store: what was acked is counted.
    stats = server.get(f"/api/v1/evaluations/stats?outlet={outlet_id}")
    assert stats["evaluations"] == 2
    assert stats["default_evaluations"] == 1
    assert stats["active_evaluations"] == 1
    assert stats["active_evaluation_rate"] == 0.5
    assert stats["by_level"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}


def test_a_burst_of_bad_ratings_opens_one_ticket_each_for_its_own_rating(
    server: FleetServer, broker: Mosquitto, outlet_id: str
) -> None:
    """Ratings sent back to back are stored in batches; every 差评 among them gets its own
    rectification ticket, tied to its own rating (its window tells them apart), and the
    good ones none."""
    agent = TxAgent(broker.url, outlet_id, session=3)
    try:
        agent.birth()
        bad = {agent.tx("evaluation", evaluation(1, window=f"B{n}")): f"B{n}" for n in range(12)}
        good = [agent.tx("evaluation", evaluation(5, window=f"G{n}")) for n in range(24)]
        assert all(agent.ack(tx).status == "accepted" for tx in [*bad, *good])
    finally:
        agent.close()
    tickets = poll(
        lambda: (
            found
            if len(found := server.get(f"/api/v1/rectifications?outlet={outlet_id}")["items"])
            >= len(bad)
            else None
        ),
        what="a ticket per bad rating",
    )
    assert {t["tx_id"]: t["window"] for t in tickets} == bad
    assert all(t["stars"] == 1 and t["status"] == "open" for t in tickets)
    assert len({t["id"] for t in tickets}) == len(bad)
