"""Message models: one frozen pydantic model per kind, all sharing one envelope.

Envelope fields (every message): ``schema_version``, ``kind``, ``msg_id``, ``ts``
(milliseconds since the epoch, UTC). Outlet messages add ``outlet_id``, ``session``
(the agent's persisted connect counter, Sparkplug's bdSeq) and ``seq`` (the sender's
per-session sequence number). Unknown fields are ignored, so additions within one
schema version stay compatible; a breaking change raises ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from govedge_wire.topics import OUTLET_ID_PATTERN

SCHEMA_VERSION: Final = 1
# Hard ceiling for one MQTT payload. Larger things (scanned materials) travel in chunks.
MAX_PAYLOAD_BYTES: Final = 256 * 1024

# The built-in command that asks an agent for a full birth, and its optional argument:
# the session the server knows for the outlet, sent when the agent's session is older
# (lost or restored session file). The agent then reconnects with a session above it.
REBIRTH_COMMAND: Final = "rebirth"
KNOWN_SESSION_ARG: Final = "known_session"

OutletId = Annotated[str, Field(pattern=rf"^{OUTLET_ID_PATTERN}$")]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Counter = Annotated[int, Field(ge=0, le=2**63 - 1)]
Metric = float | int | bool | str
ConfigHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
KeyId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def new_message_id() -> str:
    """A fresh random message id (UUID4, hex)."""
    return uuid.uuid4().hex


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def _exact_int(value: object) -> object:
    """Refuse a version that only equals 1 (``true``, ``1.0``): a Literal compares by ``==``."""
    if type(value) is not int:
        raise ValueError("schema_version must be an integer")
    return value


class _Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Annotated[Literal[1], BeforeValidator(_exact_int)] = SCHEMA_VERSION
    msg_id: Annotated[str, Field(min_length=8, max_length=64)] = Field(
        default_factory=new_message_id
    )
    ts: Counter = Field(default_factory=now_ms)


class _OutletMessage(_Envelope):
    outlet_id: OutletId
    session: Counter
    seq: Counter


class DeviceInfo(BaseModel):
    """One attached device as the agent sees it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    device_id: Name
    kind: Name
    model: Name | None = None
    state: Literal["ready", "probing", "offline", "error"] = "ready"
    health: dict[Name, Metric] = Field(default_factory=dict)


class Birth(_OutletMessage):
    """Published after every connect (and on a rebirth request): the agent is online."""

    kind: Literal["birth"] = "birth"
    agent_version: Name
    hostname: Name
    os: Annotated[str, Field(max_length=256)]
    devices: list[DeviceInfo] = Field(default_factory=list, max_length=256)
    # Devices a technician retired at the outlet: the fleet drops them and their alerts.
    retired_devices: list[Name] = Field(default_factory=list, max_length=64)
    config_version: Counter | None = None
    # The applied config's hash and the config-signing key ids the agent holds
    # (docs/config.md): equal hashes mean in sync; key ids gate a key rotation.
    config_hash: ConfigHash | None = None
    config_key_ids: list[KeyId] = Field(default_factory=list, max_length=16)
    telemetry_interval_s: Annotated[float, Field(gt=0, le=86400)]
    keepalive_s: Annotated[int, Field(gt=0, le=65535)]
    rebirth: bool = False


class Death(_OutletMessage):
    """The last will (``reason="will"``) or a clean shutdown (``reason="shutdown"``).

    The will is built at connect time, so its ``seq`` is 0 and its ``ts`` is the
    connect time; the server uses its own receive time and ignores ``seq``.
    """

    kind: Literal["death"] = "death"
    reason: Literal["will", "shutdown"]


class Telemetry(_OutletMessage):
    """Host and device health samples."""

    kind: Literal["telemetry"] = "telemetry"
    metrics: dict[Name, Metric] = Field(default_factory=dict, max_length=512)
    devices: dict[Name, dict[Name, Metric]] = Field(default_factory=dict, max_length=256)


