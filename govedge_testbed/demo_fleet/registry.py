"""Load the demo's regions, outlet registry and catalogue into a running fleet server.

Through the server's own API, as an operator would: the regions import
``POST /api/v1/regions/import`` (``regions.geojson``, GeoJSON as boundary data comes), the
registry import ``POST /api/v1/outlets/import`` (``outlets.json`` is a registry file,
docs/outlet-registry.md) and ``POST /api/v1/catalogue/import``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

__all__ = ["DATA_DIR", "DemoOutlet", "catalogue_codes", "demo_outlets", "load_fleet"]

DATA_DIR: Final = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class DemoOutlet:
    """One row of ``outlets.json``: the registry file's fields."""

    id: str
    name: str
    kind: str
    region: str
    lat: float
    lon: float
    address: str
    opening_hours: str | dict[str, list[str]]
    service_items: tuple[str, ...]

    def registry_row(self) -> dict[str, Any]:
        """The row as the registry import takes it (the file's own fields)."""
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "region": self.region,
            "lat": self.lat, "lon": self.lon, "address": self.address,
            "opening_hours": self.opening_hours, "service_items": list(self.service_items),
        }  # fmt: skip

    def profile(self) -> dict[str, Any]:
        """The row as ``PUT /api/v1/outlet-profiles`` takes it."""
        return {
            "outlet_id": self.id,
            "name": self.name,
            "kind": self.kind,
            "region_code": self.region,
            "latitude": self.lat,
            "longitude": self.lon,
            "address": self.address,
            "opening_hours": self.opening_hours,
            "service_items": list(self.service_items),
        }


def demo_outlets() -> list[DemoOutlet]:
    """Every outlet of the demo's registry, in file order."""
    rows = json.loads((DATA_DIR / "outlets.json").read_text(encoding="utf-8"))
    return [DemoOutlet(**(row | {"service_items": tuple(row["service_items"])})) for row in rows]


def catalogue_codes() -> dict[tuple[str, str], str]:
    """(region code, item name) → the item's code (实施编码), from ``catalogue.csv``."""
    text = (DATA_DIR / "catalogue.csv").read_text(encoding="utf-8")
    return {
        (region, row["name"]): row["code"]
        for row in csv.DictReader(io.StringIO(text))
        for region in row["region_codes"].split(";")
    }


def load_fleet(client: httpx.Client, outlets: list[DemoOutlet]) -> None:
    """Regions, the profiles of ``outlets`` and the catalogue into the server behind
    ``client`` (an admin's); raises ``httpx.HTTPStatusError`` if the server refuses."""
    client.post(
        "/api/v1/regions/import",
        content=(DATA_DIR / "regions.geojson").read_bytes(),
        headers={"Content-Type": "application/json"},
    ).raise_for_status()
    client.post(
        "/api/v1/outlets/import",
        params={"format": "json"},
        content=json.dumps([outlet.registry_row() for outlet in outlets]).encode(),
        headers={"Content-Type": "application/json"},
    ).raise_for_status()
    client.post(
        "/api/v1/catalogue/import",
        params={"format": "csv"},
        content=(DATA_DIR / "catalogue.csv").read_bytes(),
        headers={"Content-Type": "text/csv"},
    ).raise_for_status()
