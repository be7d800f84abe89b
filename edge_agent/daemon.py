"""The agent daemon: reconnect forever, and shut down in stages on SIGTERM/SIGINT.

Rules:

- Every connect attempt first raises and persists the session counter (see
  ``uplink.session_store``); a new ``aiomqtt.Client`` is built per attempt because the will
  carries that number. MQTT 5, client id ``govedge-{outlet_id}``, clean start, session
  expiry 0, keep-alive from the settings.
- Session resync: when the server knows a newer session than ours (the session ended
  with ``resync_to`` set, see ``uplink.downlink``), that number is persisted with
  ``SessionStore.raise_to`` and the next connect follows at once, without a backoff.
- A failed or lost connection is logged once, as one line with the delay; the next
  attempt waits ``uniform(0, min(cap, base * 2**attempt))`` (full jitter). ``attempt``
  goes back to 0 after a connection that stayed up for at least one keep-alive.
- Shutdown (staged): stop taking work, publish the shutdown death and wait briefly for
  its PUBACK, DISCONNECT normally (the broker then drops the will), all within
  ``SHUTDOWN_GRACE_S`` of the signal; past that, or when not connected, cancel at once.
- The runtime (``assembly.open_runtime``: profiles, outbox, queue, devices, simulators
  with ``--simulate``) is opened before the first connect and closed last, shielded,
  after the MQTT goodbye: stop taking work → death → close devices, queue and outbox.
- With ``--simulate``, SIGUSR1 unplugs the simulated ID-card reader and SIGUSR2 plugs it
  back in (hot-plug in a running agent, for tests and demos).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Final

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.assembly import Assembled, open_runtime
from edge_agent.backoff import full_jitter_delay
from edge_agent.counters import AgentCounters, LogLimiter
from edge_agent.enrollment import RenewalLoop, TlsStore
from edge_agent.enrollment.check import check_tls_identity
from edge_agent.enrollment.move import move_keys
from edge_agent.local_api import AppRegistry, LocalApiOptions, serve_local_api
from edge_agent.outbox.sender import DEFAULT_WINDOW as OUTBOX_WINDOW
from edge_agent.outbox.sender import MQTT_INFLIGHT
from edge_agent.queueing.playback import PlaybackSettings
from edge_agent.service.heartbeat import AgentState, keep_service_manager_informed
from edge_agent.service.notify import Notifier
from edge_agent.settings import AgentSettings
from edge_agent.simulate import SimulatedHardware
from edge_agent.startup_heap import freeze_startup_heap
from edge_agent.technician.outbox_state import publish_outbox_state
from edge_agent.technician.socket_api import serve_technician_socket
from edge_agent.updates import (
    RESTART_EXIT_CODE,
    Installer,
    Layout,
    build_installer,
    settle_trial,
    supervised,
)
from edge_agent.updates.reporting import StatusPublisher
from edge_agent.uplink.events import PiiGuard, SeenResults
from edge_agent.uplink.host_metrics import prime_cpu_percent
from edge_agent.uplink.identity import HostIdentity
from edge_agent.uplink.quiet_client import QuietClient
from edge_agent.uplink.session import AgentSession, will_message
from edge_agent.uplink.session_store import SessionStore
from govedge_wire import agent_client_id

log = logging.getLogger(__name__)

# From the signal to process exit must stay under 2 s; leave room for interpreter exit.
SHUTDOWN_GRACE_S: Final = 1.6
# Closing devices, queue and outbox after the MQTT goodbye (drivers have own deadlines).
RUNTIME_CLOSE_TIMEOUT_S: Final = 10.0
# The start-up heap is frozen once the local API listens (or failed to); no later than
# this after the runtime opened, whatever the local API does.
HEAP_SETTLE_TIMEOUT_S: Final = 30.0


class Agent:
    """Owns the reconnect loop, the session counter and the current connection."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        identity: HostIdentity | None = None,
        on_simulated: Callable[[int], None] | None = None,
        on_local_api: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        # An outlet upgraded to the keys_dir layout: its keys leave DATA_DIR/tls first.
        move_keys(settings.data_dir, settings.keys_dir)
        self.assembled: Assembled | None = None
        self._on_simulated = on_simulated
        self._on_local_api = on_local_api
        self._seen_results = SeenResults()
        self._pii_guard = PiiGuard()
        self._hotplug: set[asyncio.Task[bool]] = set()
        self.store = SessionStore(settings.data_dir)
        self.identity = identity or HostIdentity.detect()
        self.counters = AgentCounters()
        self._log_limiter = LogLimiter()
        self._started = time.monotonic()
        self._stopping = False
        self._session: AgentSession | None = None
        # 75 after an install switched ``current``: the supervisor starts the new version.
        self.exit_code = 0
        self._stop: asyncio.Event | None = None
        self._local_api_done = asyncio.Event()
        self.report_update = StatusPublisher(
            outlet_id=settings.outlet_id,
            running_version=self.identity.agent_version,
            connection=lambda: self._session,
            counters=self.counters,
        )
        self._notifier = Notifier.from_env()
        self.installer: Installer = build_installer(
            settings,
            running_version=self.identity.agent_version,
            report=self.report_update,
            restart=self._restart_into_update,
        )

    def _service_state(self) -> AgentState:
        session = self._session
        connected = session is not None and session.birth_published
        if self.installer.busy:
            status = "installing an update"
        elif connected:
            status = f"online as outlet {self.settings.outlet_id}"
        else:
            status = "connecting to the broker"
        return AgentState(connected=connected, status=status)

    def _technician_status(self) -> dict[str, object]:
        """The agent's own state for the technician socket (``edge-agent diagnose``)."""
        state = self._service_state()
        return {
            "outlet_id": self.settings.outlet_id,
            "version": self.identity.agent_version,
            "connected": state.connected,
            "status": state.status,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "update_installing": self.installer.busy,
        }

    def _restart_into_update(self) -> None:
        self.exit_code = RESTART_EXIT_CODE
        if self._stop is not None:
            self._stop.set()

    async def _settle_trial(self) -> None:
        """Report a finished trial, or prove this new version healthy, once connected."""
        try:
            await settle_trial(
                Layout(self.settings.install_home),
                running_version=self.identity.agent_version,
                supervised=supervised(),
                report=self.report_update,
                prove_health=self._prove_health,
            )
        except (OSError, ValueError) as exc:
            log.error("the update trial could not be settled: %s", exc)  # noqa: TRY400

    async def _prove_health(self, campaign_id: int | None) -> None:
        await self.report_update.prove_health(self._require_runtime().runtime.outbox, campaign_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in stages."""
        self._stop = stop
        await asyncio.to_thread(self.store.prepare)
        await asyncio.to_thread(check_tls_identity, self.settings)
        prime_cpu_percent()
        stack = AsyncExitStack()
        try:
            self.assembled = await open_runtime(self.settings, stack=stack, counters=self.counters)
            remove_hotplug = self._install_hotplug(self.assembled.simulation)
            async with asyncio.TaskGroup() as tg:
                mqtt_task = tg.create_task(
                    self._reconnect_forever(), name=f"agent-{self.settings.outlet_id}-mqtt"
                )
                local_api = tg.create_task(
                    self._serve_local_api(self.assembled), name="agent-local-api"
                )
                settle = tg.create_task(self._settle_trial(), name="agent-update-trial")
                heap = tg.create_task(self._settle_heap(), name="agent-startup-heap")
                informing = tg.create_task(
                    keep_service_manager_informed(self._notifier, self._service_state),
                    name="agent-service-notify",
                )
                outbox_state = tg.create_task(
                    publish_outbox_state(self.settings.data_dir, self._outbox_counts),
                    name="agent-outbox-state",
                )
                technician = tg.create_task(
                    self._serve_technician(self.assembled), name="agent-technician-socket"
                )
                renewal = None
                if self.settings.mqtt_tls:
                    renewal = tg.create_task(
                        RenewalLoop(self.settings.keys_dir, counters=self.counters).run(),
                        name="agent-cert-renewal",
                    )
                await stop.wait()
                informing.cancel()
                if self.exit_code == 0:  # not a restart into an update: the service stops
                    self._notifier.stopping()
                # Stop taking the clerks' work first, then say goodbye on MQTT.
                local_api.cancel()
                settle.cancel()
                heap.cancel()
                outbox_state.cancel()
                technician.cancel()
                self.installer.cancel()
                remove_hotplug()
                if renewal is not None:
                    renewal.cancel()
                await self._shutdown(mqtt_task)
        finally:
            await self._close_runtime(stack)

    async def _settle_heap(self) -> None:
        """Freeze the start-up's objects (``startup_heap``) once the local API is up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEAP_SETTLE_TIMEOUT_S):
                await self._local_api_done.wait()
        freeze_startup_heap()

    def _local_api_started(self, port: int) -> None:
        self._local_api_done.set()
        if self._on_local_api is not None:
            self._on_local_api(port)

    async def _outbox_counts(self) -> tuple[int, int, float | None]:
        stats = await self._require_runtime().runtime.outbox.stats()
        return sum(stats.depth.values()), stats.dead_letters, stats.oldest_age_s

    async def _serve_technician(self, assembled: Assembled) -> None:
        """The technician's socket (device list, retire, self-test); optional like the API."""
        try:
            await serve_technician_socket(
                assembled.runtime.devices,
                self.settings.data_dir,
                self._technician_status,
                self._outbox_counts,
                self.counters,
            )
        except OSError as exc:
            log.error("technician socket not started: %s", exc)  # noqa: TRY400

    async def _serve_local_api(self, assembled: Assembled) -> None:
        """The clerks' local API on 127.0.0.1; the agent keeps running if it cannot bind."""
        settings = self.settings
        try:
            await serve_local_api(
                assembled.runtime,
                port=settings.local_api_port,
                apps=AppRegistry(settings.data_dir),
                announcements_dir=settings.data_dir / "announcements",
                options=LocalApiOptions(
                    evaluation_qr_url=settings.evaluation_qr_url,
                    playback=PlaybackSettings(
                        output=settings.voice_output,
                        device=settings.voice_device,
                        pulse_server=settings.voice_pulse_server,
                        volume=settings.voice_volume,
                    ),
                ),
                counters=self.counters,
                on_started=self._local_api_started,
            )
        except OSError as exc:
            self._local_api_done.set()
            # Another agent on this PC, or the port is taken: presence and the outbox
            # still work, and the operator sees the reason in the log.
            log.error(  # noqa: TRY400 - one line, the reason is all an operator needs
                "local API not started on port %d: %s", settings.local_api_port, exc
            )

    async def _close_runtime(self, stack: AsyncExitStack) -> None:
        """Last stage: close devices, queue and outbox, shielded from cancellation."""
        close = asyncio.ensure_future(stack.aclose())
        try:
            async with asyncio.timeout(RUNTIME_CLOSE_TIMEOUT_S):
                await asyncio.shield(close)
        except TimeoutError:
            log.warning("closing devices and stores took over %.0f s", RUNTIME_CLOSE_TIMEOUT_S)
        self.assembled = None

    def _install_hotplug(self, simulation: SimulatedHardware | None) -> Callable[[], None]:
        """SIGUSR1/SIGUSR2 unplug/replug the simulated ID-card reader (``--simulate``)."""
        if simulation is None:
            return lambda: None
        if self._on_simulated is not None:
            self._on_simulated(simulation.count)
        loop = asyncio.get_running_loop()

        def spawn(action: Callable[[], Awaitable[bool]]) -> None:
            task = asyncio.ensure_future(action())
            self._hotplug.add(task)
            task.add_done_callback(self._hotplug.discard)

        try:
            loop.add_signal_handler(signal.SIGUSR1, spawn, simulation.unplug)
            loop.add_signal_handler(signal.SIGUSR2, spawn, simulation.replug)
        except (NotImplementedError, AttributeError):  # no SIGUSR1 on Windows
            return lambda: None

        def remove() -> None:
            loop.remove_signal_handler(signal.SIGUSR1)
            loop.remove_signal_handler(signal.SIGUSR2)

        return remove

    async def _shutdown(self, mqtt_task: asyncio.Task[None]) -> None:
        self._stopping = True
        session = self._session
        if session is None:
            log.info("stopping (not connected)")
            mqtt_task.cancel()
            return
        log.info("stopping: publishing shutdown death for session %d", session.session)
        session.request_shutdown()
        done, _ = await asyncio.wait({mqtt_task}, timeout=SHUTDOWN_GRACE_S)
        if not done:
            log.warning("clean shutdown took longer than %.1f s; cancelling", SHUTDOWN_GRACE_S)
            mqtt_task.cancel()

    async def _reconnect_forever(self) -> None:
        attempt = 0
        settings = self.settings
        loop = asyncio.get_running_loop()
        resynced_from: tuple[int, int] | None = None
        while not self._stopping:
            session = await asyncio.to_thread(self.store.advance)
            connected_at: float | None = None
            failure = ""
            resync_to: int | None = None
            try:
                async with self._client(session) as client:
                    connected_at = loop.time()
                    resync_to = await self._serve(client, session, resynced_from=resynced_from)
            except* (aiomqtt.MqttError, TimeoutError, OSError) as group:
                failure = _describe(group)
            finally:
                self._session = None
            if self._stopping:
                return
            if resync_to is not None:
                await asyncio.to_thread(self.store.raise_to, resync_to)
                resynced_from = (session, resync_to)
                attempt = 0
                continue
            resynced_from = None
            up_for = None if connected_at is None else loop.time() - connected_at
            if up_for is not None and up_for >= settings.keepalive_s:
                attempt = 0
            delay = full_jitter_delay(
                attempt, base=settings.reconnect_base_s, cap=settings.reconnect_cap_s
            )
            attempt += 1
            self.counters.incr("connect_failures" if up_for is None else "connections_lost")
            if up_for is None:
                log.warning(
                    "connect to %s failed (session %d): %s; retrying in %.1f s",
                    settings.mqtt_url,
                    session,
                    failure,
                    delay,
                )
            else:
                log.warning(
                    "connection lost after %.1f s (session %d): %s; reconnecting in %.1f s",
                    up_for,
                    session,
                    failure,
                    delay,
                )
            await asyncio.sleep(delay)

    async def _serve(
        self, client: aiomqtt.Client, session: int, *, resynced_from: tuple[int, int] | None
    ) -> int | None:
        """Serve one connection; returns the session to reconnect above, if any."""
        agent_session = AgentSession(
            client,
            settings=self.settings,
            session=session,
            identity=self.identity,
            counters=self.counters,
            log_limiter=self._log_limiter,
            agent_started_monotonic=self._started,
            runtime=self._require_runtime().runtime,
            profile_problems=self._require_runtime().profile_problems,
            seen_results=self._seen_results,
            pii_guard=self._pii_guard,
            resynced_from=resynced_from,
            updates=self.installer,
        )
        self._session = agent_session
        if self._stopping:  # the signal came while we were connecting
            agent_session.request_shutdown()
        await agent_session.run()
        return agent_session.resync_to

    def _require_runtime(self) -> Assembled:
        if self.assembled is None:
            raise RuntimeError("the agent runtime is not open")
        return self.assembled

    def _client(self, session: int) -> aiomqtt.Client:
        settings = self.settings
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0
        client = QuietClient(
            settings.mqtt_host,
            settings.mqtt_port,
            identifier=agent_client_id(settings.outlet_id),
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will_message(settings.outlet_id, session),
            clean_start=True,
            keepalive=settings.keepalive_s,
            timeout=settings.mqtt_timeout_s,
            properties=properties,
            logger=logging.getLogger("edge_agent.mqtt"),
            # Nagle's algorithm held each publish written right after a PUBACK (for a
            # txack) until the broker's TCP ACK: ~5 ms per transaction (docs/performance.md).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            # QoS 1 publishes awaiting their PUBACK (the outbox's window is larger: paho
            # sends the rest, in order, as PUBACKs come; outbox/sender.py).
            max_inflight_messages=MQTT_INFLIGHT,
            # Built per attempt, so a renewed certificate is used from the next connect.
            tls_context=TlsStore(settings.keys_dir).ssl_context() if settings.mqtt_tls else None,
        )
        # aiomqtt warns above 10 publishes awaiting their PUBACK; a full outbox window
        # of them (PUBACK pending or queued in paho) is normal.
        client.pending_calls_threshold = 2 * OUTBOX_WINDOW
        return client


def _describe(group: BaseExceptionGroup[BaseException]) -> str:
    """One line for the first error of a group (tracebacks would flood the log)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    first = leaves[0] if leaves else group
    text = str(first) or type(first).__name__
    cause = first.__cause__
    if cause is not None and str(cause):
        text = f"{text} ({cause})"
    return text


def install_signal_handlers(stop: asyncio.Event) -> Callable[[], None]:
    """Set ``stop`` on SIGTERM/SIGINT; returns a function that removes the handlers."""
    loop = asyncio.get_running_loop()
    signals = [signal.SIGTERM, signal.SIGINT]
    try:
        for sig in signals:
            loop.add_signal_handler(sig, stop.set)
    except NotImplementedError:  # Windows: no loop signal handlers
        for sig in signals:
            signal.signal(sig, lambda _sig, _frame: loop.call_soon_threadsafe(stop.set))

        def restore() -> None:
            for sig in signals:
                signal.signal(sig, signal.SIG_DFL)

        return restore

    def remove() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    return remove


async def run_agent(
    settings: AgentSettings,
    *,
    on_started: Callable[[], None],
    on_simulated: Callable[[int], None] | None = None,
    on_local_api: Callable[[int], None] | None = None,
) -> int:
    """Install signal handlers, announce the start, run until SIGTERM/SIGINT; the exit
    code (75 after an update switched ``current``, docs/updates.md).

    ``on_simulated(count)`` is called once the simulators are attached (``--simulate``),
    ``on_local_api(port)`` once the local API listens.
    """
    stop = asyncio.Event()
    remove = install_signal_handlers(stop)
    try:
        agent = Agent(settings, on_simulated=on_simulated, on_local_api=on_local_api)
        on_started()
        await agent.run(stop)
        return agent.exit_code
    finally:
        remove()
