"""Regions and their outlines from a file: the server's own JSON list, or GeoJSON as
GIS tools and the provinces' approved boundary data come (docs/fleet-health.md,
"Regions and outlines").

The own list is what ``GET /api/v1/regions`` answers: ``[{code, name, parent_code,
outline}]``, ``outline`` a list of rings of ``[lon, lat]``. GeoJSON is a
FeatureCollection (or one Feature) whose properties name the region: ``code`` as the
registry writes it, or ``adcode``, a six-digit administrative division code (GB/T 2260),
shortened to the prefix form region scopes match (``330000`` → ``33``, ``330100`` →
``3301``; a county's ``330106`` stays); ``name``; the parent as ``parent_code``, or
``parent`` (a code, or an object with ``adcode``), shortened the same way. A Polygon's
outer ring is the outline, a MultiPolygon's outer rings are (islands each a ring);
holes are dropped, because the map fills each ring. No geometry means no outline.

Every problem is reported as (row, field, message), row 1 being the first region or
feature, and a file with any problem imports nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.catalogue.importer import RowError, RowsError
from fleet_server.health.tables import Region

__all__ = [
    "ImportCounts",
    "RegionRow",
    "RegionsError",
    "check_outline",
    "import_regions",
    "parse_regions",
]

CODE: Final = re.compile(r"^[0-9]{2,12}$")
_ADCODE: Final = re.compile(r"^[0-9]{6}$")
NAME_MAX: Final = 128
MAX_REGIONS: Final = 20_000  # a province's townships are a few thousand
MAX_RINGS: Final = 2_000  # an archipelago's islands (Zhoushan has over a thousand)
MAX_POINTS: Final = 200_000  # per region; simplify the data in a GIS tool beyond that


class RegionsError(RowsError):
    """A regions file cannot be imported; ``errors`` lists every problem."""

    what = "regions file"


@dataclass(frozen=True, slots=True)
class RegionRow:
    code: str
    name: str
    parent_code: str | None
    outline: list[list[list[float]]] | None


@dataclass(frozen=True, slots=True)
class ImportCounts:
    created: int
    updated: int
    unchanged: int


def check_outline(outline: Any) -> str | None:
    """Why ``outline`` is not a list of rings of ``[lon, lat]`` the map can draw, or
    None. A ring needs three distinct points; longitudes lie in ±180, latitudes in ±90."""
    if not isinstance(outline, list):
        return "must be a list of rings"
    if len(outline) > MAX_RINGS:
        return f"has {len(outline)} rings; at most {MAX_RINGS}"
    points = 0
    for number, ring in enumerate(outline, start=1):
        if not isinstance(ring, list):
            return f"ring {number} is not a list of [lon, lat] points"
        points += len(ring)
        if points > MAX_POINTS:
            return f"has more than {MAX_POINTS} points; simplify it first"
        for point in ring:
            why = _check_point(point)
            if why is not None:
                return f"ring {number}: {why}"
        if len({(p[0], p[1]) for p in ring}) < 3:
            return f"ring {number} has fewer than 3 distinct points"
    return None


def _check_point(point: Any) -> str | None:
    if not isinstance(point, list) or len(point) != 2:
        return f"{_shown(point)} is not a [lon, lat] pair"
    for value in point:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return f"{_shown(point)} is not a pair of numbers"
    lon, lat = point
    if not -180 <= lon <= 180 or not -90 <= lat <= 90:
        return f"{_shown(point)} is off the earth (lon within ±180, lat within ±90; lon first)"
    return None


def _shown(value: Any) -> str:
    return json.dumps(value)[:60]


def parse_regions(data: bytes) -> list[RegionRow]:
    """Every region of the file, or ``RegionsError`` with every problem found."""
    records, reader = _records(data)
    rows: list[RegionRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            errors.append(RowError(row=number, field="region", message="is not an object"))
            continue
        row, problems = reader(record)
        errors += [RowError(row=number, field=f, message=m) for f, m in problems]
        if row is None:
            continue
        if row.code in seen:
            again = f"{row.code} is also row {seen[row.code]}"
            errors.append(RowError(row=number, field="code", message=again))
            continue
        seen[row.code] = number
        rows.append(row)
    if errors:
        raise RegionsError(errors)
    return rows


def _records(data: bytes) -> tuple[list[Any], Reader]:
    """The file's region records and the reader for their shape."""

    def refuse(message: str) -> RegionsError:
        return RegionsError([RowError(row=0, field="file", message=message)])

    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise refuse(f"not JSON: {exc}") from None
    records: Any
    reader: Reader
    if isinstance(document, list):
        records, reader = document, _own
    elif isinstance(document, dict) and document.get("type") == "FeatureCollection":
        records, reader = document.get("features"), _feature
    elif isinstance(document, dict) and document.get("type") == "Feature":
        records, reader = [document], _feature
    else:
        raise refuse(_WHAT_FILE)
    if not isinstance(records, list) or not records:
        raise refuse("holds no regions")
    if len(records) > MAX_REGIONS:
        raise refuse(f"{len(records)} regions; at most {MAX_REGIONS}")
    return records, reader


