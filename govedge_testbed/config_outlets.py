"""Many light simulated outlets that receive, verify and "apply" desired configs.

For tests and benchmarks of the config rollout (docs/config.md): one real MQTT
connection per outlet (paho, MQTT 3.1.1; plain anonymous TCP on the development-mode
broker, or TLS with each outlet's own client certificate on the secure one, as the
agent connects), all driven from one thread through epoll with paho's external-loop API,
because paho's own ``loop()`` uses ``select()`` and cannot pass 1,024 descriptors
(the same approach as ``bench/fleet_ingest.py``).

Each outlet, as the agent does (docs/protocol.md, presence rules 2-3): subscribes to
its own ``down/config``, then publishes a birth carrying the applied config's version
and hash and the key ids it holds. Each config it receives is checked with
``verify_config`` against the given public keys and its applied version; a good one is
"applied" (its version and hash kept in memory) and answered with a ``reported``
``applied``; a bad one is answered ``refused`` with the reason. The retained copy of
the applied version coming again (every resubscribe) is recognised and not answered.
Nothing else of the agent runs: no devices, no telemetry, no persistence.

Times are ``time.monotonic()`` (system-wide on Linux, so comparable across processes).
"""

from __future__ import annotations

import copy
import selectors
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

from govedge_wire import codec
from govedge_wire.config import ConfigRefused, envelope_bytes, verify_config
from govedge_wire.errors import WireError
from govedge_wire.messages import Birth, ConfigReport
from govedge_wire.messages import DesiredConfig as ConfigMessage
from govedge_wire.topics import Kind, agent_client_id, topic_for

_T = TypeVar("_T")


@dataclass(slots=True)
class Applied:
    """One config an outlet applied: when it arrived and when it was applied."""

    version: int
    hash: str
    arrived_at: float
    applied_at: float


@dataclass(slots=True)
class Refusal:
    """One config an outlet refused, and why (a ``ConfigRefused`` reason)."""

    version: int | None
    reason: str
    at: float


@dataclass(slots=True)
class OutletLog:
    """What one simulated outlet saw and did."""

    outlet_id: str
    connected_at: float | None = None
    last_message_at: float | None = None  # the last down/config message of any kind
    applied_version: int | None = None
    applied_hash: str | None = None
    applied: list[Applied] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    # The retained copy of the applied version again: recognised, not reported.
    already_applied: int = 0
    # A zero-length down/config (retained config deleted): "no desired config".
    absent: int = 0
    reports_sent: int = 0
    births_sent: int = 0

    def applied_hash_at(self, config_hash: str) -> float | None:
        """When this outlet applied a config with ``config_hash`` (the first time), if so."""
        return next((a.applied_at for a in self.applied if a.hash == config_hash), None)


