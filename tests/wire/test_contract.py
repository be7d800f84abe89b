"""Contract tests: every message kind round-trips, and every kind of bad input is
rejected with its counted reason (never another exception)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import govedge_wire as wire
from govedge_wire import Kind

OUTLET = "township-dinghai-01"
REASONS = {
    "too_large", "bad_topic", "not_json", "not_object", "invalid",
    "unsupported_schema", "kind_mismatch", "outlet_mismatch",
}  # fmt: skip


def _samples() -> dict[Kind, wire.Message]:
    common = {"outlet_id": OUTLET, "session": 7, "seq": 3}
    return {
        Kind.BIRTH: wire.Birth(
            **common,
            agent_version="0.1.0",
            hostname="pc-01",
            os="Linux 6.1",
            devices=[wire.DeviceInfo(device_id="idr-1", kind="id_card_reader")],
            telemetry_interval_s=30,
            keepalive_s=30,
        ),
        Kind.DEATH: wire.Death(**common, reason="will"),
        Kind.TELEMETRY: wire.Telemetry(**common, metrics={"cpu_percent": 12.5, "ok": True}),
        Kind.EVENT: wire.Event(**common, name="device.unplugged", device_id="printer-1"),
        Kind.TRANSACTION: wire.Transaction(
            **common,
            tx_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            tx_kind="evaluation",
            created_ts=wire.now_ms(),
            body={"level": 5, "window": "3"},
        ),
        Kind.COMMAND_RESULT: wire.CommandResult(**common, cmd_id="c-1", status="ok"),
        Kind.CONFIG_REPORT: wire.ConfigReport(
            **common, status="applied", config_version=4, config_hash="ab" * 32
        ),
        Kind.DESIRED_CONFIG: wire.DesiredConfig(**common, version=4, body={"telemetry": 30}),
        Kind.COMMAND: wire.Command(**common, cmd_id="c-1", name="rebirth"),
        Kind.TRANSACTION_ACK: wire.TransactionAck(
            **common, tx_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0", status="accepted"
        ),
        Kind.TRANSACTION_RESULT: wire.TransactionResult(
            **common,
            tx_id="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            outcome="delivered",
            case_number="330902-2026-000123",
        ),
        Kind.UPDATE_OFFER: wire.UpdateOffer(
            **common,
            campaign_id=3,
            version="1.4.0",
            manifest={"version": "1.4.0"},
            artifact_path="/api/v1/releases/1.4.0/artifact",
            not_before_ts=wire.now_ms(),
            window_end_ts=wire.now_ms() + 3_600_000,
        ),
        Kind.UPDATE_STATUS: wire.UpdateStatus(
            **common,
            campaign_id=3,
            version="1.4.0",
            running_version="1.3.2",
            state="rolled_back",
            reason="not_healthy",
        ),
        Kind.SERVER_STATE: wire.ServerState(server_id="fleet-1", online=True),
    }


SAMPLES = _samples()


def test_every_kind_has_a_sample_and_a_delivery_rule() -> None:
    assert set(SAMPLES) == set(Kind)
    assert set(wire.DELIVERY) == set(Kind)


@pytest.mark.parametrize("kind", list(Kind))
def test_round_trip(kind: Kind) -> None:
    message = SAMPLES[kind]
    topic = wire.topic_for(OUTLET, kind)
    decoded = wire.decode(topic, wire.encode(message))
    assert decoded == message
    assert decoded.kind == kind.value


@pytest.mark.parametrize("kind", list(Kind))
def test_oversized_payload_is_rejected_before_parsing(kind: Kind) -> None:
    payload = b"{" + b" " * wire.MAX_PAYLOAD_BYTES + b"}"
    with pytest.raises(wire.PayloadTooLarge) as caught:
        wire.decode(wire.topic_for(OUTLET, kind), payload)
    assert caught.value.reason == "too_large"


def test_encode_refuses_an_oversized_message() -> None:
    big = wire.Event(
        outlet_id=OUTLET, session=1, seq=1, name="x", data={"blob": "a" * wire.MAX_PAYLOAD_BYTES}
    )
    with pytest.raises(wire.PayloadTooLarge):
        wire.encode(big)


@pytest.mark.parametrize("kind", list(Kind))
def test_newer_schema_version_is_rejected_with_its_reason(kind: Kind) -> None:
    raw = json.loads(wire.encode(SAMPLES[kind]))
    raw["schema_version"] = wire.SCHEMA_VERSION + 1
    raw["a_field_from_the_future"] = {"x": 1}
    with pytest.raises(wire.UnsupportedSchema) as caught:
        wire.decode(wire.topic_for(OUTLET, kind), json.dumps(raw).encode())
    assert caught.value.reason == "unsupported_schema"
    assert caught.value.schema == wire.SCHEMA_VERSION + 1


@pytest.mark.parametrize("kind", list(Kind))
def test_unknown_fields_in_the_same_schema_are_ignored(kind: Kind) -> None:
    raw = json.loads(wire.encode(SAMPLES[kind]))
    raw["added_in_a_later_minor_release"] = [1, 2, 3]
    decoded = wire.decode(wire.topic_for(OUTLET, kind), json.dumps(raw).encode())
    assert decoded == SAMPLES[kind]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe\x00garbage", "not_json"),
        (b"", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"birth"', "not_object"),
        (b"{}", "invalid"),
        (b'{"schema_version": "1"}', "invalid"),
        (b'{"schema_version": 1, "kind": "birth", "outlet_id": "township-dinghai-01"}', "invalid"),
        (b"[" * 100_000, "not_json"),
    ],
)
def test_garbage_is_rejected_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.decode(wire.topic_for(OUTLET, Kind.BIRTH), payload)
    assert caught.value.reason == reason


def test_kind_and_outlet_must_match_the_topic() -> None:
    birth = wire.encode(SAMPLES[Kind.BIRTH])
    with pytest.raises(wire.TopicMismatch) as caught:
        wire.decode(wire.topic_for(OUTLET, Kind.TELEMETRY), birth)
    assert caught.value.reason == "kind_mismatch"
    with pytest.raises(wire.TopicMismatch) as caught:
        wire.decode(wire.topic_for("bank-pds-icbc-01", Kind.BIRTH), birth)
    assert caught.value.reason == "outlet_mismatch"


@pytest.mark.parametrize(
    "topic",
    [
        "govedge/v2/o1/up/birth",
        "govedge/v1/o1/down/birth",
        "govedge/v1/o1/up/config",
        "govedge/v1/o1/up/nonsense",
        "govedge/v1/_fleet/up/birth",
        "govedge/v1/o1/up/birth/extra",
        "other/v1/o1/up/birth",
    ],
)
def test_topics_outside_the_tree_are_rejected(topic: str) -> None:
    with pytest.raises(wire.TopicMismatch):
        wire.decode(topic, wire.encode(SAMPLES[Kind.BIRTH]))


@pytest.mark.parametrize("bad", ["", "_fleet", "a/b", "a+b", "a#", "x" * 65, "台州", "a b", "o1\n"])
def test_invalid_outlet_ids(bad: str) -> None:
    assert not wire.is_valid_outlet_id(bad)
    with pytest.raises(ValueError, match="invalid outlet id"):
        wire.topic_for(bad, Kind.BIRTH)


def test_topic_tree_and_subscriptions() -> None:
    assert wire.topic_for("o1", Kind.BIRTH) == "govedge/v1/o1/up/birth"
    assert wire.topic_for("o1", Kind.COMMAND) == "govedge/v1/o1/down/cmd"
    assert wire.topic_for("o1", Kind.SERVER_STATE) == wire.SERVER_STATE_TOPIC
    assert wire.server_uplink_subscription() == "govedge/v1/+/up/+"
    assert wire.server_uplink_subscription("fleet") == "$share/fleet/govedge/v1/+/up/+"
    assert wire.parse_topic("govedge/v1/o1/up/tx") == wire.ParsedTopic("o1", Kind.TRANSACTION)


def test_births_and_deaths_are_never_retained_and_config_is() -> None:
    # Births and deaths are never retained (a retained death outlives the next birth);
    # desired config is retained (a reconnecting agent needs the latest at once).
    assert not wire.DELIVERY[Kind.BIRTH].retain
    assert not wire.DELIVERY[Kind.DEATH].retain
    assert wire.DELIVERY[Kind.DEATH].qos == 1
    assert wire.DELIVERY[Kind.DESIRED_CONFIG].retain
    assert not wire.DELIVERY[Kind.COMMAND].retain


@settings(max_examples=500, deadline=None)
@given(kind=st.sampled_from(list(Kind)), payload=st.binary(max_size=2048))
def test_arbitrary_bytes_only_ever_raise_wire_errors(kind: Kind, payload: bytes) -> None:
    reason = None
    try:
        wire.decode(wire.topic_for(OUTLET, kind), payload)
    except wire.WireError as exc:
        reason = exc.reason
    assert reason in REASONS  # random bytes are never a valid message


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(kind=st.sampled_from(list(Kind)), field=st.text(max_size=20), value=_json)
def test_mutated_valid_messages_decode_or_raise_wire_errors(
    kind: Kind, field: str, value: object
) -> None:
    raw = json.loads(wire.encode(SAMPLES[kind]))
    victim = field if field else next(iter(raw))
    raw[victim] = value
    reason = None
    try:
        decoded = wire.decode(wire.topic_for(OUTLET, kind), json.dumps(raw).encode())
    except wire.WireError as exc:
        reason = exc.reason
    else:
        assert decoded.kind == kind.value
    assert reason is None or reason in REASONS


def _acks(count: int) -> wire.TransactionAcks:
    return wire.TransactionAcks(
        outlet_id=OUTLET,
        session=1,
        seq=2,
        acks=[wire.AckEntry(tx_id=f"tx-{n:08d}", status="accepted") for n in range(count)],
    )


def test_many_acks_travel_on_the_ack_topic_and_nowhere_else() -> None:
    """A ``TransactionAcks`` decodes on ``down/txack`` (beside the single ack), and
    names its topic's kind mismatch anywhere else."""
    many = _acks(3)
    decoded = wire.decode(wire.topic_for(OUTLET, Kind.TRANSACTION_ACK), wire.encode(many))
    assert decoded == many
    for kind in (Kind.TRANSACTION_RESULT, Kind.COMMAND, Kind.TRANSACTION):
        with pytest.raises(wire.TopicMismatch) as caught:
            wire.decode(wire.topic_for(OUTLET, kind), wire.encode(many))
        assert caught.value.reason == "kind_mismatch"
    with pytest.raises(wire.TopicMismatch) as caught:
        wire.decode(wire.topic_for("bank-pds-icbc-01", Kind.TRANSACTION_ACK), wire.encode(many))
    assert caught.value.reason == "outlet_mismatch"


