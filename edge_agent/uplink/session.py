"""One MQTT connection of the agent: subscribe, birth, telemetry, device events, death.

``AgentSession`` owns the connection's session number and its one ``seq`` counter (the
birth is 0, every later uplink message +1, across rebirths too); ``downlink.Downlink``
handles what the server sends. The presence rules it follows are docs/protocol.md,
"Presence"; the outbox sender runs after the birth (docs/transactions.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

import aiomqtt

from edge_agent.backoff import jittered
from edge_agent.counters import AgentCounters, LogLimiter
from edge_agent.discovery import Subscription
from edge_agent.outbox import OutboxSender, OutgoingTx
from edge_agent.runtime import AgentRuntime
from edge_agent.settings import AgentSettings
from edge_agent.uplink.downlink import Downlink, UpdateOffers
from edge_agent.uplink.events import (
    INVENTORY_EVENTS,
    PiiGuard,
    SeenResults,
    to_wire_event,
)
from edge_agent.uplink.host_metrics import sample_host_metrics
from edge_agent.uplink.identity import HostIdentity
from govedge_wire import (
    DELIVERY,
    SERVER_STATE_TOPIC,
    Birth,
    Death,
    Event,
    Kind,
    Message,
    Telemetry,
    Transaction,
    encode,
    topic_for,
)

log = logging.getLogger(__name__)

# Waiting for the PUBACK of the shutdown death; the whole shutdown must fit in 2 s.
DEATH_ACK_TIMEOUT_S: Final = 1.0
DISCONNECT_TIMEOUT_S: Final = 0.5
# Inventory changes come in bursts (a hub of devices plugged in); one rebirth a second.
REBIRTH_MIN_INTERVAL_S: Final = 1.0
# How long a clean shutdown waits for the outbox sender's current publish and the acks.
SENDER_STOP_TIMEOUT_S: Final = 0.3
_EVENT_WAIT_S: Final = 60.0


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
        updates: UpdateOffers | None = None,
    ) -> None:
        self._runtime = runtime
        # (our old session, the session the server knew) when this connection follows a
        # session resync; reported once after the birth.
        self._resynced_from = resynced_from
        # Set when the server knows a newer session than ours: reconnect above it.
        self.resync_to: int | None = None
        self._profile_problems = profile_problems
        self._guard = pii_guard or PiiGuard()
        self._inventory_changed = asyncio.Event()
        self._sender = OutboxSender(
            runtime.outbox,
            self._publish_tx,
            make_message=self._tx_message,
            rate_per_s=self._live_rate(runtime, settings),
            burst=max(1, int(self._live_rate(runtime, settings))),
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
        self._shutdown = asyncio.Event()
        self.birth_published = False
        self._downlink = Downlink(
            self,
            outlet_id=settings.outlet_id,
            sender=self._sender,
            transactions=runtime.transactions,
            counters=counters,
            log_limiter=log_limiter,
            seen_results=seen_results or SeenResults(),
            config=runtime.config,
            updates=updates,
        )

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
        live = self._runtime.live
        if live is not None:  # a fleet config changes the rate of this connection's sender
            live.on_rate.append(self._sender.set_rate)
        try:
            async with asyncio.TaskGroup() as tg:
                serve = tg.create_task(self._serve(), name=f"agent-session-{self.session}")
                tg.create_task(self._cancel_on_shutdown(serve), name="agent-shutdown-watch")
        finally:
            if live is not None:
                live.on_rate.remove(self._sender.set_rate)
        if self.resync_to is None:  # a death of a session the server refuses means nothing
            await self._publish_death()

    def begin_resync(self, known: int) -> None:
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
            await self.publish_birth(rebirth=False)
            self.birth_published = True
            log.info("online: outlet %s session %d", self._outlet, self.session)
            await self._report_resync()
            await self._report_profile_problems()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._telemetry_loop(), name="agent-telemetry")
                tg.create_task(self._downlink.run(self._client), name="agent-downlink")
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
        if self._downlink.takes_updates:
            topics.append(
                (topic_for(self._outlet, Kind.UPDATE_OFFER), DELIVERY[Kind.UPDATE_OFFER].qos)
            )
        granted = await self._client.subscribe(topics, timeout=self._settings.mqtt_timeout_s)
        refused = [
            topic for (topic, _), code in zip(topics, granted, strict=False) if _code(code) >= 0x80
        ]
        if refused or len(granted) != len(topics):
            raise aiomqtt.MqttError(f"subscription refused by the broker: {refused or topics}")

    @staticmethod
    def _live_rate(runtime: AgentRuntime, settings: AgentSettings) -> float:
        live = runtime.live
        return settings.outbox_rate_per_s if live is None else live.outbox_rate_per_s

    def _telemetry_interval(self) -> float:
        live = self._runtime.live
        return self._settings.telemetry_interval_s if live is None else live.telemetry_interval_s

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def publish(self, message: Message, *, ack_wait_s: float | None = None) -> None:
        rule = DELIVERY[Kind(message.kind)]
        topic = topic_for(self._outlet, Kind(message.kind))
        await self._client.publish(
            topic,
            encode(message),
            qos=rule.qos,
            retain=rule.retain,
            timeout=ack_wait_s or self._settings.mqtt_timeout_s,
        )

    async def publish_birth(self, *, rebirth: bool) -> None:
        config = self._runtime.config
        birth = Birth(
            outlet_id=self._outlet,
            session=self.session,
            seq=self.next_seq(),
            agent_version=self._identity.agent_version,
            hostname=self._identity.hostname,
            os=self._identity.os,
            devices=self._runtime.devices.inventory(),
            retired_devices=self._runtime.devices.retired_device_ids(),
            config_version=None if config is None else config.version,
            config_hash=None if config is None else config.hash,
            config_key_ids=[] if config is None else config.key_ids,
            telemetry_interval_s=self._telemetry_interval(),
            keepalive_s=self._settings.keepalive_s,
            rebirth=rebirth,
        )
        await self.publish(birth)
        if rebirth:
            self._counters.incr("births_rebirth")
            log.info("rebirth published: session %d seq %d", self.session, birth.seq)

    async def _publish_death(self) -> None:
        death = Death(
            outlet_id=self._outlet, session=self.session, seq=self.next_seq(), reason="shutdown"
        )
        try:
            await self.publish(death, ack_wait_s=DEATH_ACK_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            log.warning("shutdown death not acknowledged: %s", exc)
        else:
            log.info("offline: shutdown death published for session %d", self.session)

    async def _telemetry_loop(self) -> None:
        while True:  # the interval is read each time: a fleet config changes it live
            await asyncio.sleep(jittered(self._telemetry_interval()))
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
                seq=self.next_seq(),
                metrics=metrics,
                devices=devices,
            )
            await self.publish(telemetry)

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
            wire = to_wire_event(
                event,
                outlet_id=self._outlet,
                session=self.session,
                seq=self.next_seq(),
                guard=self._guard,
            )
            await self.publish(wire)
            self._counters.incr("events_published")

    async def _rebirth_loop(self) -> None:
        """One rebirth per burst of inventory changes, at most one a second."""
        while True:
            await self._inventory_changed.wait()
            self._inventory_changed.clear()
            await self.publish_birth(rebirth=True)
            await asyncio.sleep(REBIRTH_MIN_INTERVAL_S)

    async def _report_resync(self) -> None:
        if self._resynced_from is None:
            return
        stale, known = self._resynced_from
        event = Event(
            outlet_id=self._outlet,
            session=self.session,
            seq=self.next_seq(),
            name="session.resynced",
            severity="warning",
            data={"stale_session": stale, "known_session": known, "session": self.session},
        )
        await self.publish(event)

    async def _report_profile_problems(self) -> None:
        problems = self._profile_problems
        if not problems:
            return
        event = Event(
            outlet_id=self._outlet,
            session=self.session,
            seq=self.next_seq(),
            name="profiles.problems",
            severity="warning",
            data={"count": len(problems), "problems": [p[:512] for p in problems[:20]]},
        )
        await self.publish(event)

    def _tx_message(self, tx: OutgoingTx) -> Transaction:
        return tx.to_message(outlet_id=self._outlet, session=self.session, seq=self.next_seq())

    async def _publish_tx(self, message: Transaction) -> None:
        await self.publish(message)


def _code(code: object) -> int:
    """A SUBACK entry as a number (paho gives ``ReasonCode`` on MQTT 5, ``int`` before)."""
    value = getattr(code, "value", code)
    return value if isinstance(value, int) else 0x80
