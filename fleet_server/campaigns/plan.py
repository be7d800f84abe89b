"""Planning a campaign: the body's settings, which outlets it targets, its waves.

Pure functions (and one query, ``candidates``), so the rules are tested without a server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.health.tables import OutletProfile
from fleet_server.models import Agent, Outlet

DEFAULT_WAVES: tuple[int | str, ...] = (1, "1%", "10%", "50%", "100%")
_PERCENT = re.compile(r"^(\d{1,3}(?:\.\d+)?)%$")
Short = Annotated[str, Field(min_length=1, max_length=64)]


class Target(BaseModel):
    """Which outlets: every given filter must match (AND); at least one is given."""

    model_config = ConfigDict(extra="forbid")

    regions: list[Short] | None = None  # region code prefixes
    kinds: list[Short] | None = None
    tags: list[Short] | None = None  # outlets carrying any of these tags
    versions: list[Short] | None = None  # current agent versions
    outlets: list[Short] | None = Field(default=None, max_length=100_000)

    @model_validator(mode="after")
    def _one_filter(self) -> Target:
        if not any(v for v in (self.regions, self.kinds, self.tags, self.versions, self.outlets)):
            raise ValueError("target needs at least one non-empty filter: regions, kinds, "
                             "tags, versions or outlets")  # fmt: skip
        return self


class CampaignCreate(BaseModel):
    """The body of ``POST /api/v1/campaigns``."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    release: Annotated[str, Field(min_length=1, max_length=64)]
    target: Target
    waves: list[int | str] = Field(default_factory=lambda: list(DEFAULT_WAVES), min_length=1,
                                   max_length=50)  # fmt: skip
    success_threshold: Annotated[float, Field(ge=0, le=1)] = 0.9
    failure_threshold: Annotated[float, Field(ge=0, le=1)] = 0.1
    concurrency: Annotated[int, Field(ge=1, le=100_000)] = 50
    jitter_s: Annotated[int, Field(ge=0, le=86_400)] = 300
    wave_wait_s: Annotated[int, Field(ge=0, le=30 * 86_400)] = 0
    health_timeout_s: Annotated[int, Field(ge=10, le=3600)] = 120
    # A scheduled outlet never offered this long after its wave started, when the rest
    # of its wave is final, becomes skipped (offline) so the wave can finish.
    offline_after_s: Annotated[int, Field(ge=0, le=30 * 86_400)] = 86_400

    @field_validator("waves")
    @classmethod
    def _waves(cls, waves: list[int | str]) -> list[int | str]:
        for wave in waves:
            if isinstance(wave, bool) or (isinstance(wave, int) and wave < 1):
                raise ValueError(f"wave {wave!r}: a count must be a whole number ≥ 1")
            if isinstance(wave, str):
                match = _PERCENT.match(wave.strip())
                if match is None or not 0 < float(match.group(1)) <= 100:
                    raise ValueError(f'wave {wave!r}: a share is written like "10%" (0-100%)')
        return waves

    def settings(self) -> dict[str, Any]:
        """What the engine reads, stored with the campaign."""
        return {
            "success_threshold": self.success_threshold,
            "failure_threshold": self.failure_threshold,
            "concurrency": self.concurrency,
            "jitter_s": self.jitter_s,
            "wave_wait_s": self.wave_wait_s,
            "health_timeout_s": self.health_timeout_s,
            "offline_after_s": self.offline_after_s,
        }


def wave_sizes(waves: Sequence[int | str], total: int) -> list[int]:
    """Outlets per wave. An int is a count; ``"N%"`` a cumulative share of ``total``
    (rounded up). Empty waves are dropped; outlets left after the last wave join it."""
    sizes: list[int] = []
    placed = 0
    for wave in waves:
        if placed >= total:
            break
        if isinstance(wave, int):
            size = wave
        else:
            share = float(wave.strip().rstrip("%")) / 100
            size = math.ceil(total * share - 1e-9) - placed
        size = min(max(size, 0), total - placed)
        if size:
            sizes.append(size)
            placed += size
    if placed < total:
        if sizes:
            sizes[-1] += total - placed
        else:
            sizes.append(total - placed)
    return sizes


@dataclass(frozen=True, slots=True)
class Candidate:
    """One targeted outlet and the agent version it runs."""

    outlet_id: str
    agent_version: str | None


def candidates(session: Session, target: Target) -> list[Candidate]:
    """The outlets ``target`` selects, sorted by id (the campaign's order)."""
    query = (
        select(
            Outlet.id,
            Agent.agent_version,
            OutletProfile.region_code,
            OutletProfile.kind,
            OutletProfile.tags,
        )
        .outerjoin(Agent, Agent.outlet_id == Outlet.id)
        .outerjoin(OutletProfile, OutletProfile.outlet_id == Outlet.id)
        .order_by(Outlet.id)
    )
    if target.outlets:
        query = query.where(Outlet.id.in_(set(target.outlets)))
    found: list[Candidate] = []
    wanted = set(target.tags or ())
    for outlet_id, version, region, kind, tags in _rows(session, query):
        if target.regions and not (region and any(region.startswith(p) for p in target.regions)):
            continue
        if target.kinds and kind not in target.kinds:
            continue
        if target.versions and version not in target.versions:
            continue
        if wanted and not wanted.intersection(tags or ()):
            continue
        found.append(Candidate(outlet_id=outlet_id, agent_version=version))
    return found


_Row = tuple[str, str | None, str | None, str | None, list[str] | None]


def _rows(session: Session, query: Any) -> list[_Row]:
    return [(r[0], r[1], r[2], r[3], r[4]) for r in session.execute(query)]


def assign_waves(outlet_ids: Sequence[str], sizes: Sequence[int]) -> list[tuple[str, int]]:
    """(outlet, wave) in order: the first ``sizes[0]`` outlets are wave 0, and so on."""
    out: list[tuple[str, int]] = []
    index = 0
    for wave, size in enumerate(sizes):
        out.extend((outlet_id, wave) for outlet_id in outlet_ids[index : index + size])
        index += size
    return out
