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
    TransactionAcks,
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
# Other kinds a topic carries besides its own, by the payload's ``kind``.
_ALSO_ON_TOPIC: Final[dict[tuple[Kind, str], type[Message]]] = {
    (Kind.TRANSACTION_ACK, "txacks"): TransactionAcks,
}


def encode(message: Message) -> bytes:
    """Serialise ``message``; raise ``PayloadTooLarge`` rather than send an oversized one."""
    data = message.model_dump_json().encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"{message.kind} payload of {len(data)} bytes exceeds the limit")
    return data


# The kinds that come by the thousand: validated from the bytes in one pass first.
_ONE_PASS: Final = frozenset({Kind.TELEMETRY, Kind.TRANSACTION_ACK})


def decode(topic: str, payload: bytes) -> Message:
    """Validate ``payload`` received on ``topic`` and return its model.

    Checks run cheapest first: size, topic, JSON, schema version, kind and outlet
    agreement with the topic, then the model. Raises a ``WireError`` subclass.
    Telemetry (most of what the fleet server receives) and transaction acks (one per
    transaction an agent's outbox sends) first try ``_one_pass``.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if topic == SERVER_STATE_TOPIC:
        kind, outlet_id = Kind.SERVER_STATE, None
    else:
        parsed = parse_topic(topic)
        kind, outlet_id = parsed.kind, parsed.outlet_id
    if kind in _ONE_PASS:
        message = _one_pass(_MODELS[kind], payload, outlet_id)
        if message is not None:
            return message
    return _full(kind, outlet_id, payload)


def _full(kind: Kind, outlet_id: str | None, payload: bytes) -> Message:
    """Every check in turn, each with its own reason."""
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
    model = _MODELS[kind]
    given = raw.get("kind")
    if given != kind.value:
        also = _ALSO_ON_TOPIC.get((kind, given)) if isinstance(given, str) else None
        if also is None:
            raise TopicMismatch("payload kind does not match the topic", reason="kind_mismatch")
        model = also
    if outlet_id is not None and raw.get("outlet_id") != outlet_id:
        raise TopicMismatch("payload outlet_id does not match the topic", reason="outlet_mismatch")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields = ",".join(sorted({".".join(map(str, e["loc"])) for e in exc.errors()})[:5])
        raise MalformedPayload(f"{kind.value} payload invalid at: {fields}") from None


def _one_pass(model: type[Message], payload: bytes, outlet_id: str | None) -> Message | None:
    """The model parsed and validated from the bytes in one pass, or None.

    pydantic's own JSON parser with strict types takes about half the time of
    ``json.loads`` then ``model_validate``. It accepts only what the full path accepts
    too (strict: no coercion; the version and kind must be given, the outlet must
    match the topic); for anything else None hands the payload to the full path, which
    names the reason it is refused (or accepts it after a lax coercion, as before).
    """
    try:
        message = model.model_validate_json(payload, strict=True)
    except ValidationError:
        return None
    given = message.model_fields_set
    if "schema_version" not in given or "kind" not in given:
        return None
    if getattr(message, "outlet_id", None) != outlet_id:
        return None
    return message