class Event(_OutletMessage):
    """Something happened at the outlet (device unplugged, paper out, config rejected)."""

    kind: Literal["event"] = "event"
    name: Name
    severity: Literal["info", "warning", "error"] = "info"
    device_id: Name | None = None
    data: dict[Name, JsonValue] = Field(default_factory=dict)


class Transaction(_OutletMessage):
    """A durable unit of business (submission, evaluation, queue event) from the outbox.

    ``tx_id`` is fixed when the clerk's app is answered "accepted"; a resend carries the
    same ``tx_id`` with a new ``msg_id`` and ``seq``.
    """

    kind: Literal["tx"] = "tx"
    tx_id: Annotated[str, Field(min_length=8, max_length=64)]
    tx_kind: Name
    created_ts: Counter
    attempt: Annotated[int, Field(ge=1)] = 1
    body: dict[Name, JsonValue]
    # The sender also takes its ack inside a ``TransactionAcks`` (docs/protocol.md,
    # "Batched acks"). Said per transaction, not in the birth: with a shared
    # subscription the worker that stores a transaction may never see the birth.
    batch_ack: bool = False


class CommandResult(_OutletMessage):
    """The outcome of a command."""

    kind: Literal["cmdres"] = "cmdres"
    cmd_id: Name
    status: Literal["ok", "error", "rejected"]
    detail: dict[Name, JsonValue] = Field(default_factory=dict)


class DesiredConfig(_OutletMessage):
    """Desired configuration for one outlet; retained. Only the server writes it.

    ``body`` is the signed envelope (``govedge_wire.config.SignedConfig`` as JSON) and
    ``version`` repeats its version; ``signature`` stays null, the envelope carries its
    own (docs/config.md, "The envelope on the wire").
    """

    kind: Literal["config"] = "config"
    version: Annotated[int, Field(ge=1)]
    body: dict[Name, JsonValue]
    signature: str | None = None


class ConfigReport(_OutletMessage):
    """What the agent did with a desired config: applied it, or refused it and why.

    ``config_version``/``config_hash`` are what the agent runs on afterwards (its last
    good config; null before the first). A refusal names the offered version and hash
    when they could be read, and a ``reason`` (docs/config.md, "Refusal reasons").
    """

    kind: Literal["reported"] = "reported"
    status: Literal["applied", "refused"]
    config_version: Counter | None = None
    config_hash: ConfigHash | None = None
    offered_version: Counter | None = None
    offered_hash: ConfigHash | None = None
    reason: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")] | None = None
    detail: Annotated[str, Field(max_length=512)] | None = None
    config_key_ids: list[KeyId] = Field(default_factory=list, max_length=16)


class Command(_OutletMessage):
    """An instruction to an agent. ``rebirth`` is built in; others come with features.

    ``rebirth`` may carry ``args[KNOWN_SESSION_ARG]``: the session the server knows for
    the outlet. An agent whose own session is lower reconnects with a session above it
    instead of answering (docs/protocol.md, presence rule 11); older agents ignore it.
    """

    kind: Literal["cmd"] = "cmd"
    cmd_id: Name
    name: Name
    args: dict[Name, JsonValue] = Field(default_factory=dict)
    expires_ts: Counter | None = None


class TransactionAck(_OutletMessage):
    """Sent by the server after its own durable commit of a transaction."""

    kind: Literal["txack"] = "txack"
    tx_id: Annotated[str, Field(min_length=8, max_length=64)]
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


# Most acks one ``TransactionAcks`` carries (one payload even at the longest ids and
# reasons in Chinese: about 200 KiB).
MAX_ACKS_PER_MESSAGE: Final = 128


