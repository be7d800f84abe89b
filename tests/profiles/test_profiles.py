"""Device profiles: every shipped file validates, and every problem is located for a person."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import edge_agent.devices
from edge_agent.profiles import (
    DEFAULT_PROFILES_DIR,
    SCHEMA_PATH,
    check_profiles,
    load_profiles,
    profiles_check_main,
)

# The driver names the shipped profiles use; their modules are being written in parallel,
# so these tests pass the names explicitly instead of importing the drivers.
EXPECTED_DRIVERS = frozenset(
    {
        "sam_id_reader",
        "pcsc_social_security",
        "uvc_document_camera",
        "haochaping_pad",
        "escpos_printer",
        "led_window_screen",
        "caller_keypad",
    }
)

GOOD = """\
id: good-reader
name: A good reader
kind: id_card_reader
driver: sam_id_reader
match:
  - usb:
      subsystem: usb
      vendor_id: "0400"
      product_id: "c35a"
settings:
  baudrate: 115200
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_profile_satisfies_the_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    files = sorted(DEFAULT_PROFILES_DIR.glob("*.yaml"))
    assert len(files) >= 8
    for file in files:
        jsonschema.validate(yaml.safe_load(file.read_text(encoding="utf-8")), schema)


def test_shipped_profiles_load_without_problems() -> None:
    profiles = load_profiles(driver_names=EXPECTED_DRIVERS)
    assert profiles.problems == ()
    kinds = {p.kind for p in profiles}
    assert kinds == {
        "id_card_reader",
        "social_security_card_reader",
        "document_camera",
        "evaluation_pad",
        "ticket_printer",
        "led_screen",
        "caller_keypad",
    }
    readers = [p for p in profiles if p.kind == "id_card_reader"]
    assert len(readers) >= 2
    usb_ids = {(r.vendor_id, r.product_id) for p in readers for r in p.usb_rules}
    assert ("0400", "c35a") in usb_ids
    assert {p.driver for p in profiles} <= EXPECTED_DRIVERS


def test_missing_required_field_names_file_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("driver: sam_id_reader\n", "")
    file = _write(tmp_path, "no-driver.yaml", text)
    [problem] = check_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert (problem.file, problem.line, problem.field) == (file, 1, "driver")
    assert "required" in problem.message


def test_wrong_type_names_the_line_of_the_field(tmp_path: Path) -> None:
    # Unquoted 0400 is a YAML 1.1 octal integer, a classic mistake.
    file = _write(tmp_path, "octal.yaml", GOOD.replace('vendor_id: "0400"', "vendor_id: 0400"))
    [problem] = check_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert (problem.file, problem.line, problem.field) == (file, 8, "match[0].usb.vendor_id")
    assert "quoted hex" in problem.message


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    file = _write(
        tmp_path, "broken.yaml", GOOD.replace("  baudrate: 115200", "  baudrate: [115200")
    )
    [problem] = check_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert problem.file == file
    assert problem.field == "<yaml>"
    assert problem.line is not None
    assert problem.line >= 11
    assert "YAML syntax error" in problem.message


def test_unknown_driver_is_reported_at_its_line(tmp_path: Path) -> None:
    file = _write(tmp_path, "x.yaml", GOOD.replace("driver: sam_id_reader", "driver: no_such"))
    [problem] = check_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert (problem.file, problem.line, problem.field) == (file, 4, "driver")
    assert "no_such" in problem.message


