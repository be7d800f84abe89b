"""Many light simulated agents that answer update offers, for campaign tests and benches.

The update protocol (docs/updates.md, "The update protocol") played by N outlets in one
process: one real MQTT connection per outlet (paho, MQTT 3.1.1, plain TCP or TLS with
the outlet's own certificate), all driven from one thread through epoll with paho's
external-loop API, as ``govedge_testbed.config_outlets`` does (paho's own ``loop()``
uses ``select()`` and cannot pass 1,024 descriptors).

Each agent subscribes to its ``down/update``, then publishes a birth with its
``agent_version``. An ``UpdateOffer`` is answered with ``UpdateStatus`` steps
(``downloading`` → ``verifying`` → ``installing`` → ``restarting``), then what the
release's configured ``Outcome`` says: by default a new birth carrying the new version
and ``healthy``; or ``rolled_back`` (a birth of the old version first, as the
supervisor's switch back would give) or ``failed`` with the outcome's reason. An offer
whose ``window_end_ts`` has passed is answered ``skipped`` (``window_missed``);
downloads wait for ``not_before_ts``; an offer for another install while one runs is
``skipped`` (``busy``). Offers repeat while due: a repeat of an install under way is
ignored, a repeat of a finished one gets its final status again.

Every offer received is recorded, so a test can prove an outlet was never offered a
release. Nothing else of the agent runs (no devices, telemetry or persistence).
"""

from __future__ import annotations

import copy
import functools
import heapq
import itertools
import selectors
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from govedge_wire import codec
from govedge_wire.errors import WireError
from govedge_wire.messages import Birth, UpdateOffer, UpdateStatus, now_ms
from govedge_wire.topics import Kind, agent_client_id, topic_for

