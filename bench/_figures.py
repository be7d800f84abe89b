"""The figures a benchmark reports, in the one shape ``scripts/bench`` collects.

Each bench script accepts ``--json FILE`` and writes there a JSON list of figures, one
per measured quantity (issue 17's "one key per figure"): its value and unit, the
baseline it is compared with in the same run (e.g. a bare paho subscriber's rate), the
ratio of the two, and the goal. ``higher`` says which way is better, so a reader (and
``scripts/bench``) can tell whether the goal is met without knowing the figure.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One measured figure. ``goal`` applies to ``ratio`` when ``goal_on`` is "ratio"."""

    key: str
    value: float
    unit: str
    baseline: float | None = None
    goal: float | None = None
    goal_on: str = "value"  # "value" or "ratio"
    higher: bool = True  # True: bigger is better (throughput); False: latency, memory

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or math.isnan(self.baseline):
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None without a goal or a ratio to judge."""
        if self.goal is None:
            return None
        measured = self.ratio if self.goal_on == "ratio" else self.value
        if measured is None or math.isnan(measured):
            return None
        return measured >= self.goal if self.higher else measured <= self.goal

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        return data


def load_average_ok() -> tuple[float, bool]:
    """The 1-minute load average and whether it is at most the core count (a quiet run)."""
    load = os.getloadavg()[0]
    return load, load <= (os.cpu_count() or 1)


def write_figures(path: Path | None, figures: list[Figure]) -> None:
    """Write ``figures`` as the JSON list ``scripts/bench`` reads (nothing without a path)."""
    if path is None:
        return
    load, quiet = load_average_ok()
    document = {
        "load_average": round(load, 2),
        "quiet": quiet,
        "figures": [f.as_json() for f in figures],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
