"""Encode and decode messages, with every rejection mapped to a counted reason."""

from __future__ import annotations

import json
from typing import Final

from pydantic import ValidationError

from govedge_wire.errors import MalformedPayload, PayloadTooLarge, TopicMismatch, UnsupportedSchema
from govedge_wire.messages import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    Birth,
    Command,
    CommandResult,
    ConfigReport,
    Death,
    DesiredConfig,
    Event,
    Message,
    ServerState,
    Telemetry,
    Transaction,
    TransactionAck,
    TransactionResult,
    UpdateOffer,
    UpdateStatus,
)
from govedge_wire.topics import SERVER_STATE_TOPIC, Kind, parse_topic

_MODELS: Final[dict[Kind, type[Message]]] = {
    Kind.BIRTH: Birth,
    Kind.DEATH: Death,
    Kind.TELEMETRY: Telemetry,
    Kind.EVENT: Event,
    Kind.TRANSACTION: Transaction,
    Kind.COMMAND_RESULT: CommandResult,
    Kind.CONFIG_REPORT: ConfigReport,
    Kind.DESIRED_CONFIG: DesiredConfig,
    Kind.COMMAND: Command,
    Kind.TRANSACTION_ACK: TransactionAck,
    Kind.TRANSACTION_RESULT: TransactionResult,
    Kind.UPDATE_OFFER: UpdateOffer,
    Kind.UPDATE_STATUS: UpdateStatus,
    Kind.SERVER_STATE: ServerState,
}


def encode(message: Message) -> bytes:
    """Serialise ``message``; raise ``PayloadTooLarge`` rather than send an oversized one."""
    data = message.model_dump_json().encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"{message.kind} payload of {len(data)} bytes exceeds the limit")
    return data


def decode(topic: str, payload: bytes) -> Message:
    """Validate ``payload`` received on ``topic`` and return its model.

    Checks run cheapest first: size, topic, JSON, schema version, kind and outlet
    agreement with the topic, then the model. Raises a ``WireError`` subclass.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if topic == SERVER_STATE_TOPIC:
        kind, outlet_id = Kind.SERVER_STATE, None
    else:
        parsed = parse_topic(topic)
        kind, outlet_id = parsed.kind, parsed.outlet_id
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise MalformedPayload("payload is not JSON", reason="not_json") from None
    if not isinstance(raw, dict):
        raise MalformedPayload("payload is not a JSON object", reason="not_object")
    schema = raw.get("schema_version")
    if type(schema) is not int:
        raise MalformedPayload("schema_version is missing or not an integer")
    if schema != SCHEMA_VERSION:
        raise UnsupportedSchema(
            f"schema_version {schema} is not supported (this peer speaks {SCHEMA_VERSION})",
            schema=schema,
        )
    if raw.get("kind") != kind.value:
        raise TopicMismatch("payload kind does not match the topic", reason="kind_mismatch")
    if outlet_id is not None and raw.get("outlet_id") != outlet_id:
        raise TopicMismatch("payload outlet_id does not match the topic", reason="outlet_mismatch")
    try:
        return _MODELS[kind].model_validate(raw)
    except ValidationError as exc:
        fields = ",".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()})[:5])
        raise MalformedPayload(f"{kind.value} payload invalid at: {fields}") from None
