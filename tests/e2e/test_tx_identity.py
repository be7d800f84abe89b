"""Two outlets, one Idempotency-Key: two cases, each upstream exactly once (issue 15).

An outlet's clerk app only has to keep its keys unique at that outlet; the docs' own
scheme (``case-2024-05-01-0001``) gives every outlet the same keys. Real processes:
two ``edge-agent run`` with their own data dirs and local APIs, the session's
Mosquitto, ``fleet-server run`` on SQLite with a catalogue and a targets file, and a
real HTTP upstream (``govedge_testbed.upstream.Upstream``, which records cases by the
``Idempotency-Key`` it receives and answers 409 to a key it already has).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from govedge_testbed import Mosquitto
from govedge_testbed.upstream import Upstream, write_targets
from tests.chaos.harness import Fleet, Outlet, catalogue, submission
from tests.e2e.conftest import Agent, poll, stop_process

KEY = "case-2024-05-01-0001"  # the same key at both outlets, as in docs/local-api.md


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    fake = Upstream()
    fake.start()
    yield fake
    fake.stop()


def _file(outlet: Outlet, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{outlet.port}/v1/submissions",
        json=body,
        headers={"Authorization": f"Bearer {outlet.token}", "Idempotency-Key": KEY},
        timeout=10,
    )


@pytest.mark.timeout(240)  # three processes start; on a busy 2-core machine that is slow
def test_same_key_at_two_outlets_reaches_upstream_as_two_cases_once_each(
    broker: Mosquitto, upstream: Upstream, outlet_id: str, tmp_path: Path
) -> None:
    names = ["zhoushan", "hangzhou", "rejecting", "hcp"]  # the targets of harness.catalogue
    targets = write_targets(tmp_path / "targets.json", upstream, names)
    fleet = Fleet(
        mqtt_url=broker.url,
        database_url=f"sqlite:///{tmp_path / 'fleet.db'}",
        log=tmp_path / "server.log",
        env={
            "GOVEDGE_UPSTREAM_TARGETS_FILE": str(targets),
            "GOVEDGE_DELIVERY_POLL_INTERVAL_S": "0.1",
        },
    )
    outlets = [
        Outlet(
            agent=Agent(
                outlet_id=f"{outlet_id}-{name}",
                data_dir=tmp_path / "agents" / name,
                mqtt_url=broker.url,
                log=tmp_path / f"agent-{name}.log",
            )
        )
        for name in ("a", "b")
    ]
    # Process start-up dominates on a busy machine: the server, the app registrations
    # and the agents start side by side.
    with ThreadPoolExecutor(max_workers=3) as pool:
        server = pool.submit(fleet.start)
        started = [pool.submit(_register_and_start, outlet) for outlet in outlets]
    try:
        server.result()
        for future in started:
            future.result()
        fleet.post_json("/api/v1/catalogue/import", catalogue())
        first, second = outlets
        cases = {
            first.outlet_id: submission("ZS-1", "330902") | {"window": "W1"},
            second.outlet_id: submission("ZS-1", "330902") | {"window": "W2"},
        }
        for outlet in outlets:
            filed = _file(outlet, cases[outlet.outlet_id])
            assert filed.status_code == httpx.codes.ACCEPTED, filed.text
            assert filed.json()["tx_id"] == KEY
        keys = {f"{first.outlet_id}:{KEY}", f"{second.outlet_id}:{KEY}"}
        poll(lambda: keys <= set(upstream.accepted), timeout=60)
        for outlet in outlets:  # the clerk app learns of its own case's outcome
            poll(
                lambda o=outlet: _status(o)["status"] == "delivered",  # type: ignore[misc]
                timeout=60,
            )
        # A resend of either case, with the same key, changes nothing anywhere.
        for outlet in outlets:
            assert _file(outlet, cases[outlet.outlet_id]).status_code in {200, 202}
        rows = {
            o.outlet_id: fleet.get(f"/api/v1/outlets/{o.outlet_id}/transactions/{KEY}")
            for o in outlets
        }
    finally:
        for outlet in outlets:
            outlet.agent.stop()
        if fleet.server is not None:
            stop_process(fleet.server.proc)
    assert set(upstream.accepted) == keys  # two cases, under two different keys
    assert all(upstream.accepted_count[key] == 1 for key in keys)  # each exactly once
    assert sum(upstream.received.values()) == 2  # and never sent twice
    for outlet in outlets:
        sent = upstream.accepted[f"{outlet.outlet_id}:{KEY}"]["body"]
        assert (sent["outlet_id"], sent["tx_id"]) == (outlet.outlet_id, KEY)
        assert sent["body"]["window"] == cases[outlet.outlet_id]["window"]  # its own content
        row = rows[outlet.outlet_id]
        assert (row["state"], row["idempotency_key"]) == ("delivered", f"{outlet.outlet_id}:{KEY}")
        assert row["case_number"] == upstream.accepted[row["idempotency_key"]]["case_number"]


def _register_and_start(outlet: Outlet) -> None:
    outlet.register_app()
    outlet.start()


def _status(outlet: Outlet) -> dict[str, Any]:
    response = httpx.get(
        f"http://127.0.0.1:{outlet.port}/v1/transactions/{KEY}",
        headers={"Authorization": f"Bearer {outlet.token}"},
        timeout=10,
    )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result
