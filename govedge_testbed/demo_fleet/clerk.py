"""The demo's clerk: files cases at each outlet's local API and asks for a rating.

One thread per outlet plays the clerk app at the counter: every ``interval_s`` it files
a submission (办件) for one of the outlet's service items, through ``POST
/v1/submissions``, then asks the citizen at window 1 to rate it (``POST
/v1/evaluations``); the agent's simulated citizen (``simulate_ratings``) presses the
pad. So the server gets transactions, evaluations (one of them a 差评 that opens a
rectification) and deliveries to the demo upstream, the way a real outlet sends them.
After one round of the citizen's ratings the clerk files a case every ``_CALM_FACTOR``
intervals, so a demo left running does not pile up 差评.
The applicants are invented; their ID numbers only pass the check digit.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Final

import httpx

from govedge_testbed.demo_fleet.registry import DemoOutlet, catalogue_codes
from govedge_wire.pii import make_id_number

__all__ = ["DemoClerk", "ratings_for"]

log = logging.getLogger(__name__)

# Mostly satisfied citizens and a 差评 early on (stars ≤ 2), so every figure has data.
_RATINGS: Final = (5, 2, 4, 5, 5, 3, 5, 4)
_APPLICANTS: Final = ("王建国", "李秀英", "张伟", "陈静", "刘洋", "周敏")
_RETRY_S: Final = 2.0
_CALM_FACTOR: Final = 6
# Past the simulated citizen's pause, short of the pad's walk-away timer.
_EVALUATION_TIMEOUT_S: Final = 20.0


def ratings_for(index: int) -> tuple[int, ...]:
    """The stars the simulated citizen at the ``index``-th outlet gives, in turn."""
    shift = index % len(_RATINGS)
    return _RATINGS[shift:] + _RATINGS[:shift]


@dataclass(frozen=True, slots=True)
class CounterApp:
    """Where the clerk app of one outlet reaches its agent."""

    outlet: DemoOutlet
    api_url: str
    token: str


class DemoClerk:
    """Clerk threads for ``counters``; ``stop()`` ends them after their current call."""

    def __init__(self, counters: list[CounterApp], *, interval_s: float) -> None:
        self._counters = counters
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._codes = catalogue_codes()
        # Keys new in every run: with a kept --data-dir the agents still hold the last
        # run's keys, and a reused key replays the old case instead of filing one.
        self._run = f"{int(time.time()):x}"

    def start(self) -> None:
        for counter in self._counters:
            thread = threading.Thread(
                target=self._serve, args=(counter,), name=f"clerk-{counter.outlet.id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=_EVALUATION_TIMEOUT_S + 5)

    def _serve(self, counter: CounterApp) -> None:
        headers = {"Authorization": f"Bearer {counter.token}"}
        with httpx.Client(
            base_url=counter.api_url, headers=headers, timeout=_EVALUATION_TIMEOUT_S + 5
        ) as client:
            case = 1
            while not self._stop.is_set():
                try:
                    self._file_case(client, counter.outlet, case)
                except (httpx.HTTPError, ValueError) as exc:
                    # The agent may still be starting; try the same case again soon.
                    log.info("clerk at %s: case %d not filed yet: %s", counter.outlet.id, case, exc)
                    self._stop.wait(_RETRY_S)
                    continue
                calm = case >= len(_RATINGS)
                case += 1
                self._stop.wait(self._interval_s * (_CALM_FACTOR if calm else 1))

    def _file_case(self, client: httpx.Client, outlet: DemoOutlet, case: int) -> None:
        item = outlet.service_items[(case - 1) % len(outlet.service_items)]
        code = self._codes[(outlet.region[:4], item)]
        key = f"demo-{self._run}-{case:05d}"
        applicant = {
            "name": _APPLICANTS[case % len(_APPLICANTS)],
            "id_number": make_id_number(outlet.region[:6], f"19{60 + case % 40:02d}0315", case),
        }
        filed = client.post(
            "/v1/submissions",
            headers={"Idempotency-Key": key},
            json={
                "item_code": code, "region_code": outlet.region, "applicant": applicant,
                "window": "1", "clerk": "S001", "outlet_kind": outlet.kind,
            },
        )  # fmt: skip
        if not filed.is_success:  # 202 accepted; a replay of the same key too
            raise ValueError(f"submission answered {filed.status_code}")
        rated = client.post(
            "/v1/evaluations",
            headers={"Idempotency-Key": f"{key}-eval"},
            json={
                "window": "1", "case_number": key, "staff_id": "S001", "item_code": code,
                "item_name": item, "timeout_s": _EVALUATION_TIMEOUT_S,
            },
        )  # fmt: skip
        if not rated.is_success:
            raise ValueError(f"evaluation answered {rated.status_code}")
        log.info("clerk at %s: case %d filed and %s", outlet.id, case, rated.json()["status"])
