"""The versioned topic tree, and the QoS/retain rule of every message kind.

Every outlet owns one subtree, split by direction so that a broker ACL can give an
outlet write access to ``up`` and read access to ``down`` and nothing else::

    govedge/v1/{outlet_id}/up/{birth|death|telemetry|event|tx|cmdres|reported|updstatus}
    govedge/v1/{outlet_id}/down/{config|cmd|txack|txresult|update}
    govedge/v1/_fleet/state                          (server presence, retained)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from govedge_wire.errors import TopicMismatch

PROTOCOL_PREFIX: Final = "govedge/v1"
# Outlet ids never start with "_" so that "_fleet" can never collide with an outlet;
# they never contain MQTT wildcards or separators.
OUTLET_ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_OUTLET_RE: Final = re.compile(rf"\A{OUTLET_ID_PATTERN}\Z")
SERVER_STATE_TOPIC: Final = f"{PROTOCOL_PREFIX}/_fleet/state"


class Kind(StrEnum):
    """Message kinds; the value is the last topic level."""

    BIRTH = "birth"
    DEATH = "death"
    TELEMETRY = "telemetry"
    EVENT = "event"
    TRANSACTION = "tx"
    COMMAND_RESULT = "cmdres"
    CONFIG_REPORT = "reported"
    UPDATE_STATUS = "updstatus"
    DESIRED_CONFIG = "config"
    COMMAND = "cmd"
    TRANSACTION_ACK = "txack"
    TRANSACTION_RESULT = "txresult"
    UPDATE_OFFER = "update"
    SERVER_STATE = "state"


UPLINK_KINDS: Final = frozenset(
    {
        Kind.BIRTH,
        Kind.DEATH,
        Kind.TELEMETRY,
        Kind.EVENT,
        Kind.TRANSACTION,
        Kind.COMMAND_RESULT,
        Kind.CONFIG_REPORT,
        Kind.UPDATE_STATUS,
    }
)
DOWNLINK_KINDS: Final = frozenset(
    {
        Kind.DESIRED_CONFIG,
        Kind.COMMAND,
        Kind.TRANSACTION_ACK,
        Kind.TRANSACTION_RESULT,
        Kind.UPDATE_OFFER,
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """How a kind is published; ``why`` is the reason, kept next to the rule."""

    qos: int
    retain: bool
    why: str


DELIVERY: Final[dict[Kind, Delivery]] = {
    Kind.BIRTH: Delivery(
        qos=1,
        retain=False,
        why="the only message that makes an outlet online; retained births would "
        "show dead outlets online to a restarted server",
    ),
    Kind.DEATH: Delivery(
        qos=1,
        retain=False,
        why="set as the last will; a retained death would outlive the next birth",
    ),
    Kind.TELEMETRY: Delivery(
        qos=0,
        retain=False,
        why="superseded by the next sample; loss is detected by the sequence number",
    ),
    Kind.EVENT: Delivery(qos=1, retain=False, why="device events (unplugged, paper out) matter"),
    Kind.TRANSACTION: Delivery(
        qos=1,
        retain=False,
        why="at least once on the wire; exactly once by the application-level ack and "
        "deduplication by transaction id",
    ),
    Kind.COMMAND_RESULT: Delivery(qos=1, retain=False, why="the operator waits for it"),
    Kind.CONFIG_REPORT: Delivery(
        qos=1,
        retain=False,
        why="drift is judged from it; the birth repeats the applied config after a loss",
    ),
    Kind.UPDATE_STATUS: Delivery(
        qos=1,
        retain=False,
        why="a campaign's waves advance and halt on these; the birth's agent_version "
        "confirms the version after a loss",
    ),
    Kind.UPDATE_OFFER: Delivery(
        qos=1,
        retain=False,
        why="an install may start only inside the outlet's maintenance window, so a stale "
        "retained offer must never start one; the server sends it again on each birth "
        "while the outlet is due",
    ),
    Kind.DESIRED_CONFIG: Delivery(
        qos=1,
        retain=True,
        why="desired state, not an event: a reconnecting agent must get the latest at once",
    ),
    Kind.COMMAND: Delivery(
        qos=1,
        retain=False,
        why="a command replayed long after it was given is dangerous; commands also expire",
    ),
    Kind.TRANSACTION_ACK: Delivery(
        qos=1,
        retain=False,
        why="a lost ack only causes a resend, which the server deduplicates and re-acks",
    ),
    Kind.TRANSACTION_RESULT: Delivery(
        qos=1,
        retain=False,
        why="the upstream's answer (case number or rejection) must reach the outlet; a "
        "lost one is sent again and the agent deduplicates by transaction id",
    ),
    Kind.SERVER_STATE: Delivery(
        qos=1,
        retain=True,
        why="agents that connect later must learn whether the server is listening",
    ),
}

_DIRECTION: Final = dict.fromkeys(UPLINK_KINDS, "up") | dict.fromkeys(DOWNLINK_KINDS, "down")


def is_valid_outlet_id(outlet_id: str) -> bool:
    """Tell whether ``outlet_id`` may be used as a topic level and a registry key."""
    return bool(_OUTLET_RE.match(outlet_id))


def topic_for(outlet_id: str, kind: Kind) -> str:
    """The topic an outlet's message of ``kind`` is published on."""
    if kind is Kind.SERVER_STATE:
        return SERVER_STATE_TOPIC
    if not is_valid_outlet_id(outlet_id):
        raise ValueError(f"invalid outlet id {outlet_id!r}")
    return f"{PROTOCOL_PREFIX}/{outlet_id}/{_DIRECTION[kind]}/{kind.value}"


def agent_client_id(outlet_id: str) -> str:
    """The MQTT client id of an outlet's agent: one per outlet, known to the server, which
    uses it to end a revoked outlet's open session (MQTT session takeover)."""
    if not is_valid_outlet_id(outlet_id):
        raise ValueError(f"invalid outlet id {outlet_id!r}")
    return f"govedge-{outlet_id}"


def server_uplink_subscription(share_group: str | None = None) -> str:
    """The server's subscription to every outlet's uplink, optionally shared by workers."""
    base = f"{PROTOCOL_PREFIX}/+/up/+"
    return f"$share/{share_group}/{base}" if share_group else base


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """An outlet topic split into its parts."""

    outlet_id: str
    kind: Kind


def parse_topic(topic: str) -> ParsedTopic:
    """Split an outlet topic; raise ``TopicMismatch`` for anything outside the tree."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PROTOCOL_PREFIX:
        raise TopicMismatch(f"topic outside {PROTOCOL_PREFIX}/{{outlet}}/{{up|down}}/{{kind}}")
    outlet_id, direction, last = parts[2], parts[3], parts[4]
    if not is_valid_outlet_id(outlet_id):
        raise TopicMismatch("topic carries an invalid outlet id")
    try:
        kind = Kind(last)
    except ValueError:
        raise TopicMismatch("unknown message kind in topic") from None
    if _DIRECTION.get(kind) != direction:
        raise TopicMismatch("message kind on the wrong direction")
    return ParsedTopic(outlet_id=outlet_id, kind=kind)
