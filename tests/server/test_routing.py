"""Routing upstream against a real HTTP upstream, a real broker and a real server process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from govedge_testbed import Mosquitto
from govedge_testbed.upstream import TargetState, Upstream, catalogue_rows, write_targets
from tests.e2e.conftest import fleetctl
from tests.server.helpers import FleetServer, poll
from tests.server.txkit import ID_NUMBER, TxAgent, submission

TARGETS = ["zhoushan", "hangzhou", "flaky", "dead", "hcp"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    fake = Upstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def server(
    broker: Mosquitto, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FleetServer]:
    workdir = tmp_path_factory.mktemp("routing")
    targets = write_targets(
        workdir / "targets.json",
        upstream,
        TARGETS,
        dead={"breaker_cooldown_s": 4.0},
        hangzhou={"timeout_s": 5.0},  # slow but answering in the fairness test
    )
    fleet = FleetServer(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{workdir / 'fleet.db'}",
        workdir=workdir,
        GOVEDGE_API_AUTH="off",  # security is tested in its own modules
        GOVEDGE_UPSTREAM_TARGETS_FILE=str(targets),
        GOVEDGE_DELIVERY_POLL_INTERVAL_S="0.1",
    )
    fleet.start()
    response = fleet.http.post(
        "/api/v1/catalogue/import",
        content=json.dumps(catalogue_rows()),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    yield fleet
    assert fleet.stop() == 0, fleet.stderr()


@pytest.fixture
def agent(broker: Mosquitto, outlet_id: str) -> Iterator[TxAgent]:
    fake = TxAgent(broker.url, outlet_id, session=3)
    fake.birth()
    yield fake
    fake.close()


def _tx(server: FleetServer, agent: TxAgent, tx_id: str) -> dict[str, Any]:
    response = server.http.get(agent.path(tx_id))
    if response.status_code == 404:
        return {"state": "absent", "attempts": 0}
    response.raise_for_status()
    row: dict[str, Any] = response.json()
    return row


def _delivered(server: FleetServer, agent: TxAgent, tx_id: str) -> dict[str, Any] | None:
    row = _tx(server, agent, tx_id)
    return row if row["state"] == "delivered" else None


def test_routes_by_item_and_region_signed_and_case_number_flows_back(
    server: FleetServer, upstream: Upstream, agent: TxAgent
) -> None:
    zs = agent.tx("submission", submission(region="330902"))
    hz = agent.tx("submission", submission(region="330106"))
    assert agent.ack(zs).status == "accepted"
    assert agent.ack(hz).status == "accepted"
    poll(
        lambda: _delivered(server, agent, zs) and _delivered(server, agent, hz),
        what="both delivered",
    )
    assert agent.key(zs) in upstream.by_target["zhoushan"]
    assert agent.key(hz) in upstream.by_target["hangzhou"]
    assert upstream.accepted[agent.key(zs)]["body"]["item"]["code"] == "ZS-000101"
    assert upstream.bad_signatures == 0
    result = agent.result(zs)
    assert result.outcome == "delivered"
    assert result.case_number == upstream.accepted[agent.key(zs)]["case_number"]
    assert _tx(server, agent, zs)["case_number"] == result.case_number


def test_retries_on_5xx_hang_and_down_then_exactly_once(
    server: FleetServer, upstream: Upstream, agent: TxAgent
) -> None:
    flaky = upstream.target("flaky")
    flaky.fail_mode, flaky.fail_next = "error", 2
    first = agent.tx("submission", submission(item_code="000201"))
    poll(lambda: _delivered(server, agent, first), what="delivered after 5xx")
    assert upstream.accepted_count[agent.key(first)] == 1
    assert upstream.received[agent.key(first)] == 3

    flaky.fail_mode, flaky.fail_next, flaky.hang_s = "hang", 1, 1.5
    second = agent.tx("submission", submission(item_code="000201"))
    poll(lambda: _delivered(server, agent, second), what="delivered after a hang")
    assert upstream.accepted_count[agent.key(second)] == 1
    history = _tx(server, agent, second)["history"]
    assert isinstance(history, list)
    assert history[0]["outcome"] == "transient"
    assert "timeout" in history[0]["error"]


def test_upstream_down_then_back(server: FleetServer, upstream: Upstream, agent: TxAgent) -> None:
    upstream.stop()
    try:
        tx_id = agent.tx("submission", submission(region="330902"))
        poll(lambda: int(_tx(server, agent, tx_id)["attempts"]) >= 2, what="failed attempts")
    finally:
        upstream.start()
    poll(lambda: _delivered(server, agent, tx_id), timeout=20, what="delivered after upstream back")
    assert upstream.accepted_count[agent.key(tx_id)] == 1


def test_4xx_dead_letter_then_replay_with_fleetctl(
    server: FleetServer, upstream: Upstream, agent: TxAgent
) -> None:
    zhoushan = upstream.target("zhoushan")
    zhoushan.mode = "reject"
    try:
        tx_id = agent.tx("submission", submission(region="330903"))
        result = agent.result(tx_id)
        assert result.outcome == "rejected"
        assert result.reason == "materials incomplete"
    finally:
        zhoushan.mode = "ok"
    listed = fleetctl("dead-letters", "list", "--json", server_url=server.url)
    assert listed.returncode == 0, listed.stderr
    dead = next(row for row in json.loads(listed.stdout) if row["tx_id"] == tx_id)
    assert dead["reason"] == "rejected"
    assert dead["status_code"] == 422
    shown = fleetctl("dead-letters", "show", str(dead["id"]), server_url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert "3301**********1248" in shown.stdout
    assert ID_NUMBER not in shown.stdout
    replayed = fleetctl("dead-letters", "replay", str(dead["id"]), server_url=server.url)
    assert replayed.returncode == 0, replayed.stderr
    poll(lambda: _delivered(server, agent, tx_id), what="delivered after replay")
    assert upstream.accepted_count[agent.key(tx_id)] == 1
    assert agent.result(tx_id).outcome == "delivered"
    shown = fleetctl(
        "transactions", "show", agent.outlet_id, tx_id, "--json", server_url=server.url
    )
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert (row["state"], row["idempotency_key"]) == ("delivered", agent.key(tx_id))
    unknown = fleetctl("transactions", "show", f"{agent.outlet_id}-x", tx_id, server_url=server.url)
    assert unknown.returncode == 1  # the same tx_id at another outlet is another transaction
    again = fleetctl("dead-letters", "replay", str(dead["id"]), server_url=server.url)
    assert again.returncode == 1


def test_no_route_is_a_dead_letter(server: FleetServer, agent: TxAgent) -> None:
    tx_id = agent.tx("submission", submission(item_code="999999"))
    poll(lambda: _tx(server, agent, tx_id)["state"] == "dead", what="no_route dead letter")
    rows = server.get("/api/v1/dead-letters?reason=no_route")
    assert tx_id in {row["tx_id"] for row in rows}


def _dead_platform_with(
    server: FleetServer, upstream: Upstream, agent: TxAgent, *, cases: int
) -> tuple[TargetState, list[str]]:
    """The ``dead`` platform hanging past the client's timeout, ``cases`` submissions
    routed to it, and its breaker open: (its upstream state, their tx ids)."""
    dead = upstream.target("dead")
    dead.mode = "hang"
    dead.hang_s = 1.0
    doomed = [agent.tx("submission", submission(item_code="000301")) for _ in range(cases)]
    poll(
        lambda: server.get("/api/v1/transactions/status")["breakers"]["dead"] != "closed",
        what="breaker open",
    )
    return dead, doomed


def test_breaker_opens_for_a_dead_target_while_others_deliver(
    server: FleetServer, upstream: Upstream, agent: TxAgent
) -> None:
    dead, doomed = _dead_platform_with(server, upstream, agent, cases=5)
    at_open = dead.requests
    # The operators hear of it: the alert rule reads the delivery worker's breakers.
    server.http.post("/api/v1/alerts/evaluate").raise_for_status()
    fleet_alerts = server.get("/api/v1/alerts?outlet_id=_fleet")
    assert ("upstream_breaker_open", "target:dead") in {
        (a["rule"], a["device_id"]) for a in fleet_alerts
    }
    healthy = [agent.tx("submission", submission(region="330902")) for _ in range(5)]
    poll(
        lambda: all(_delivered(server, agent, t) for t in healthy),
        timeout=10,
        what="others deliver",
    )
    assert dead.requests == at_open  # nothing more while open (cool-down 4 s)
    assert all(_tx(server, agent, t)["state"] == "pending" for t in doomed)
    dead.mode = "ok"
    poll(lambda: all(_delivered(server, agent, t) for t in doomed), timeout=20, what="recovered")
    assert all(upstream.accepted_count[agent.key(t)] == 1 for t in doomed)
    server.http.post("/api/v1/alerts/evaluate").raise_for_status()
    assert [a for a in server.get("/api/v1/alerts?outlet_id=_fleet")
            if a["rule"] == "upstream_breaker_open"] == []  # fmt: skip


def test_a_dead_target_with_more_due_cases_than_a_round_reads_does_not_hold_up_others(
    server: FleetServer, upstream: Upstream, agent: TxAgent
) -> None:
    """A round reads a window of the oldest due rows (32 here). A platform that is down
    for a while has more due cases than that: they must not fill every round's window
    while its breaker is open, or no other platform gets a case until it comes back."""
    dead, doomed = _dead_platform_with(server, upstream, agent, cases=60)
    healthy = [agent.tx("submission", submission(region="330902")) for _ in range(5)]
    poll(
        lambda: all(_delivered(server, agent, t) for t in healthy),
        timeout=10,
        what="others deliver while the dead platform's cases wait",
    )
    assert all(upstream.accepted_count[agent.key(t)] == 1 for t in healthy)
    dead.mode = "ok"
    poll(lambda: all(_delivered(server, agent, t) for t in doomed), timeout=30, what="recovered")
    assert all(upstream.accepted_count[agent.key(t)] == 1 for t in doomed)


def test_a_slow_platform_with_a_backlog_does_not_hold_up_others(
    server: FleetServer, upstream: Upstream, agent: TxAgent
) -> None:
    """A platform that answers, slowly, keeps its half of the delivery pool full while
    its backlog lasts; its due cases must not fill the rounds' window meanwhile."""
    slow = upstream.target("hangzhou")
    slow.delay_s = 0.25  # 4 in flight: ~16 cases/s
    try:
        backlog = [agent.tx("submission", submission(region="330106")) for _ in range(200)]
        poll(lambda: slow.requests >= 4, what="the slow platform's share busy")
        others = [agent.tx("submission", submission(region="330902")) for _ in range(5)]
        poll(
            lambda: all(_delivered(server, agent, t) for t in others),
            timeout=5,  # the backlog alone takes ~12 s
            what="others deliver while the slow platform's backlog drains",
        )
        assert sum(_delivered(server, agent, t) is not None for t in backlog) < len(backlog) - 32
    finally:
        slow.delay_s = 0.0
    poll(lambda: all(_delivered(server, agent, t) for t in backlog), timeout=60, what="backlog")
    assert all(upstream.accepted_count[agent.key(t)] == 1 for t in backlog + others)


