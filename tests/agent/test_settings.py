"""Settings: CLI > env > TOML > defaults; bad values give one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge_agent.cli import main
from edge_agent.errors import SettingsError
from edge_agent.settings import JSON_SETTINGS, AgentSettings, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every spelling: the agent matches the names without regard to case (tests/conftest.py
    # sets GOVEDGE_SIMULATE_PCSC for the whole run).
    for name in list(os.environ):
        if name.upper().startswith("GOVEDGE_"):
            monkeypatch.delenv(name)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_precedence_cli_over_env_over_toml_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _toml(
        tmp_path,
        'mqtt_url = "mqtt://toml-host:1000"\noutlet_id = "from-toml"\n'
        'data_dir = "/toml/data"\ntelemetry_interval_s = 7\nkeepalive_s = 11\n',
    )
    only_toml = load_settings(config_file=config)
    assert only_toml.outlet_id == "from-toml"
    assert only_toml.mqtt_host == "toml-host"
    assert only_toml.mqtt_port == 1000
    assert only_toml.reconnect_cap_s == 60.0  # default

    monkeypatch.setenv("GOVEDGE_OUTLET_ID", "from-env")
    monkeypatch.setenv("GOVEDGE_KEEPALIVE_S", "12")
    monkeypatch.setenv("GOVEDGE_LOG_LEVEL", "debug")
    with_env = load_settings(config_file=config, outlet_id=None, keepalive_s=None)
    assert (with_env.outlet_id, with_env.keepalive_s) == ("from-env", 12)
    assert with_env.telemetry_interval_s == 7.0
    assert with_env.log_level == "DEBUG"

    with_cli = load_settings(config_file=config, outlet_id="from-cli", keepalive_s=None)
    assert (with_cli.outlet_id, with_cli.keepalive_s) == ("from-cli", 12)
    with pytest.raises(Exception, match="frozen"):
        with_cli.outlet_id = "changed"  # type: ignore[misc]


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(outlet_id="o-1", data_dir=tmp_path)
    assert settings.telemetry_interval_s == 30.0
    assert settings.keepalive_s == 30
    assert (settings.reconnect_base_s, settings.reconnect_cap_s) == (1.0, 60.0)
    assert settings.mqtt_port == 1883


def test_evaluation_qr_url_template_is_taken(tmp_path: Path) -> None:
    template = "https://hcp.example.gov.cn/evaluate?case={case_number}&outlet={outlet}"
    settings = load_settings(outlet_id="o-1", data_dir=tmp_path, evaluation_qr_url=template)
    assert settings.evaluation_qr_url == template


def test_mqtts_defaults_to_port_8883(tmp_path: Path) -> None:
    settings = load_settings(outlet_id="o-1", data_dir=tmp_path, mqtt_url="mqtts://broker")
    assert (settings.mqtt_tls, settings.mqtt_port) == (True, 8883)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"outlet_id": "_fleet"}, "invalid setting outlet_id"),
        ({"outlet_id": "a/b"}, "invalid setting outlet_id"),
        ({"mqtt_url": "mqtts://user@broker:8883"}, "credentials"),
        ({"mqtt_url": "http://broker"}, "invalid setting mqtt_url"),
        ({"mqtt_url": "mqtt://user:pw@broker"}, "credentials"),
        ({"keepalive_s": 0}, "invalid setting keepalive_s"),
        ({"reconnect_base_s": 10.0, "reconnect_cap_s": 1.0}, "reconnect_cap_s"),
        ({"data_dir": None}, "missing setting data_dir"),
        ({"evaluation_qr_url": "ftp://hcp.example/{case_number}"}, "evaluation_qr_url"),
        ({"evaluation_qr_url": "https://hcp.example/?c={case}"}, "evaluation_qr_url"),
        ({"evaluation_qr_url": "https://hcp.example/?c={case_number"}, "evaluation_qr_url"),
        ({"simulate_ratings": [5, 6]}, "invalid setting simulate_ratings"),
        ({"simulate_ratings": [0]}, "invalid setting simulate_ratings"),
        ({"queue_appointment_grace_minutes": -1}, "invalid setting queue_appointment_grace"),
        ({"queue_appointment_grace_minutes": 241}, "invalid setting queue_appointment_grace"),
    ],
)
def test_bad_values_fail_fast(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    values: dict[str, Any] = {"outlet_id": "o-1", "data_dir": tmp_path} | overrides
    with pytest.raises(SettingsError, match=message) as info:
        load_settings(**values)
    assert "\n" not in str(info.value)


def test_show_config_through_cli(tmp_path: Path) -> None:
    config = _toml(tmp_path, 'outlet_id = "from-toml"\nkeepalive_s = 9\n')
    result = CliRunner().invoke(
        main,
        ["show-config", "--config", str(config), "--data-dir", str(tmp_path), "--keepalive", "4"],
        env={"GOVEDGE_OUTLET_ID": "from-env", "GOVEDGE_TELEMETRY_INTERVAL_S": "3"},
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["outlet_id"] == "from-env"
    assert shown["keepalive_s"] == 4
    assert shown["telemetry_interval_s"] == 3.0


def test_bad_outlet_id_exits_2_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["run", "--outlet-id", "bad id!", "--data-dir", str(tmp_path)], env={}
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("edge-agent: error: invalid setting outlet_id")


def test_bad_toml_exits_2_with_one_line(tmp_path: Path) -> None:
    config = _toml(tmp_path, 'outlet_id = "unterminated\n')
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "is not valid TOML" in lines[0]
    assert proc.stdout == ""


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    config = _toml(tmp_path, 'outlet_id = "o"\nkeepalive = 3\n')
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(config_file=config)


WINDOWS_TOML = """
outlet_id = "o-1"