_T = TypeVar("_T")
_STEPS = ("downloading", "verifying", "installing", "restarting")
_FINAL = frozenset({"healthy", "failed", "rolled_back", "skipped"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """How installing one release ends: ``healthy``, ``rolled_back`` or ``failed``."""

    state: str = "healthy"
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.state not in {"healthy", "rolled_back", "failed"}:
            raise ValueError(f"outcome must be healthy, rolled_back or failed, not {self.state}")


@dataclass(slots=True)
class OfferSeen:
    """One ``UpdateOffer`` as an agent received it."""

    campaign_id: int
    version: str
    at: float  # time.monotonic()


@dataclass(slots=True)
class AgentLog:
    """What one simulated agent saw and did."""

    outlet_id: str
    version: str
    offers: list[OfferSeen] = field(default_factory=list)
    # (campaign_id, version) -> the final state sent for it and its reason.
    finished: dict[tuple[int, str], tuple[str, str | None]] = field(default_factory=dict)
    installing: tuple[int, str] | None = None
    statuses_sent: list[str] = field(default_factory=list)
    births_sent: int = 0
    garbage: int = 0  # down/update payloads that were not a valid offer

    @property
    def offered(self) -> bool:
        """Whether this agent was offered anything at all."""
        return bool(self.offers)


class UpdateAgents:
    """N simulated agents in one thread; ``start()``, read ``snapshot()``, ``stop()``."""

    def __init__(
        self,
        host: str,
        port: int,
        outlet_ids: Sequence[str],
        *,
        version: str = "1.0.0",
        outcomes: Mapping[str, Outcome] | None = None,
        step_s: float = 0.0,
        keepalive: int = 600,
        session: int | None = None,
        tls: Callable[[str], ssl.SSLContext] | None = None,
    ) -> None:
        """``outcomes`` maps a release version to how its install ends (default healthy);
        ``step_s`` is the time between two steps of an install."""
        self.host, self.port, self.keepalive = host, port, keepalive
        self.outcomes = dict(outcomes or {})
        self.step_s = step_s
        self.tls = tls
        base = session if session is not None else int(time.time())
        self.logs = {outlet: AgentLog(outlet, version) for outlet in outlet_ids}
        self._ids = list(outlet_ids)
        self._session = dict.fromkeys(self._ids, base)
        self._seq = dict.fromkeys(self._ids, 0)
        self._clients: dict[str, mqtt.Client] = {}
        self._ready: set[str] = set()
        self._due: list[tuple[float, int, str, Callable[[], None]]] = []
        self._tick = itertools.count()
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- public -------------------------------------------------------------------------

    def start(self, *, timeout: float = 300) -> None:
        """Connect every agent; return once all are subscribed and have sent a birth."""
        self._thread = threading.Thread(target=self._run, name="update-agents", daemon=True)
        self._thread.start()
        self.wait(lambda _logs: len(self._ready) == len(self._ids), timeout=timeout)

    def stop(self) -> None:
        """Disconnect every agent and end the loop thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def set_outcome(self, version: str, outcome: Outcome) -> None:
        """Change how installing ``version`` ends, for offers from now on."""
        with self._lock:
            self.outcomes[version] = outcome

    def rebirth_all(self) -> None:
        """Every agent publishes a fresh birth (as after seeing the server come online)."""
        with self._lock:
            for outlet in self._ids:
                self._schedule(0, outlet, functools.partial(self._birth, outlet))

    def snapshot(self) -> dict[str, AgentLog]:
        """A copy of every agent's log, taken under the lock."""
        with self._lock:
            return copy.deepcopy(self.logs)

    def query(self, read: Callable[[Mapping[str, AgentLog]], _T]) -> _T:
        """``read(logs)`` under the lock, without copying (for frequent polls)."""
        with self._lock:
            return read(self.logs)

    def wait(
        self, done: Callable[[Mapping[str, AgentLog]], bool], *, timeout: float
    ) -> dict[str, AgentLog]:
        """Block until ``done(logs)`` (called under the lock) holds; ``TimeoutError`` if not."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not done(self.logs):
                if self._error is not None:
                    raise RuntimeError("simulated agents failed") from self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"agents not done within {timeout} s")
                self._lock.wait(min(left, 0.5))
            return copy.deepcopy(self.logs)

    # -- the loop thread ----------------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.EpollSelector()
        try:
            self._connect_all(sel)
            last_misc = time.monotonic()
            while not self._stopping.is_set():
                self._pump(sel, 0.02)
                self._run_due()
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
                raise ConnectionError(f"agent {outlet}: no socket after connect")
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
            sock = client.socket()
            if isinstance(sock, ssl.SSLSocket):  # TLS may hold bytes epoll cannot see
                while rc == mqtt.MQTT_ERR_SUCCESS and sock.pending():
                    rc = client.loop_read(50)
            if client.want_write():  # publishes made in callbacks are only queued
                client.loop_write()

    def _run_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._due or self._due[0][0] > now:
                    return
                _at, _n, outlet, action = heapq.heappop(self._due)
                action()
                self._lock.notify_all()
            client = self._clients[outlet]
            if client.want_write():
                client.loop_write()

    def _schedule(self, delay: float, outlet: str, action: Callable[[], None]) -> None:
        """Run ``action`` (under the lock, in the loop thread) after ``delay`` seconds."""
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._tick), outlet, action))

    # -- paho callbacks -----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, outlet: str, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:  # subscribe first, birth after the SUBACK: no offer missed
            client.subscribe(topic_for(outlet, Kind.UPDATE_OFFER), qos=1)

    def _on_subscribe(self, _client: mqtt.Client, outlet: str, *_args: Any) -> None:
        with self._lock:
            self._birth(outlet)
            self._ready.add(outlet)
            self._lock.notify_all()

    def _on_message(self, _client: mqtt.Client, outlet: str, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._offer(self.logs[outlet], msg.topic, bytes(msg.payload))
            self._lock.notify_all()

    # -- the agent's side of the protocol (called under the lock) -----------------------

    def _offer(self, log: AgentLog, topic: str, payload: bytes) -> None:
        try:
            offer = codec.decode(topic, payload)
        except WireError:
            log.garbage += 1
            return
        if not isinstance(offer, UpdateOffer):
            log.garbage += 1
            return
        log.offers.append(OfferSeen(offer.campaign_id, offer.version, time.monotonic()))
        key = (offer.campaign_id, offer.version)
        outlet = log.outlet_id
        if log.installing == key:
            return  # a repeat of the install under way
        if key in log.finished:  # a repeat of a finished one: its final status again
            state, reason = log.finished[key]
            self._status(outlet, offer, state, reason=reason)
            return
        if log.installing is not None:
            self._status(outlet, offer, "skipped", reason="busy")
            return
        if now_ms() >= offer.window_end_ts:
            log.finished[key] = ("skipped", "window_missed")
            self._status(outlet, offer, "skipped", reason="window_missed")
            return
        if log.version == offer.version:  # already runs it: nothing to install
            log.finished[key] = ("healthy", None)
            self._status(outlet, offer, "healthy", reason=None)
            return
        log.installing = key
        wait = max(0.0, (offer.not_before_ts - now_ms()) / 1000)
        self._schedule(wait, outlet, lambda: self._step(outlet, offer, 0))

    def _step(self, outlet: str, offer: UpdateOffer, index: int) -> None:
        log = self.logs[outlet]
        if index == 0 and now_ms() >= offer.window_end_ts:  # waited past the window
            self._finish(log, offer, "skipped", "window_missed")
            return
        outcome = self.outcomes.get(offer.version, Outcome())
        if outcome.state == "failed" and index == 2:  # fails while installing
            self._finish(log, offer, "failed", outcome.reason or "install_failed")
            return
        if index < len(_STEPS):
            progress = 1.0 if index == 0 else None
            self._status(outlet, offer, _STEPS[index], reason=None, progress=progress)
            self._schedule(self.step_s, outlet, lambda: self._step(outlet, offer, index + 1))
            return
        # Restarted: the new version proves healthy, or the supervisor switches back.
        self._session[outlet] += 1
        self._seq[outlet] = 0
        if outcome.state == "healthy":
            log.version = offer.version
        self._birth(outlet)
        self._finish(log, offer, outcome.state, outcome.reason)

    def _finish(self, log: AgentLog, offer: UpdateOffer, state: str, reason: str | None) -> None:
        log.installing = None
        log.finished[(offer.campaign_id, offer.version)] = (state, reason)
        self._status(log.outlet_id, offer, state, reason=reason)

    def _next_seq(self, outlet: str) -> int:
        self._seq[outlet] += 1
        return self._seq[outlet]

    def _birth(self, outlet: str) -> None:
        log = self.logs[outlet]
        birth = Birth(
            outlet_id=outlet,
            session=self._session[outlet],
            seq=self._next_seq(outlet),
            agent_version=log.version,
            hostname=f"pc-{outlet}",
            os="Linux sim",
            telemetry_interval_s=30.0,
            keepalive_s=self.keepalive,
        )
        log.births_sent += 1
        self._clients[outlet].publish(topic_for(outlet, Kind.BIRTH), codec.encode(birth), qos=1)

    def _status(
        self,
        outlet: str,
        offer: UpdateOffer,
        state: str,
        *,
        reason: str | None,
        progress: float | None = None,
    ) -> None:
        log = self.logs[outlet]
        status = UpdateStatus.model_validate(
            {
                "outlet_id": outlet,
                "session": self._session[outlet],
                "seq": self._next_seq(outlet),
                "campaign_id": offer.campaign_id,
                "version": offer.version,
                "running_version": log.version,
                "state": state,
                "reason": reason,
                "progress": progress,
            }
        )
        log.statuses_sent.append(state)
        self._clients[outlet].publish(
            topic_for(outlet, Kind.UPDATE_STATUS), codec.encode(status), qos=1
        )


def final_states(logs: Mapping[str, AgentLog], campaign_id: int) -> dict[str, str]:
    """Each outlet's final state in campaign ``campaign_id`` (outlets that finished one)."""
    out: dict[str, str] = {}
    for outlet, log in logs.items():
        for (campaign, _version), (state, _reason) in log.finished.items():
            if campaign == campaign_id and state in _FINAL:
                out[outlet] = state
    return out