class ConfigOutlets:
    """N simulated outlets in one thread; ``start()``, read ``snapshot()``, ``stop()``."""

    def __init__(
        self,
        host: str,
        port: int,
        outlet_ids: Sequence[str],
        public_keys: Mapping[str, Ed25519PublicKey],
        *,
        keepalive: int = 600,
        session: int | None = None,
        applied: Mapping[str, tuple[int, str]] | None = None,
        tls: Callable[[str], ssl.SSLContext] | None = None,
    ) -> None:
        """``applied`` seeds outlets with a config already applied (version, hash), as an
        agent restarting with its last good config would be. ``tls`` gives an outlet's
        TLS client context (fleet CA, its certificate); None connects in plain TCP."""
        self.host, self.port, self.keepalive = host, port, keepalive
        self.public_keys = dict(public_keys)
        self.tls = tls
        self.session = session if session is not None else int(time.time())
        self.logs = {outlet: OutletLog(outlet) for outlet in outlet_ids}
        for outlet, (version, config_hash) in (applied or {}).items():
            self.logs[outlet].applied_version = version
            self.logs[outlet].applied_hash = config_hash
        self._ids = list(outlet_ids)
        self._seq = dict.fromkeys(self._ids, 0)
        self._clients: dict[str, mqtt.Client] = {}
        self._ready: set[str] = set()  # subscribed and birth sent
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- public -------------------------------------------------------------------------

    def start(self, *, timeout: float = 300) -> None:
        """Connect every outlet; return once all are subscribed and have sent a birth."""
        self._thread = threading.Thread(target=self._run, name="config-outlets", daemon=True)
        self._thread.start()
        self.wait(lambda logs: len(self._ready) == len(self._ids), timeout=timeout)

    def stop(self) -> None:
        """Disconnect every outlet and end the loop thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def snapshot(self) -> dict[str, OutletLog]:
        """A copy of every outlet's log, taken under the lock."""
        with self._lock:
            return copy.deepcopy(self.logs)

    def query(self, read: Callable[[Mapping[str, OutletLog]], _T]) -> _T:
        """``read(logs)`` under the lock, without copying (for frequent polls)."""
        with self._lock:
            return read(self.logs)

    def wait(
        self, done: Callable[[Mapping[str, OutletLog]], bool], *, timeout: float
    ) -> dict[str, OutletLog]:
        """Block until ``done(logs)`` (called under the lock) holds; ``TimeoutError`` if not."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not done(self.logs):
                if self._error is not None:
                    raise RuntimeError("simulated outlets failed") from self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"outlets not done within {timeout} s")
                self._lock.wait(min(left, 0.5))
            return copy.deepcopy(self.logs)

    def wait_applied(
        self, config_hash: str, outlet_ids: Sequence[str] | None = None, *, timeout: float
    ) -> dict[str, OutletLog]:
        """Block until every outlet (or those of ``outlet_ids``) has applied ``config_hash``."""
        wanted = list(self.logs) if outlet_ids is None else list(outlet_ids)
        return self.wait(
            lambda logs: all(logs[o].applied_hash == config_hash for o in wanted),
            timeout=timeout,
        )

    # -- the loop thread ----------------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.EpollSelector()
        try:
            self._connect_all(sel)
            last_misc = time.monotonic()
            while not self._stopping.is_set():
                self._pump(sel, 0.05)
                if time.monotonic() - last_misc > 5:  # keepalive pings
                    last_misc = time.monotonic()
                    for client in self._clients.values():
                        client.loop_misc()
        except BaseException as exc:  # handed to the waiting thread
            with self._lock:
                self._error = exc
                self._lock.notify_all()
        finally:
            for client in self._clients.values():
                client.disconnect()
                if client.want_write():
                    client.loop_write()
            sel.close()

    def _connect_all(self, sel: selectors.EpollSelector) -> None:
        batch = 250  # let the broker answer CONNACKs before opening the next batch
        for i, outlet in enumerate(self._ids):
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=agent_client_id(outlet),
                userdata=outlet,
                protocol=mqtt.MQTTv311,
                clean_session=True,
            )
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            if self.tls is not None:
                client.tls_set_context(self.tls(outlet))
            client.connect(self.host, self.port, keepalive=self.keepalive)
            sock = client.socket()
            if sock is None:
                raise ConnectionError(f"outlet {outlet}: no socket after connect")
            sel.register(sock, selectors.EVENT_READ, client)
            self._clients[outlet] = client
            if i % batch == batch - 1:
                deadline = time.monotonic() + 10
                while len(self._ready) < i + 1 - batch // 2 and time.monotonic() < deadline:
                    self._pump(sel, 0.05)

    def _pump(self, sel: selectors.EpollSelector, timeout: float) -> None:
        for key, _events in sel.select(timeout):
            client: mqtt.Client = key.data
            rc = client.loop_read(50)
            # TLS may hold decrypted bytes epoll cannot see: read until none are left.
            sock = client.socket()
            if isinstance(sock, ssl.SSLSocket):
                while rc == mqtt.MQTT_ERR_SUCCESS and sock.pending():
                    rc = client.loop_read(50)
            # Publishes made inside paho's callbacks are only queued: write them now.
            if client.want_write():
                client.loop_write()

    def _next_seq(self, outlet: str) -> int:
        self._seq[outlet] += 1
        return self._seq[outlet]

    def _on_connect(self, client: mqtt.Client, outlet: str, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            return
        with self._lock:
            self.logs[outlet].connected_at = time.monotonic()
        # Subscribe first, birth after the SUBACK: no config can be missed (presence rule 2).
        client.subscribe(topic_for(outlet, Kind.DESIRED_CONFIG), qos=1)

    def _on_subscribe(self, client: mqtt.Client, outlet: str, *_args: Any) -> None:
        with self._lock:
            log = self.logs[outlet]
            birth = Birth(
                outlet_id=outlet,
                session=self.session,
                seq=0,
                agent_version="0.1.0-config-sim",
                hostname=f"pc-{outlet}",
                os="Linux sim",
                config_version=log.applied_version,
                config_hash=log.applied_hash,
                config_key_ids=sorted(self.public_keys),
                telemetry_interval_s=30.0,
                keepalive_s=self.keepalive,
            )
            log.births_sent += 1
            self._ready.add(outlet)
            self._lock.notify_all()
        client.publish(topic_for(outlet, Kind.BIRTH), codec.encode(birth), qos=1)

    def _on_message(self, client: mqtt.Client, outlet: str, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        with self._lock:
            report = self._handle(self.logs[outlet], msg.topic, bytes(msg.payload), now)
            self._lock.notify_all()
        if report is not None:
            client.publish(topic_for(outlet, Kind.CONFIG_REPORT), codec.encode(report), qos=1)

    def _handle(
        self, log: OutletLog, topic: str, payload: bytes, now: float
    ) -> ConfigReport | None:
        """Verify and apply one ``down/config`` payload; the report to send, if any."""
        log.last_message_at = now
        if not payload:
            log.absent += 1
            return None
        try:
            message = codec.decode(topic, payload)
        except WireError as exc:
            return self._refuse(log, (None, None), "garbage", str(exc), now)
        if not isinstance(message, ConfigMessage):
            return self._refuse(log, (None, None), "garbage", "not a config message", now)
        offered = _offered(message.body)
        try:
            verify_config(
                envelope_bytes(message),
                self.public_keys,
                outlet_id=log.outlet_id,
                applied_version=log.applied_version,
            )
        except ConfigRefused as exc:
            if exc.reason == "replayed" and (exc.version, exc.hash) == (
                log.applied_version,
                log.applied_hash,
            ):
                log.already_applied += 1
                return None
            return self._refuse(log, offered, exc.reason, str(exc), now)
        version, config_hash = offered
        if version is None or config_hash is None:  # cannot happen: the envelope verified
            return self._refuse(log, offered, "garbage", "no version or hash", now)
        log.applied_version, log.applied_hash = version, config_hash
        log.applied.append(Applied(version, config_hash, now, time.monotonic()))
        return self._report(log, status="applied", offered=offered)

    def _refuse(
        self,
        log: OutletLog,
        offered: tuple[int | None, str | None],
        reason: str,
        detail: str,
        now: float,
    ) -> ConfigReport:
        log.refused.append(Refusal(offered[0], reason, now))
        return self._report(
            log, status="refused", offered=offered, reason=reason, detail=detail[:512]
        )

    def _report(
        self,
        log: OutletLog,
        *,
        status: str,
        offered: tuple[int | None, str | None],
        reason: str | None = None,
        detail: str | None = None,
    ) -> ConfigReport:
        log.reports_sent += 1
        return ConfigReport.model_validate(
            {
                "outlet_id": log.outlet_id,
                "session": self.session,
                "seq": self._next_seq(log.outlet_id),
                "status": status,
                "config_version": log.applied_version,
                "config_hash": log.applied_hash,
                "offered_version": offered[0],
                "offered_hash": offered[1],
                "reason": reason,
                "detail": detail,
                "config_key_ids": sorted(self.public_keys),
            }
        )


def _offered(body: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The version and hash an envelope claims, when they have the right shape."""
    version, config_hash = body.get("version"), body.get("hash")
    ok_version = version if type(version) is int and version >= 0 else None
    ok_hash = (
        config_hash
        if isinstance(config_hash, str)
        and len(config_hash) == 64
        and all(c in "0123456789abcdef" for c in config_hash)
        else None
    )
    return ok_version, ok_hash
