"""Catalogue import from CSV and JSON: all or nothing, errors name the row and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from fleet_server.catalogue import CatalogueError, parse_catalogue
from fleet_server.catalogue.store import resolve_item
from fleet_server.cli import main
from fleet_server.db import make_engine, make_sessionmaker
from fleet_server.models import CatalogueItem
from govedge_testbed.upstream import catalogue_rows

HEADER = "code,base_code,name,level,handling_type,promised_days,department,outlet_kinds,region_codes,handling_mode,target"  # noqa: E501
GOOD = (
    "ZS-1,000101,居民身份证换领,4,承诺件,5,公安局,township_centre;bank_counter,3309,代办,zhoushan"
)


def _codes(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return list(session.scalars(select(CatalogueItem.code).order_by(CatalogueItem.code)))
    finally:
        engine.dispose()


def test_csv_import_then_bad_file_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    good = tmp_path / "items.csv"
    good.write_text(
        f"{HEADER}\n{GOOD}\nZS-2,000102,社保卡补办,5,即办件,,人社局,,3309,直办,zhoushan\n"
    )
    result = CliRunner().invoke(main, ["catalogue", "import", str(good), "--database-url", url])
    assert result.exit_code == 0, result.output
    assert _codes(url) == ["ZS-1", "ZS-2"]

    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"{HEADER}\nZS-3,000103,新事项,4,承诺件,,公安局,,3309,直办,zhoushan\n"
        "ZS-4,000104,另一事项,9,即办件,,公安局,,33x,直办,zhoushan\n"
    )
    result = CliRunner().invoke(main, ["catalogue", "import", str(bad), "--database-url", url])
    assert result.exit_code == 1
    assert "row 1, field row: promised_days is required" in result.output
    assert "row 2, field level" in result.output
    assert "row 2, field region_codes.0" in result.output
    assert _codes(url) == ["ZS-1", "ZS-2"]


def test_json_rows_and_handling_codes() -> None:
    rows = parse_catalogue(json.dumps({"items": catalogue_rows()}).encode(), fmt="json")
    assert {row.code for row in rows} == {"ZS-000101", "HZ-000101", "FLAKY-1", "DEAD-1"}
    csv_rows = parse_catalogue(f"{HEADER}\n{GOOD}\n".encode(), fmt="csv")
    assert csv_rows[0].handling_type == "promised"
    assert csv_rows[0].handling_mode == "agency"
    assert csv_rows[0].outlet_kinds == ["township_centre", "bank_counter"]


def test_duplicate_codes_and_unknown_targets_are_errors() -> None:
    data = f"{HEADER}\n{GOOD}\n{GOOD}\n".encode()
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data, fmt="csv", targets=["hangzhou"])
    messages = [str(error) for error in caught.value.errors]
    assert "row 2, field code: duplicate of row 1" in messages
    assert "row 1, field target: unknown target 'zhoushan'" in messages


def test_resolution_prefers_the_most_specific_region(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from fleet_server.catalogue import import_rows
    from fleet_server.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(engine)
    rows = parse_catalogue(json.dumps(catalogue_rows()).encode(), fmt="json")
    with make_sessionmaker(engine).begin() as session:
        import_rows(session, rows, now=datetime.now(UTC))
    with make_sessionmaker(engine)() as session:
        zs = resolve_item(session, item_code="000101", region_code="330902")
        hz = resolve_item(session, item_code="000101", region_code="330106")
        none = resolve_item(session, item_code="000101", region_code="440300")
        exact = resolve_item(session, item_code="HZ-000101", region_code="330106")
    engine.dispose()
    assert zs is not None
    assert zs.target == "zhoushan"
    assert hz is not None
    assert hz.target == "hangzhou"
    assert none is None
    assert exact is not None
    assert exact.code == "HZ-000101"