def _import(server: FleetServer, rows: list[dict[str, Any]]) -> None:
    response = server.http.post(
        "/api/v1/catalogue/import",
        content=json.dumps(rows),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_a_catalogue_import_reroutes_the_next_submission_at_once(
    server: FleetServer, upstream: Upstream, agent: TxAgent
) -> None:
    """The worker remembers resolved items (routing/routes.py); an import must still
    apply to the very next submission, and applying it back must too."""
    before = agent.tx("submission", submission(region="330902"))
    poll(lambda: _delivered(server, agent, before), what="delivered before the import")
    assert agent.key(before) in upstream.by_target["zhoushan"]
    moved = [
        row | {"target": "hangzhou"} if row["code"] == "ZS-000101" else row
        for row in catalogue_rows()
    ]
    _import(server, moved)
    try:
        after = agent.tx("submission", submission(region="330902"))
        poll(lambda: _delivered(server, agent, after), what="delivered after the import")
        assert agent.key(after) in upstream.by_target["hangzhou"]
        assert agent.key(after) not in upstream.by_target["zhoushan"]
        assert upstream.accepted[agent.key(after)]["body"]["item"]["code"] == "ZS-000101"
    finally:
        _import(server, catalogue_rows())
    back = agent.tx("submission", submission(region="330902"))
    poll(lambda: _delivered(server, agent, back), what="delivered after the import back")
    assert agent.key(back) in upstream.by_target["zhoushan"]


def test_fleetctl_unreachable_server_exit_code() -> None:
    result: subprocess.CompletedProcess[str] = fleetctl(
        "dead-letters", "list", server_url="http://127.0.0.1:9"
    )
    assert result.returncode == 2