[[queue_business_types]]
code = "general"
prefix = "A"
name = "综合业务"

[[queue_business_types]]
code = "tax"
prefix = "D"
name = "税务"

[[queue_windows]]
window = "3"
business_types = ["general", "tax"]
pad = "window-3-pad"
led = "hall-led"
keypad = "keypad-bus"

[[queue_windows]]
window = "VIP"
business_types = ["tax"]
led = "hall-led"
led_address = 9
keypad = "keypad-bus"
keypad_address = 9
"""


def test_queue_windows_from_toml_with_their_devices(tmp_path: Path) -> None:
    settings = load_settings(config_file=_toml(tmp_path, WINDOWS_TOML), data_dir=tmp_path)
    three, vip = (w.to_window() for w in settings.queue_windows)
    assert (three.window, three.business_types, three.pad) == (
        "3",
        ("general", "tax"),
        "window-3-pad",
    )
    # a numbered window's bus addresses default to its number
    assert (three.led, three.led_address, three.keypad_address) == ("hall-led", 3, 3)
    assert (vip.pad, vip.led_address, vip.keypad_address) == (None, 9, 9)


def test_queue_windows_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "GOVEDGE_QUEUE_WINDOWS", json.dumps([{"window": "1", "business_types": ["social"]}])
    )
    settings = load_settings(outlet_id="o-1", data_dir=tmp_path)
    assert [w.window for w in settings.queue_windows] == ["1"]
    assert settings.queue_windows[0].business_types == ("social",)


def test_simulated_citizen_ratings_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOVEDGE_SIMULATE_RATINGS", "[5, 2, 4]")
    settings = load_settings(outlet_id="o-1", data_dir=tmp_path, simulate=True)
    assert settings.simulate_ratings == (5, 2, 4)


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        (
            [{"window": "3", "business_types": ["nope"]}],
            "invalid setting queue_windows[0].business_types (window '3'): 'nope' is not a "
            "configured business type",
        ),
        ([{"window": "3"}], "missing setting queue_windows[0].business_types"),
        (
            [{"window": "3", "business_types": []}],
            "invalid setting queue_windows[0].business_types",
        ),
        (
            [{"window": "3 号", "business_types": ["tax"]}],
            "invalid setting queue_windows[0].window",
        ),
        (
            [
                {"window": "3", "business_types": ["tax"]},
                {"window": "3", "business_types": ["tax"]},
            ],
            "queue_windows[1].window (window '3'): window '3' is declared twice",
        ),
        (
            [{"window": "VIP", "business_types": ["tax"], "keypad": "bus"}],
            "queue_windows[0].keypad_address (window 'VIP'): window 'VIP' is not a number",
        ),
        (
            [
                {"window": "3", "business_types": ["tax"], "pad": "p"},
                {"window": "4", "business_types": ["tax"], "pad": "p"},
            ],
            "queue_windows[1].pad (window '4'): 'p' already belongs to window '3'",
        ),
        (
            [
                {"window": "3", "business_types": ["tax"], "led": "l"},
                {"window": "4", "business_types": ["tax"], "led": "l", "led_address": 3},
            ],
            "queue_windows[1].led (window '4'): 'l' at address 3 already belongs to window '3'",
        ),
        (
            [{"window": "3", "business_types": ["tax"], "led_address": 4}],
            "queue_windows[0].led_address (window '3'): set led (the device_id) too",
        ),
        (
            [{"window": "3", "business_types": ["tax"], "keypad": "k", "keypad_address": 255}],
            "invalid setting queue_windows[0].keypad_address",
        ),
        ([{"window": "3", "business_types": ["tax"], "screen": "x"}], "queue_windows[0].screen"),
    ],
)
def test_bad_queue_windows_name_the_field(
    tmp_path: Path, windows: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(outlet_id="o-1", data_dir=tmp_path, queue_windows=windows)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_queue_window_in_toml_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        'outlet_id = "o"\n[[queue_windows]]\nwindow = "3"\nbusiness_types = ["general", "x"]\n',
    )
    result = CliRunner().invoke(
        main, ["show-config", "--config", str(config), "--data-dir", str(tmp_path)], env={}
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "edge-agent: error: invalid setting queue_windows[0].business_types (window '3'): "
        "'x' is not a configured business type "
        "(queue_business_types: general, social, realestate, tax)"
    )


def test_keys_dir_defaults_to_data_dir_tls_and_is_set_apart_by_toml_env_or_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = 'outlet_id = "o1"\ndata_dir = "/var/lib/govedge"\n'
    unset = load_settings(config_file=_toml(tmp_path, base))
    assert unset.keys_dir == Path("/var/lib/govedge/tls")  # every install before keys_dir
    from_cli_data_dir = load_settings(config_file=_toml(tmp_path, base), data_dir=Path("/d"))
    assert from_cli_data_dir.keys_dir == Path("/d/tls")

    config = _toml(tmp_path, base + 'keys_dir = "/var/lib/govedge-keys"\n')
    assert load_settings(config_file=config).keys_dir == Path("/var/lib/govedge-keys")
    monkeypatch.setenv("GOVEDGE_KEYS_DIR", "/srv/keys")
    assert load_settings(config_file=config).keys_dir == Path("/srv/keys")
    assert load_settings(config_file=config, keys_dir=Path("/k")).keys_dir == Path("/k")


# The environment (edge_agent/settings.py reads it itself, as pydantic-settings did).


def test_a_govedge_variable_naming_no_setting_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fleet server's variables share the prefix; a misspelt one is ignored as well.
    monkeypatch.setenv("GOVEDGE_FOO", "1")
    monkeypatch.setenv("GOVEDGE_KEEPALIVE", "3")
    monkeypatch.setenv("GOVEDGE_DATABASE_URL", "sqlite:///x")
    settings = load_settings(outlet_id="o-1", data_dir=tmp_path)
    assert settings == load_settings(outlet_id="o-1", data_dir=tmp_path, keepalive_s=30)
    assert settings.keepalive_s == 30


def test_variable_names_are_matched_without_regard_to_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("govedge_outlet_id", "lower")
    monkeypatch.setenv("Govedge_Simulate_Ratings", "[3]")
    settings = load_settings(data_dir=tmp_path)
    assert (settings.outlet_id, settings.simulate_ratings) == ("lower", (3,))


def test_keys_dir_unset_follows_the_data_dir_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOVEDGE_OUTLET_ID", "o-1")
    monkeypatch.setenv("GOVEDGE_DATA_DIR", "/var/lib/govedge")
    assert load_settings().keys_dir == Path("/var/lib/govedge/tls")
    assert load_settings(data_dir=Path("/d")).keys_dir == Path("/d/tls")  # CLI over env


@pytest.mark.parametrize(
    ("variable", "value", "setting", "expected"),
    [
        ("GOVEDGE_MQTT_URL", "mqtts://broker", "mqtt_port", 8883),
        ("GOVEDGE_TELEMETRY_INTERVAL_S", "7.5", "telemetry_interval_s", 7.5),
        ("GOVEDGE_TELEMETRY_INTERVAL_S", " 5 ", "telemetry_interval_s", 5.0),
        ("GOVEDGE_KEEPALIVE_S", "12.0", "keepalive_s", 12),
        ("GOVEDGE_OUTBOX_QUOTA_BYTES", "1048576", "outbox_quota_bytes", 1024 * 1024),
        ("GOVEDGE_LOG_LEVEL", "warning", "log_level", "WARNING"),
        ("GOVEDGE_LOG_FORMAT", "json", "log_format", "json"),
        ("GOVEDGE_SIMULATE", "yes", "simulate", True),
        ("GOVEDGE_SIMULATE", "0", "simulate", False),
        ("GOVEDGE_SIMULATE_PCSC", "false", "simulate_pcsc", False),
        ("GOVEDGE_PROFILES_DIR", "/p", "profiles_dir", Path("/p")),
        # text, not JSON: a simple setting's value is never decoded
        ("GOVEDGE_PROFILES_DIR", "null", "profiles_dir", Path("null")),
        ("GOVEDGE_EVALUATION_QR_URL", "", "evaluation_qr_url", ""),
        ("GOVEDGE_VOICE_DEVICE", "hw:1", "voice_device", "hw:1"),
        ("GOVEDGE_INSTALL_HOME", "/opt/x", "install_home", Path("/opt/x")),
        (
            "GOVEDGE_UPDATE_FIND_LINKS",
            '["/w1", "/w2"]',
            "update_find_links",
            (Path("/w1"), Path("/w2")),
        ),
        ("GOVEDGE_DEVICES", "[]", "devices", ()),
    ],
)
def test_a_setting_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    setting: str,
    expected: object,
) -> None:
    monkeypatch.setenv(variable, value)
    settings = load_settings(outlet_id="o-1", data_dir=tmp_path)
    assert getattr(settings, setting) == expected


def test_devices_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = {"profile": "p", "address": "10.0.0.1:9100", "device_id": "d1"}
    monkeypatch.setenv("GOVEDGE_DEVICES", json.dumps([device | {"settings": {"baud": 9600}}]))
    (only,) = load_settings(outlet_id="o-1", data_dir=tmp_path).devices
    assert (only.device_id, only.settings) == ("d1", {"baud": 9600})


def test_a_json_setting_replaces_the_toml_one_and_null_leaves_it_to_the_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _toml(tmp_path, 'outlet_id = "t"\nsimulate_ratings = [3]\n')
    monkeypatch.setenv("GOVEDGE_SIMULATE_RATINGS", "[4, 5]")
    assert load_settings(config_file=config, data_dir=tmp_path).simulate_ratings == (4, 5)
    monkeypatch.setenv("GOVEDGE_SIMULATE_RATINGS", "null")
    assert load_settings(config_file=config, data_dir=tmp_path).simulate_ratings == (3,)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # an empty value is a value, not "unset"
        (
            "GOVEDGE_KEEPALIVE_S",
            "",
            "invalid setting keepalive_s: Input should be a valid integer, "
            "unable to parse string as an integer",
        ),
        (
            "GOVEDGE_SIMULATE",
            "",
            "invalid setting simulate: Input should be a valid boolean, unable to interpret input",
        ),
        (
            "GOVEDGE_VOICE_DEVICE",
            "",
            "invalid setting voice_device: String should have at least 1 character",
        ),
        (
            "GOVEDGE_DEVICES",
            "",
            "invalid setting devices: GOVEDGE_DEVICES is not valid JSON "
            "(Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "GOVEDGE_TELEMETRY_INTERVAL_S",
            "[1]",
            "invalid setting telemetry_interval_s: Input should be a valid number, "
            "unable to parse string as a number",
        ),
        (
            "GOVEDGE_SIMULATE_PCSC",
            "null",
            "invalid setting simulate_pcsc: Input should be a valid boolean, "
            "unable to interpret input",
        ),
        (
            "GOVEDGE_QUEUE_WINDOWS",
            "nope",
            "invalid setting queue_windows: GOVEDGE_QUEUE_WINDOWS is not valid JSON "
            "(Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "GOVEDGE_QUEUE_BUSINESS_TYPES",
            "x",
            "invalid setting queue_business_types: GOVEDGE_QUEUE_BUSINESS_TYPES is not valid "
            "JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "GOVEDGE_SIMULATE_RATINGS",
            "[1,2",
            "invalid setting simulate_ratings: GOVEDGE_SIMULATE_RATINGS is not valid JSON "
            "(Expecting ',' delimiter: line 1 column 5 (char 4))",
        ),
        (
            "GOVEDGE_UPDATE_FIND_LINKS",
            "/srv/wheels",
            "invalid setting update_find_links: GOVEDGE_UPDATE_FIND_LINKS is not valid JSON "
            "(Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "govedge_devices",
            "[",
            "invalid setting devices: govedge_devices is not valid JSON "
            "(Expecting value: line 1 column 2 (char 1))",
        ),
        (
            "GOVEDGE_DEVICES",
            "[" * 100_000,
            "invalid setting devices: GOVEDGE_DEVICES is nested too deeply",
        ),
        ("GOVEDGE_DEVICES", '"str"', "invalid setting devices: Input should be a valid tuple"),
        (
            "GOVEDGE_SIMULATE_RATINGS",
            "[6]",
            "invalid setting simulate_ratings[0]: Input should be less than or equal to 5",
        ),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings(outlet_id="o-1", data_dir=tmp_path)
    assert str(info.value) == message


def test_json_that_is_not_json_exits_2_with_one_line(tmp_path: Path) -> None:
    # pydantic-settings raised its own SettingsError here, a traceback past the CLI.
    result = CliRunner().invoke(
        main,
        ["show-config", "--outlet-id", "o-1", "--data-dir", str(tmp_path)],
        env={"GOVEDGE_QUEUE_WINDOWS": "[{window: 1}]"},
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "edge-agent: error: invalid setting queue_windows: GOVEDGE_QUEUE_WINDOWS is not "
        "valid JSON (Expecting property name enclosed in double quotes: line 1 column 3 "
        "(char 2))\n"
    )


def test_the_json_settings_are_the_list_and_table_ones() -> None:
    # What the module docstring and docs/operations.md tell: these take JSON in the env.
    assert sorted(JSON_SETTINGS) == [
        "devices",
        "queue_business_types",
        "queue_windows",
        "simulate_ratings",
        "update_find_links",
    ]
    # No alias: GOVEDGE_<field name> is a setting's only variable.
    assert not [
        name
        for name, field in AgentSettings.model_fields.items()
        if field.alias or field.validation_alias
    ]


def test_direct_construction_reads_no_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests build AgentSettings(...) directly; only load_settings reads the environment.
    monkeypatch.setenv("GOVEDGE_KEEPALIVE_S", "5")
    monkeypatch.setenv("GOVEDGE_SIMULATE_PCSC", "false")
    settings = AgentSettings(outlet_id="o-1", data_dir=tmp_path)
    assert (settings.keepalive_s, settings.simulate_pcsc) == (30, None)
    assert settings.keys_dir == tmp_path / "tls"


@pytest.mark.parametrize("value", ["true", "5", "[1]", "{a = 1}"])
def test_a_data_dir_that_is_no_path_is_one_line(tmp_path: Path, value: str) -> None:
    # It was a TypeError from keys_dir's default (found by tests/security/test_fuzz_config.py).
    config = _toml(tmp_path, f'outlet_id = "o"\ndata_dir = {value}\n')
    with pytest.raises(SettingsError) as info:
        load_settings(config_file=config)
    assert str(info.value) == (
        "invalid setting data_dir: Input is not a valid path for <class 'pathlib.Path'> "
        "(and 1 more)"
    )