@pytest.mark.parametrize(
    "change",
    [
        {"acks": []},
        {"acks": [{"tx_id": "tx-00000001", "status": "maybe"}]},
        {"acks": [{"tx_id": "short", "status": "accepted"}]},
        {"acks": [{"tx_id": "tx-00000001", "status": "rejected", "reason": "x" * 513}]},
        {"acks": [{"tx_id": f"tx-{n:08d}", "status": "accepted"} for n in range(129)]},
        {"acks": {"tx_id": "tx-00000001", "status": "accepted"}},
    ],
    ids=["empty", "status", "tx_id", "reason", "too_many", "not_a_list"],
)
def test_a_bad_batch_of_acks_is_refused_whole(change: dict[str, object]) -> None:
    raw = json.loads(wire.encode(_acks(2))) | change
    with pytest.raises(wire.MalformedPayload) as caught:
        wire.decode(wire.topic_for(OUTLET, Kind.TRANSACTION_ACK), json.dumps(raw).encode())
    assert caught.value.reason == "invalid"


def test_a_full_batch_of_the_longest_acks_fits_one_payload() -> None:
    longest = wire.TransactionAcks(
        outlet_id=OUTLET,
        session=2**63 - 1,
        seq=2**63 - 1,
        acks=[
            wire.AckEntry(tx_id=f"{n:064d}", status="rejected", reason="原因" * 256)
            for n in range(wire.MAX_ACKS_PER_MESSAGE)
        ],
    )
    assert len(wire.encode(longest)) <= wire.MAX_PAYLOAD_BYTES


def test_transactions_say_whether_their_sender_takes_batched_acks() -> None:
    """``batch_ack`` is off unless the sender says so: an older agent's transaction
    (no such field) still gets one ack per transaction."""
    raw = json.loads(wire.encode(SAMPLES[Kind.TRANSACTION]))
    raw.pop("batch_ack", None)
    older = wire.decode(wire.topic_for(OUTLET, Kind.TRANSACTION), json.dumps(raw).encode())
    assert isinstance(older, wire.Transaction)
    assert older.batch_ack is False
    newer = wire.decode(
        wire.topic_for(OUTLET, Kind.TRANSACTION), json.dumps(raw | {"batch_ack": True}).encode()
    )
    assert isinstance(newer, wire.Transaction)
    assert newer.batch_ack is True
