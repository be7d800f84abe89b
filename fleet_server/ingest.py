"""MQTT ingest: paho receives, one worker thread decodes, applies presence and writes.

paho's network thread only timestamps each message and appends it to a queue, so a slow
database never stalls the broker connection (past ``ingest_queue_max`` messages or
``ingest_queue_max_bytes`` bytes queued, the newest are refused, counted ``overloaded``).
Before that it refuses what the outlet's rate limit does not allow (``rate_limited``,
``fleet_server.health.ratelimit``) and every retained uplink (``retained``): the
subscription asks for the retain flag as published, so a retained publish is seen as
such live and when the broker replays it on subscribe; no agent sends one.

The worker is not woken per message: woken by the first message, it sleeps
``ingest_batch_window_s`` and then takes everything queued (up to ``ingest_batch_max``),
so the two threads do not trade the GIL per message. It applies
``fleet_server.presence`` in memory, then writes the changed outlets in one
transaction. A message that fails — any way at all — is counted and skipped; it
cannot roll back the others, because only validated in-memory state is written.

The broker socket has ``TCP_NODELAY`` set (``on_socket_open``), so acknowledgements and
commands are not held back by Nagle's algorithm (docs/performance.md).

Server presence follows Sparkplug's host STATE: a retained ``ServerState`` online on
every (re)connect, the same with ``online=False`` as the last will and at clean
shutdown. When the broker connection drops, every online outlet becomes ``stale``.

Transactions (``fleet_server.transactions``): a transaction presence accepted has its
body validated; valid ones are inserted into the inbox in one database transaction per
batch, and only after that commit does the worker publish ``TransactionAck``
(``accepted``, or ``duplicate`` for a ``tx_id`` already stored). An invalid body is
acknowledged ``rejected`` with a reason naming fields, never values. If the commit
fails nothing is acknowledged, so the outlet's outbox simply sends again. Material
chunks go the same way (``fleet_server.transactions.materials``); each refused chunk
or submission whose materials are incomplete is also counted as
``material_rejected_{code}``.

Shared mode (``mqtt_share_group`` set: several workers on ``$share/{group}/...``, the
broker handing each message to one of them): the database is the source of truth for
presence. A message of a session this worker has not seen born makes it read that
outlet's row (once per batch); if the birth is not stored yet (the other worker's batch
has not committed) the message waits in this worker, retried each batch for up to
``_SHARED_DEFER_S``, before it is refused as usual. Each presence write first locks the
outlets' rows and reconciles with them (``PresenceTracker.reconcile``), so a death that
reached another worker is never overwritten. The common path costs no extra query: a
known session is applied from memory; only the write per batch reads the rows it
updates. Gaps in ``seq`` are not judged (see ``fleet_server.presence``).

Revoked outlets (``fleet_server.security.revocation``, docs/security.md "Revocation"):
every message whose topic names an outlet that is revoked right now is refused, both
before it is queued and again when the worker takes it, whatever the client id it came
with: counted ``revoked_outlet``, logged (rate-limited), nothing applied, stored or
acknowledged. The revoked set lives in memory and is re-read every
``revocation_refresh_s`` between batches; refusals are written to ``revoked_traffic``
once per batch, which the ``revoked_outlet_traffic`` alert reads.

Shared mode, presence across workers (``fleet_server.workers``): each worker writes a
heartbeat row every ``worker_heartbeat_s`` saying whether it holds the broker. Start,
broker loss and clean stop mark the fleet ``stale`` only when no other worker is live and
connected (the last one to go does it), every heartbeat sweeps for a fleet no live
worker holds, and a clean stop publishes the offline server state only when no other
worker is connected. The worker thread does all of this in the order of its queue: a
broker loss or a new subscription is an item between the messages.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.health.ratelimit import OutletRateLimiter
from fleet_server.health.recorder import IngestObserver
from fleet_server.models import RevokedTraffic
from fleet_server.pki import FleetCA
from fleet_server.presence import OutletRecord, PresenceTracker
from fleet_server.registry import load_presence, save_presence
from fleet_server.security.revocation import RevokedOutlets
from fleet_server.settings import Settings
from fleet_server.stats import IngestStats, RateLimitedLog
from fleet_server.transactions.bodies import BodyRejected, parse_body
from fleet_server.transactions.inbox import PendingTx, Stored, StoreLimits, store_transactions
from fleet_server.transactions.materials import MaterialRejected, check_chunk
from fleet_server.transactions.usage import QUOTA_CODE
from fleet_server.workers import beat, fleet_lock, forget, live_connected, mark_fleet_stale
from govedge_wire import (
    KNOWN_SESSION_ARG,
    REBIRTH_COMMAND,
    SERVER_STATE_TOPIC,
    Birth,
    Command,
    CommandResult,
    Death,
    Event,
    Kind,
    ServerState,
    Telemetry,
    Transaction,
    TransactionAck,
    TransactionResult,
    WireError,
    decode,
    encode,
    now_ms,
    server_uplink_subscription,
    topic_for,
)
from govedge_wire.transactions import MATERIAL_CHUNK_KIND, EvaluationBody, MaterialChunkBody

logger = logging.getLogger(__name__)

_UPLINK_TYPES = (Birth, Death, Telemetry, Event, Transaction, CommandResult)
_GET_TIMEOUT_S = 1.0
# Shared mode: how long a message of a session not yet stored by any worker waits for
# the birth to be committed (one batch window of the other worker, plus slack).
_SHARED_DEFER_S = 2.0
_DEFER_RETRY_S = 0.1
_PUBLISH_TIMEOUT_S = 2.0
# What a queued message costs besides its payload and topic (the item, its datetime).
_ITEM_OVERHEAD_BYTES = 200


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class _Deferred:
    """Shared mode: a decoded message waiting for its birth to reach the database."""

    item: _Received
    message: Birth | Death | Telemetry | Event | Transaction | CommandResult
    until: float  # monotonic


@dataclass(frozen=True, slots=True)
class _BrokerLost:
    at: datetime


@dataclass(frozen=True, slots=True)
class _BrokerUp:
    """The uplink subscription is confirmed (messages after it are this connection's)."""


def _cost(item: _Received) -> int:
    """Bytes an item holds in the queue, for ``ingest_queue_max_bytes``."""
    return len(item.payload) + len(item.topic) + _ITEM_OVERHEAD_BYTES


class _Stop:
    """Queue sentinel: everything before it is drained, then the worker ends."""


_Item = _Received | _BrokerLost | _BrokerUp | _Stop


def _outlet_of(topic: str) -> str:
    """The outlet id level of a topic, for logs; never the payload."""
    parts = topic.split("/")
    return parts[2][:64] if len(parts) > 2 else "?"


class Ingest:
    """The server's MQTT ingest: ``start()``, then ``stop()``; owns its two threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        stats: IngestStats | None = None,
        on_stored: Callable[[], None] | None = None,
        observer: IngestObserver | None = None,
        limiter: OutletRateLimiter | None = None,
    ) -> None:
        self._settings = settings
        # Fleet health (fleet_server.health): sees accepted messages, writes per batch;
        # the limiter refuses an outlet's excess before it is queued.
        self._observer = observer
        self._limiter = limiter
        self._rules = settings.evaluation_rules
        self._limits = StoreLimits(
            outlet_daily_bytes=settings.outlet_daily_bytes,
            submission_material_bytes=settings.submission_material_max_bytes,
            zone=ZoneInfo(settings.outlet_timezone),
        )
        self._on_stored = on_stored
        # Transactions of the current batch, stored and acknowledged after it.
        self._pending_tx: list[PendingTx] = []
        self._rejected_tx: list[tuple[Transaction, str]] = []
        self._sessions = sessions
        self.stats = stats or IngestStats()
        # The server's own session counter for the commands it sends: time-based, so
        # it grows across restarts without being stored.
        self.server_session = now_ms()
        self._command_seq = itertools.count()
        # Appended by paho's thread, popped by the worker (deque ops are atomic). Bytes
        # in and out are counted by one thread each, so neither needs a lock.
        self._queue: deque[_Item] = deque()
        self._bytes_in = 0
        self._bytes_out = 0
        self._wake = threading.Event()
        self._tracker = PresenceTracker(
            rebirth_interval_s=settings.rebirth_interval_s,
            shared=bool(settings.mqtt_share_group),
        )
        # Shared mode only: messages waiting for a birth, and outlets read this batch.
        self._deferred: list[_Deferred] = []
        self._refreshed: set[str] = set()
        self._log = RateLimitedLog(logger)
        self._abort = threading.Event()
        self._worker = threading.Thread(target=self._run, name="fleet-ingest", daemon=True)
        self._client = self._make_client()
        self._started = False
        self._stopping = False
        # Shared mode: this worker's heartbeat row (fleet_server.workers). ``_connected``
        # is the broker connection as the worker thread has processed it so far.
        self._shared = bool(settings.mqtt_share_group)
        self.worker_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._connected = False
        self._next_beat = 0.0
        # Revoked outlets: their messages are refused; refusals are written per batch.
        self.revoked = RevokedOutlets(refresh_s=settings.revocation_refresh_s)
        self._revoked_lock = threading.Lock()
        self._revoked_refused: Counter[str] = Counter()
        self._revoked_seen: frozenset[str] = frozenset()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Load presence from the database, start the worker, connect in the background."""
        self._refresh_revoked()
        if self._shared:
            self._start_shared()
        else:
            with self._sessions.begin() as session:
                self._tracker.load(load_presence(session))
            stale = self._tracker.mark_all_stale(at=datetime.now(UTC))
            if stale:
                logger.info("%d outlets online at last shutdown are stale until heard again", stale)
            self._flush()
        self._worker.start()
        broker = self._settings.broker
        self._client.connect_async(
            broker.host, broker.port, keepalive=self._settings.mqtt_keepalive_s, clean_start=True
        )
        self._client.loop_start()
        self._started = True
        logger.info(
            "ingest connecting to %s:%d as %s (server session %d)",
            broker.host,
            broker.port,
            self._settings.server_id,
            self.server_session,
        )

    def stop(self, *, timeout: float | None = None) -> None:
        """Say offline, disconnect, drain the queue into the database within ``timeout``."""
        if not self._started:
            return
        self._started = False
        self._stopping = True
        deadline = time.monotonic() + (timeout or self._settings.drain_timeout_s)
        if self.stats.broker_connected and self._last_to_leave():
            info = self._client.publish(
                SERVER_STATE_TOPIC, self._state_payload(online=False), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=_PUBLISH_TIMEOUT_S)
            except (RuntimeError, ValueError):
                logger.warning("could not publish the offline server state before disconnect")
        self._client.disconnect()
        self._client.loop_stop()
        self.stats.set_broker_connected(False)
        self._enqueue(_Stop())
        self._worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._worker.is_alive():
            self._abort.set()
            self._worker.join(timeout=_PUBLISH_TIMEOUT_S)
            logger.warning(
                "drain deadline passed; %d queued messages were not written", len(self._queue)
            )
        if self._shared:
            try:
                with self._sessions.begin() as session:
                    forget(session, self.worker_id)
            except SQLAlchemyError:
                logger.warning("could not remove worker %s from ingest_workers", self.worker_id)
        logger.info("ingest stopped")

    @property
    def queue_depth(self) -> int:
        """Messages received and not yet processed."""
        return len(self._queue)

    @property
    def queue_bytes(self) -> int:
        """Bytes the queued messages hold (see ``_cost``)."""
        return self._bytes_in - self._bytes_out

    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        if not self._wake.is_set():
            self._wake.set()

    # -- paho side (network thread): never touches the database ---------------

    def _make_client(self) -> mqtt.Client:
        settings = self._settings
        self._state_ts = now_ms()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{settings.server_id}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        broker = settings.broker
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:  # our own client certificate from the fleet CA (docs/security.md)
            tls = FleetCA(settings.pki_dir).ensure_server_client()
            client.tls_set(
                ca_certs=str(tls.ca_file), certfile=str(tls.cert_file), keyfile=str(tls.key_file)
            )
        else:
            logger.warning("broker connection is plain mqtt:// (no TLS): development only")
        client.will_set(SERVER_STATE_TOPIC, self._state_payload(online=False), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = _no_delay
        return client

    def _state_payload(self, *, online: bool) -> bytes:
        # Online and offline (the will) carry the same timestamp, as Sparkplug's STATE
        # does: agents ignore an offline older than the last online, so only a late will
        # of an earlier server process is ignored, never this process's own.
        return encode(
            ServerState(server_id=self._settings.server_id, online=online, ts=self._state_ts)
        )

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("broker refused the connection: %s", reason_code)
            return
        # Clean start: the broker forgot our subscription, so make it again, then say
        # online (after the SUBSCRIBE, so no birth that answers it can be missed).
        topic = server_uplink_subscription(self._settings.mqtt_share_group)
        client.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
        client.publish(SERVER_STATE_TOPIC, self._state_payload(online=True), qos=1, retain=True)
        logger.info("connected to the broker; subscribed to %s", topic)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if any(code.is_failure for code in reason_codes):
            logger.error("broker refused the uplink subscription: %s", reason_codes)
            return
        self.stats.set_broker_connected(True)
        self._enqueue(_BrokerUp())

    def _on_disconnect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self.stats.broker_connected
        self.stats.set_broker_connected(False)
        self._enqueue(_BrokerLost(at=datetime.now(UTC)))
        if self._shared and not self._stopping:
            # The next connection gets a newer state timestamp (and a will with it):
            # another worker's will, published meanwhile, may be newer than ours, and
            # agents ignore a state older than the last one they saw.
            self._state_ts = now_ms()
            client.will_set(
                SERVER_STATE_TOPIC, self._state_payload(online=False), qos=1, retain=True
            )
        if self._stopping:
            logger.info("disconnected from the broker")
        elif was_connected:
            logger.warning("lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.stats.received()
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.stats.rejected("bad_topic")
            return
        if message.retain:
            self.stats.rejected("retained")
            self._log.warning(
                "retained", "ignored a retained message from outlet %s", _outlet_of(topic)
            )
            return
        if self._refuse_revoked(topic):
            return
        if self._limiter is not None and not self._limiter.allow_topic(topic):
            self.stats.rejected("rate_limited")
            return
        item = _Received(topic, bytes(message.payload), datetime.now(UTC))
        cost = _cost(item)
        settings = self._settings
        if (
            len(self._queue) >= settings.ingest_queue_max
            or self.queue_bytes + cost > settings.ingest_queue_max_bytes
        ):
            self.stats.rejected("overloaded")
            self._log.warning(
                "overloaded",
                "ingest queue full; dropped a message from outlet %s",
                _outlet_of(topic),
            )
            return
        self._bytes_in += cost
        self._enqueue(item)

    # -- worker side -----------------------------------------------------------

    def _run(self) -> None:
        while not self._abort.is_set():
            batch, stop = self._take_batch()
            if self.revoked.due():
                self._refresh_revoked()
            self._offline_revoked()
            if self._shared and time.monotonic() >= self._next_beat:
                try:
                    self._heartbeat()
                except Exception as exc:  # the worker must outlive any bug
                    self._log.exception("heartbeat_bug", "worker heartbeat failed", exc=exc)
            try:
                self._process(batch)
            except Exception as exc:  # the worker must outlive any bug
                self.stats.rejected("internal_error")
                self._log.exception("worker", "ingest batch failed", exc=exc)
            if stop:
                return

    def _take_batch(self) -> tuple[list[_Received | _BrokerLost | _BrokerUp], bool]:
        batch: list[_Received | _BrokerLost | _BrokerUp] = []
        if not self._queue:
            self._wake.wait(_DEFER_RETRY_S if self._deferred else _GET_TIMEOUT_S)
            # Cleared before draining: whatever is appended after the drain sets it again.
            self._wake.clear()
            if not self._queue:
                return batch, False
        limit = self._settings.ingest_batch_max
        if len(self._queue) < limit:
            # Let a batch gather instead of waking for every message.
            self._abort.wait(self._settings.ingest_batch_window_s)
        queued = self._queue
        while queued and len(batch) < limit:
            item = queued.popleft()
            if isinstance(item, _Stop):
                return batch, True
            if isinstance(item, _Received):
                self._bytes_out += _cost(item)
            batch.append(item)
        return batch, False

    def _process(self, batch: list[_Received | _BrokerLost | _BrokerUp]) -> None:
        self._refreshed.clear()
        if self._deferred:
            waiting, self._deferred = self._deferred, []
            for deferred in waiting:
                if not self._refuse_revoked(deferred.item.topic):
                    self._apply(deferred.item, deferred.message, until=deferred.until)
        for item in batch:
            if isinstance(item, _BrokerUp):
                if self._shared:
                    self._connected = True
                    self._heartbeat()
            elif isinstance(item, _BrokerLost):
                if self._shared:
                    self._broker_lost_shared(item.at)
                    continue
                count = self._tracker.mark_all_stale(at=item.at)
                if count:
                    logger.info("broker connection lost: %d online outlets now stale", count)
            else:
                self._handle(item)
        self._flush()
        if self._observer is not None:
            self._observer.flush(self._sessions)
        self._store_and_ack()
        self._record_revoked()

    def _handle(self, item: _Received) -> None:
        outlet_id = _outlet_of(item.topic)
        if self._refuse_revoked(item.topic):
            return
        try:
            message = decode(item.topic, item.payload)
        except WireError as exc:
            self.stats.rejected(exc.reason)
            self._log.warning(
                exc.reason,
                "rejected a message from outlet %s: %s (%d bytes)",
                outlet_id,
                exc.reason,
                len(item.payload),
            )
            return
        except Exception as exc:  # decoding must never stop the ingest
            self.stats.rejected("internal_error")
            self._log.exception(
                "internal_error", "could not decode a message from %s", outlet_id, exc=exc
            )
            return
        if not isinstance(message, _UPLINK_TYPES):
            self.stats.rejected("unexpected_kind")
            return
        self._apply(item, message, until=None)

    def _apply(
        self,
        item: _Received,
        message: Birth | Death | Telemetry | Event | Transaction | CommandResult,
        *,
        until: float | None,
    ) -> None:
        outlet_id = message.outlet_id
        if self._tracker.needs_refresh(message) and not self._refresh(message, item, until):
            return
        try:
            outcome = self._tracker.apply(
                message, received_at=item.received_at, now=time.monotonic()
            )
        except Exception as exc:  # one message's failure must not stop the batch
            self.stats.rejected("internal_error")
            self._log.exception(
                "internal_error", "could not apply a message from %s", outlet_id, exc=exc
            )
            return
        if outcome.ignored is not None:
            self.stats.rejected(outcome.ignored)
            self._log.warning(
                f"ignored:{outcome.ignored}",
                "ignored a %s from outlet %s: %s",
                message.kind,
                outlet_id,
                outcome.ignored,
            )
        else:
            self.stats.accepted()
            if self._observer is not None:
                self._observer.observe(message, received_at=item.received_at)
        for note in outcome.notes:
            self.stats.noted(note)
        if outcome.ignored is None and isinstance(message, Transaction):
            self._check_transaction(message, received_at=item.received_at)
        if outcome.rebirth_reason is not None:
            self.stats.rebirth(sent=outcome.rebirth)
            if outcome.rebirth:
                self._request_rebirth(
                    message.outlet_id,
                    reason=outcome.rebirth_reason,
                    known_session=outcome.known_session,
                    stale_session=message.session,
                )

    def _refresh(
        self,
        message: Birth | Death | Telemetry | Event | Transaction | CommandResult,
        item: _Received,
        until: float | None,
    ) -> bool:
        """Shared mode: read the outlet's stored row; False if the message must wait.

        The row is read at most once per outlet per batch; a message whose session is
        still unknown afterwards waits (``_SHARED_DEFER_S``) and is then applied as it
        is, to be refused ``no_birth``/``session_mismatch``/``late_will`` as usual.
        """
        outlet_id = message.outlet_id
        if outlet_id not in self._refreshed:
            self._refreshed.add(outlet_id)
            try:
                with self._sessions.begin() as session:
                    rows = load_presence(session, [outlet_id])
            except SQLAlchemyError as exc:
                self.stats.db_error()
                self._log.exception("db_refresh", "could not read outlet %s", outlet_id, exc=exc)
                rows = []
            for row in rows:
                if self._tracker.adopt(row):
                    self.stats.noted("presence_reloaded")
            if not self._tracker.needs_refresh(message):
                return True
        now = time.monotonic()
        deadline = now + _SHARED_DEFER_S if until is None else until
        if now < deadline and not self._stopping:
            if until is None:
                self.stats.noted("presence_waited")
            self._deferred.append(_Deferred(item=item, message=message, until=deadline))
            return False
        return True

    # -- revoked outlets (fleet_server.security.revocation) ------------------------

    def _refuse_revoked(self, topic: str) -> bool:
        """True (counted, logged) when ``topic``'s outlet is revoked; any thread."""
        outlet_id = _outlet_of(topic)
        if not self.revoked.contains(outlet_id):
            return False
        self.stats.rejected("revoked_outlet")
        with self._revoked_lock:
            self._revoked_refused[outlet_id] += 1
        self._log.warning(
            "revoked_outlet", "refused a message of revoked outlet %s (%s)", outlet_id, topic
        )
        return True

    def _refresh_revoked(self) -> None:
        try:
            with self._sessions.begin() as session:
                self.revoked.refresh(session)
        except SQLAlchemyError as exc:
            # The last set read stays in force; the next batch tries again.
            self.stats.db_error()
            self._log.exception("revoked_refresh", "could not read revoked outlets", exc=exc)

    def _offline_revoked(self) -> None:
        """Outlets revoked since the last look go offline (their will is refused too)."""
        ids = self.revoked.ids
        if ids is self._revoked_seen:
            return
        new, self._revoked_seen = ids - self._revoked_seen, ids
        now = datetime.now(UTC)
        for outlet_id in sorted(new):
            if self._tracker.mark_offline(outlet_id, at=now):
                self.stats.noted("revoked_offline")
                logger.info("outlet %s revoked: offline", outlet_id)

    def _record_revoked(self) -> None:
        """Add this batch's refusals to ``revoked_traffic`` (one transaction)."""
        with self._revoked_lock:
            refused, self._revoked_refused = self._revoked_refused, Counter()
        if not refused:
            return
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                rows = {
                    row.outlet_id: row
                    for row in session.scalars(
                        select(RevokedTraffic).where(RevokedTraffic.outlet_id.in_(refused))
                    )
                }
                for outlet_id, count in refused.items():
                    row = rows.get(outlet_id)
                    if row is None:
                        session.add(
                            RevokedTraffic(
                                outlet_id=outlet_id, refused=count, first_at=now, last_at=now
                            )
                        )
                    else:
                        row.refused += count
                        row.last_at = now
        except SQLAlchemyError as exc:
            # Counted in the stats all the same; only the alert's facts miss this batch.
            self.stats.db_error()
            self._log.exception("revoked_record", "could not record revoked traffic", exc=exc)

    # -- shared mode: heartbeats and fleet-wide staleness (fleet_server.workers) ----

    def _start_shared(self) -> None:
        """Register this worker; mark the fleet stale only if no other worker holds it.

        A peer counts once it has beaten after this registration (its row may be the
        last beat of a worker SIGKILLed a moment ago): wait for that while some peer's
        row is inside its lease.
        """
        lease = self._settings.worker_lease_s
        started = datetime.now(UTC)
        with self._sessions.begin() as session:
            self._beat(session, connected=False, now=started)
        deadline = time.monotonic() + lease
        while True:
            now = datetime.now(UTC)
            with self._sessions.begin() as session:
                fleet_lock(session)
                known = self._peers(session, now=now)
                peers = self._peers(session, now=now, since=started)
                if peers or not known or time.monotonic() >= deadline:
                    stale = 0 if peers else mark_fleet_stale(session, at=now)
                    self._tracker.load(load_presence(session))
                    break
            time.sleep(min(_DEFER_RETRY_S * 2, self._settings.worker_heartbeat_s))
        self._next_beat = time.monotonic() + self._settings.worker_heartbeat_s
        if peers:
            logger.info(
                "worker %s joins %d connected workers: presence kept as stored",
                self.worker_id,
                len(peers),
            )
        else:
            logger.info(
                "worker %s: no other worker connected; %d online outlets stale until heard",
                self.worker_id,
                stale,
            )

    def _beat(self, session: Session, *, connected: bool, now: datetime) -> None:
        """Take the fleet lock and write this worker's heartbeat row."""
        fleet_lock(session)
        beat(
            session,
            worker_id=self.worker_id,
            server_id=self._settings.server_id,
            connected=connected,
            now=now,
        )

    def _peers(
        self, session: Session, *, now: datetime, since: datetime | None = None
    ) -> list[str]:
        """The other workers that are live and connected (see ``workers.live_connected``)."""
        return live_connected(
            session,
            now=now,
            lease_s=self._settings.worker_lease_s,
            exclude=self.worker_id,
            since=since,
        )

    def _heartbeat(self) -> None:
        """Write this worker's row; if no worker at all holds the broker, sweep.

        Runs in the worker thread, between batches, so ``connected`` is what this thread
        has processed; a stopping worker says it is not connected.
        """
        self._next_beat = time.monotonic() + self._settings.worker_heartbeat_s
        connected = self._connected and not self._stopping
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                self._beat(session, connected=connected, now=now)
                swept = 0
                if not connected and not live_connected(
                    session, now=now, lease_s=self._settings.worker_lease_s
                ):
                    swept = mark_fleet_stale(session, at=now)
        except SQLAlchemyError as exc:
            self.stats.db_error()
            self._log.exception("heartbeat", "could not write the worker heartbeat", exc=exc)
            return
        if swept:
            self._tracker.mark_all_stale(at=now, dirty=False)
            self.stats.noted("fleet_swept_stale")
            logger.info("no ingest worker holds the broker: %d online outlets now stale", swept)

    def _broker_lost_shared(self, at: datetime) -> None:
        """Say this worker is not connected; the last connected worker marks the fleet."""
        self._connected = False
        self._next_beat = time.monotonic() + self._settings.worker_heartbeat_s
        try:
            with self._sessions.begin() as session:
                self._beat(session, connected=False, now=at)
                peers = self._peers(session, now=at)
                stale = 0 if peers else mark_fleet_stale(session, at=at)
        except SQLAlchemyError as exc:
            # The next heartbeat (a sweep) decides again once the database answers.
            self.stats.db_error()
            self._log.exception("broker_lost", "could not record the broker loss", exc=exc)
            return
        if peers:
            self.stats.noted("broker_lost_peers_connected")
            logger.info(
                "broker connection lost; %d other workers still connected: presence kept",
                len(peers),
            )
            return
        self._tracker.mark_all_stale(at=at, dirty=False)
        logger.info("broker connection lost, no other worker connected: %d outlets stale", stale)

    def _last_to_leave(self) -> bool:
        """Clean stop: True when this worker must publish the offline server state.

        In shared mode only when no other worker is live and connected; this worker's
        row says not connected from here on, so of two workers stopping together the
        second publishes it.
        """
        if not self._shared:
            return True
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                self._beat(session, connected=False, now=now)
                peers = self._peers(session, now=now)
        except SQLAlchemyError:
            logger.warning("could not read the other workers; publishing the offline state")
            return True
        if peers:
            logger.info("%d other workers connected: server state stays online", len(peers))
        return not peers

    # -- transactions ------------------------------------------------------------

    def _check_transaction(self, message: Transaction, *, received_at: datetime) -> None:
        """Validate a transaction's body and queue it for the batch's store-then-ack."""
        try:
            body = parse_body(message.tx_kind, dict(message.body))
            if isinstance(body, EvaluationBody):
                self._check_evaluation(body)
            elif isinstance(body, MaterialChunkBody):
                check_chunk(message.tx_id, body, max_bytes=self._settings.material_max_bytes)
        except (BodyRejected, MaterialRejected) as exc:
            self.stats.noted("tx_rejected")
            if isinstance(exc, MaterialRejected):
                self.stats.noted(f"material_rejected_{exc.code}")
            elif exc.code != "invalid":
                self.stats.noted(f"tx_rejected_{exc.code}")
            if isinstance(exc, BodyRejected) and message.tx_kind == MATERIAL_CHUNK_KIND:
                self.stats.noted("material_rejected_invalid")
            self._log.warning(
                "tx_rejected",
                "rejected transaction %s from outlet %s: %s",
                message.tx_id,
                message.outlet_id,
                exc.reason,
            )
            self._rejected_tx.append((message, exc.reason))
            return
        self._pending_tx.append(PendingTx(message=message, body=body, received_at=received_at))

    def _check_evaluation(self, body: EvaluationBody) -> None:
        if not self._rules.known_channel(body.channel):
            raise BodyRejected(f"unknown evaluation channel for profile {self._rules.name}")
        if body.stars is not None and body.stars != self._rules.stars(body.level_code):
            raise BodyRejected(
                f"level_code disagrees with stars under {self._rules.level_coding} coding"
            )

    def _store_and_ack(self) -> None:
        """Commit the batch's transactions, then acknowledge each (never before)."""
        pending, rejected = self._pending_tx, self._rejected_tx
        self._pending_tx, self._rejected_tx = [], []
        for message, reason in rejected:
            self._ack(message, "rejected", reason=reason)
        if not pending:
            return
        try:
            with self._sessions.begin() as session:
                outcomes = store_transactions(
                    session, pending, rules=self._rules, limits=self._limits
                )
        except IntegrityError:
            # Another worker stored one of these meanwhile: go one by one.
            outcomes_or_none = [self._store_one(item) for item in pending]
        except SQLAlchemyError as exc:
            self.stats.db_error()
            self._log.exception(
                "tx_db", "could not store %d transactions; not acknowledged", len(pending), exc=exc
            )
            return
        else:
            outcomes_or_none = list(outcomes)
        stored = False
        for item, outcome in zip(pending, outcomes_or_none, strict=True):
            if outcome is None:
                continue
            self.stats.noted(f"tx_{outcome.outcome}")
            if outcome.code == QUOTA_CODE:
                self.stats.noted(f"tx_rejected_{QUOTA_CODE}")
                self._log.warning(
                    f"quota:{item.message.outlet_id}",
                    "outlet %s is over its stored bytes for today; refused transaction %s",
                    item.message.outlet_id,
                    item.message.tx_id,
                )
            elif outcome.code is not None:
                self.stats.noted(f"material_rejected_{outcome.code}")
                self._log.warning(
                    "material_rejected",
                    "rejected transaction %s from outlet %s: %s",
                    item.message.tx_id,
                    item.message.outlet_id,
                    outcome.reason,
                )
            stored = stored or outcome.outcome == "accepted"
            self._ack(item.message, outcome.outcome, reason=outcome.reason)
        if stored and self._on_stored is not None:
            self._on_stored()

    def _store_one(self, item: PendingTx) -> Stored | None:
        try:
            with self._sessions.begin() as session:
                return store_transactions(session, [item], rules=self._rules, limits=self._limits)[
                    0
                ]
        except IntegrityError:
            return Stored("duplicate")
        except SQLAlchemyError as exc:
            self.stats.db_error()
            self._log.exception("tx_db_one", "could not store a transaction", exc=exc)
            return None

    def _ack(
        self,
        message: Transaction,
        status: Literal["accepted", "duplicate", "rejected"],
        *,
        reason: str | None = None,
    ) -> None:
        ack = TransactionAck(
            outlet_id=message.outlet_id,
            session=self.server_session,
            seq=next(self._command_seq),
            tx_id=message.tx_id,
            status=status,
            reason=reason,
        )
        self._client.publish(topic_for(message.outlet_id, Kind.TRANSACTION_ACK), encode(ack), qos=1)

    def publish_result(self, result: TransactionResult, *, timeout: float) -> bool:
        """Publish a transaction's upstream result; True once the broker has it (PUBACK).

        Called from the delivery worker's thread; ``result``'s session and seq are
        replaced with the server's own.
        """
        if not self.stats.broker_connected:
            return False
        message = result.model_copy(
            update={"session": self.server_session, "seq": next(self._command_seq)}
        )
        info = self._client.publish(
            topic_for(message.outlet_id, Kind.TRANSACTION_RESULT), encode(message), qos=1
        )
        try:
            info.wait_for_publish(timeout=timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def _request_rebirth(
        self, outlet_id: str, *, reason: str, known_session: int | None, stale_session: int
    ) -> None:
        # A message of an older session than the known one: the rebirth carries the known
        # session, so an agent whose session file was lost or restored from an older
        # copy reconnects above it (fleet_server.presence, "Session resync").
        args = {} if known_session is None else {KNOWN_SESSION_ARG: known_session}
        command = Command(
            outlet_id=outlet_id,
            session=self.server_session,
            seq=next(self._command_seq),
            cmd_id=uuid.uuid4().hex,
            name=REBIRTH_COMMAND,
            args=args,
            expires_ts=now_ms() + self._settings.command_ttl_s * 1000,
        )
        self._client.publish(topic_for(outlet_id, Kind.COMMAND), encode(command), qos=1)
        if known_session is None:
            logger.info("requested a rebirth from outlet %s (%s)", outlet_id, reason)
            return
        self.stats.noted("session_resync_requested")
        logger.warning(
            "outlet %s sent session %d, older than the known %d (session file lost or "
            "restored?): asked it to reconnect above %d",
            outlet_id,
            stale_session,
            known_session,
            known_session,
        )

    def _flush(self) -> None:
        """Write every dirty record; on failure keep them dirty for the next batch."""
        records = self._tracker.dirty()
        if not records:
            return
        now = datetime.now(UTC)
        try:
            with self._sessions.begin() as session:
                records = self._save(session, records, now=now)
        except OperationalError as exc:
            # The database is down, locked or unreachable: try the whole set again later.
            self.stats.db_error()
            self._log.exception(
                "db_down", "could not write %d presence records", len(records), exc=exc
            )
            return
        except SQLAlchemyError as exc:
            self.stats.db_error()
            self._log.exception("db_error", "a presence batch failed; writing one by one", exc=exc)
            self._flush_each(records, now=now)
            return
        self._tracker.mark_stored([record.outlet_id for record in records])
        self.stats.batch_committed()

    def _flush_each(self, records: list[OutletRecord], *, now: datetime) -> None:
        """Write records one per transaction, so one poison record cannot block the rest."""
        for record in records:
            try:
                with self._sessions.begin() as session:
                    self._save(session, [record], now=now)
            except OperationalError:
                return
            except SQLAlchemyError as exc:
                self.stats.db_error()
                self._log.exception(
                    "db_record", "dropped presence of outlet %s", record.outlet_id, exc=exc
                )
                self._tracker.discard_dirty(record.outlet_id)
            else:
                self._tracker.mark_stored([record.outlet_id])

    def _save(
        self, session: Session, records: list[OutletRecord], *, now: datetime
    ) -> list[OutletRecord]:
        """Write ``records``; in shared mode reconcile with the locked rows first.

        Returns the records written (in shared mode, those still dirty after the stored
        rows were merged in: an outlet whose stored session is newer is not written).
        """
        if self._tracker.shared:
            ids = [record.outlet_id for record in records]
            self._tracker.reconcile(load_presence(session, ids, lock=True))
            wanted = set(ids)
            records = [r for r in self._tracker.dirty() if r.outlet_id in wanted]
        save_presence(session, records, now=now)
        return records


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Disable Nagle on the broker socket: acks and commands go out at once.

    paho writes each packet with its own ``send``; with Nagle on, a small packet waits
    for the ACK of the previous one (delayed ACK, ~40 ms on Linux; docs/performance.md).
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # a websocket/unix transport: nothing to tune
        logger.debug("could not set TCP_NODELAY on the broker socket")
