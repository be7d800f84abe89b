"""Telemetry is decoded in one pass (pydantic's JSON parser, strict types) and falls
back to the full path otherwise: both must give the same message or the same counted
reason for every payload, so the faster route changes nothing an outlet could see."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import govedge_wire as wire
from govedge_wire import Kind
from govedge_wire.codec import _full

OUTLET = "township-dinghai-01"
TOPIC = wire.topic_for(OUTLET, Kind.TELEMETRY)
SAMPLE = json.loads(
    wire.encode(
        wire.Telemetry(
            outlet_id=OUTLET,
            session=7,
            seq=3,
            metrics={"cpu_percent": 12.5, "uptime_s": 86400, "ok": True, "mode": "x"},
            devices={"idr-1": {"reads_ok": 120, "connected": True, "firmware": "1.2.3"}},
        )
    )
)


def _outcome(decode: object, payload: bytes) -> object:
    try:
        return decode(payload)  # type: ignore[operator]
    except wire.WireError as exc:
        return exc.reason


def _both(payload: bytes) -> tuple[object, object]:
    return (
        _outcome(lambda p: wire.decode(TOPIC, p), payload),
        _outcome(lambda p: _full(Kind.TELEMETRY, OUTLET, p), payload),
    )


def _with(**changes: object) -> bytes:
    raw = {**SAMPLE, **changes}
    return json.dumps({k: v for k, v in raw.items() if v is not _DROP}).encode()


_DROP = object()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (_with(), None),
        (_with(schema_version=True), "invalid"),
        (_with(schema_version=1.0), "invalid"),
        (_with(schema_version=_DROP), "invalid"),
        (_with(kind=_DROP), "kind_mismatch"),
        (_with(kind="event"), "kind_mismatch"),
        (_with(outlet_id="bank-pds-icbc-01"), "outlet_mismatch"),
        (_with(schema_version=2), "unsupported_schema"),
        (_with(seq="5"), None),  # the full path's lax coercion still accepts it
        (_with(metrics={"lone": "\ud800"}), None),
        (b"[1]", "not_object"),
    ],
)
def test_known_edges_decode_as_the_full_path_does(payload: bytes, expected: str | None) -> None:
    fast, full = _both(payload)
    assert fast == full
    if expected is None:
        assert isinstance(fast, wire.Telemetry)
    else:
        assert fast == expected


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from([*SAMPLE, "metrics", "devices", "extra"]), value=_json)
def test_mutated_telemetry_decodes_as_the_full_path_does(field: str, value: object) -> None:
    payload = json.dumps({**SAMPLE, field: value}).encode()
    fast, full = _both(payload)
    assert fast == full


# Transaction acks (one per transaction an outbox sends) take the same route.
ACK_TOPIC = wire.topic_for(OUTLET, Kind.TRANSACTION_ACK)
ACK = json.loads(
    wire.encode(
        wire.TransactionAck(
            outlet_id=OUTLET, session=7, seq=3, tx_id="case-0001-abcd", status="accepted"
        )
    )
)


def _ack_both(payload: bytes) -> tuple[object, object]:
    return (
        _outcome(lambda p: wire.decode(ACK_TOPIC, p), payload),
        _outcome(lambda p: _full(Kind.TRANSACTION_ACK, OUTLET, p), payload),
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"status": "rejected", "reason": "bad item"}, None),
        ({"status": "lost"}, "invalid"),
        ({"tx_id": 5}, "invalid"),
        ({"session": "7"}, None),  # the full path's lax coercion still accepts it
        ({"kind": "tx"}, "kind_mismatch"),
        ({"outlet_id": "bank-pds-icbc-01"}, "outlet_mismatch"),
        ({"schema_version": 2}, "unsupported_schema"),
    ],
)
def test_known_ack_edges_decode_as_the_full_path_does(
    changes: dict[str, object], expected: str | None
) -> None:
    fast, full = _ack_both(json.dumps({**ACK, **changes}).encode())
    assert fast == full
    if expected is None:
        assert isinstance(fast, wire.TransactionAck)
    else:
        assert fast == expected


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from([*ACK, "extra"]), value=_json)
def test_mutated_acks_decode_as_the_full_path_does(field: str, value: object) -> None:
    fast, full = _ack_both(json.dumps({**ACK, field: value}).encode())
    assert fast == full
