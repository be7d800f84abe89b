"""The desired-config contract: layering, the canonical hash, the signed envelope and
every reason a config is refused (docs/config.md)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agent.settings_models import BusinessTypeSetting, QueueWindowSetting
from govedge_wire.config import (
    MAX_CONFIG_BYTES,
    REFUSAL_REASONS,
    SCHEMA_PATH,
    ConfigRefused,
    DesiredConfig,
    QueueWindow,
    Scope,
    ScopeError,
    SignedConfig,
    canonical_json,
    config_hash,
    key_id_for,
    layers_for,
    merge_layers,
    parse_scope,
    provenance,
    schema_document,
    schema_text,
    sign_config,
    signed_payload,
    verify_config,
)
from govedge_wire.config import __main__ as schema_cli

OUTLET = "township-dinghai-01"
SERVER_KEY = Ed25519PrivateKey.generate()
SERVER_KEY_ID = key_id_for(SERVER_KEY.public_key())
KEYS = {SERVER_KEY_ID: SERVER_KEY.public_key()}

FULL: dict[str, Any] = {
    "queue": {
        "business_types": [
            {"code": "general", "prefix": "A", "name": "综合业务"},
            {"code": "social", "prefix": "B", "name": "社保医保"},
        ],
        "windows": [
            {"window": "1", "business_types": ["general"], "pad": "pad-1", "led": "led-1"},
            {"window": "2", "business_types": ["general", "social"], "keypad": "kp-1"},
        ],
        "announcement": "请{ticket}号到{window}号窗口办理业务",
        "voice": {"enabled": True, "volume": 70},
    },
    "evaluation": {
        "level_coding": "zhejiang",
        "channels": {"4": "政务大厅平板电脑", "7": "系统默认评价"},
        "default_channels": ["7"],
        "indicator_tags": [{"code": "attitude", "label": "服务态度"}],
        "rectification_days": 15,
        "rectification_working_days": False,
    },
    "telemetry": {"interval_s": 30.0},
    "outbox": {"rate_per_s": 20.0, "quota_bytes": 2**31},
    "log_level": "INFO",
    "devices": {"haochaping-pad": {"baudrate": 19200, "ack_timeout": 2.5}},
    "opening_hours": {
        "time_zone": "Asia/Shanghai",
        "mon": ["08:30-12:00", "13:30-17:30"],
        "sat": [],
        "quiet_window": "02:00-04:00",
    },
    "alerts": {"outlet_offline": {"after_s": 900, "severity": "critical"}},
}


def _effective(store: dict[str, dict[str, Any]], region: str | None, kind: str | None) -> Any:
    scopes = layers_for(OUTLET, region, kind)
    return merge_layers([store[str(s)] for s in scopes if str(s) in store])


# ---------------------------------------------------------------- layers and merge


def test_layers_run_global_regions_shortest_first_kind_outlet() -> None:
    assert [str(s) for s in layers_for(OUTLET, "330106", "kiosk")] == [
        "global", "region:33", "region:330", "region:3301", "region:33010", "region:330106",
        "kind:kiosk", f"outlet:{OUTLET}",
    ]  # fmt: skip
    assert [str(s) for s in layers_for(OUTLET, None, None)] == ["global", f"outlet:{OUTLET}"]


def test_outlet_beats_region_beats_global_and_region_matches_by_prefix() -> None:
    store: dict[str, dict[str, Any]] = {
        "global": {"log_level": "WARNING", "telemetry": {"interval_s": 60.0}},
        "region:33": {"log_level": "INFO", "evaluation": {"level_coding": "zhejiang"}},
        f"outlet:{OUTLET}": {"log_level": "DEBUG"},
    }
    zhejiang = _effective(store, "330106", None)
    assert zhejiang == {
        "log_level": "DEBUG",
        "telemetry": {"interval_s": 60.0},
        "evaluation": {"level_coding": "zhejiang"},
    }
    del store[f"outlet:{OUTLET}"]
    assert _effective(store, "330106", None)["log_level"] == "INFO"
    anhui = _effective(store, "340104", None)
    assert anhui == {"log_level": "WARNING", "telemetry": {"interval_s": 60.0}}


def test_kind_sits_between_region_and_outlet() -> None:
    store: dict[str, dict[str, Any]] = {
        "region:3301": {"log_level": "INFO"},
        "kind:kiosk": {"log_level": "ERROR"},
    }
    assert _effective(store, "330106", "kiosk")["log_level"] == "ERROR"
    assert _effective(store, "330106", "township_centre")["log_level"] == "INFO"


def test_a_list_replaces_and_objects_merge() -> None:
    one = {"window": "1", "business_types": ["general"]}
    two = {"window": "2", "business_types": ["general"]}
    three = {"window": "3", "business_types": ["general"]}
    merged = merge_layers(
        [
            {"queue": {"windows": [one, two], "voice": {"enabled": True, "volume": 50}}},
            {"queue": {"windows": [three], "voice": {"volume": 80}}},
        ]
    )
    assert merged == {
        "queue": {"windows": [three], "voice": {"enabled": True, "volume": 80}},
    }


def test_none_deletes_a_key_and_inputs_stay_unchanged() -> None:
    base = {"log_level": "DEBUG", "queue": {"voice": {"enabled": True, "volume": 50}}}
    override = {"log_level": None, "queue": {"voice": {"volume": None}}, "outbox": None}
    before = json.dumps([base, override], sort_keys=True)
    merged = merge_layers([base, override])
    assert merged == {"queue": {"voice": {"enabled": True}}}
    assert json.dumps([base, override], sort_keys=True) == before
    merged["queue"]["voice"]["enabled"] = False
    assert base["queue"]["voice"]["enabled"] is True  # type: ignore[index]


def test_provenance_names_the_scope_of_every_leaf() -> None:
    region, outlet = Scope("region", "33"), Scope("outlet", OUTLET)
    layers: list[tuple[Scope, dict[str, Any]]] = [
        (Scope("global"), {"log_level": "INFO", "queue": {"voice": {"enabled": True}}}),
        (region, {"queue": {"voice": {"volume": 60}, "windows": [{"window": "9"}]}}),
        (outlet, {"log_level": "DEBUG", "queue": {"windows": None}}),
    ]
    assert provenance(layers) == {
        "log_level": outlet,
        "queue.voice.enabled": Scope("global"),
        "queue.voice.volume": region,
    }


@pytest.mark.parametrize(
    "text", ["global", "region:33", "region:330106000000", "kind:kiosk", f"outlet:{OUTLET}"]
)
def test_scopes_parse_and_print_back(text: str) -> None:
    assert str(parse_scope(text)) == text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is not global"),
        ("province", "is not global"),
        ("global:x", "global takes no value"),
        ("country:cn", "unknown scope level"),
        ("region:3", "2-12 digits"),
        ("region:33a", "2-12 digits"),
        ("region:3301060000001", "2-12 digits"),
        ("kind:", "outlet kind"),
        ("kind:_hidden", "outlet kind"),
        ("kind:" + "k" * 33, "outlet kind"),
        ("outlet:_fleet", "outlet id"),
        ("outlet:a/b", "outlet id"),
        ("outlet:a+b", "outlet id"),
    ],
)
def test_bad_scopes_are_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(ScopeError, match=says):
        parse_scope(text)


def test_layers_for_refuses_a_bad_region_code() -> None:
    with pytest.raises(ScopeError, match="2-12 digits"):
        layers_for(OUTLET, "3", None)


# ---------------------------------------------------------------- the model and schema


def test_the_full_example_validates_and_every_part_is_optional() -> None:
    assert DesiredConfig.model_validate(FULL).queue is not None
    assert DesiredConfig.model_validate({}) == DesiredConfig()
    assert DesiredConfig.model_validate({"queue": {"voice": {"volume": 10}}}).queue


@pytest.mark.parametrize(
    "bad",
    [
        {"unknown": 1},
        {"queue": {"voice": {"volume": 101}}},
        {"queue": {"announcement": "请{ticket}号到{room}"}},
        {"queue": {"announcement": "请到{window}号窗口"}},
        {"queue": {"windows": [{"window": "1", "business_types": ["x"]}] * 2}},
        {"queue": {"business_types": [{"code": "a", "prefix": "A", "name": "n"}] * 2}},
        {
            "queue": {
                "business_types": [{"code": "a", "prefix": "A", "name": "n"}],
                "windows": [{"window": "1", "business_types": ["b"]}],
            }
        },
        {"opening_hours": {"mon": ["08:30-12:00", "11:00-13:00"]}},
        {"opening_hours": {"mon": ["12:00-08:00"]}},
        {"opening_hours": {"mon": ["8:30-12:00"]}},
        {"opening_hours": {"time_zone": "Mars/Olympus"}},
        {"devices": {"Bad_Profile": {"baudrate": 9600}}},
        {"devices": {"haochaping-pad": {"tags": [1, 2]}}},
        {"evaluation": {"level_coding": "upside_down"}},
        {"log_level": "LOUD"},
    ],
)
def test_invalid_documents_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DesiredConfig.model_validate(bad)


def test_the_shipped_schema_is_current() -> None:
    # Stale? Run: python -m govedge_wire.config --write-schema
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text()
    assert schema_cli.main(["--check"]) == 0


def test_the_schema_check_fails_on_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "desired-config.schema.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(schema_cli, "SCHEMA_PATH", stale)
    assert schema_cli.main(["--check"]) == 1
    assert schema_cli.main(["--write-schema"]) == 0
    assert schema_cli.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == schema_text()


def test_a_quiet_window_may_cross_midnight() -> None:
    hours = DesiredConfig.model_validate({"opening_hours": {"quiet_window": "23:00-05:00"}})
    assert hours.opening_hours is not None
    assert hours.opening_hours.quiet_window == "23:00-05:00"


def test_the_schema_accepts_the_example_and_refuses_unknown_keys() -> None:
    validator = jsonschema.Draft202012Validator(schema_document())
    validator.validate(FULL)
    assert not validator.is_valid({"queue": {"voice": {"loud": True}}})
    assert not validator.is_valid({"opening_hours": {"mon": ["25:00-26:00"]}})


def test_the_agent_settings_are_the_wire_shapes() -> None:
    # One source for the schema and the agent's own settings (edge_agent/settings_models.py).
    assert issubclass(QueueWindowSetting, QueueWindow)
    window = QueueWindowSetting.model_validate(FULL["queue"]["windows"][0])
    assert window.to_window().led_address == 1
    assert BusinessTypeSetting.model_validate(FULL["queue"]["business_types"][0]).prefix == "A"


# ---------------------------------------------------------------- canonical form and hash


def test_canonical_json_is_compact_sorted_utf8() -> None:
    assert canonical_json({"b": [1, 2.5], "a": "窗口"}) == '{"a":"窗口","b":[1,2.5]}'.encode()


@pytest.mark.parametrize(
    ("value", "error"),
    [({"x": float("nan")}, ValueError), ({"x": [float("inf")]}, ValueError), ({1: 2}, TypeError)],
)
def test_canonical_json_refuses_what_json_cannot_carry(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        canonical_json(value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)  # fmt: skip


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


@given(st.dictionaries(st.text(max_size=6), JSON, max_size=6))
def test_the_hash_does_not_depend_on_key_order(document: dict[str, Any]) -> None:
    assert config_hash(_reversed(document)) == config_hash(document)
    assert json.loads(canonical_json(document)) == document


def test_the_hash_changes_with_the_content() -> None:
    assert config_hash({"log_level": "INFO"}) != config_hash({"log_level": "DEBUG"})
    assert len(config_hash({})) == 64


# ---------------------------------------------------------------- sign and verify


def _signed(version: int = 3, outlet: str = OUTLET, config: Any = None) -> SignedConfig:
    return sign_config(
        SERVER_KEY,
        key_id=SERVER_KEY_ID,
        outlet_id=outlet,
        version=version,
        config=FULL if config is None else config,
        issued_at=datetime(2026, 12, 4, 9, 30, tzinfo=UTC),
    )


def _resigned(fields: dict[str, Any], key: Ed25519PrivateKey = SERVER_KEY) -> bytes:
    """An envelope with ``fields`` as given, correctly hashed and signed: a server bug."""
    fields = dict(fields, hash=config_hash(fields["config"]))
    fields["signature"] = base64.b64encode(key.sign(signed_payload(fields))).decode()
    return canonical_json(fields)


def _refused(envelope: bytes, reason: str, *, applied: int | None = 2) -> None:
    result = None
    with pytest.raises(ConfigRefused) as caught:
        result = verify_config(envelope, KEYS, outlet_id=OUTLET, applied_version=applied)
    assert caught.value.reason == reason
    assert result is None


def test_a_signed_config_verifies_to_the_same_config() -> None:
    signed = _signed()
    assert signed.hash == config_hash(signed.config)
    config = verify_config(signed.to_bytes(), KEYS, outlet_id=OUTLET, applied_version=2)
    assert config == DesiredConfig.model_validate(FULL)
    first = verify_config(signed.to_bytes(), KEYS, outlet_id=OUTLET, applied_version=None)
    assert first == config


def test_the_agent_may_hold_several_keys_during_a_rotation() -> None:
    new_key = Ed25519PrivateKey.generate()
    new_id = key_id_for(new_key.public_key())
    signed = sign_config(new_key, key_id=new_id, outlet_id=OUTLET, version=4, config=FULL)
    keys = {**KEYS, new_id: new_key.public_key()}
    assert verify_config(signed.to_bytes(), keys, outlet_id=OUTLET, applied_version=3)
    assert new_id != SERVER_KEY_ID
    assert new_id.startswith("ed25519-")


def test_signing_refuses_an_invalid_or_oversized_config() -> None:
    with pytest.raises(ValidationError):
        _signed(config={"queue": {"voice": {"volume": -1}}})
    huge = {"alerts": {f"rule_{n}": {"note": "x" * 1000} for n in range(300)}}
    with pytest.raises(ValueError, match="exceeds"):
        _signed(config=huge)


def test_only_set_keys_are_signed() -> None:
    signed = _signed(config={"queue": {"voice": {"volume": 5}}, "log_level": None})
    assert signed.config == {"queue": {"voice": {"volume": 5}}}


def test_every_refusal_reason_is_tested() -> None:
    assert set(REFUSAL_REASONS) == {
        "oversize", "garbage", "unknown_key", "bad_signature", "hash_mismatch",
        "other_outlet", "replayed", "schema",
    }  # fmt: skip


def test_refused_signed_by_an_unknown_key() -> None:
    other = Ed25519PrivateKey.generate()
    signed = sign_config(
        other, key_id=key_id_for(other.public_key()), outlet_id=OUTLET, version=3, config=FULL
    )
    _refused(signed.to_bytes(), "unknown_key")


def test_refused_signed_by_another_key_claiming_the_known_key_id() -> None:
    fields = _signed().model_dump(mode="json")
    _refused(_resigned(fields, key=Ed25519PrivateKey.generate()), "bad_signature")


def test_refused_a_signed_field_changed() -> None:
    fields = _signed(version=3).model_dump(mode="json")
    _refused(canonical_json(dict(fields, version=9)), "bad_signature")
    _refused(canonical_json(dict(fields, outlet_id="someone-else")), "bad_signature")


def test_refused_for_another_outlet() -> None:
    _refused(_signed(outlet="township-putuo-07").to_bytes(), "other_outlet")


@pytest.mark.parametrize("version", [1, 2])
def test_refused_a_replayed_version_not_above_the_applied(version: int) -> None:
    _refused(_signed(version=version).to_bytes(), "replayed", applied=2)


def test_a_replay_names_its_version_and_hash_so_the_retained_copy_is_recognised() -> None:
    signed = _signed(version=2)
    with pytest.raises(ConfigRefused) as caught:
        verify_config(signed.to_bytes(), KEYS, outlet_id=OUTLET, applied_version=2)
    assert (caught.value.version, caught.value.hash) == (2, signed.hash)


def test_refused_a_tampered_config_with_the_old_hash() -> None:
    fields = _signed().model_dump(mode="json")
    fields["config"]["log_level"] = "DEBUG"
    _refused(canonical_json(fields), "hash_mismatch")


def test_refused_a_tampered_hash() -> None:
    fields = _signed().model_dump(mode="json")
    fields["config"]["log_level"] = "DEBUG"
    fields["hash"] = config_hash(fields["config"])
    _refused(canonical_json(fields), "bad_signature")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[]",
        b"null",
        b'{"version": NaN}',
        b'{"version": 1e999}',
        b"{}",
        b"[" * 100_000,
    ],
)
def test_refused_garbage(payload: bytes) -> None:
    _refused(payload, "garbage")


def test_refused_an_envelope_with_an_extra_field_or_a_bad_signature_text() -> None:
    fields = _signed().model_dump(mode="json")
    _refused(canonical_json(dict(fields, comment="hi")), "garbage")
    _refused(canonical_json(dict(fields, signature="not base64")), "garbage")


def test_refused_oversized_before_anything_else() -> None:
    _refused(b" " * (MAX_CONFIG_BYTES + 1), "oversize")


def test_refused_a_signed_config_the_schema_does_not_allow() -> None:
    # A newer server may send keys this agent does not know: refused, never half-applied.
    fields = _signed().model_dump(mode="json")
    fields["config"]["queue"]["lights"] = "on"
    _refused(_resigned(fields), "schema")


# ---------------------------------------------------------------- on the wire


def test_the_envelope_survives_the_down_config_message_and_a_report_decodes() -> None:
    from govedge_wire import ConfigReport, Kind, decode, encode, topic_for
    from govedge_wire.config import config_message, envelope_bytes

    signed = sign_config(SERVER_KEY, key_id=SERVER_KEY_ID, outlet_id=OUTLET, version=4, config=FULL)
    message = config_message(signed, session=1_700_000_000_000, seq=9)
    received = decode(topic_for(OUTLET, Kind.DESIRED_CONFIG), encode(message))
    assert isinstance(received, type(message))
    config = verify_config(envelope_bytes(received), KEYS, outlet_id=OUTLET, applied_version=3)
    assert config.model_dump(mode="json", exclude_unset=True) == signed.config

    report = ConfigReport(
        outlet_id=OUTLET,
        session=2,
        seq=5,
        status="refused",
        config_version=3,
        offered_version=4,
        offered_hash=signed.hash,
        reason="bad_signature",
        config_key_ids=[SERVER_KEY_ID],
    )
    back = decode(topic_for(OUTLET, Kind.CONFIG_REPORT), encode(report))
    assert back == report
    assert topic_for(OUTLET, Kind.CONFIG_REPORT).endswith("/up/reported")