def test_duplicate_id_names_the_second_file(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", GOOD)
    second = _write(tmp_path, "b.yaml", "# the same model again\n" + GOOD)
    [problem] = check_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert (problem.file, problem.line, problem.field) == (second, 2, "id")
    assert "a.yaml:1" in problem.message


def test_duplicate_yaml_key_is_a_problem(tmp_path: Path) -> None:
    file = _write(tmp_path, "dup.yaml", GOOD + "kind: ticket_printer\n")
    [problem] = check_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert (problem.file, problem.line, problem.field) == (file, 12, "kind")


def test_generic_bridge_ids_alone_are_rejected(tmp_path: Path) -> None:
    text = GOOD.replace('"0400"', '"1a86"').replace('"c35a"', '"7523"').replace("usb\n", "tty\n", 1)
    file = _write(tmp_path, "bridge.yaml", text)
    [problem] = check_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert (problem.file, problem.line, problem.field) == (file, 6, "match[0].usb")
    assert "generic USB-serial bridge" in problem.message


def test_a_broken_file_does_not_stop_the_others(tmp_path: Path) -> None:
    _write(tmp_path, "a-broken.yaml", "id: [unclosed\n")
    _write(tmp_path, "b-good.yaml", GOOD)
    _write(
        tmp_path,
        "c-wrong.yaml",
        GOOD.replace("good-reader", "other").replace("kind: id_card_reader", "kind: 7"),
    )
    result = load_profiles(tmp_path, driver_names=EXPECTED_DRIVERS)
    assert [p.id for p in result] == ["good-reader"]
    assert sorted(p.file.name for p in result.problems) == ["a-broken.yaml", "c-wrong.yaml"]


def test_driver_registry_import_error_is_tolerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[str]:
        raise ModuleNotFoundError("No module named 'serial_asyncio_fast'")

    monkeypatch.setattr(edge_agent.devices, "driver_names", broken)
    _write(tmp_path, "good.yaml", GOOD)
    result = load_profiles(tmp_path)
    assert [p.id for p in result] == ["good-reader"]
    [problem] = result.problems
    assert problem.field == "driver"
    assert "driver names not checked" in problem.message


def test_check_command_prints_file_line_field_and_exits_1(tmp_path: Path) -> None:
    _write(tmp_path, "x.yaml", GOOD.replace("kind: id_card_reader", "kind: toaster"))
    out = io.StringIO()
    assert profiles_check_main(tmp_path, out=out) == 1
    [line] = out.getvalue().splitlines()
    assert line.startswith(f"{tmp_path / 'x.yaml'}:3: kind: ")


def test_check_command_exits_0_when_all_is_well(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_agent.devices, "driver_names", lambda: sorted(EXPECTED_DRIVERS))
    _write(tmp_path, "good.yaml", GOOD)
    out = io.StringIO()
    assert profiles_check_main(tmp_path / "good.yaml", out=out) == 0
    assert "1 profiles ok" in out.getvalue()


def test_health_thresholds_give_levels() -> None:
    profiles = load_profiles(driver_names=EXPECTED_DRIVERS)
    printer = profiles.get("escpos-usb-printer")
    reader = profiles.get("sam-usb-c35a")
    assert printer is not None
    assert reader is not None
    assert printer.health_level({"paper_near_end": False, "paper_end": False}) == "ok"
    assert printer.health_level({"paper_near_end": True, "paper_end": False}) == "warn"
    assert printer.health_level({"paper_near_end": True, "paper_end": True}) == "crit"
    assert reader.health_level({"read_failure_rate": 0.1}) == "warn"
    assert reader.health_level({"read_failure_rate": 0.5}) == "crit"
    assert reader.health_level({"read_failure_rate": "n/a"}) == "ok"


# ---- driver settings: each shipped profile's settings are checked against its driver


BAD_SETTINGS = {
    # driver: (a key with a bad value, the value, words the message must contain)
    "sam_id_reader": ("baudrate", "4800", "115200"),
    "pcsc_social_security": ("read_style", "sideways", "'auto'"),
    "uvc_document_camera": ("jpeg_quality", "101", "less than or equal to 100"),
    "haochaping_pad": ("level_coding", "guangxi", "gbt39046"),
    "escpos_printer": ("status_timeout", "0", "greater than 0"),
    "led_window_screen": ("unencodable", "drop", "'reject'"),
    "caller_keypad": ("retries", "many", "integer"),
}


def _shipped(driver: str) -> Path:
    for file in sorted(DEFAULT_PROFILES_DIR.glob("*.yaml")):
        if f"\ndriver: {driver}\n" in file.read_text(encoding="utf-8"):
            return file
    raise AssertionError(f"no shipped profile uses {driver}")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(needle))


@pytest.mark.parametrize("driver", sorted(BAD_SETTINGS))
def test_unknown_setting_is_located_in_each_shipped_profile(driver: str, tmp_path: Path) -> None:
    text = _shipped(driver).read_text(encoding="utf-8")
    assert "\nsettings:\n" in text, f"the shipped {driver} profile has settings"
    text = text.replace("\nsettings:\n", "\nsettings:\n  baud_rate: 9600\n")
    file = _write(tmp_path, "typo.yaml", text)
    [problem] = check_profiles(tmp_path)
    assert (problem.file, problem.field) == (file, "settings.baud_rate")
    assert problem.line == _line_of(text, "  baud_rate:")
    assert "unknown setting" in problem.message


@pytest.mark.parametrize("driver", sorted(BAD_SETTINGS))
def test_bad_setting_value_is_located_in_each_shipped_profile(driver: str, tmp_path: Path) -> None:
    key, value, words = BAD_SETTINGS[driver]
    text = _shipped(driver).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith(f"  {key}:")]
    at = lines.index("settings:") + 1
    lines.insert(at, f"  {key}: {value}")
    text = "\n".join(lines) + "\n"
    file = _write(tmp_path, "bad.yaml", text)
    [problem] = check_profiles(tmp_path)
    assert (problem.file, problem.field, problem.line) == (file, f"settings.{key}", at + 1)
    assert words in problem.message
    # The agent starts with the rest: the broken profile alone is left out.
    result = load_profiles(tmp_path, log_problems=False)
    assert len(result) == 0
    assert len(result.problems) == 1


def test_check_command_prints_a_settings_problem_as_file_line_field(tmp_path: Path) -> None:
    _write(tmp_path, "x.yaml", GOOD.replace("  baudrate: 115200", "  baudrate: 4800"))
    out = io.StringIO()
    assert profiles_check_main(tmp_path, out=out) == 1
    [line] = out.getvalue().splitlines()
    assert line.startswith(f"{tmp_path / 'x.yaml'}:11: settings.baudrate: Input should be 115200")
