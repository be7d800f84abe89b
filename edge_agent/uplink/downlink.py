"""What the fleet server sends an agent: commands, server state, config, acks, results.

Nothing received ever ends the connection: undecodable payloads are counted per
``WireError.reason`` and logged at most once a minute per reason, and a command whose
``cmd_id`` can still be read is answered ``rejected``. The rules are docs/protocol.md,
"Presence" (server state, rule 8; session resync, rule 11) and "Downlink payloads".
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from typing import Final, Protocol

import aiomqtt

from edge_agent.counters import AgentCounters, LogLimiter
from edge_agent.fleet_config import ConfigApplier
from edge_agent.outbox import AckOutcome, OutboxSender
from edge_agent.transaction_events import TransactionEvents
from edge_agent.uplink.events import SeenResults
from govedge_wire import (
    KNOWN_SESSION_ARG,
    Command,
    CommandResult,
    ConfigReport,
    DesiredConfig,
    Kind,
    Message,
    ServerState,
    TransactionAck,
    TransactionAcks,
    TransactionResult,
    UpdateOffer,
    WireError,
    decode,
    now_ms,
    topic_for,
)
from govedge_wire.config import MAX_CONFIG_BYTES, canonical_json, envelope_bytes

log = logging.getLogger(__name__)

REBIRTH_COMMAND: Final = "rebirth"
_MAX_CMD_ID: Final = 128
_MAX_SESSION: Final = 2**63 - 1


class Uplink(Protocol):
    """The parts of the session the downlink answers through."""

    session: int

    def next_seq(self) -> int: ...

    async def publish(self, message: Message, *, ack_wait_s: float | None = None) -> None: ...

    async def publish_birth(self, *, rebirth: bool) -> None: ...

    def begin_resync(self, known: int) -> None: ...


class UpdateOffers(Protocol):
    """The agent's installer, as the downlink hands it offers (``edge_agent.updates``)."""

    async def offer(self, offer: UpdateOffer) -> None: ...


