"""The demo's data files hold together: what the map, the catalogue and the clerk rely on.

Each outlet's region is a township of a county of a prefecture of the one province,
its coordinates lie inside that prefecture's outline, its kind is one the product
knows, each service item is in the catalogue for its prefecture, and the files pass
the server's own validation (the registry import's parser, the profile model, the
catalogue importer with the demo upstream's targets).
"""

from __future__ import annotations

import json

from fleet_server.catalogue import parse_catalogue
from fleet_server.health.api import OutletProfileIn
from fleet_server.health.regions_file import RegionRow, parse_regions
from fleet_server.health.registry_file import parse_registry
from govedge_testbed.demo_fleet import demo_outlets
from govedge_testbed.demo_fleet.registry import DATA_DIR, catalogue_codes
from govedge_testbed.demo_fleet.upstream import EVALUATION_TARGET, SUBMISSION_TARGET

KINDS = {"township_centre", "street_centre", "bank_counter", "village_station", "kiosk"}


def _regions() -> dict[str, RegionRow]:
    """The demo's regions as the server's regions import reads them (its validation)."""
    rows = parse_regions((DATA_DIR / "regions.geojson").read_bytes())
    return {row.code: row for row in rows}


def _inside(outline: list[list[list[float]]], lat: float, lon: float) -> bool:
    ring = outline[0]  # the demo's outlines are rectangles
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return min(lons) <= lon <= max(lons) and min(lats) <= lat <= max(lats)


def test_every_outlet_sits_in_a_township_of_the_province_on_the_map() -> None:
    regions = _regions()
    outlets = demo_outlets()
    assert len({o.id for o in outlets}) == len(outlets)
    assert {o.kind for o in outlets} >= {
        "township_centre",
        "bank_counter",
        "village_station",
        "kiosk",
    }
    for outlet in outlets:
        OutletProfileIn.model_validate(outlet.profile())
        assert outlet.kind in KINDS, outlet
        township = regions[outlet.region]
        assert township.parent_code is not None
        county = regions[township.parent_code]
        assert county.parent_code is not None
        prefecture = regions[county.parent_code]
        assert prefecture.parent_code == "33", outlet
        assert prefecture.outline is not None
        assert _inside(prefecture.outline, outlet.lat, outlet.lon), outlet
        assert outlet.opening_hours, outlet
        assert outlet.service_items, outlet


def test_the_outlets_file_is_a_registry_file_the_import_takes_as_it_is() -> None:
    # The demo loads it through the registry import: every row parses, nothing changed.
    outlets = demo_outlets()
    raw = (DATA_DIR / "outlets.json").read_bytes()
    rows = parse_registry(raw, fmt="json")
    assert [row.id for row in rows] == [o.id for o in outlets]
    sent = json.dumps([o.registry_row() for o in outlets]).encode()
    assert parse_registry(sent, fmt="json") == rows


def test_each_service_item_is_in_the_catalogue_routed_to_the_demo_upstream() -> None:
    rows = parse_catalogue(
        (DATA_DIR / "catalogue.csv").read_bytes(),
        fmt="csv",
        targets=[SUBMISSION_TARGET, EVALUATION_TARGET],
    )
    assert {row.target for row in rows} == {SUBMISSION_TARGET}
    codes = catalogue_codes()
    for outlet in demo_outlets():
        for item in outlet.service_items:
            assert (outlet.region[:4], item) in codes, (outlet.id, item)
