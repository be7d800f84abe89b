"""The desired-config contract shared by the fleet server and the agent (docs/config.md).

``models``: what a config may hold (``DesiredConfig``), also the source of the shipped
JSON Schema (``desired-config.schema.json``, rewritten by
``python -m govedge_wire.config --write-schema``). ``layers``: scopes and the deep
merge. ``signing``: canonical JSON, the hash and the signed envelope.

Not to be confused with ``govedge_wire.DesiredConfig``, the ``down/config`` message model.
"""

from govedge_wire.config.layers import (
    GLOBAL,
    LEVELS,
    Scope,
    ScopeError,
    layers_for,
    leaves,
    merge_layers,
    parse_scope,
    provenance,
)
from govedge_wire.config.models import (
    BusinessType,
    DesiredConfig,
    EvaluationConfig,
    IndicatorTag,
    OpeningHours,
    OutboxConfig,
    QueueAppointment,
    QueueConfig,
    QueueWindow,
    TelemetryConfig,
    VoiceConfig,
)
from govedge_wire.config.schema import SCHEMA_PATH, schema_document, schema_text
from govedge_wire.config.signing import (
    MAX_CONFIG_BYTES,
    REFUSAL_REASONS,
    ConfigRefused,
    RefusalReason,
    SignedConfig,
    canonical_json,
    config_hash,
    key_id_for,
    sign_config,
    signed_payload,
    verify_config,
)
from govedge_wire.config.wire import MAX_ENVELOPE_BYTES, config_message, envelope_bytes

__all__ = [
    "GLOBAL",
    "LEVELS",
    "MAX_CONFIG_BYTES",
    "MAX_ENVELOPE_BYTES",
    "REFUSAL_REASONS",
    "SCHEMA_PATH",
    "BusinessType",
    "ConfigRefused",
    "DesiredConfig",
    "EvaluationConfig",
    "IndicatorTag",
    "OpeningHours",
    "OutboxConfig",
    "QueueAppointment",
    "QueueConfig",
    "QueueWindow",
    "RefusalReason",
    "Scope",
    "ScopeError",
    "SignedConfig",
    "TelemetryConfig",
    "VoiceConfig",
    "canonical_json",
    "config_hash",
    "config_message",
    "envelope_bytes",
    "key_id_for",
    "layers_for",
    "leaves",
    "merge_layers",
    "parse_scope",
    "provenance",
    "schema_document",
    "schema_text",
    "sign_config",
    "signed_payload",
    "verify_config",
]
