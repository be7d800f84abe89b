"""Settings: CLI > env > TOML > defaults; bad values give one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edge_agent.cli import main
from edge_agent.errors import SettingsError
from edge_agent.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        "GOVEDGE_MQTT_URL",
        "GOVEDGE_OUTLET_ID",
        "GOVEDGE_DATA_DIR",
        "GOVEDGE_KEYS_DIR",
        "GOVEDGE_TELEMETRY_INTERVAL_S",
        "GOVEDGE_KEEPALIVE_S",
        "GOVEDGE_LOG_LEVEL",
    ]:
        monkeypatch.delenv(name, raising=False)


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
