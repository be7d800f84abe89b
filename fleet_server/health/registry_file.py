"""The outlet registry as a file (CSV or JSON): parse and validate every row, upsert
them by id, and write the registry back out in the same shape (docs/outlet-registry.md).

Fields: ``id``, ``name``, ``kind``, ``region`` (region code), ``lat`` and ``lon``
(both or neither), ``address``, ``opening_hours`` (``24h``, or ``mon 08:30-12:00,
13:30-17:30; tue …`` as text, or the profile's ``{"mon": [...]}`` in JSON) and
``service_items`` (``;``-separated in CSV, a list in JSON). A file with any problem
imports nothing; every problem is reported as (row, field, message), row 1 being the
first data row. An outlet's address is its office's, public like its name.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.catalogue.importer import (
    RowError,
    RowsError,
    read_records,
    split_list,
    validate_rows,
)
from fleet_server.health.hours import DAYS, describe, is_24h, is_span
from fleet_server.health.tables import OutletProfile
from fleet_server.models import Outlet
from fleet_server.security.scope import Scope
from govedge_wire import OUTLET_ID_PATTERN

__all__ = [
    "FIELDS",
    "RegistryError",
    "RegistryRow",
    "RowError",
    "export_registry",
    "import_registry",
    "parse_registry",
]

FIELDS: Final = (
    "id", "name", "kind", "region", "lat", "lon", "address", "opening_hours", "service_items",
)  # fmt: skip
# The kinds' Chinese names, as a province's own lists write them.
_KIND_NAMES: Final = {
    "乡镇便民服务中心": "township_centre",
    "街道便民服务中心": "street_centre",
    "政银通办网点": "bank_counter",
    "村便民服务站": "village_station",
    "24小时自助终端": "kiosk",
}
Hours = Literal["24h"] | dict[str, list[str]]


class RegistryError(RowsError):
    """The registry file cannot be imported."""

    what = "registry"


def parse_hours(value: Any) -> Any:
    """``24h``, the day-list text ``describe`` writes, or a ``{"mon": [...]}`` dict, as
    the profile's shape; a ``ValueError`` names what is wrong."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and is_24h(value):
        return "24h"
    if isinstance(value, str):
        days: dict[str, list[str]] = {}
        for part in value.split(";"):
            day, _, spans = part.strip().partition(" ")
            days[day.strip().lower()] = [s.strip() for s in spans.split(",") if s.strip()]
        value = days
    if not isinstance(value, dict):
        # A ValueError, as pydantic reports only those as the field's own message.
        raise ValueError(  # noqa: TRY004
            '"24h", "mon 08:30-12:00,13:30-17:30; tue …" or {"mon": [...]}'
        )
    for day, spans in value.items():
        if day not in DAYS:
            raise ValueError(f"unknown day {day!r} (mon … sun)")
        if not isinstance(spans, list) or not spans:
            raise ValueError(f"{day}: a list of HH:MM-HH:MM spans")
        for span in spans:
            if not is_span(str(span)):
                raise ValueError(f"{day}: {span!r} is not a span HH:MM-HH:MM")
    return {day: list(value[day]) for day in DAYS if day in value}


class RegistryRow(BaseModel):
    """One outlet as the registry file lists it."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: Annotated[str, Field(pattern=rf"^{OUTLET_ID_PATTERN}$")]
    name: Annotated[str, Field(min_length=1, max_length=256)]
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    region: Annotated[str, Field(pattern=r"^[0-9]{2,12}$")]
    lat: Annotated[float, Field(ge=-90, le=90)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180)] | None = None
    address: Annotated[str, Field(max_length=256)] | None = None
    opening_hours: Hours | None = None
    service_items: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=500
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return _KIND_NAMES.get(str(value).strip(), value) if value is not None else value

    @field_validator("lat", "lon", "address", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("opening_hours", mode="before")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        return parse_hours(value)

    @field_validator("service_items", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        return split_list(value)

    @model_validator(mode="after")
    def _both_coordinates(self) -> RegistryRow:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together: give both or neither")
        return self

    def profile_values(self) -> dict[str, Any]:
        """The outlet profile's columns this row sets (phone and tags stay as they are)."""
        return {
            "name": self.name, "kind": self.kind, "region_code": self.region,
            "latitude": self.lat, "longitude": self.lon, "address": self.address,
            "opening_hours": self.opening_hours, "service_items": list(self.service_items),
        }  # fmt: skip


