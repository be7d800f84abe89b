"""What the server publishes: its state, transaction acks and results, rebirth commands,
signed configs (retained).

Every downlink carries the server's own session (time-based, so it grows across
restarts without being stored) and a sequence number of its own.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import paho.mqtt.client as mqtt

from fleet_server.ingest.stats import IngestStats
from fleet_server.settings import Settings
from govedge_wire import (
    KNOWN_SESSION_ARG,
    MAX_ACKS_PER_MESSAGE,
    REBIRTH_COMMAND,
    SERVER_STATE_TOPIC,
    AckEntry,
    Command,
    Kind,
    ServerState,
    Transaction,
    TransactionAck,
    TransactionAcks,
    TransactionResult,
    UpdateOffer,
    encode,
    now_ms,
    topic_for,
)
from govedge_wire.config import SignedConfig, config_message

logger = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 2.0
AckStatus = Literal["accepted", "duplicate", "rejected"]
# An ack's reason inside a TransactionAcks is capped (the wire model's limit).
_REASON_MAX = 512


class Publisher:
    """Publishes through the ingest's paho client (``client`` is set once it exists)."""

    def __init__(self, settings: Settings, *, stats: IngestStats) -> None:
        self._settings = settings
        self._stats = stats
        self.client: mqtt.Client | None = None
        self.server_session = now_ms()
        self._seq = itertools.count()
        self.state_ts = now_ms()

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> mqtt.MQTTMessageInfo:
        assert self.client is not None, "the ingest sets its client before publishing"
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def state_payload(self, *, online: bool) -> bytes:
        """The retained server state (Sparkplug's host STATE; docs/protocol.md)."""
        # Online and offline (the will) carry the same timestamp, as Sparkplug's STATE
        # does: agents ignore an offline older than the last online, so only a late will
        # of an earlier server process is ignored, never this process's own.
        return encode(
            ServerState(server_id=self._settings.server_id, online=online, ts=self.state_ts)
        )

    def state(self, *, online: bool) -> mqtt.MQTTMessageInfo:
        """Publish the retained server state."""
        return self._publish(SERVER_STATE_TOPIC, self.state_payload(online=online), retain=True)

    def ack(
        self,
        message: Transaction,
        status: AckStatus,
        *,
        reason: str | None = None,
    ) -> None:
        """Acknowledge one transaction (only ever after its batch committed)."""
        ack = TransactionAck(
            outlet_id=message.outlet_id,
            session=self.server_session,
            seq=next(self._seq),
            tx_id=message.tx_id,
            status=status,
            reason=reason,
        )
        self._publish(topic_for(message.outlet_id, Kind.TRANSACTION_ACK), encode(ack))

    def acks(self, acks: Sequence[tuple[Transaction, AckStatus, str | None]]) -> None:
        """Acknowledge a committed batch's transactions.

        Those sent with ``batch_ack`` get one ``TransactionAcks`` per outlet (at most
        ``MAX_ACKS_PER_MESSAGE`` each; a lone one a plain ``TransactionAck``): a backlog
        drains with one downlink message per stored batch instead of one per
        transaction. The others (older agents) get a ``TransactionAck`` each.
        """
        batched: dict[str, list[AckEntry]] = {}
        for message, status, reason in acks:
            if not message.batch_ack:
                self.ack(message, status, reason=reason)
                continue
            entry = AckEntry(
                tx_id=message.tx_id,
                status=status,
                reason=None if reason is None else reason[:_REASON_MAX],
            )
            batched.setdefault(message.outlet_id, []).append(entry)
        for outlet_id, entries in batched.items():
            topic = topic_for(outlet_id, Kind.TRANSACTION_ACK)
            for start in range(0, len(entries), MAX_ACKS_PER_MESSAGE):
                chunk = entries[start : start + MAX_ACKS_PER_MESSAGE]
                if len(chunk) == 1:
                    ack = TransactionAck(
                        outlet_id=outlet_id,
                        session=self.server_session,
                        seq=next(self._seq),
                        tx_id=chunk[0].tx_id,
                        status=chunk[0].status,
                        reason=chunk[0].reason,
                    )
                    self._publish(topic, encode(ack))
                    continue
                message_of_many = TransactionAcks(
                    outlet_id=outlet_id,
                    session=self.server_session,
                    seq=next(self._seq),
                    acks=chunk,
                )
                self._publish(topic, encode(message_of_many))

    def results(self, results: Sequence[TransactionResult], *, timeout: float) -> list[bool]:
        """Publish transactions' upstream results; each True once the broker has it (PUBACK).

        All are published before the first wait, so a batch costs about one round trip to
        the broker rather than one per result (the delivery thread waited out each PUBACK
        in turn, and fell behind the clerks while a large fleet's telemetry flowed).
        """
        if not self._stats.broker_connected:
            return [False] * len(results)
        infos = []
        for result in results:
            message = result.model_copy(
                update={"session": self.server_session, "seq": next(self._seq)}
            )
            topic = topic_for(message.outlet_id, Kind.TRANSACTION_RESULT)
            infos.append(self._publish(topic, encode(message)))
        deadline = time.monotonic() + timeout
        published = []
        for info in infos:
            try:
                info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):  # not queued: no connection, or queue full
                published.append(False)
                continue
            published.append(info.is_published())
        return published

    def publish_config(self, signed: SignedConfig) -> mqtt.MQTTMessageInfo | None:
        """Publish a signed config retained on its outlet's ``down/config`` (QoS 1).

        Returns the message info to wait for the PUBACK on, or None while the broker is
        not connected (the caller publishes again later).
        """
        if not self._stats.broker_connected:
            return None
        message = config_message(signed, session=self.server_session, seq=next(self._seq))
        return self._publish(
            topic_for(signed.outlet_id, Kind.DESIRED_CONFIG), encode(message), retain=True
        )

    def publish_update(self, offer: dict[str, Any]) -> bool:
        """Publish an update offer (``UpdateOffer`` fields but ``session``/``seq``) on the
        outlet's ``down/update``, QoS 1, not retained; False while disconnected."""
        if not self._stats.broker_connected:
            return False
        message = UpdateOffer(**offer, session=self.server_session, seq=next(self._seq))
        self._publish(topic_for(message.outlet_id, Kind.UPDATE_OFFER), encode(message))
        return True

    def rebirth(
        self, outlet_id: str, *, reason: str, known_session: int | None, stale_session: int
    ) -> None:
        """Ask an outlet for a new birth.

        For a message of an older session than the known one the command carries the
        known session, so an agent whose session file was lost or restored from an
        older copy reconnects above it (docs/protocol.md, rule 11).
        """
        args = {} if known_session is None else {KNOWN_SESSION_ARG: known_session}
        command = Command(
            outlet_id=outlet_id,
            session=self.server_session,
            seq=next(self._seq),
            cmd_id=uuid.uuid4().hex,
            name=REBIRTH_COMMAND,
            args=args,
            expires_ts=now_ms() + self._settings.command_ttl_s * 1000,
        )
        self._publish(topic_for(outlet_id, Kind.COMMAND), encode(command))
        if known_session is None:
            logger.info("requested a rebirth from outlet %s (%s)", outlet_id, reason)
            return
        self._stats.noted("session_resync_requested")
        logger.warning(
            "outlet %s sent session %d, older than the known %d (session file lost or "
            "restored?): asked it to reconnect above %d",
            outlet_id,
            stale_session,
            known_session,
            known_session,
        )