class Downlink:
    """Handles every message that arrives on one connection's subscriptions."""

    def __init__(
        self,
        uplink: Uplink,
        *,
        outlet_id: str,
        sender: OutboxSender,
        transactions: TransactionEvents,
        counters: AgentCounters,
        log_limiter: LogLimiter,
        seen_results: SeenResults,
        config: ConfigApplier | None = None,
        updates: UpdateOffers | None = None,
    ) -> None:
        self._config = config
        self._updates = updates
        self._uplink = uplink
        self._outlet = outlet_id
        self._sender = sender
        self._transactions = transactions
        self._counters = counters
        self._log_limiter = log_limiter
        self._seen_results = seen_results
        # Transactions whose ack is being applied to the outbox, with any result that
        # arrived meanwhile: a clerk app sees ``transaction.acked`` before the result.
        self._acking: dict[str, list[TransactionResult]] = {}
        self._server_online: bool | None = None
        self._server_state_ts = -1

    @property
    def takes_updates(self) -> bool:
        """Whether an installer handles ``down/update`` (the session subscribes then)."""
        return self._updates is not None

    async def run(self, client: aiomqtt.Client) -> None:
        """Handle the client's messages until the connection ends."""
        async for message in client.messages:
            payload = message.payload
            raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
            await self.handle(message.topic.value, bytes(raw))

    async def handle(self, topic: str, payload: bytes) -> None:
        """Decode and act on one downlink message."""
        if not payload and topic == topic_for(self._outlet, Kind.DESIRED_CONFIG):
            # A cleared retained config means "no desired config", never "apply an empty
            # config" (docs/protocol.md, "Downlink payloads").
            self._counters.incr("config_absent")
            log.info("no desired config retained for this outlet")
            return
        try:
            decoded = decode(topic, payload)
        except WireError as exc:
            if topic == topic_for(self._outlet, Kind.DESIRED_CONFIG) and self._config is not None:
                # Refused for the envelope's own reason (garbage, oversize, another
                # outlet's copy) and reported.
                await self._offer_config(_salvage_envelope(payload))
                return
            await self._reject_undecodable(topic, payload, exc)
            return
        if isinstance(decoded, Command):
            await self._handle_command(decoded)
        elif isinstance(decoded, ServerState):
            await self._handle_server_state(decoded)
        elif isinstance(decoded, DesiredConfig):
            self._counters.incr("config_received")
            if self._config is None:
                log.info("desired config version %d received (no applier)", decoded.version)
            else:
                await self._offer_config(envelope_bytes(decoded))
        elif isinstance(decoded, TransactionAck):
            self._take_ack(decoded)
        elif isinstance(decoded, TransactionAcks):
            self._counters.incr("txacks_received")
            for entry in decoded.acks:
                # Validated with the message already: only repackaged for the outbox.
                self._take_ack(
                    TransactionAck.model_construct(
                        msg_id=decoded.msg_id,
                        ts=decoded.ts,
                        outlet_id=decoded.outlet_id,
                        session=decoded.session,
                        seq=decoded.seq,
                        tx_id=entry.tx_id,
                        status=entry.status,
                        reason=entry.reason,
                    )
                )
        elif isinstance(decoded, TransactionResult):
            self._handle_tx_result(decoded)
        elif isinstance(decoded, UpdateOffer):
            self._counters.incr("update_offers_received")
            if self._updates is None:
                self._counted_drop("no_installer", f"update offer {decoded.version} ignored")
            else:
                await self._updates.offer(decoded)
        else:
            self._counted_drop("unexpected_kind", f"unexpected {decoded.kind} message on {topic}")

    async def _offer_config(self, envelope: bytes) -> None:
        """Verify and apply a config; report what was done (nothing for the retained copy)."""
        config = self._config
        assert config is not None
        outcome = await config.offer(envelope)
        if outcome is None:
            return
        report = ConfigReport(
            outlet_id=self._outlet,
            session=self._uplink.session,
            seq=self._uplink.next_seq(),
            status=outcome.status,
            config_version=config.version,
            config_hash=config.hash,
            offered_version=outcome.offered_version,
            offered_hash=outcome.offered_hash,
            reason=outcome.reason,
            detail=outcome.detail,
            config_key_ids=config.key_ids,
        )
        await self._uplink.publish(report)

    def _take_ack(self, ack: TransactionAck) -> None:
        self._counters.incr("txack_received")
        self._acking.setdefault(ack.tx_id, [])
        # Not awaited: acks arriving meanwhile are committed together (group commit).
        self._sender.ack_soon(ack).add_done_callback(functools.partial(self._count_ack, ack))

    def _count_ack(self, ack: TransactionAck, future: asyncio.Future[AckOutcome]) -> None:
        try:
            self._apply_ack(ack, future)
        finally:
            # The results that waited for this ack follow it (also when it failed:
            # a result must never wait for an ack that will not come).
            for result in self._acking.pop(ack.tx_id, []):
                self._publish_result(result)

    def _apply_ack(self, ack: TransactionAck, future: asyncio.Future[AckOutcome]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # not deleted: the entry is sent again, the server says duplicate
            self._counters.incr("txack_failed")
            if self._log_limiter.allow("txack_failed"):
                log.warning("transaction ack not applied to the outbox: %s", exc)
            return
        outcome = future.result()
        self._counters.incr(f"txack_{outcome}")
        if outcome != "unknown":
            # Told once, when the ack took the entry out of the outbox; a repeated ack for an
            # entry already gone is no news for the clerk app.
            self._transactions.publish(
                "transaction.acked", tx_id=ack.tx_id, status=ack.status, reason=ack.reason
            )

    def _handle_tx_result(self, result: TransactionResult) -> None:
        self._counters.incr("txresult_received")
        waiting = self._acking.get(result.tx_id)
        if waiting is not None:  # its ack is still being applied: the result comes after
            waiting.append(result)
            return
        self._publish_result(result)

    def _publish_result(self, result: TransactionResult) -> None:
        # The server resends a result until it was published: show each one once.
        if not self._seen_results.first_time(result.tx_id, result.outcome):
            self._counters.incr("txresult_duplicates")
            return
        log.info("transaction %s: upstream %s", result.tx_id, result.outcome)
        self._transactions.publish(
            "transaction.result",
            tx_id=result.tx_id,
            outcome=result.outcome,
            case_number=result.case_number,
            reason=result.reason,
        )

    def _counted_drop(self, reason: str, detail: str) -> None:
        count = self._counters.incr(f"downlink_dropped.{reason}")
        if self._log_limiter.allow(reason):
            log.warning("downlink message dropped (%s, %d so far): %s", reason, count, detail)

    async def _reject_undecodable(self, topic: str, payload: bytes, exc: WireError) -> None:
        self._counted_drop(exc.reason, str(exc))
        if topic != topic_for(self._outlet, Kind.COMMAND) or exc.reason == "too_large":
            return
        cmd_id = _salvage_cmd_id(payload)
        if cmd_id is not None:
            await self._reply(cmd_id, "rejected", {"reason": exc.reason})

    async def _handle_command(self, command: Command) -> None:
        self._counters.incr("commands_received")
        if command.expires_ts is not None and command.expires_ts < now_ms():
            self._counted_drop("expired", f"command {command.cmd_id} ({command.name}) expired")
            return
        if command.name == REBIRTH_COMMAND:
            known = command.args.get(KNOWN_SESSION_ARG)
            if known is not None and not _valid_session(known):
                self._counted_drop("invalid_known_session", f"command {command.cmd_id}")
                await self._reply(command.cmd_id, "rejected", {"reason": "invalid_known_session"})
                return
            if isinstance(known, int) and known > self._uplink.session:
                # No cmdres: the server refuses everything of our (older) session.
                self._uplink.begin_resync(known)
                return
            await self._uplink.publish_birth(rebirth=True)
            await self._reply(command.cmd_id, "ok", {})
            return
        self._counters.incr("commands_rejected")
        log.info("command %s rejected: unknown command %r", command.cmd_id, command.name)
        await self._reply(
            command.cmd_id, "rejected", {"reason": "unknown_command", "name": command.name}
        )

    async def _reply(self, cmd_id: str, status: str, detail: dict[str, str]) -> None:
        result = CommandResult.model_validate(
            {
                "outlet_id": self._outlet,
                "session": self._uplink.session,
                "seq": self._uplink.next_seq(),
                "cmd_id": cmd_id,
                "status": status,
                "detail": detail,
            }
        )
        await self._uplink.publish(result)

    async def _handle_server_state(self, state: ServerState) -> None:
        # An older state is a late will of an earlier server process (rule 8).
        if state.ts < self._server_state_ts:
            self._counted_drop("stale_server_state", f"server state from {state.ts} is older")
            return
        self._server_state_ts = state.ts
        previous, self._server_online = self._server_online, state.online
        log.info("fleet server %s is %s", state.server_id, "online" if state.online else "offline")
        # The first state of a connection (the retained one) needs no repeat of the birth.
        if previous is False and state.online:
            await self._uplink.publish_birth(rebirth=True)
            await self._sender.resend_unacked()


def _valid_session(value: object) -> bool:
    """A session number another connect can still go above (not a bool, not the max)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_SESSION


def _salvage_envelope(payload: bytes) -> bytes:
    """The signed envelope inside a config message that failed validation, else the payload.

    A copy of another outlet's message names that outlet outside the envelope too; its
    envelope then tells ``verify_config`` why it is refused.
    """
    if len(payload) > MAX_CONFIG_BYTES:
        return payload
    try:
        raw = json.loads(payload)
        body = raw.get("body") if isinstance(raw, dict) else None
        return canonical_json(body) if isinstance(body, dict) else payload
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError):
        return payload


def _salvage_cmd_id(payload: bytes) -> str | None:
    """The ``cmd_id`` of a command that failed validation, if one can be read safely."""
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    cmd_id = raw.get("cmd_id") if isinstance(raw, dict) else None
    if isinstance(cmd_id, str) and 1 <= len(cmd_id) <= _MAX_CMD_ID:
        return cmd_id
    return None
