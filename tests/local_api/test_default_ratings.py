"""系统默认评价: a walk-away at the pad becomes one default rating, after the profile's period.

Real parts: the local API over the pad simulator (the citizen walks away), the outbox
and the API's state database on disk; a restart is a second outlet on the same data
directory. The region's profile reaches the agent as a fleet config's ``evaluation``
part does (``runtime.live.evaluation``, what the config applier sets).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.fleet_config.effective import LiveSettings
from edge_agent.local_api import LocalApiOptions
from govedge_wire.config import EvaluationConfig
from tests.local_api.harness import Outlet, outlet

REQUEST = {
    "window": "3",
    "case_number": "330106202405010009",
    "staff_id": "S007",
    "item_code": "330100-001-XK",
    "timeout_s": 30,
}
ZHEJIANG = EvaluationConfig(
    level_coding="zhejiang", default_channels=("7",), default_stars=5, default_after_s=0
)
OPTIONS = LocalApiOptions(default_ratings_check_s=0.1)


def profile(evaluation: EvaluationConfig) -> LiveSettings:
    """The live settings of an agent whose fleet config has this ``evaluation`` part."""
    return LiveSettings(telemetry_interval_s=30.0, outbox_rate_per_s=20.0, evaluation=evaluation)


async def walk_away(o: Outlet) -> dict[str, Any]:
    """The clerk's answer when the citizen leaves the pad without rating."""
    call = asyncio.create_task(o.client.post("/v1/evaluations", headers=o.auth, json=REQUEST))
    await o.pad.wait_for_request(within=5)
    o.pad.walk_away()
    response = await asyncio.wait_for(call, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["status"] == "timed_out"
    assert answer["tx_id"] is None  # the citizen's rating: none
    return answer


async def rate(o: Outlet, stars: int) -> None:
    call = asyncio.create_task(o.client.post("/v1/evaluations", headers=o.auth, json=REQUEST))
    await o.pad.wait_for_request(within=5)
    o.pad.press(stars)
    response = await asyncio.wait_for(call, timeout=10)
    assert response.json()["status"] == "rated"


async def evaluations(o: Outlet) -> list[dict[str, Any]]:
    """The evaluation bodies in the outbox (nothing is sent in these tests)."""
    return [
        {"tx_id": e.meta.tx_id, **e.body}
        for e in await o.runtime.outbox.next_batch(1000)
        if e.meta.tx_kind == "evaluation"
    ]


async def until_evaluations(o: Outlet, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(20):
        while len(found := await evaluations(o)) < count:  # noqa: ASYNC110 - outbox polled
            await asyncio.sleep(0.05)
    return found


def test_a_walk_away_records_the_profiles_default_rating_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with outlet(tmp_path, options=OPTIONS, live=profile(ZHEJIANG)) as o:
            answer = await walk_away(o)
            [default] = await until_evaluations(o, 1)
            # The clerk is told the default was recorded (default_after_s 0), and which.
            assert answer["default_rating"]["state"] == "recorded"
            assert answer["default_rating"]["tx_id"] == default["tx_id"]
            assert answer["default_rating"]["stars"] == 5
            assert default["system_default"] is True
            assert default["channel"] == "7"
            assert (default["level_code"], default["stars"]) == (5, 5)  # zhejiang: 5 = 非常满意
            assert default["case_number"] == REQUEST["case_number"]
            assert default["window"] == "3"
            assert default["tx_id"].startswith("default-")
            status = await o.client.get(f"/v1/transactions/{default['tx_id']}", headers=o.auth)
            assert status.json()["status"] == "waiting"
            # A citizen's own rating is no default; GB/T 39046 codes 非常满意 as 1.
            assert o.runtime.live is not None  # a new config, as the applier applies it
            o.runtime.live.evaluation = EvaluationConfig(
                level_coding="gbt39046", default_channels=("5",), default_stars=5
            )
            await walk_away(o)
            found = await until_evaluations(o, 2)
            assert [(e["level_code"], e["channel"]) for e in found] == [(5, "7"), (1, "5")]

    asyncio.run(main())


def test_without_a_default_in_the_profile_a_walk_away_records_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        no_channel = profile(EvaluationConfig(level_coding="gbt39046", default_stars=5))
        async with outlet(tmp_path, options=OPTIONS, live=no_channel) as o:
            assert (await walk_away(o))["default_rating"] is None
            await asyncio.sleep(0.5)  # several rounds of the default-rating check
            assert await evaluations(o) == []

    asyncio.run(main())


def test_a_restart_mid_period_neither_loses_nor_doubles_it(tmp_path: Path) -> None:
    later = ZHEJIANG.model_copy(update={"default_after_s": 5})

    async def main() -> None:
        async with outlet(tmp_path, options=OPTIONS, live=profile(later)) as o:
            asked = time.time()
            pending = (await walk_away(o))["default_rating"]
            assert await evaluations(o) == []  # not due yet
            assert pending["state"] == "pending"
            assert pending["stars"] == 5
            due = datetime.fromisoformat(pending["due_at"]).timestamp()
            assert int(asked) + 5 <= due <= time.time() + 5  # default_after_s after the walk-away
        # The agent restarts before the period ends.
        async with outlet(tmp_path, options=OPTIONS, live=profile(later)) as o:
            [default] = await until_evaluations(o, 1)
            assert default["system_default"] is True
            assert default["tx_id"] == pending["tx_id"]  # the one the clerk was told of
            await asyncio.sleep(0.5)
            assert len(await evaluations(o)) == 1
        # And once more after it was recorded: still one.
        async with outlet(tmp_path, options=OPTIONS, live=profile(later)) as o:
            await asyncio.sleep(0.5)
            assert [e["tx_id"] for e in await evaluations(o)] == [default["tx_id"]]

    asyncio.run(main())


def test_the_citizen_rating_within_the_period_replaces_the_default(tmp_path: Path) -> None:
    later = ZHEJIANG.model_copy(update={"default_after_s": 2})

    async def main() -> None:
        async with outlet(tmp_path, options=OPTIONS, live=profile(later)) as o:
            await walk_away(o)
            await rate(o, 4)  # the clerk asked again; the citizen rated
            [own] = await until_evaluations(o, 1)
            await asyncio.sleep(2.5)  # past the period
            assert await evaluations(o) == [own]
            assert own["system_default"] is False
            assert own["stars"] == 4

    asyncio.run(main())
