"""Cheap generators of malformed uplink payloads, one valid template per ingested kind.

Each payload starts from a valid message (so the mutation reaches deep: the model,
presence, the transaction body) and breaks it one way: raw garbage, a non-object, a
dropped field, a field set to a hostile value, a truncated or bit-flipped encoding, a
wrong kind / outlet / schema version, or a broken transaction body. Generation is a
handful of ``sampled_from``/``integers`` draws, so 10,000 examples cost little.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from govedge_wire import Kind, now_ms, topic_for

OUTLET = "fuzz-1"
SESSION = 1

# Values that have broken parsers somewhere: wrong types, extremes, deep nesting.
HOSTILE: list[Any] = [
    None, True, -1, 0, 2**63, -(2**63) - 1, 2**64, 1e308, -0.0, 1.5, "", " ", "\x00",
    "x" * 300, "\U0001d54f" * 70, "../../etc/passwd", "' OR 1=1 --", [], [None], {}, {"": 1},
    {"a": {"b": {"c": []}}}, [[[[[[[[[[[]]]]]]]]]]], "NaN", "330106199001011237",
]  # fmt: skip


def template(kind: str, *, seq: int = 1) -> dict[str, Any]:
    """A valid message dict for ``kind`` (an uplink kind, or a tx body shape)."""
    envelope: dict[str, Any] = {
        "schema_version": 1,
        "msg_id": "0123456789abcdef",
        "ts": now_ms(),
        "outlet_id": OUTLET,
        "session": SESSION,
        "seq": seq,
    }
    if kind == "birth":
        return envelope | {
            "kind": "birth",
            "agent_version": "0.1.0",
            "hostname": "pc",
            "os": "Debian 12",
            "devices": [{"device_id": "r1", "kind": "id_card_reader", "health": {"ok": 1}}],
            "telemetry_interval_s": 5.0,
            "keepalive_s": 30,
        }
    if kind == "death":
        return envelope | {"kind": "death", "reason": "will"}
    if kind == "telemetry":
        return envelope | {
            "kind": "telemetry",
            "metrics": {"cpu_percent": 1.5, "queue_depth": 2},
            "devices": {"r1": {"reads_total": 3, "state": "ready"}},
        }
    if kind == "event":
        return envelope | {
            "kind": "event",
            "name": "device.unplugged",
            "severity": "warning",
            "device_id": "r1",
            "data": {"port": "usb1"},
        }
    if kind == "cmdres":
        return envelope | {"kind": "cmdres", "cmd_id": "c1", "status": "ok", "detail": {}}
    tx: dict[str, Any] = envelope | {
        "kind": "tx",
        "tx_id": "tx-fuzz-0001",
        "tx_kind": kind,
        "created_ts": now_ms(),
        "body": {},
    }
    if kind == "submission":
        tx["body"] = {
            "item_code": "000101",
            "region_code": "330902",
            "applicant": {"name": "张三丰", "id_number": "330106199001011237"},
            "materials": [{"name": "身份证复印件", "ref": "mat-00000001", "pages": 1}],
            "window": "W3",
            "clerk": "clerk-7",
        }
    elif kind == "evaluation":
        tx["body"] = {
            "level_code": 1,
            "channel": "4",
            "window": "W3",
            "evaluated_ts": now_ms(),
            "tags": ["态度好"],
        }
    else:
        tx["tx_kind"] = "queue.called"
        tx["body"] = {"ticket": "A001", "window": "W3"}
    return tx


UPLINK = ["birth", "death", "telemetry", "event", "cmdres"]
TX_SHAPES = ["submission", "evaluation", "queue"]
ALL_KINDS = UPLINK + TX_SHAPES


def topic_of(kind: str) -> str:
    """The topic a payload of ``kind`` (uplink kind or tx shape) is published on."""
    return topic_for(OUTLET, Kind.TRANSACTION if kind in TX_SHAPES else Kind(kind))


def _break(message: dict[str, Any], choice: int, key_pick: int, value: Any, cut: int) -> bytes:
    """Apply mutation ``choice`` to a valid ``message``; returns the bytes to publish."""
    target: dict[str, Any] = message
    if choice >= 6 and isinstance(message.get("body"), dict) and message["body"]:
        target = message["body"]  # mutate inside the transaction body
        choice -= 6
        if isinstance(target.get("applicant"), dict) and key_pick % 3 == 0:
            target = target["applicant"]
    keys = sorted(target)
    key = keys[key_pick % len(keys)] if keys else "x"
    if choice == 0:
        target.pop(key, None)
    elif choice in (1, 6):
        target[key] = value
    elif choice == 2:
        target[f"extra_{key_pick}"] = value
    elif choice == 3:
        encoded = json.dumps(message, ensure_ascii=False).encode()
        return encoded[: cut % max(1, len(encoded))]
    elif choice == 4:
        encoded = bytearray(json.dumps(message).encode())
        encoded[cut % len(encoded)] ^= 1 << (key_pick % 8)
        return bytes(encoded)
    elif choice == 5:
        field = ["kind", "outlet_id", "schema_version", "session", "seq", "msg_id"][key_pick % 6]
        message[field] = value
    else:  # choice 7 after the body shift: the body itself replaced
        message["body"] = value
    return json.dumps(message, ensure_ascii=False).encode()


@st.composite
def malformed(draw: st.DrawFn, kind: str) -> tuple[str, bytes]:
    """A (topic, payload) pair: a broken message of ``kind``."""
    shape = draw(st.integers(0, 19))
    if shape == 0:
        return topic_of(kind), draw(st.binary(max_size=48))
    if shape == 1:
        return topic_of(kind), json.dumps(draw(st.sampled_from(HOSTILE))).encode()
    choice = draw(st.integers(0, 7 if kind in TX_SHAPES else 5))
    key_pick = draw(st.integers(0, 63))
    value = draw(st.sampled_from(HOSTILE))
    cut = draw(st.integers(0, 4096))
    seq = draw(st.integers(0, 5))
    return topic_of(kind), _break(template(kind, seq=seq), choice, key_pick, value, cut)