_WHAT_FILE: Final = (
    "expected a JSON list of regions ({code, name, parent_code, outline}) or a GeoJSON "
    "FeatureCollection"
)
Problems = list[tuple[str, str]]
Reader = Callable[[dict[str, Any]], tuple["RegionRow | None", Problems]]


def _own(record: dict[str, Any]) -> tuple[RegionRow | None, Problems]:
    problems: Problems = []
    unknown = sorted(set(record) - {"code", "name", "parent_code", "outline"})
    if unknown:
        problems.append((unknown[0], "unknown field (fields: code, name, parent_code, outline)"))
    code = _code(record.get("code"), "code", problems, shorten=False)
    parent = record.get("parent_code")
    parent_code = None if parent is None else _code(parent, "parent_code", problems, shorten=False)
    name = _name(record.get("name"), problems)
    outline = record.get("outline")
    if outline is not None:
        why = check_outline(outline)
        if why is not None:
            problems.append(("outline", why))
    if problems or code is None or name is None:
        return None, problems
    return RegionRow(code=code, name=name, parent_code=parent_code, outline=outline), problems


def _feature(record: dict[str, Any]) -> tuple[RegionRow | None, Problems]:
    problems: Problems = []
    properties = record.get("properties")
    if not isinstance(properties, dict):
        return None, [("properties", "a feature needs properties with its code and name")]
    if "code" in properties:
        code = _code(properties["code"], "code", problems, shorten=False)
    else:
        code = _code(properties.get("adcode"), "adcode", problems, shorten=True)
    name = _name(properties.get("name"), problems)
    parent_code = _parent(properties, problems)
    outline = _outline(record.get("geometry"), problems)
    if problems or code is None or name is None:
        return None, problems
    return RegionRow(code=code, name=name, parent_code=parent_code, outline=outline), problems


def _parent(properties: dict[str, Any], problems: Problems) -> str | None:
    if properties.get("parent_code") is not None:
        return _code(properties["parent_code"], "parent_code", problems, shorten=False)
    parent = properties.get("parent")
    if isinstance(parent, dict):  # as DataV's GeoJSON writes it: {"adcode": 330000}
        parent = parent.get("adcode")
    if parent is None:
        return None
    return _code(parent, "parent", problems, shorten=True)


def _outline(geometry: Any, problems: Problems) -> list[list[list[float]]] | None:
    if geometry is None:
        return None
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    coordinates = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if kind == "Polygon" and isinstance(coordinates, list) and coordinates:
        polygons = [coordinates]
    elif kind == "MultiPolygon" and isinstance(coordinates, list) and coordinates:
        polygons = coordinates
    else:
        problems.append(("geometry", f"{_shown(kind)}: a region is a Polygon or MultiPolygon"))
        return None
    outline: list[list[list[float]]] = []
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            problems.append(("geometry", "a polygon needs an outer ring"))
            return None
        ring = polygon[0]
        # GeoJSON positions may carry an altitude: the map draws [lon, lat].
        if isinstance(ring, list):
            ring = [p[:2] if isinstance(p, list) and len(p) == 3 else p for p in ring]
        outline.append(ring)
    why = check_outline(outline)
    if why is not None:
        problems.append(("geometry", why))
        return None
    return outline


def _code(value: Any, field: str, problems: Problems, *, shorten: bool) -> str | None:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
    if text is None or not CODE.match(text):
        problems.append((field, f"{_shown(value)} is not a region code (2 to 12 digits)"))
        return None
    if shorten and _ADCODE.match(text):
        # A six-digit division code pads a province or city with zeros; the registry
        # and region scopes use the prefix (330100 is 3301, whose outlets are 3301…).
        if text.endswith("0000"):
            return text[:2]
        if text.endswith("00"):
            return text[:4]
    return text


def _name(value: Any, problems: Problems) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(("name", "a region needs a name"))
        return None
    if len(value) > NAME_MAX:
        problems.append(("name", f"longer than {NAME_MAX} characters"))
        return None
    return value.strip()


def import_regions(session: Session, rows: list[RegionRow]) -> ImportCounts:
    """Upsert ``rows`` by code; what a row leaves out (no outline) it sets to nothing."""
    # Every region, not an IN list of the file's codes: a province's few thousand rows
    # are cheap, and 20,000 codes would pass SQLite's bound-parameter limit.
    existing = {region.code: region for region in session.scalars(select(Region))}
    created = updated = 0
    for row in rows:
        region = existing.get(row.code)
        if region is None:
            session.add(Region(code=row.code, name=row.name, parent_code=row.parent_code,
                               outline=row.outline))  # fmt: skip
            created += 1
        elif (region.name, region.parent_code, region.outline) != (
            row.name, row.parent_code, row.outline
        ):  # fmt: skip
            region.name, region.parent_code, region.outline = row.name, row.parent_code, row.outline
            updated += 1
    return ImportCounts(created=created, updated=updated, unchanged=len(rows) - created - updated)
