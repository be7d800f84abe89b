"""Driver settings: one pydantic model per driver, unknown keys and bad values rejected.

No device is opened here: settings are checked when a driver is built, before any I/O,
so a bad setting shows up as ``DriverSettingsError`` (a ``DeviceError`` the device
manager reports as ``bad_settings``) naming where the settings came from and the field.
The same models check the profile files (tests/profiles).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edge_agent.devices import DeviceIdentity, DriverSettingsError, driver_class, driver_names
from edge_agent.devices.settings import DriverSettings, default_text

DOCS = Path(__file__).resolve().parents[2] / "docs" / "device-profiles.md"

BAD_VALUES: dict[str, tuple[str, Any]] = {
    "sam_id_reader": ("read_timeout", -1),
    "pcsc_social_security": ("card_timeout", 1000),
    "uvc_document_camera": ("width", 8),
    "haochaping_pad": ("timezone", "Mars/Olympus"),
    "escpos_printer": ("encoding", "utf-8"),
    "led_window_screen": ("probe_address", 300),
    "caller_keypad": ("probe_address", 0),
}


def shipped_drivers() -> list[str]:
    """The drivers of the agent (other tests register stand-ins of their own)."""
    return [n for n in driver_names() if driver_class(n).__module__.startswith("edge_agent.")]


def identity(driver: str) -> DeviceIdentity:
    return DeviceIdentity(
        device_id=f"{driver}-1",
        profile=f"{driver}-profile",
        kind="test",
        address="/dev/null",
        settings_source=f"device_profiles/{driver}.yaml",
    )


def test_every_driver_has_its_own_settings_model() -> None:
    assert set(shipped_drivers()) == set(BAD_VALUES)
    models = {name: driver_class(name).settings_model for name in shipped_drivers()}
    for name, model in models.items():
        assert model is not None, name
        assert issubclass(model, DriverSettings), name
        assert model.model_config.get("extra") == "forbid", name
    assert len({id(model) for model in models.values()}) == len(models)


@pytest.mark.parametrize("driver", sorted(BAD_VALUES))
def test_unknown_key_names_the_source_and_field(driver: str) -> None:
    cls = driver_class(driver)
    with pytest.raises(DriverSettingsError) as caught:
        cls(identity(driver), settings={"baud_rate": 9600})
    message = str(caught.value)
    assert message.startswith(f"device_profiles/{driver}.yaml: {cls.__name__}: ")
    assert "settings.baud_rate: unknown setting" in message
    assert caught.value.problems[0][0] == "settings.baud_rate"
    assert caught.value.reason == "bad_settings"
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("driver", sorted(BAD_VALUES))
def test_bad_value_names_the_field(driver: str) -> None:
    key, value = BAD_VALUES[driver]
    with pytest.raises(DriverSettingsError) as caught:
        driver_class(driver)(identity(driver), settings={key: value})
    [(field, _message)] = caught.value.problems[:1]
    assert field.startswith(f"settings.{key}")


@pytest.mark.parametrize("driver", sorted(BAD_VALUES))
def test_defaults_build_a_driver_and_are_its_config(driver: str) -> None:
    cls = driver_class(driver)
    built = cls(identity(driver))
    model = cls.settings_model
    assert model is not None
    assert built.config == model()


def test_without_a_settings_source_the_profile_id_is_named() -> None:
    plain = DeviceIdentity(device_id="p-1", profile="escpos-usb-printer", kind="x", address="x")
    with pytest.raises(DriverSettingsError, match=r"^profile 'escpos-usb-printer': "):
        driver_class("escpos_printer")(plain, settings={"paper": "A4"})


def test_docs_list_every_setting_with_its_default() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in shipped_drivers():
        model = driver_class(name).settings_model
        assert model is not None
        assert f"### `{name}`" in text, f"docs/device-profiles.md has no section for {name}"
        section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
        for key in model.model_fields:
            row = re.search(rf"^\| `{key}` \| (.*?) \|", section, re.MULTILINE)
            assert row is not None, f"{name}.{key} is not documented"
            shown = default_text(model, key)
            assert row[1] == shown, f"{name}.{key}: docs say {row[1]}, code says {shown}"
