"""The ingest: paho's network thread queues, one worker thread applies and writes.

paho's thread only refuses (retained, revoked, rate-limited, queue full: counted) and
queues, so a slow database never stalls the broker connection. The worker takes a
batch, applies presence in memory, writes the changed outlets, then stores and
acknowledges the batch's transactions. A broker loss or a new subscription is an item
between the messages. The whole path: docs/development.md, "A submission's way".
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.orm import Session, sessionmaker

from fleet_server.ingest.presence import PresenceTracker
from fleet_server.ingest.presence_store import PresenceStore
from fleet_server.ingest.publisher import PUBLISH_TIMEOUT_S, Publisher
from fleet_server.ingest.queue import (
    BrokerLost,
    BrokerUp,
    IngestQueue,
    Received,
    Stop,
    cost,
    outlet_of,
)
from fleet_server.ingest.ratelimit import OutletRateLimiter
from fleet_server.ingest.revocation import RevocationGate
from fleet_server.ingest.share_group import ShareGroup
from fleet_server.ingest.stats import IngestStats, RateLimitedLog
from fleet_server.ingest.transactions import RulesFor, TransactionDesk
from fleet_server.ingest.worker import (
    ConfigReports,
    IngestObserver,
    Parts,
    UpdateReporting,
    Worker,
)
from fleet_server.pki import FleetCA
from fleet_server.security.revocation import RevokedOutlets
from fleet_server.settings import Settings
from govedge_wire import (
    SERVER_STATE_TOPIC,
    Kind,
    TransactionResult,
    now_ms,
    server_uplink_subscription,
)

logger = logging.getLogger(__name__)
# The last levels of a transaction's topic (govedge/v1/{outlet}/up/tx).
_TX_TOPIC_END = f"/up/{Kind.TRANSACTION.value}"


class Ingest:
    """The server's MQTT ingest: ``start()``, then ``stop()``; owns its two threads.

    ``uplink=False`` makes it a publish-only link for an API process (``--role api``):
    it connects and publishes (configs), but subscribes to nothing, joins no share
    group, starts no worker and never speaks for the server in the retained state.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        stats: IngestStats | None = None,
        on_stored: Callable[[], None] | None = None,
        observer: IngestObserver | None = None,
        limiter: OutletRateLimiter | None = None,
        rules_for: RulesFor | None = None,
        reports: ConfigReports | None = None,
        updates: UpdateReporting | None = None,
        uplink: bool = True,
    ) -> None:
        self._settings = settings
        self._uplink = uplink
        self._sessions = sessions
        # The limiter refuses an outlet's excess before it is queued.
        self._limiter = limiter
        self.stats = stats or IngestStats()
        self._log = RateLimitedLog(logger)
        self._queue = IngestQueue()
        self._abort = threading.Event()
        self._shared = bool(settings.mqtt_share_group)
        self._tracker = PresenceTracker(
            rebirth_interval_s=settings.rebirth_interval_s, shared=self._shared
        )
        self._presence = PresenceStore(sessions=sessions, stats=self.stats, tracker=self._tracker)
        self._group = ShareGroup(
            settings, sessions=sessions, stats=self.stats, tracker=self._tracker
        )
        self.publisher = Publisher(settings, stats=self.stats)
        self._transactions = TransactionDesk(
            settings,
            sessions=sessions,
            stats=self.stats,
            publisher=self.publisher,
            on_stored=on_stored,
            rules_for=rules_for,
        )
        self._revocation = RevocationGate(
            sessions=sessions, stats=self.stats, refresh_s=settings.revocation_refresh_s
        )
        self._worker = Worker(
            Parts(
                settings=settings,
                sessions=sessions,
                stats=self.stats,
                queue=self._queue,
                tracker=self._tracker,
                presence=self._presence,
                group=self._group,
                publisher=self.publisher,
                transactions=self._transactions,
                revocation=self._revocation,
                observer=observer,
                reports=reports,
                updates=updates,
            ),
            abort=self._abort,
        )
        self._thread = threading.Thread(target=self._worker.run, name="fleet-ingest", daemon=True)
        self._client = self._make_client()
        self.publisher.client = self._client
        self._started = False

    @property
    def server_session(self) -> int:
        """The session the server's downlink messages carry."""
        return self.publisher.server_session

    @property
    def worker_id(self) -> str:
        """This worker's id in ``ingest_workers`` (share group only)."""
        return self._group.worker_id

    @property
    def revoked(self) -> RevokedOutlets:
        """The revoked outlets as this process knows them."""
        return self._revocation.revoked

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Load presence from the database, start the worker, connect in the background."""
        self._revocation.refresh()
        if not self._uplink:
            self._connect()
            return
        if self._shared:
            self._group.start()
        else:
            self._presence.load()
            stale = self._tracker.mark_all_stale(at=datetime.now(UTC))
            if stale:
                logger.info("%d outlets online at last shutdown are stale until heard again", stale)
            self._presence.flush()
        self._thread.start()
        self._connect()

    def _connect(self) -> None:
        broker = self._settings.broker
        self._client.connect_async(
            broker.host, broker.port, keepalive=self._settings.mqtt_keepalive_s, clean_start=True
        )
        self._client.loop_start()
        self._started = True
        logger.info(
            "%s connecting to %s:%d as %s (server session %d)",
            "ingest" if self._uplink else "publish-only link",
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
        self._group.stopping = True
        if not self._uplink:  # nothing queued, no state of ours to withdraw
            self._client.disconnect()
            self._client.loop_stop()
            self.stats.set_broker_connected(False)
            logger.info("publish-only link closed")
            return
        deadline = time.monotonic() + (timeout or self._settings.drain_timeout_s)
        if self.stats.broker_connected and (not self._shared or self._group.last_to_leave()):
            info = self.publisher.state(online=False)
            try:
                info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
            except (RuntimeError, ValueError):
                logger.warning("could not publish the offline server state before disconnect")
        self._client.disconnect()
        self._client.loop_stop()
        self.stats.set_broker_connected(False)
        self._queue.put(Stop())
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            self._thread.join(timeout=PUBLISH_TIMEOUT_S)
            logger.warning(
                "drain deadline passed; %d queued messages were not written", len(self._queue)
            )
        if self._shared:
            self._group.leave()
        logger.info("ingest stopped")

    @property
    def queue_depth(self) -> int:
        """Messages received and not yet processed."""
        return len(self._queue)

    @property
    def queue_bytes(self) -> int:
        """Bytes the queued messages hold (see ``queue.cost``)."""
        return self._queue.bytes

    def publish_results(
        self, results: Sequence[TransactionResult], *, timeout: float
    ) -> list[bool]:
        """Publish transactions' upstream results; each True once the broker has it.

        Called from the delivery worker's thread; each result's session and seq are
        replaced with the server's own.
        """
        return self.publisher.results(results, timeout=timeout)

    # -- paho side (network thread): never touches the database ---------------

    def _make_client(self) -> mqtt.Client:
        settings = self._settings
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
        # Server presence follows Sparkplug's host STATE: online on every (re)connect,
        # offline as the last will and at clean shutdown (docs/protocol.md, rule 8).
        # A publish-only link has no will: an API process going away must not tell
        # the agents the server is offline while the ingest processes run on.
        if self._uplink:
            will = self.publisher.state_payload(online=False)
            client.will_set(SERVER_STATE_TOPIC, will, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = _no_delay
        return client

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
        if not self._uplink:
            self.stats.set_broker_connected(True)
            logger.info("connected to the broker; publish-only, no uplink subscription")
            return
        # Clean start: the broker forgot our subscription, so make it again, then say
        # online (after the SUBSCRIBE, so no birth that answers it can be missed). The
        # subscription asks for the retain flag as published, so a retained uplink is
        # seen as such live and when replayed on subscribe (no agent sends one).
        topic = server_uplink_subscription(self._settings.mqtt_share_group)
        client.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
        self.publisher.state(online=True)
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
        self._queue.put(BrokerUp())

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
        if self._uplink:  # a publish-only link has no worker to tell
            self._queue.put(BrokerLost(at=datetime.now(UTC)))
        stopping = self._group.stopping
        if self._shared and self._uplink and not stopping:
            # The next connection gets a newer state timestamp (and a will with it):
            # another worker's will, published meanwhile, may be newer than ours, and
            # agents ignore a state older than the last one they saw.
            self.publisher.state_ts = now_ms()
            will = self.publisher.state_payload(online=False)
            client.will_set(SERVER_STATE_TOPIC, will, qos=1, retain=True)
        if stopping:
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
                "retained", "ignored a retained message from outlet %s", outlet_of(topic)
            )
            return
        if self._revocation.refuse(topic):
            return
        if self._limiter is not None and not self._limiter.allow_topic(topic):
            self.stats.rejected("rate_limited")
            return
        item = Received(topic, bytes(message.payload), datetime.now(UTC))
        settings = self._settings
        if (
            len(self._queue) >= settings.ingest_queue_max
            or self._queue.bytes + cost(item) > settings.ingest_queue_max_bytes
        ):
            # The newest are refused, so a slow database cannot grow the queue unbounded.
            self.stats.rejected("overloaded")
            self._log.warning(
                "overloaded",
                "ingest queue full; dropped a message from outlet %s",
                outlet_of(topic),
            )
            return
        # A transaction's agent (and its clerk) waits for the ack: it ends the window.
        self._queue.put(item, urgent=topic.endswith(_TX_TOPIC_END))


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Disable Nagle on the broker socket: acks and commands go out at once.

    paho writes each packet with its own ``send``; with Nagle on, a small packet waits
    for the ACK of the previous one (delayed ACK, ~40 ms on Linux; docs/performance.md).
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # a websocket/unix transport: nothing to tune
        logger.debug("could not set TCP_NODELAY on the broker socket")
