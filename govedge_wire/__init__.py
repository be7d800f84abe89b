"""govedge wire contract: MQTT topics, message models and their codec.

Agent and server both import this package and never each other. Everything that
crosses the broker is defined here once; see ``docs/protocol.md`` for the prose.

Exception tree::

    WireError                      (reason: str, counted by the receiver)
    ├── PayloadTooLarge            reason "too_large"
    ├── MalformedPayload           reason "not_json" | "not_object" | "invalid"
    ├── UnsupportedSchema          reason "unsupported_schema"
    └── TopicMismatch              reason "bad_topic" | "kind_mismatch" | "outlet_mismatch"
"""

from govedge_wire.codec import decode, encode
from govedge_wire.errors import (
    MalformedPayload,
    PayloadTooLarge,
    TopicMismatch,
    UnsupportedSchema,
    WireError,
)
from govedge_wire.messages import (
    KNOWN_SESSION_ARG,
    MAX_ACKS_PER_MESSAGE,
    MAX_PAYLOAD_BYTES,
    REBIRTH_COMMAND,
    SCHEMA_VERSION,
    UPDATE_FINAL_STATES,
    AckEntry,
    Birth,
    Command,
    CommandResult,
    ConfigReport,
    Death,
    DesiredConfig,
    DeviceInfo,
    Event,
    Message,
    ServerState,
    Telemetry,
    Transaction,
    TransactionAck,
    TransactionAcks,
    TransactionResult,
    UpdateOffer,
    UpdateState,
    UpdateStatus,
    new_message_id,
    now_ms,
)
from govedge_wire.topics import (
    DELIVERY,
    DOWNLINK_KINDS,
    OUTLET_ID_PATTERN,
    PROTOCOL_PREFIX,
    SERVER_STATE_TOPIC,
    UPLINK_KINDS,
    Delivery,
    Kind,
    ParsedTopic,
    agent_client_id,
    is_valid_outlet_id,
    parse_topic,
    server_uplink_subscription,
    topic_for,
)

__all__ = [
    "DELIVERY",
    "DOWNLINK_KINDS",
    "KNOWN_SESSION_ARG",
    "MAX_ACKS_PER_MESSAGE",
    "MAX_PAYLOAD_BYTES",
    "OUTLET_ID_PATTERN",
    "PROTOCOL_PREFIX",
    "REBIRTH_COMMAND",
    "SCHEMA_VERSION",
    "SERVER_STATE_TOPIC",
    "UPDATE_FINAL_STATES",
    "UPLINK_KINDS",
    "AckEntry",
    "Birth",
    "Command",
    "CommandResult",
    "ConfigReport",
    "Death",
    "Delivery",
    "DesiredConfig",
    "DeviceInfo",
    "Event",
    "Kind",
    "MalformedPayload",
    "Message",
    "ParsedTopic",
    "PayloadTooLarge",
    "ServerState",
    "Telemetry",
    "TopicMismatch",
    "Transaction",
    "TransactionAck",
    "TransactionAcks",
    "TransactionResult",
    "UnsupportedSchema",
    "UpdateOffer",
    "UpdateState",
    "UpdateStatus",
    "WireError",
    "agent_client_id",
    "decode",
    "encode",
    "is_valid_outlet_id",
    "new_message_id",
    "now_ms",
    "parse_topic",
    "server_uplink_subscription",
    "topic_for",
]
