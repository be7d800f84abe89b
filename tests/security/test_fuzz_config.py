"""Fuzzing the configuration files: the server's targets file and the agent's TOML.

Like the payload fuzzing, each example starts from a valid file and breaks it one way
(a key set to a hostile value, a key dropped, the text truncated or a byte flipped).
The property: loading either succeeds, and then what was loaded is usable (the HTTP
client of every target is built; the agent's broker address is read), or fails with
the one documented error (``TargetsFileError``, ``SettingsError``); never anything
else. Examples are bounded so the module takes seconds.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.errors import SettingsError
from edge_agent.settings import load_settings
from fleet_server.routing.http_adapter import HttpJsonAdapter
from fleet_server.routing.targets import TargetsFileError, load_targets
from tests.security.fuzzkit import HOSTILE

EXAMPLES = int(os.environ.get("GOVEDGE_CONFIG_FUZZ_EXAMPLES", "300"))
EXTRA: list[Any] = [
    "Bearer …", "a\r\nb", "ftp://x/", "https://u:p@x/", "http://", "令牌", "Host",
    "Idempotency-Key", "X-Govedge-Signature", 1e-9, 10**30, "0123456789abcdef", "ZZ_UNSET",
]  # fmt: skip
VALUES = st.sampled_from(HOSTILE + EXTRA)

TARGET: dict[str, Any] = {
    "name": "zj-platform",
    "url": "https://platform.example/api/cases",
    "headers": {"Authorization": "Bearer abc"},
    "hmac_secret": "0123456789abcdef0123",
    "signature_header": "X-Govedge-Signature",
    "timeout_s": 10,
    "connect_timeout_s": 3,
    "max_attempts": 12,
    "backoff_base_s": 1,
    "backoff_max_s": 600,
    "breaker_threshold": 5,
    "breaker_cooldown_s": 30,
}
AGENT: dict[str, Any] = {
    "mqtt_url": "mqtt://127.0.0.1:1883",
    "outlet_id": "fuzz-1",
    "data_dir": "/tmp/govedge-fuzz",
    "telemetry_interval_s": 30.0,
    "keepalive_s": 30,
    "log_level": "INFO",
    "timezone": "Asia/Shanghai",
    "local_api_port": 8765,
    "outbox_rate_per_s": 20.0,
    "devices": [{"profile": "haochaping-pad", "address": "10.0.0.5:9000", "device_id": "pad1"}],
    "queue_windows": [{"window": "1", "business_types": ["general"]}],
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if not math.isnan(value) else "nan"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{" + inner + "}"
    return '""'


def _toml(data: dict[str, Any]) -> str:
    return "".join(
        f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in data.items() if v is not None
    )


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    key = draw(st.sampled_from(sorted(data)))
    how = draw(st.sampled_from(["set", "drop", "nested", "extra"]))
    if how == "set":
        data[key] = draw(VALUES)
    elif how == "drop":
        del data[key]
    elif how == "nested" and isinstance(data[key], dict | list):
        holder = data[key] if isinstance(data[key], dict) else data[key][0]
        if isinstance(holder, dict) and holder:
            holder[draw(st.sampled_from(sorted(holder)))] = draw(VALUES)
    else:
        data[draw(st.sampled_from(["colour", "", "Authorization"]))] = draw(VALUES)
    return data


def _garble(draw: st.DrawFn, text: str) -> bytes:
    raw = text.encode()
    how = draw(st.sampled_from(["keep", "keep", "truncate", "flip"]))
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    return raw


@st.composite
def targets_files(draw: st.DrawFn) -> tuple[str, bytes]:
    target = draw(_mutated(TARGET))
    root: dict[str, Any] = {"evaluation_target": "zj-platform", "targets": [target]}
    fmt = draw(st.sampled_from(["json", "yaml", "toml"]))
    if fmt == "toml":
        text = f'evaluation_target = "zj-platform"\n[[targets]]\n{_toml(target)}'
    else:
        text = json.dumps(root, ensure_ascii=False)  # JSON is also YAML
    return fmt, _garble(draw, text)


@st.composite
def agent_files(draw: st.DrawFn) -> bytes:
    return _garble(draw, _toml(draw(_mutated(AGENT))))


_FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_FUZZ
@given(case=targets_files())
def test_targets_file_loads_usable_or_fails_clearly(
    tmp_path: Path, case: tuple[str, bytes]
) -> None:
    fmt, raw = case
    path = tmp_path / f"targets.{fmt}"
    path.write_bytes(raw)
    try:
        config = load_targets(path)
    except TargetsFileError as exc:
        message = str(exc)
    else:
        message = None
    if message is not None:
        assert message.startswith(str(path))
        return
    for target in config.targets:  # accepted means deliverable: the client builds
        HttpJsonAdapter(target).close()


@_FUZZ
@given(raw=agent_files())
def test_agent_toml_loads_usable_or_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: bytes
) -> None:
    for name in [n for n in os.environ if n.startswith("GOVEDGE_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "agent.toml"
    path.write_bytes(raw)
    try:
        loaded = load_settings(config_file=path)
    except SettingsError as exc:
        message = str(exc)
    else:
        message = None
    if message is not None:
        assert message.strip()
        return
    assert loaded.mqtt_host
    assert 0 < loaded.mqtt_port < 65536
    for device in loaded.devices:
        device.to_config()