def parse_registry(data: bytes, *, fmt: Literal["csv", "json"]) -> list[RegistryRow]:
    """Validate every row; raise ``RegistryError`` listing every problem."""
    try:
        records = read_records(data, fmt=fmt, list_key="outlets")
    except RowsError as exc:
        raise RegistryError(exc.errors) from None
    numbered, errors = validate_rows(records, RegistryRow, fmt=fmt, key="id")
    if errors:
        raise RegistryError(errors)
    return [row for _, row in numbered]


def outside_scope(session: Session, scope: Scope, rows: Iterable[RegistryRow]) -> list[RowError]:
    """The rows a scoped user may not import: a region outside the scope, or an outlet
    already registered outside it (no moving another county's outlet into one's own)."""
    if scope.whole_fleet:
        return []
    rows = list(rows)
    current = dict(
        session.execute(
            select(OutletProfile.outlet_id, OutletProfile.region_code).where(
                OutletProfile.outlet_id.in_([row.id for row in rows])
            )
        ).all()
    )
    errors = []
    for number, row in enumerate(rows, start=1):
        if not scope.admits_region(row.region):
            errors.append(RowError(row=number, field="region", message=_outside(scope, row.region)))
        elif row.id in current and not scope.admits_region(current[row.id]):
            errors.append(RowError(row=number, field="id", message=_outside(scope, row.id)))
    return errors


def _outside(scope: Scope, what: str) -> str:
    return f"outside your region scope ({' '.join(scope.prefixes)}): {what}"


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What an import did: outlets new to the registry, changed, and left as they were."""

    created: int
    updated: int
    unchanged: int


def import_registry(
    session: Session, rows: Sequence[RegistryRow], *, now: datetime
) -> ImportCounts:
    """Insert or update ``rows`` by id. The caller commits, so the whole file lands in
    one transaction or not at all; a row equal to what is stored writes nothing."""
    ids = [row.id for row in rows]
    profiles = {
        p.outlet_id: p
        for p in session.scalars(select(OutletProfile).where(OutletProfile.outlet_id.in_(ids)))
    }
    outlets = {o.id: o for o in session.scalars(select(Outlet).where(Outlet.id.in_(ids)))}
    created = updated = unchanged = 0
    for row in rows:
        values = row.profile_values()
        outlet = outlets.get(row.id)
        if outlet is None:
            session.add(Outlet(id=row.id, display_name=row.name, created_at=now))
        elif outlet.display_name != row.name:
            outlet.display_name = row.name
        profile = profiles.get(row.id)
        if profile is None:
            session.add(OutletProfile(outlet_id=row.id, phone=None, tags=[], **values))
            created += 1
        elif all(getattr(profile, key) == value for key, value in values.items()):
            unchanged += 1
        else:
            for key, value in values.items():
                setattr(profile, key, value)
            updated += 1
    return ImportCounts(created=created, updated=updated, unchanged=unchanged)


def _export_row(profile: OutletProfile) -> dict[str, Any]:
    return {
        "id": profile.outlet_id, "name": profile.name, "kind": profile.kind,
        "region": profile.region_code, "lat": profile.latitude, "lon": profile.longitude,
        "address": profile.address, "opening_hours": profile.opening_hours,
        "service_items": list(profile.service_items or []),
    }  # fmt: skip


def export_rows(session: Session, scope: Scope) -> list[dict[str, Any]]:
    """Every profiled outlet inside ``scope``, by id, in the import's JSON shape."""
    query = (
        select(OutletProfile)
        .where(scope.region_clause(OutletProfile.region_code))
        .order_by(OutletProfile.outlet_id)
    )
    return [_export_row(profile) for profile in session.scalars(query)]


def export_registry(rows: Sequence[dict[str, Any]], *, fmt: Literal["csv", "json"]) -> str:
    """``rows`` (from ``export_rows``) as a file the import reads back unchanged."""
    if fmt == "json":
        return json.dumps({"outlets": list(rows)}, ensure_ascii=False, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        hours = row["opening_hours"]
        writer.writerow(
            row
            | {
                "lat": "" if row["lat"] is None else repr(row["lat"]),
                "lon": "" if row["lon"] is None else repr(row["lon"]),
                "opening_hours": "" if hours is None else describe(hours),
                "service_items": ";".join(row["service_items"]),
            }
        )
    return out.getvalue()