class AckEntry(BaseModel):
    """One transaction's ack inside a ``TransactionAcks``; fields as ``TransactionAck``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tx_id: Annotated[str, Field(min_length=8, max_length=64)]
    status: Literal["accepted", "duplicate", "rejected"]
    reason: Annotated[str, Field(max_length=512)] | None = None


class TransactionAcks(_OutletMessage):
    """Several ``TransactionAck``s of one outlet in one message, on the same topic.

    Sent only for transactions that carried ``batch_ack``: a sender that drains a
    backlog then receives one message per stored batch instead of one per transaction.
    """

    kind: Literal["txacks"] = "txacks"
    acks: list[AckEntry] = Field(min_length=1, max_length=MAX_ACKS_PER_MESSAGE)


class TransactionResult(_OutletMessage):
    """What the upstream platform did with a transaction the server had acknowledged.

    ``delivered`` carries the upstream's case number (办件编号) when it returned one;
    ``rejected`` carries the upstream's reason. Sent after the outcome is stored; it may
    be sent more than once, so the agent treats it idempotently by ``tx_id``.
    """

    kind: Literal["txresult"] = "txresult"
    tx_id: Annotated[str, Field(min_length=8, max_length=64)]
    outcome: Literal["delivered", "rejected"]
    case_number: Annotated[str, Field(max_length=64)] | None = None
    reason: Annotated[str, Field(max_length=512)] | None = None


# The per-outlet states of an update as the agent reports them (docs/updates.md, "The
# update protocol"). ``scheduled`` and ``pending`` are the server's own states.
UpdateState = Literal[
    "downloading",
    "verifying",
    "installing",
    "restarting",
    "healthy",
    "failed",
    "rolled_back",
    "skipped",
]
UPDATE_FINAL_STATES: Final[frozenset[str]] = frozenset(
    {"healthy", "failed", "rolled_back", "skipped"}
)
ReasonCode = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]


class UpdateOffer(_OutletMessage):
    """The server asks an outlet to install a release now (not retained).

    Sent only while the outlet is in its maintenance window; ``window_end_ts`` is when
    that window closes: the agent starts no install after it and reports ``skipped``
    (``window_missed``). ``manifest`` is the release's ``SignedManifest`` as JSON,
    verified by the agent with its config-signing public keys before anything is
    downloaded; ``artifact_path`` is the path of the artifact on the fleet API the
    outlet enrolled with (downloaded with the outlet's certificate proof).
    ``not_before_ts`` spreads downloads (the campaign's jitter). Offers repeat (on each
    birth while due); the agent treats them idempotently by campaign and version.
    """

    kind: Literal["update"] = "update"
    campaign_id: Annotated[int, Field(ge=1)]
    version: Annotated[str, Field(min_length=1, max_length=64)]
    manifest: dict[Name, JsonValue]
    artifact_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~/+-]{1,255}$")]
    not_before_ts: Counter
    window_end_ts: Counter
    health_timeout_s: Annotated[int, Field(ge=10, le=3600)] = 120


class UpdateStatus(_OutletMessage):
    """One step of an install at the outlet, sent as it happens.

    ``campaign_id`` is null for an install a technician started (``edge-agent upgrade``).
    ``version`` is the release being installed, ``running_version`` what the agent runs
    when it sends this (the old one until ``healthy``; the old one again after
    ``rolled_back``). ``reason`` is a code for failed, rolled back and skipped
    (docs/updates.md, "Reasons"); ``detail`` a short text without PII.
    """

    kind: Literal["updstatus"] = "updstatus"
    campaign_id: Annotated[int, Field(ge=1)] | None = None
    version: Annotated[str, Field(min_length=1, max_length=64)]
    running_version: Annotated[str, Field(min_length=1, max_length=64)]
    state: UpdateState
    reason: ReasonCode | None = None
    detail: Annotated[str, Field(max_length=512)] | None = None
    progress: Annotated[float, Field(ge=0, le=1)] | None = None


class ServerState(_Envelope):
    """The fleet server's presence; retained, with an offline last will.

    Agents publish a fresh birth when they see ``online`` after an offline or unknown
    state, so a server that lost the broker learns every live outlet again.
    """

    kind: Literal["state"] = "state"
    server_id: Name
    online: bool


Message = (
    Birth
    | Death
    | Telemetry
    | Event
    | Transaction
    | CommandResult
    | ConfigReport
    | DesiredConfig
    | Command
    | TransactionAck
    | TransactionAcks
    | TransactionResult
    | UpdateOffer
    | UpdateStatus
    | ServerState
)
