"""One MQTT connection of the agent: subscribe, birth, telemetry, downlink, death.

Rules (Sparkplug b1, adapted to govedge):

- The session number (bdSeq) is fixed before CONNECT; the will carries it and so does
  every message of the connection. ``seq`` is one counter for ALL uplink messages of the
  session: the birth is 0, every later message is previous + 1, also across rebirths.
- Downlink topics (command, desired config, transaction ack, QoS 1) and the server state
  topic are subscribed BEFORE the birth, so a rebirth request is never missed.
- Birth: QoS 1, not retained, ``rebirth=False`` on connect.
- A ``rebirth`` command republishes the full birth with the SAME session, ``seq``
  continuing and ``rebirth=True``; every command is answered with a ``CommandResult``
  (``ok``, or ``rejected`` with a reason); expired commands are dropped and counted.
- Session resync: a ``rebirth`` command carrying ``known_session`` above this
  connection's session means the server refuses everything we send (our session file
  was lost or restored from an older copy). The session then ends without a death and
  without a ``cmdres`` (the server would refuse both as of the old session) and sets
  ``resync_to``; the daemon persists it and reconnects at once with the next number.
  The first birth of that connection is followed by a ``session.resynced`` event
  (warning) naming the old, the known and the new session. A ``known_session`` at or
  below ours is an ordinary rebirth (a replayed old message reached the server).
- Server state: the first ``ServerState`` seen in a connection only records the state
  (the broker delivers the retained one right after our birth, which needs no repeat);
  a later ``online=True`` after an ``online=False`` publishes one fresh birth
  (same session, ``rebirth=True``). An older-timestamped state than the last is ignored.
- Desired config is subscribed but for now only counted and logged; applying it comes
  with the config issue. A zero-length payload on the config topic (a cleared retained
  message) means "no config": counted as ``config_absent``, never applied or rejected.
- Undecodable downlink payloads are counted per ``WireError.reason`` and logged at most
  once a minute per reason; a command whose ``cmd_id`` can still be read gets a
  ``rejected`` result. Nothing received ever ends the connection.
- Devices and transactions (the ``AgentRuntime``): the birth carries the device
  inventory; telemetry carries each ready device's health in ``devices`` and the outbox
  stats in ``metrics``. Device events go up as ``Event`` (PII-looking keys dropped, see
  ``uplink_events``); after ``device.ready``/``unplugged``/``error`` the session publishes
  a rebirth (same session, ``seq`` continuing), at most one per ``REBIRTH_MIN_INTERVAL_S``.
  Profile problems found at start are reported once per connection as a
  ``profiles.problems`` event.
- Outbox: an ``OutboxSender`` runs after the birth (QoS 1 publishes awaiting PUBACK,
  ``seq`` from this session); ``TransactionAck`` goes to ``sender.ack_soon`` (not
  awaited, so acks that arrive together are committed together);
  ``TransactionResult`` (deduplicated by ``tx_id`` and outcome) becomes a local
  ``transaction.result`` event for the clerk app (``runtime.publish_transaction_event``).
- Clean shutdown: stop the outbox sender (bounded wait), stop telemetry and downlink
  work, publish ``Death(reason="shutdown")`` with QoS 1 and wait briefly for its PUBACK;
  the caller then DISCONNECTs normally, which tells the broker to drop the will.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Final

import aiomqtt

from edge_agent.backoff import jittered
from edge_agent.counters import AgentCounters, LogLimiter
from edge_agent.discovery import Subscription
from edge_agent.host_metrics import sample_host_metrics
from edge_agent.identity import HostIdentity
from edge_agent.outbox import AckOutcome, OutboxSender, OutgoingTx
from edge_agent.runtime import AgentRuntime
from edge_agent.settings import AgentSettings
from edge_agent.uplink_events import (
    INVENTORY_EVENTS,
    PiiGuard,
    SeenResults,
    is_local_event,
    to_wire_event,
)
from govedge_wire import (
    DELIVERY,
    KNOWN_SESSION_ARG,
    SERVER_STATE_TOPIC,
    Birth,
    Command,
    CommandResult,
    Death,
    DesiredConfig,
    Event,
    Kind,
    Message,
    ServerState,
    Telemetry,
    Transaction,
    TransactionAck,
    TransactionResult,
    WireError,
    decode,
    encode,
    now_ms,
    topic_for,
)

log = logging.getLogger(__name__)

REBIRTH_COMMAND: Final = "rebirth"
# Waiting for the PUBACK of the shutdown death; the whole shutdown must fit in 2 s.
DEATH_ACK_TIMEOUT_S: Final = 1.0
DISCONNECT_TIMEOUT_S: Final = 0.5
# Inventory changes come in bursts (a hub of devices plugged in); one rebirth a second.
REBIRTH_MIN_INTERVAL_S: Final = 1.0
# How long a clean shutdown waits for the outbox sender's current publish and the acks.
SENDER_STOP_TIMEOUT_S: Final = 0.3
_EVENT_WAIT_S: Final = 60.0
_MAX_CMD_ID: Final = 128
_MAX_SESSION: Final = 2**63 - 1


def will_message(outlet_id: str, session: int) -> aiomqtt.Will:
    """The last will for a CONNECT of ``session``: a death, QoS 1, not retained."""
    death = Death(outlet_id=outlet_id, session=session, seq=0, reason="will")
    rule = DELIVERY[Kind.DEATH]
    return aiomqtt.Will(
        topic=topic_for(outlet_id, Kind.DEATH),
        payload=encode(death),
        qos=rule.qos,
        retain=rule.retain,
    )


class AgentSession:
    """Drives one connected ``aiomqtt.Client`` until the connection ends or shutdown."""

    def __init__(
        self,
        client: aiomqtt.Client,
        *,
        settings: AgentSettings,
        session: int,
        identity: HostIdentity,
        counters: AgentCounters,
        log_limiter: LogLimiter,
        agent_started_monotonic: float,
        runtime: AgentRuntime,
        profile_problems: tuple[str, ...] = (),
        seen_results: SeenResults | None = None,
        pii_guard: PiiGuard | None = None,
        resynced_from: tuple[int, int] | None = None,
    ) -> None:
        self._runtime = runtime
        # (our old session, the session the server knew) when this connection follows a
        # session resync; reported once after the birth.
        self._resynced_from = resynced_from
        # Set when the server knows a newer session than ours: reconnect above it.
        self.resync_to: int | None = None
        self._profile_problems = profile_problems
        self._seen_results = seen_results or SeenResults()
        self._guard = pii_guard or PiiGuard()
        self._inventory_changed = asyncio.Event()
        self._sender = OutboxSender(
            runtime.outbox,
            self._publish_tx,
            make_message=self._tx_message,
            rate_per_s=settings.outbox_rate_per_s,
            burst=max(1, int(settings.outbox_rate_per_s)),
            publish_timeout_s=settings.mqtt_timeout_s,
        )
        self._sender_task: asyncio.Task[None] | None = None
        self._client = client
        self._settings = settings
        self._outlet = settings.outlet_id
        self.session = session
        self._identity = identity
        self._counters = counters
        self._log_limiter = log_limiter
        self._agent_started = agent_started_monotonic
        self._seq = -1
        self._server_online: bool | None = None
        self._server_state_ts = -1
        self._shutdown = asyncio.Event()
        self.birth_published = False

    # -- public ---------------------------------------------------------------------

    def request_shutdown(self) -> None:
        """Ask ``run`` to stop its work, publish the shutdown death and return."""
        self._client.timeout = DISCONNECT_TIMEOUT_S
        self._shutdown.set()

    async def run(self) -> None:
        """Serve the connection; returns only after a requested shutdown.

        Raises ``aiomqtt.MqttError`` (possibly in an ``ExceptionGroup``) when the
        connection is lost.
        """
        async with asyncio.TaskGroup() as tg:
            serve = tg.create_task(self._serve(), name=f"agent-session-{self.session}")
            tg.create_task(self._cancel_on_shutdown(serve), name="agent-shutdown-watch")
        if self.resync_to is None:  # a death of a session the server refuses means nothing
            await self._publish_death()

    # -- connection work ----------------------------------------------------------------

    async def _cancel_on_shutdown(self, serve: asyncio.Task[None]) -> None:
        await self._shutdown.wait()
        # Stage one: the sender takes no new entries and finishes its current publish.
        self._sender.stop()
        sender = self._sender_task
        deadline = asyncio.get_running_loop().time() + SENDER_STOP_TIMEOUT_S
        if sender is not None and not sender.done():
            await asyncio.wait({sender}, timeout=SENDER_STOP_TIMEOUT_S)
        # Acks already received are deleted now, within the same budget (else resent).
        await self._sender.acks_applied(max(0.0, deadline - asyncio.get_running_loop().time()))
        serve.cancel()

    async def _serve(self) -> None:
        await self._subscribe()
        # Subscribed before the birth: no inventory change between the two is missed.
        with contextlib.closing(self._runtime.events.subscribe(maxsize=1024)) as events:
            await self._publish_birth(rebirth=False)
            self.birth_published = True
            log.info("online: outlet %s session %d", self._outlet, self.session)
            await self._report_resync()
            await self._report_profile_problems()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._telemetry_loop(), name="agent-telemetry")
                tg.create_task(self._downlink_loop(), name="agent-downlink")
                tg.create_task(self._device_event_loop(events), name="agent-device-events")
                tg.create_task(self._rebirth_loop(), name="agent-rebirth")
                self._sender_task = tg.create_task(self._sender.run(), name="agent-outbox-sender")

    async def _subscribe(self) -> None:
        topics = [
            (topic_for(self._outlet, Kind.COMMAND), DELIVERY[Kind.COMMAND].qos),
            (topic_for(self._outlet, Kind.DESIRED_CONFIG), DELIVERY[Kind.DESIRED_CONFIG].qos),
            (topic_for(self._outlet, Kind.TRANSACTION_ACK), DELIVERY[Kind.TRANSACTION_ACK].qos),
            (
                topic_for(self._outlet, Kind.TRANSACTION_RESULT),
                DELIVERY[Kind.TRANSACTION_RESULT].qos,
            ),
            (SERVER_STATE_TOPIC, DELIVERY[Kind.SERVER_STATE].qos),
        ]
        granted = await self._client.subscribe(topics, timeout=self._settings.mqtt_timeout_s)
        refused = [
            topic for (topic, _), code in zip(topics, granted, strict=False) if _code(code) >= 0x80
        ]
        if refused or len(granted) != len(topics):
            raise aiomqtt.MqttError(f"subscription refused by the broker: {refused or topics}")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _publish(self, message: Message, *, ack_wait_s: float | None = None) -> None:
        rule = DELIVERY[Kind(message.kind)]
        topic = topic_for(self._outlet, Kind(message.kind))
        await self._client.publish(
            topic,
            encode(message),
            qos=rule.qos,
            retain=rule.retain,
            timeout=ack_wait_s or self._settings.mqtt_timeout_s,
        )

    async def _publish_birth(self, *, rebirth: bool) -> None:
        birth = Birth(
            outlet_id=self._outlet,
            session=self.session,
            seq=self._next_seq(),
            agent_version=self._identity.agent_version,
            hostname=self._identity.hostname,
            os=self._identity.os,
            devices=self._runtime.devices.inventory(),
            config_version=None,
            telemetry_interval_s=self._settings.telemetry_interval_s,
            keepalive_s=self._settings.keepalive_s,
            rebirth=rebirth,
        )
        await self._publish(birth)
        if rebirth:
            self._counters.incr("births_rebirth")
            log.info("rebirth published: session %d seq %d", self.session, birth.seq)

    async def _publish_death(self) -> None:
        death = Death(
            outlet_id=self._outlet, session=self.session, seq=self._next_seq(), reason="shutdown"
        )
        try:
            await self._publish(death, ack_wait_s=DEATH_ACK_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            log.warning("shutdown death not acknowledged: %s", exc)
        else:
            log.info("offline: shutdown death published for session %d", self.session)

    async def _telemetry_loop(self) -> None:
        interval = self._settings.telemetry_interval_s
        while True:
            await asyncio.sleep(jittered(interval))
            metrics = await asyncio.to_thread(
                sample_host_metrics,
                self._settings.data_dir,
                agent_started_monotonic=self._agent_started,
            )
            metrics |= (await self._runtime.outbox.stats()).as_metrics()
            metrics |= self._counters.subset()
            devices = await self._runtime.devices.health()
            telemetry = Telemetry(
                outlet_id=self._outlet,
                session=self.session,
                seq=self._next_seq(),
                metrics=metrics,
                devices=devices,
            )
            await self._publish(telemetry)

    # -- devices and the outbox ---------------------------------------------------------

    async def _device_event_loop(self, events: Subscription) -> None:
        """Forward device events as ``Event``; inventory changes also ask for a rebirth."""
        while True:
            try:
                event = await events.get(timeout_s=_EVENT_WAIT_S)
            except TimeoutError:
                continue
            if event.name in INVENTORY_EVENTS:
                self._inventory_changed.set()
            if is_local_event(event):
                continue
            wire = to_wire_event(
                event,
                outlet_id=self._outlet,
                session=self.session,
                seq=self._next_seq(),
                guard=self._guard,
            )
            await self._publish(wire)
            self._counters.incr("events_published")

    async def _rebirth_loop(self) -> None:
        """One rebirth per burst of inventory changes, at most one a second."""
        while True:
            await self._inventory_changed.wait()
            self._inventory_changed.clear()
            await self._publish_birth(rebirth=True)
            await asyncio.sleep(REBIRTH_MIN_INTERVAL_S)

    async def _report_resync(self) -> None:
        if self._resynced_from is None:
            return
        stale, known = self._resynced_from
        event = Event(
            outlet_id=self._outlet,
            session=self.session,
            seq=self._next_seq(),
            name="session.resynced",
            severity="warning",
            data={"stale_session": stale, "known_session": known, "session": self.session},
        )
        await self._publish(event)

    async def _report_profile_problems(self) -> None:
        problems = self._profile_problems
        if not problems:
            return
        event = Event(
            outlet_id=self._outlet,
            session=self.session,
            seq=self._next_seq(),
            name="profiles.problems",
            severity="warning",
            data={"count": len(problems), "problems": [p[:512] for p in problems[:20]]},
        )
        await self._publish(event)

    def _tx_message(self, tx: OutgoingTx) -> Transaction:
        return tx.to_message(outlet_id=self._outlet, session=self.session, seq=self._next_seq())

    async def _publish_tx(self, message: Transaction) -> None:
        await self._publish(message)

    async def _handle_tx_result(self, result: TransactionResult) -> None:
        self._counters.incr("txresult_received")
        if not self._seen_results.first_time(result.tx_id, result.outcome):
            self._counters.incr("txresult_duplicates")
            return
        log.info("transaction %s: upstream %s", result.tx_id, result.outcome)
        self._runtime.publish_transaction_event(
            "transaction.result",
            tx_id=result.tx_id,
            outcome=result.outcome,
            case_number=result.case_number,
            reason=result.reason,
        )

    # -- downlink -------------------------------------------------------------------------

    async def _downlink_loop(self) -> None:
        async for message in self._client.messages:
            topic = message.topic.value
            payload = message.payload
            raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
            await self._handle_downlink(topic, bytes(raw))

    async def _handle_downlink(self, topic: str, payload: bytes) -> None:
        if not payload and topic == topic_for(self._outlet, Kind.DESIRED_CONFIG):
            # A zero-length retained message only clears the retained value: it means
            # "no desired config", never "apply an empty config" (anchors/fleet.md c10).
            self._counters.incr("config_absent")
            log.info("no desired config retained for this outlet")
            return
        try:
            decoded = decode(topic, payload)
        except WireError as exc:
            await self._reject_undecodable(topic, payload, exc)
            return
        if isinstance(decoded, Command):
            await self._handle_command(decoded)
        elif isinstance(decoded, ServerState):
            await self._handle_server_state(decoded)
        elif isinstance(decoded, DesiredConfig):
            self._counters.incr("config_received")
            log.info("desired config version %d received (not applied yet)", decoded.version)
        elif isinstance(decoded, TransactionAck):
            self._counters.incr("txack_received")
            # Not awaited: acks arriving meanwhile are committed together (group commit).
            self._sender.ack_soon(decoded).add_done_callback(self._count_ack)
        elif isinstance(decoded, TransactionResult):
            await self._handle_tx_result(decoded)
        else:
            self._counted_drop("unexpected_kind", f"unexpected {decoded.kind} message on {topic}")

    def _count_ack(self, future: asyncio.Future[AckOutcome]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:  # not deleted: the entry is sent again, the server says duplicate
            self._counters.incr("txack_failed")
            if self._log_limiter.allow("txack_failed"):
                log.warning("transaction ack not applied to the outbox: %s", exc)
            return
        self._counters.incr(f"txack_{future.result()}")

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
            if isinstance(known, int) and known > self.session:
                self._begin_resync(known)
                return
            await self._publish_birth(rebirth=True)
            await self._reply(command.cmd_id, "ok", {})
            return
        self._counters.incr("commands_rejected")
        log.info("command %s rejected: unknown command %r", command.cmd_id, command.name)
        await self._reply(
            command.cmd_id, "rejected", {"reason": "unknown_command", "name": command.name}
        )

    def _begin_resync(self, known: int) -> None:
        """The server knows a newer session than ours: end this one, reconnect above it."""
        self._counters.incr("session_resyncs")
        log.warning(
            "the fleet server knows session %d of outlet %s, newer than ours (%d): the "
            "session file was lost or restored from an older copy; reconnecting with "
            "session %d",
            known,
            self._outlet,
            self.session,
            known + 1,
        )
        self.resync_to = known
        self._shutdown.set()

    async def _reply(self, cmd_id: str, status: str, detail: dict[str, str]) -> None:
        result = CommandResult.model_validate(
            {
                "outlet_id": self._outlet,
                "session": self.session,
                "seq": self._next_seq(),
                "cmd_id": cmd_id,
                "status": status,
                "detail": detail,
            }
        )
        await self._publish(result)

    async def _handle_server_state(self, state: ServerState) -> None:
        if state.ts < self._server_state_ts:
            self._counted_drop("stale_server_state", f"server state from {state.ts} is older")
            return
        self._server_state_ts = state.ts
        previous, self._server_online = self._server_online, state.online
        log.info("fleet server %s is %s", state.server_id, "online" if state.online else "offline")
        if previous is False and state.online:
            await self._publish_birth(rebirth=True)
            await self._sender.resend_unacked()


def _valid_session(value: object) -> bool:
    """A session number another connect can still go above (not a bool, not the max)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_SESSION


def _code(code: object) -> int:
    """A SUBACK entry as a number (paho gives ``ReasonCode`` on MQTT 5, ``int`` before)."""
    value = getattr(code, "value", code)
    return value if isinstance(value, int) else 0x80


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
