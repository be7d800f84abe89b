"""The profile schema's kind enum and ``Kind`` follow the device-kind registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from edge_agent.devices.registry import kind_names, kinds, window_bound_kinds
from edge_agent.profiles.kinds import schema_is_current, write_schema
from edge_agent.profiles.loader import SCHEMA_PATH
from edge_agent.profiles.models import Kind


def test_shipped_schema_lists_exactly_the_registered_kinds() -> None:
    assert schema_is_current(), "run: edge-agent profiles schema --write"
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["properties"]["kind"]["enum"] == kind_names()


def test_profile_model_kind_literal_matches_the_registry() -> None:
    assert sorted(get_args(Kind)) == kind_names()


def test_write_schema_regenerates_a_stale_enum(tmp_path: Path) -> None:
    stale = tmp_path / "schema.json"
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    stale.write_text(text.replace('"caller_keypad",\n', ""), encoding="utf-8")
    assert not schema_is_current(stale)
    assert write_schema(stale)
    assert stale.read_text(encoding="utf-8") == text
    assert not write_schema(stale)


def test_each_kind_package_declares_its_kind() -> None:
    assert kind_names() == [
        "caller_keypad",
        "document_camera",
        "evaluation_pad",
        "id_card_reader",
        "led_screen",
        "social_security_card_reader",
        "ticket_printer",
    ]
    assert window_bound_kinds() == ["caller_keypad", "evaluation_pad", "led_screen"]
    for name, kind in kinds().items():
        assert kind.drivers, name
        assert kind.simulators, name
        for driver in kind.drivers:
            assert driver.__module__.startswith(f"edge_agent.devices.{name}."), driver
            # The class's own kind is the package's: names no longer drift.
            assert driver.kind == name, driver


@pytest.mark.parametrize(
    "driver_name",
    [
        "caller_keypad",
        "escpos_printer",
        "haochaping_pad",
        "led_window_screen",
        "pcsc_social_security",
        "sam_id_reader",
        "uvc_document_camera",
    ],
)
def test_driver_names_profiles_use_stay_registered(driver_name: str) -> None:
    from edge_agent.devices.registry import driver_class, driver_names

    assert driver_name in driver_names()
    assert driver_class(driver_name).__name__


def test_window_bound_kinds_name_config_fields_of_a_queue_window() -> None:
    from edge_agent.settings_models import QueueWindowSetting, window_fields

    assert sorted(window_fields()) == [("keypad", True), ("led", True), ("pad", False)]
    for field, on_bus in window_fields():
        assert field in QueueWindowSetting.model_fields
        assert (f"{field}_address" in QueueWindowSetting.model_fields) == on_bus


def test_every_kind_has_the_shape_docs_development_describes() -> None:
    """docs/development.md "Add a device kind": one package plus one profile."""
    import edge_agent.devices as devices
    from edge_agent.profiles import load_profiles

    profiled = {profile.kind for profile in load_profiles(log_problems=False)}
    root = Path(devices.__file__).parent
    for name, kind in kinds().items():
        files = {path.name for path in (root / name).glob("*.py")}
        for needed in ("__init__.py", "capability.py", "driver.py", "settings.py"):
            assert needed in files, (name, needed)
        assert "simulator.py" in files, name
        assert "simulation.py" in files, name
        assert kind.simulate is not None, name
        assert name in profiled, f"no profile in device_profiles/ has kind {name}"
