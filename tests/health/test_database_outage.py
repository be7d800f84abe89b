"""The fleet server while its PostgreSQL is down: 503 with Retry-After, not 500; pages
say the database is unreachable; one log line per outage; back by itself after.

Each test stops and restarts a PostgreSQL cluster of its own (the session's cluster is
shared with other tests) under a real ``fleet-server run``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from govedge_testbed import Mosquitto, Postgres
from tests.conftest import started_service
from tests.health.conftest import logged_in_context
from tests.server.helpers import FleetServer, poll, started_fleet_server

pytestmark = pytest.mark.postgres

OUTLETS = "/api/v1/outlets"
_REFUSED = re.compile(r'^govedge_http_refused_total\{reason="database_unavailable"\} (\S+)$', re.M)


@pytest.fixture
def cluster() -> Iterator[Postgres]:
    """A cluster of this test's own, to stop and start."""
    pg = started_service(Postgres)
    yield pg
    pg.stop()


@pytest.fixture
def fleet(cluster: Postgres, broker: Mosquitto, tmp_path: Path) -> Iterator[FleetServer]:
    url = cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
    # Hourly alert evaluation: the alert a test writes stays as written.
    with started_fleet_server(
        broker.url, tmp_path, database_url=url, GOVEDGE_ALERT_EVAL_INTERVAL_S="3600"
    ) as server:
        yield server


def _refused(fleet: FleetServer) -> float:
    found = _REFUSED.search(fleet.http.get("/metrics").text)
    assert found is not None
    return float(found.group(1))


def _log_lines(fleet: FleetServer, text: str) -> list[str]:
    return [line for line in fleet.stderr_path.read_text().splitlines() if text in line]


def _back(fleet: FleetServer) -> bool:
    try:
        return fleet.http.get(OUTLETS).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


def test_api_answers_503_while_the_database_is_down_and_recovers(
    fleet: FleetServer, cluster: Postgres
) -> None:
    assert fleet.http.get(OUTLETS).status_code == 200
    before = _refused(fleet)
    cluster.pause()
    try:
        answers = [fleet.http.get(OUTLETS) for _ in range(3)]
        created = fleet.http.post("/api/v1/enrollments", json={"outlet_id": "410102-0001"})
    finally:
        cluster.resume()
    for answer in [*answers, created]:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["retry-after"]) > 0
        body = answer.json()
        assert body["status"] == 503
        assert body["title"] == "Database unavailable"
        assert "cannot be reached" in body["detail"]
        # Nothing of the driver's message, the statement or the server's address.
        for leak in ("psycopg", "SELECT", "INSERT", "127.0.0.1", str(cluster.port), "[SQL"):
            assert leak not in answer.text
    # Back by itself: no restart of the fleet server.
    poll(lambda: _back(fleet), timeout=60, what="the API after PostgreSQL returned")
    assert fleet.proc is not None
    assert fleet.proc.poll() is None
    # Counted, once per refused request; logged once for the outage, and its end.
    assert _refused(fleet) - before == 4
    down = _log_lines(fleet, "database unreachable")
    assert len(down) == 1, down
    assert "127.0.0.1" not in down[0]
    assert "SELECT" not in down[0]
    assert len(_log_lines(fleet, "database reachable again")) == 1
    # The refused enrollment changed nothing.
    assert fleet.get("/api/v1/enrollments") == []


def _seed_alert(database_url: str) -> None:
    from fleet_server.db import make_engine, make_sessionmaker
    from fleet_server.health.tables import Alert

    now = datetime.now(UTC)
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            session.add(
                Alert(rule="upstream_breaker_open", outlet_id="_fleet", device_id="target:zwfw",
                      severity="critical", state="open", summary="upstream target zwfw: open",
                      value=None, detail={"target": "zwfw"}, opened_at=now, updated_at=now)
            )  # fmt: skip
    finally:
        engine.dispose()


def test_an_operator_page_says_the_database_is_unreachable(
    fleet: FleetServer, cluster: Postgres, browser: Any
) -> None:
    _seed_alert(fleet.database_url)
    context = logged_in_context(browser, fleet, "outage-operator", "operator")
    page = context.new_page()
    page.goto(f"{fleet.url}/ui/alerts")
    ack = page.locator("button[data-alert-act=ack]")
    ack.wait_for()
    cluster.pause()
    try:
        # An open page: the refused action (and the list's refetch after it) says why,
        # in the page's language.
        ack.click()
        note = page.locator("#alert-message .error", has_text="数据库暂时无法访问")
        note.wait_for()
        assert note.inner_text().endswith(": 数据库暂时无法访问")
        # A page opened now: the outage page, not an error trace.
        answer = page.goto(f"{fleet.url}/ui/alerts")
        assert answer is not None
        assert answer.status == 503
        assert page.locator("h1").inner_text() == "数据库暂时无法访问"
        assert "没有修改任何数据" in page.locator("main").inner_text()
        page.goto(f"{fleet.url}/ui/alerts?lang=en")
        assert page.locator("h1").inner_text() == "The database is unreachable"
        assert "Traceback" not in page.content()
    finally:
        cluster.resume()
    # The page's own retry link works once the database is back; the session held, and
    # the refused ack changed nothing.
    poll(lambda: _back(fleet), timeout=60, what="the API after PostgreSQL returned")
    page.get_by_role("link", name="Try again").click()
    page.wait_for_url("**/ui/alerts?lang=en")
    assert page.locator("header nav a.on").inner_text() == "Alerts"
    page.locator("button[data-alert-act=ack]").wait_for()
    assert [a["acked_by"] for a in fleet.get("/api/v1/alerts")] == [None]
    page.close()
    context.close()
