"""After a revocation: make the broker reload its CRL, then end the outlet's open session.

Mosquitto 2.0 (Debian 12's 2.0.11, checked by ``tests/security/test_revocation_reload.py``)
reloads the listener's certificates and ``crlfile`` on SIGHUP: the next TLS handshake
with a revoked certificate fails, without a restart. A connection that is already open
is not dropped by the reload. The server ends it by MQTT session takeover: it connects
with the outlet agent's client id (``govedge_wire.agent_client_id``), so the broker
closes the old connection, and disconnects at once; the agent's reconnect then meets
the reloaded CRL and is refused.

How the broker is signalled is configuration (``Settings``): ``broker_pid_file`` (the
``pid_file`` of the generated ``mosquitto.conf``; the server must be allowed to signal
that process) or ``broker_reload_command`` (``systemctl reload mosquitto``: Debian's unit
sends SIGHUP; ``docker kill --signal=HUP mosquitto``; an ``ssh`` to the broker host).
Neither set: nothing is done and the answer says the operator must reload.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from fleet_server.pki import FleetCA
from fleet_server.settings import Settings
from govedge_wire import agent_client_id

__all__ = ["BrokerAction", "after_revocation", "end_session", "reload_broker"]

log = logging.getLogger(__name__)

_OUTPUT_TAIL: Final = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerAction:
    """What the server did at the broker after a revocation."""

    reloaded: bool
    session_ended: bool
    detail: str


def reload_broker(settings: Settings) -> tuple[bool, str]:
    """Signal the broker to reload its CRL; ``(done, what happened)``. Never raises."""
    if settings.broker_pid_file is not None:
        return _signal_pid_file(settings.broker_pid_file)
    if settings.broker_reload_command:
        return _run_command(settings.broker_reload_command, settings.broker_reload_timeout_s)
    return False, "no broker reload configured (GOVEDGE_BROKER_PID_FILE or _RELOAD_COMMAND)"


def _signal_pid_file(path: Path) -> tuple[bool, str]:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        return False, f"broker pid file {path} unreadable: {exc}"
    if pid <= 1:
        return False, f"broker pid file {path} holds no usable pid"
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        return False, f"could not signal broker pid {pid}: {exc}"
    return True, f"SIGHUP sent to broker pid {pid}"


def _run_command(command: str, timeout_s: float) -> tuple[bool, str]:
    try:
        done = subprocess.run(  # the operator's own configured command
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return False, f"broker reload command failed: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-_OUTPUT_TAIL:]
        return False, f"broker reload command exited {done.returncode}: {tail}"
    return True, f"broker reload command succeeded: {command}"


def end_session(settings: Settings, outlet_id: str) -> tuple[bool, str]:
    """Close the outlet's open MQTT connection by taking its client id over; never raises.

    Connects as the server's own identity with a clean start and no session expiry, so
    nothing is left behind at the broker, and disconnects at once.
    """
    broker = settings.broker
    connected: queue.Queue[ReasonCode] = queue.Queue()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=agent_client_id(outlet_id),
        protocol=mqtt.MQTTv5,
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        files = FleetCA(settings.pki_dir).ensure_server_client()
        client.tls_set(
            ca_certs=str(files.ca_file), certfile=str(files.cert_file), keyfile=str(files.key_file)
        )

    def on_connect(
        _c: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        connected.put(reason)

    client.on_connect = on_connect
    timeout = settings.broker_reload_timeout_s
    try:
        client.connect(broker.host, broker.port, keepalive=max(5, int(timeout)), clean_start=True)
        client.loop_start()
        try:
            reason = connected.get(timeout=timeout)
        except queue.Empty:
            return False, f"no CONNACK within {timeout} s"
        if reason.is_failure:
            return False, f"broker refused the takeover connection: {reason}"
        rc = client.disconnect()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return False, f"disconnect failed: {mqtt.error_string(rc)}"
        return True, f"session {agent_client_id(outlet_id)} taken over and closed"
    except OSError as exc:
        return False, f"could not reach the broker: {exc}"
    finally:
        client.loop_stop()


def after_revocation(settings: Settings, outlet_id: str) -> BrokerAction:
    """Reload the broker's CRL and, once reloaded, end the outlet's open session."""
    reloaded, how = reload_broker(settings)
    if not reloaded:
        log.warning("revoked %s; broker not reloaded: %s", outlet_id, how)
        return BrokerAction(reloaded=False, session_ended=False, detail=how)
    ended, what = end_session(settings, outlet_id)
    if ended:
        log.info("revoked %s: %s; %s", outlet_id, how, what)
    else:
        log.warning("revoked %s: %s; open session not ended: %s", outlet_id, how, what)
    return BrokerAction(reloaded=True, session_ended=ended, detail=f"{how}; {what}")
